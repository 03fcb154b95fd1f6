/**
 * Limited ("TV", 16-235 / 16-240) to full (0-255) range for 8-bit planar YUV, as JPEG
 * wants: one 256-entry table per plane applied by FFmpeg's `lutyuv` filter (C, a table
 * look-up per byte), in a filter graph made once per picture size and format.
 *
 * Why a LUT and not swscale: at the same size swscale runs its whole scaling pipeline to
 * change the range; the table does the same arithmetic (within 1 level, from rounding)
 * with no other work. bench/capture.bench.ts measures both.
 */
import { AV_BUFFERSRC_FLAG_KEEP_REF, AVCOL_RANGE_JPEG, AVCOL_RANGE_MPEG } from 'node-av/constants';
import { FFmpegError, Filter, FilterGraph, type FilterContext, Frame } from 'node-av/lib';

// Commas inside lutyuv expressions are escaped: the filter's own option syntax splits on them.
const LUMA = 'clip((val-16)*255/219\\,0\\,255)';
const CHROMA = 'clip((val-128)*255/224+128\\,0\\,255)';

export class FullRangeLut {
  private graph?: FilterGraph;
  private src?: FilterContext;
  private sink?: FilterContext;
  private key = '';
  private readonly out = new Frame();

  constructor() {
    this.out.alloc();
  }

  /** The frame in full range (valid until the next call); `frame` is not changed. */
  convert(frame: Frame): Frame {
    const key = `${frame.width}x${frame.height}:${frame.format}`;
    if (key !== this.key) this.build(frame, key);
    FFmpegError.throwIfError(this.src!.buffersrcAddFrameSync(frame, AV_BUFFERSRC_FLAG_KEEP_REF), 'range LUT input');
    this.out.unref();
    FFmpegError.throwIfError(this.sink!.buffersinkGetFrameSync(this.out), 'range LUT output');
    this.out.colorRange = AVCOL_RANGE_JPEG;
    return this.out;
  }

  private build(frame: Frame, key: string): void {
    this.freeGraph();
    const graph = new FilterGraph();
    graph.alloc();
    graph.nbThreads = 1;
    this.graph = graph;
    const filter = (name: string) => {
      const f = Filter.getByName(name);
      if (!f) throw new Error(`This FFmpeg build has no ${name} filter`);
      return f;
    };
    const src = graph.createFilter(
      filter('buffer'),
      'in',
      `video_size=${frame.width}x${frame.height}:pix_fmt=${frame.format}:time_base=1/1000:pixel_aspect=1/1:range=${AVCOL_RANGE_MPEG}`,
    );
    const lut = graph.createFilter(filter('lutyuv'), 'range', `y=${LUMA}:u=${CHROMA}:v=${CHROMA}`);
    const sink = graph.createFilter(filter('buffersink'), 'out', null);
    if (!src || !lut || !sink) throw new Error('Cannot create the range LUT filter graph');
    FFmpegError.throwIfError(src.link(0, lut, 0), 'range LUT link');
    FFmpegError.throwIfError(lut.link(0, sink, 0), 'range LUT link');
    FFmpegError.throwIfError(graph.configSync(), 'range LUT graph');
    this.src = src;
    this.sink = sink;
    this.key = key;
  }

  private freeGraph(): void {
    this.graph?.free();
    this.graph = undefined;
    this.src = undefined;
    this.sink = undefined;
    this.key = '';
  }

  close(): void {
    this.freeGraph();
    this.out.free();
  }
}
