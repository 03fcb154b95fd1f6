/**
 * Limited ("TV", 16-235 / 16-240) to full (0-255) range for 8-bit planar YUV, as JPEG
 * wants, by FFmpeg's `colorspace` filter in a graph made once per picture size and format.
 * Input and output are declared the same colour space, so the filter takes its YUV-to-YUV
 * path: one fixed-point multiply-add per byte (SIMD on x86), rounded, that only rescales
 * the range; the picture's matrix (BT.601 or BT.709) goes through unchanged, as before.
 *
 * Why this filter (bench/capture-profile.ts, 720p frames of the bench's camera stream):
 * ~0.23 ms a frame against ~0.45 ms for a 256-entry table per plane (`lutyuv`, a scalar
 * look-up per byte, and it truncated: half a level dark on average) and ~1 ms for swscale
 * at the same size (its whole scaling pipeline runs to change the range). `eq` is faster
 * still (~0.12 ms) but its fixed point is off by up to 1.4 levels (grays get a green tint).
 */
import { AV_BUFFERSRC_FLAG_KEEP_REF, AVCOL_RANGE_JPEG, AVCOL_RANGE_MPEG } from 'node-av/constants';
import { FFmpegError, Filter, FilterGraph, type FilterContext, Frame } from 'node-av/lib';

// bt709 is only the label both sides share (the filter needs one); the same label in and out
// leaves the matrix alone, whatever the source really uses.
const RANGE_ONLY = 'iall=bt709:irange=tv:all=bt709:range=pc';

export class FullRange {
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
    FFmpegError.throwIfError(this.src!.buffersrcAddFrameSync(frame, AV_BUFFERSRC_FLAG_KEEP_REF), 'range conversion input');
    this.out.unref();
    FFmpegError.throwIfError(this.sink!.buffersinkGetFrameSync(this.out), 'range conversion output');
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
    const range = graph.createFilter(filter('colorspace'), 'range', RANGE_ONLY);
    const sink = graph.createFilter(filter('buffersink'), 'out', null);
    if (!src || !range || !sink) throw new Error('Cannot create the range conversion filter graph');
    FFmpegError.throwIfError(src.link(0, range, 0), 'range conversion link');
    FFmpegError.throwIfError(range.link(0, sink, 0), 'range conversion link');
    FFmpegError.throwIfError(graph.configSync(), 'range conversion graph');
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
