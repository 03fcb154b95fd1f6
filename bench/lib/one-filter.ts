import { AV_BUFFERSRC_FLAG_KEEP_REF, AVCOL_RANGE_JPEG } from 'node-av/constants';
import { FFmpegError, Filter, FilterGraph, type FilterContext, Frame } from 'node-av/lib';

/** One FFmpeg video filter in a graph made on the first frame, for benchmarks of single filters. */
export class OneFilter {
  private graph?: FilterGraph;
  private src?: FilterContext;
  private sink?: FilterContext;
  private readonly out = new Frame();

  constructor(
    private readonly name: string,
    private readonly args: string,
  ) {
    this.out.alloc();
  }

  convert(frame: Frame): Frame {
    if (!this.graph) this.build(frame);
    FFmpegError.throwIfError(this.src!.buffersrcAddFrameSync(frame, AV_BUFFERSRC_FLAG_KEEP_REF), `${this.name} input`);
    this.out.unref();
    FFmpegError.throwIfError(this.sink!.buffersinkGetFrameSync(this.out), `${this.name} output`);
    this.out.colorRange = AVCOL_RANGE_JPEG; // what the range filters here produce
    return this.out;
  }

  private build(frame: Frame): void {
    const graph = new FilterGraph();
    graph.alloc();
    graph.nbThreads = 1;
    const src = graph.createFilter(
      Filter.getByName('buffer')!,
      'in',
      `video_size=${frame.width}x${frame.height}:pix_fmt=${frame.format}:time_base=1/1000:pixel_aspect=1/1`,
    );
    const f = graph.createFilter(Filter.getByName(this.name)!, 'f', this.args);
    const sink = graph.createFilter(Filter.getByName('buffersink')!, 'out', null);
    if (!src || !f || !sink) throw new Error(`cannot create a ${this.name} graph`);
    FFmpegError.throwIfError(src.link(0, f, 0), 'link');
    FFmpegError.throwIfError(f.link(0, sink, 0), 'link');
    FFmpegError.throwIfError(graph.configSync(), `${this.name} graph`);
    Object.assign(this, { graph, src, sink });
  }

  close(): void {
    this.graph?.free();
    this.out.free();
  }
}

/** The range conversion capture used before (a 256-entry table per plane, truncating). */
export function lutyuvRange(): OneFilter {
  const luma = 'clip((val-16)*255/219\\,0\\,255)';
  const chroma = 'clip((val-128)*255/224+128\\,0\\,255)';
  return new OneFilter('lutyuv', `y=${luma}:u=${chroma}:v=${chroma}`);
}

/** eq's fixed-point contrast/brightness/saturation (x86 SIMD): y' ~ 1.164 (y - 16), c' ~ 1.138 (c - 128) + 128, off by up to 1.4 levels. */
export function eqRange(): OneFilter {
  return new OneFilter('eq', `contrast=${255 / 219}:brightness=0.0113:saturation=${255 / 224}`);
}
