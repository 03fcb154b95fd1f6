import { AV_BUFFERSRC_FLAG_KEEP_REF } from 'node-av/constants';
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
