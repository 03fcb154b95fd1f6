/**
 * Sampled frames to JPEG with FFmpeg's mjpeg encoder (4:2:0, full range as JPEG requires,
 * the standard Huffman tables of JPEG Annex K), fed straight from the decoder's YUV planes:
 * - full-range 4:2:0 frames (yuvj420p, or yuv420p flagged full range, as many IP cameras
 *   send) go to the encoder as they are: no copy, no conversion;
 * - limited-range 4:2:0 frames (most H.264/H.265 streams) get the range fixed by FFmpeg's
 *   colorspace filter (full-range.ts: exact to half a level, SIMD);
 * - anything else (a downscale for `maxWidth`, 4:2:2/4:4:4, 10-bit, NV12 from a GPU) goes
 *   through one swscale pass that converts, resizes and fixes the range together.
 *
 * Chosen by measurement (docs/benchmarks.md; bench/capture.bench.ts `--only encoders` and
 * bench/capture-profile.ts, CPU and instruction counts per 720p frame of the bench stream):
 * - Huffman tables: mjpeg's `optimal` builds tables per picture in a second pass over the
 *   coded blocks (23.8 M instructions a frame); the standard tables cost 19.1 M (-20 %,
 *   ~-0.3 ms) for the same pixels (entropy coding is lossless) and ~19 % more bytes.
 * - Range: the colorspace filter costs 3.1 M instructions a frame, the 256-entry table
 *   (`lutyuv`) used before 8.3 M, swscale at the same size more than both.
 * - libjpeg-turbo through sharp needs an RGB copy first and costs ~4x as much per frame.
 * The old path (swscale for the range, then mjpeg) is kept selectable as `path: 'swscale'`
 * and `huffman: 'optimal'` as an option, so the benchmarks measure them in the same run.
 */
import {
  AV_CODEC_FLAG_QSCALE,
  AV_PIX_FMT_YUV420P,
  AV_PIX_FMT_YUVJ420P,
  AVCOL_RANGE_JPEG,
  FF_ENCODER_MJPEG,
  FF_QP2LAMBDA,
  SWS_BILINEAR,
  type AVPixelFormat,
} from 'node-av/constants';
import { Codec, CodecContext, FFmpegError, type Frame, Packet, Rational } from 'node-av/lib';
import { FullRange } from './full-range.js';
import { Scaler } from './reader-scaler.js';

/** How frames reach the encoder: 'planes' (the default, above) or 'swscale' (every frame through swscale). */
export type JpegPath = 'planes' | 'swscale';
/** mjpeg's Huffman tables: 'default' (JPEG Annex K, the default here) or 'optimal' (built per picture, a second pass). */
export type JpegHuffman = 'optimal' | 'default';

export interface JpegOptions {
  path?: JpegPath;
  huffman?: JpegHuffman;
}

export interface EncodedJpeg {
  jpeg: Buffer;
  width: number;
  height: number;
}

export class JpegEncoder {
  private readonly scaler = new Scaler(SWS_BILINEAR);
  private readonly range = new FullRange();
  private readonly pkt = new Packet();
  private readonly lambda: number;
  private ctx?: CodecContext;
  private pts = 0n;

  private readonly path: JpegPath;
  private readonly huffman: JpegHuffman;

  constructor(
    quality: number,
    private readonly maxWidth?: number,
    o: JpegOptions = {},
  ) {
    this.path = o.path ?? 'planes';
    this.huffman = o.huffman ?? 'default';
    // Quality 1..100 onto mjpeg's qscale 31..2.
    const qscale = Math.round(2 + ((100 - quality) / 99) * 29);
    this.lambda = qscale * FF_QP2LAMBDA;
    this.pkt.alloc();
  }

  encode(frame: Frame): EncodedJpeg {
    let width = frame.width;
    let height = frame.height;
    if (this.maxWidth && width > this.maxWidth) {
      height = Math.max(2, Math.round((height * this.maxWidth) / width / 2) * 2);
      width = this.maxWidth;
    }
    const input = this.prepare(frame, width, height);
    const ctx = this.encoderFor(input);
    input.quality = this.lambda;
    // A looped file restarts its timestamps; the encoder rejects pts going back.
    input.pts = this.pts++;
    let ret = ctx.sendFrameSync(input);
    if (ret >= 0) ret = ctx.receivePacketSync(this.pkt);
    FFmpegError.throwIfError(ret, 'JPEG encoding failed');
    const jpeg = this.pkt.data;
    this.pkt.unref();
    if (!jpeg) throw new Error('JPEG encoder returned an empty packet');
    return { jpeg, width, height };
  }

  /** A full-range 4:2:0 frame of the target size. */
  private prepare(frame: Frame, width: number, height: number): Frame {
    const sameSize = width === frame.width && height === frame.height;
    if (this.path === 'planes' && sameSize) {
      if (frame.format === AV_PIX_FMT_YUVJ420P) return frame;
      if (frame.format === AV_PIX_FMT_YUV420P) return frame.colorRange === AVCOL_RANGE_JPEG ? frame : this.range.convert(frame);
    }
    return this.scaler.scale(frame, width, height, AV_PIX_FMT_YUV420P, true);
  }

  private encoderFor(frame: Frame): CodecContext {
    const cur = this.ctx;
    const format = frame.format as AVPixelFormat;
    if (cur && cur.width === frame.width && cur.height === frame.height && cur.pixelFormat === format) return cur;
    cur?.freeContext();
    this.ctx = undefined;
    const codec = Codec.findEncoderByName(FF_ENCODER_MJPEG);
    if (!codec) throw new Error('This FFmpeg build has no mjpeg encoder');
    const ctx = new CodecContext();
    ctx.allocContext3(codec);
    ctx.width = frame.width;
    ctx.height = frame.height;
    ctx.pixelFormat = format;
    ctx.colorRange = AVCOL_RANGE_JPEG;
    ctx.timeBase = new Rational(1, 1000);
    ctx.threadCount = 1;
    ctx.setFlags(AV_CODEC_FLAG_QSCALE);
    ctx.globalQuality = this.lambda;
    // A private option of mjpeg, set on the context (a Dictionary passed to open2 is
    // consumed by FFmpeg, and freeing it after crashed node-av 6.1).
    FFmpegError.throwIfError(ctx.setOption('huffman', this.huffman), 'mjpeg option huffman');
    const ret = ctx.open2Sync(codec, null);
    if (ret < 0) {
      ctx.freeContext();
      FFmpegError.throwIfError(ret, 'Cannot open the mjpeg encoder');
    }
    this.ctx = ctx;
    return ctx;
  }

  close(): void {
    this.ctx?.freeContext();
    this.ctx = undefined;
    this.scaler.close();
    this.range.close();
    this.pkt.free();
  }
}
