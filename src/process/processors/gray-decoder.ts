/**
 * JPEG -> small grayscale image, for pixel-level processors (motion).
 *
 * node-av facts this relies on (node-av 6.1 / FFmpeg 8.1, checked here on Node 20):
 * - the polyfill must be loaded before any node-av code runs (Promise.withResolvers);
 * - FFmpeg's mjpeg decoder supports `lowres` (decode at 1/2, 1/4, 1/8 size straight from
 *   the DCT): a 720p JPEG decodes at 1/4 size in a fraction of the full-size time, so the
 *   decoder picks the largest reduction that still leaves at least the target size;
 * - swscale (SWS_AREA) then brings any size and YUV layout to GRAY8 at the target size.
 * The sync calls are used on purpose: for a few hundred microseconds of work the thread
 * pool hand-off of the async ones costs more than it saves.
 */
import '../../capture/node-av-polyfill.js';
import {
  AV_CODEC_ID_MJPEG,
  AV_PIX_FMT_GRAY8,
  AV_PIX_FMT_YUV420P,
  AV_PIX_FMT_YUV422P,
  AV_PIX_FMT_YUV440P,
  AV_PIX_FMT_YUV444P,
  AV_PIX_FMT_YUVJ420P,
  AV_PIX_FMT_YUVJ422P,
  AV_PIX_FMT_YUVJ440P,
  AV_PIX_FMT_YUVJ444P,
  SWS_AREA,
  type AVPixelFormat,
} from 'node-av/constants';
import { Codec, CodecContext, FFmpegError, Frame, Packet, SoftwareScaleContext } from 'node-av/lib';

const J_FORMATS = new Map<AVPixelFormat, AVPixelFormat>([
  [AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUV420P],
  [AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUV422P],
  [AV_PIX_FMT_YUVJ440P, AV_PIX_FMT_YUV440P],
  [AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_YUV444P],
]);

export interface GrayImage {
  width: number;
  height: number;
  /** width * height bytes, row-major, 0 = black. */
  pixels: Uint8Array;
  /** Size of the JPEG before reduction. */
  sourceWidth: number;
  sourceHeight: number;
}

/** Width and height from a JPEG's SOFn header, without decoding; undefined when absent. */
export function jpegDimensions(jpeg: Buffer): { width: number; height: number } | undefined {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return undefined;
  for (let i = 2; i + 9 < jpeg.length;) {
    if (jpeg[i] !== 0xff) return undefined;
    const marker = jpeg[i + 1];
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2;
      continue;
    }
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: jpeg.readUInt16BE(i + 5), width: jpeg.readUInt16BE(i + 7) };
    }
    i += 2 + jpeg.readUInt16BE(i + 2);
  }
  return undefined;
}

/**
 * Decodes JPEGs to GRAY8 at a fixed target size. Not re-entrant: one decode at a time per
 * instance (the motion processor serialises frames per camera and owns one per camera).
 */
export class GrayDecoder {
  private ctx?: CodecContext;
  private ctxLowres = -1;
  private scaler?: SoftwareScaleContext;
  private scalerKey = '';
  private readonly pkt = new Packet();
  private readonly frame = new Frame();
  private readonly out = new Frame();
  private closed = false;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    if (!(Number.isInteger(width) && width >= 8 && width <= 1920 && Number.isInteger(height) && height >= 8 && height <= 1080)) {
      throw new RangeError(`gray size ${width}x${height} out of range (8x8 .. 1920x1080)`);
    }
    this.pkt.alloc();
    this.frame.alloc();
    this.out.alloc();
    this.out.width = width;
    this.out.height = height;
    this.out.format = AV_PIX_FMT_GRAY8;
    FFmpegError.throwIfError(this.out.getBuffer(1), 'allocating the gray frame');
  }

  decode(jpeg: Buffer): GrayImage {
    if (this.closed) throw new Error('GrayDecoder is closed');
    const dims = jpegDimensions(jpeg);
    if (!dims) throw new Error('payload is not a JPEG (no SOI/SOF marker)');
    // Largest power-of-two reduction (0..3) that keeps at least the target size.
    let lowres = 0;
    while (lowres < 3 && dims.width >> (lowres + 1) >= this.width && dims.height >> (lowres + 1) >= this.height) lowres++;
    const ctx = this.decoderFor(lowres);
    this.pkt.data = jpeg;
    let ret = ctx.sendPacketSync(this.pkt);
    this.pkt.unref();
    if (ret >= 0) ret = ctx.receiveFrameSync(this.frame);
    if (ret < 0) {
      // A broken JPEG can leave the decoder in a bad state: start the next one afresh.
      this.resetDecoder();
      FFmpegError.throwIfError(ret, 'decoding the JPEG');
    }
    try {
      const scaler = this.scalerFor(this.frame.width, this.frame.height, this.frame.format as AVPixelFormat);
      FFmpegError.throwIfError(scaler.scaleFrameSync(this.out, this.frame), 'scaling to gray');
    } finally {
      this.frame.unref();
    }
    const stride = this.out.linesize[0];
    const plane = this.out.data![0];
    const pixels = new Uint8Array(this.width * this.height);
    for (let y = 0; y < this.height; y++) pixels.set(plane.subarray(y * stride, y * stride + this.width), y * this.width);
    return { width: this.width, height: this.height, pixels, sourceWidth: dims.width, sourceHeight: dims.height };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.resetDecoder();
    this.scaler?.freeContext();
    this.scaler = undefined;
    this.pkt.free();
    this.frame.free();
    this.out.free();
  }

  private resetDecoder(): void {
    this.ctx?.freeContext();
    this.ctx = undefined;
    this.ctxLowres = -1;
  }

  private decoderFor(lowres: number): CodecContext {
    if (this.ctx && this.ctxLowres === lowres) return this.ctx;
    this.resetDecoder();
    const codec = Codec.findDecoder(AV_CODEC_ID_MJPEG);
    if (!codec) throw new Error('this FFmpeg build has no mjpeg decoder');
    const ctx = new CodecContext();
    ctx.allocContext3(codec);
    // Options go through av_opt_set, not an open2 dictionary: node-av keeps the dictionary
    // pointer that avcodec_open2 replaces, and the process crashed at exit (SIGSEGV).
    ctx.threadCount = 1;
    let ret = ctx.setOption('lowres', Math.min(lowres, codec.maxLowres));
    if (ret >= 0) ret = ctx.open2Sync(codec, null);
    if (ret < 0) {
      ctx.freeContext();
      FFmpegError.throwIfError(ret, 'opening the mjpeg decoder');
    }
    this.ctx = ctx;
    this.ctxLowres = lowres;
    return ctx;
  }

  private scalerFor(w: number, h: number, decoded: AVPixelFormat): SoftwareScaleContext {
    // swscale warns (on stderr) about the deprecated full-range "J" formats; the planes are
    // laid out the same, and only luma is used here.
    const fmt = J_FORMATS.get(decoded) ?? decoded;
    const key = `${w}x${h}:${fmt}`;
    if (this.scaler && this.scalerKey === key) return this.scaler;
    this.scaler?.freeContext();
    const s = new SoftwareScaleContext();
    s.getContext(w, h, fmt, this.width, this.height, AV_PIX_FMT_GRAY8, SWS_AREA);
    FFmpegError.throwIfError(s.initContext(), 'initialising the gray scaler');
    this.scaler = s;
    this.scalerKey = key;
    return s;
  }
}
