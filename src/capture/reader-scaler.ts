/** swscale contexts for the reader: full-range gray copies (checks, thumbnails) and resized/converted frames. */
import { AV_PIX_FMT_GRAY8, AVCOL_RANGE_JPEG, AVCOL_RANGE_MPEG, type AVPixelFormat } from 'node-av/constants';
import { FFmpegError, Frame, SoftwareScaleContext } from 'node-av/lib';

/** A swscale context re-made when the input size or format changes. */
export class Scaler {
  private sws?: SoftwareScaleContext;
  private key = '';
  readonly out = new Frame();

  constructor(private readonly flags: number) {
    this.out.alloc();
  }

  scale(src: Frame, width: number, height: number, format: AVPixelFormat, fullRange: boolean): Frame {
    const key = `${src.width}x${src.height}:${src.format}:${src.colorRange}>${width}x${height}:${format}`;
    if (key !== this.key) {
      this.sws?.freeContext();
      const sws = new SoftwareScaleContext();
      sws.allocContext();
      const opts: [string, number][] = [
        ['srcw', src.width],
        ['srch', src.height],
        ['src_format', src.format],
        ['dstw', width],
        ['dsth', height],
        ['dst_format', format],
        ['src_range', src.colorRange === AVCOL_RANGE_JPEG ? 1 : 0],
        ['dst_range', fullRange ? 1 : 0],
        ['sws_flags', this.flags],
      ];
      for (const [name, value] of opts) FFmpegError.throwIfError(sws.setOption(name, value), `swscale option ${name}`);
      FFmpegError.throwIfError(sws.initContext(), 'swscale init');
      this.sws = sws;
      this.key = key;
      this.out.unref();
      this.out.width = width;
      this.out.height = height;
      this.out.format = format;
      FFmpegError.throwIfError(this.out.allocBuffer(), 'frame buffer');
    }
    FFmpegError.throwIfError(this.sws!.scaleFrameSync(this.out, src), 'swscale');
    this.out.colorRange = fullRange ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
    return this.out;
  }

  close(): void {
    this.sws?.freeContext();
    this.sws = undefined;
    this.out.free();
  }
}

/** Full-range 8-bit gray copies of frames, at a fixed width (height 0: keep the aspect ratio). */
export class GrayScaler {
  private readonly scaler: Scaler;
  width = 0;
  height = 0;
  private plane?: Buffer;
  private stride = 0;

  constructor(
    private readonly w: number,
    private readonly h: number,
    flags: number,
  ) {
    this.scaler = new Scaler(flags);
  }

  scale(src: Frame): { data: Uint8Array; width: number; height: number; stride: number; packed(): Uint8Array } {
    this.width = this.w;
    this.height = this.h || Math.max(2, Math.round((src.height * this.w) / src.width / 2) * 2);
    const out = this.scaler.scale(src, this.width, this.height, AV_PIX_FMT_GRAY8, true);
    this.plane = out.data![0];
    this.stride = out.linesize[0];
    const { plane, stride, width, height } = this;
    return {
      data: plane,
      width,
      height,
      stride,
      packed: () => {
        if (stride === width) return Uint8Array.from(plane.subarray(0, width * height));
        const p = new Uint8Array(width * height);
        for (let y = 0; y < height; y++) p.set(plane.subarray(y * stride, y * stride + width), y * width);
        return p;
      },
    };
  }

  close(): void {
    this.scaler.close();
  }
}
