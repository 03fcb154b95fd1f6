/**
 * The synchronous camera reader: open (lavfi / file / rtsp), decode, sample to a target
 * fps by stream timestamps, pace non-live sources to real time, validate, encode kept
 * frames to JPEG (+ an optional gray thumbnail). It runs inside one worker thread per
 * camera (camera-worker.ts) and blocks only that thread.
 *
 * Why a thread per camera with blocking calls (node-av 6.1 / FFmpeg 8.1, Node 20):
 * - node-av's async calls run on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE
 *   is set before the process starts: setting it from code is too late, the ESM loader has
 *   already started the pool). A read waits there until the camera sends data, so four
 *   cameras (or four stalled ones) starve every other camera and every fs/dns call.
 * - The sync calls cost less CPU per frame (no pool hand-off).
 * - FormatContext.interrupt() unblocks neither openInput() nor readFrame(). Only the RTSP
 *   `timeout` option (microseconds) bounds native I/O: a silent server fails an open after
 *   ~1x timeout, reported as AVERROR_INVALIDDATA (not ETIMEDOUT), and a stalled read after
 *   ~2x timeout + 0.2 s with ETIMEDOUT. The main thread watches this thread's progress
 *   (ReaderProgress) and gives up on it at its own deadlines; the thread frees its context
 *   when the native call returns, then exits.
 *
 * Other facts relied on:
 * - The high-level Demuxer swallows read errors (packets() just ends), so this reads
 *   through the low-level FormatContext, whose readFrame returns the AVERROR code.
 * - A failed openInput() keeps its socket open until closeInput() is called.
 * - The mjpeg encoder refuses limited-range yuv420p and frames whose pts goes back (a
 *   looped file): swscale converts the range (~0.8 ms per 720p frame), pts is renumbered.
 * - The first frame of an RTSP stream can come without a timestamp.
 * - H.264/H.265 decoders conceal lost slices and say so in decode_error_flags; the frames
 *   after it reference the damaged picture, so "corrupt" lasts until the next key frame.
 * - Packet.data returns a copy, so the JPEG Buffer outlives the packet.
 */
import './node-av-polyfill.js';
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import {
  AV_CODEC_FLAG_QSCALE,
  AV_FRAME_FLAG_CORRUPT,
  AV_FRAME_FLAG_KEY,
  AV_NOPTS_VALUE,
  AV_PIX_FMT_GRAY8,
  AV_PIX_FMT_YUV420P,
  AVCOL_RANGE_JPEG,
  AVCOL_RANGE_MPEG,
  AVDISCARD_ALL,
  AVERROR_EAGAIN,
  AVERROR_EOF,
  AVERROR_INVALIDDATA,
  AVMEDIA_TYPE_VIDEO,
  FF_ENCODER_MJPEG,
  FF_QP2LAMBDA,
  SWS_AREA,
  SWS_BILINEAR,
  type AVPixelFormat,
} from 'node-av/constants';
import {
  Codec,
  CodecContext,
  Dictionary,
  FFmpegError,
  FormatContext,
  Frame,
  InputFormat,
  Packet,
  Rational,
  SoftwareScaleContext,
} from 'node-av/lib';
import { SourceError, SourceTimeoutError } from './source-errors.js';
import { FrameChecker, type FrameFlag, type ValidationOptions } from './frame-check.js';

export type SourceKind = 'lavfi' | 'file' | 'rtsp';

/** Everything a reader needs; plain data, so it crosses into the worker. */
export interface ReaderOptions {
  url: string;
  kind: SourceKind;
  /** The url with its password masked: the only form that appears in messages. */
  label: string;
  fps: number;
  quality: number;
  maxWidth?: number;
  /** Gray thumbnail width (height keeps the aspect ratio); 0: none. */
  thumbnailWidth: number;
  readTimeoutMs: number;
  /** FFmpeg's own RTSP I/O timeout: an open fails after this much silence. */
  rtspTimeoutMs?: number;
  demuxOptions: Record<string, string>;
  decoderThreads: number;
  loop: boolean;
  validation: ValidationOptions;
}

/** Shared with the main thread (Float64Array over a SharedArrayBuffer): what the reader is doing. */
export const PROGRESS = { phase: 0, phaseSince: 1, lastPacketAt: 2, lastFrameAt: 3, length: 4 } as const;
export const PHASE = { starting: 0, opening: 1, reading: 2, done: 3 } as const;

export interface OpenInfo {
  codec: string;
  width: number;
  height: number;
  /** The stream's nominal frame rate, when it says. */
  nativeFps?: number;
}

export interface SampledFrame {
  /** Empty when the frame is dropped by validation policy (not encoded). */
  jpeg: Uint8Array;
  width: number;
  height: number;
  ptsMs: number;
  capturedAt: number;
  /** Decode time of every frame decoded since the previous sampled one (skipped included). */
  decodeMs: number;
  /** Range conversion + JPEG (+ thumbnail) time of this frame. */
  encodeMs: number;
  /** Frames decoded and skipped by sampling since the previous sampled one. */
  skipped: number;
  flags: FrameFlag[];
  drop?: FrameFlag;
  frozenForMs: number;
  luma: number;
  thumbnail?: { data: Uint8Array; width: number; height: number };
}

export interface ReaderStats {
  /** CPU time of this thread since the previous stats, ms (decode, checks, encode). */
  cpuMs: number;
  /** Decode time of each frame decoded since the previous stats, ms. */
  decodeMs: number[];
}

export interface ReaderHooks {
  stopped(): boolean;
  /** Sleeps up to ms, waking early when stopped. */
  wait(ms: number): void;
  progress: Float64Array;
  onOpen(info: OpenInfo): void;
  onFrame(frame: SampledFrame): void;
  onStats(stats: ReaderStats): void;
}

const AVERROR_ETIMEDOUT = -osConstants.errno.ETIMEDOUT;
/** Pacing restarts instead of bursting (or sleeping long) when off by more than this. */
const MAX_PACING_DRIFT_MS = 1000;
const STATS_EVERY_MS = 1000;

/**
 * Reads until the source ends (a finite lavfi graph, a file with loop off), fails
 * (throws SourceError / SourceTimeoutError), or hooks.stopped() turns true.
 */
export function runReader(o: ReaderOptions, hooks: ReaderHooks): void {
  const sampler = new Sampler(1000 / o.fps);
  const pacer = o.kind === 'rtsp' ? undefined : new Pacer(hooks.wait);
  const timeline = new Timeline(1000 / o.fps);
  const encoder = new JpegEncoder(o.quality, o.maxWidth);
  const checker = new FrameChecker(o.validation);
  const grayCheck = new GrayScaler(FrameChecker.WIDTH, FrameChecker.HEIGHT, SWS_AREA);
  const thumbs = o.thumbnailWidth > 0 ? new GrayScaler(o.thumbnailWidth, 0, SWS_BILINEAR) : undefined;
  const cpu = new ThreadCpu();
  const decodeTimes: number[] = [];
  let lastStats = performance.now();
  let session: Session | undefined;
  const setPhase = (phase: number): void => {
    hooks.progress[PROGRESS.phase] = phase;
    hooks.progress[PROGRESS.phaseSince] = Date.now();
  };
  const stats = (): void => {
    hooks.onStats({ cpuMs: cpu.takeMs(), decodeMs: decodeTimes.splice(0) });
    lastStats = performance.now();
  };
  try {
    for (;;) {
      if (hooks.stopped()) return;
      setPhase(PHASE.opening);
      session = Session.open(o, hooks.stopped);
      if (!session) return;
      hooks.onOpen(session.info());
      setPhase(PHASE.reading);
      hooks.progress[PROGRESS.lastFrameAt] = Date.now();
      // A looped file goes on with the same timeline and checker: a still picture stays frozen.
      timeline.restart();
      let frames = 0;
      let skipped = 0;
      let decodeMs = 0;
      for (;;) {
        if (hooks.stopped()) return;
        if (performance.now() - lastStats >= STATS_EVERY_MS) stats();
        const frame = session.next(hooks.progress);
        if (!frame) break;
        frames++;
        hooks.progress[PROGRESS.lastFrameAt] = Date.now();
        decodeTimes.push(session.lastDecodeMs);
        decodeMs += session.lastDecodeMs;
        const ptsMs = timeline.place(session.ptsMs(frame));
        if (pacer) pacer.wait(ptsMs);
        if (!sampler.keep(ptsMs)) {
          skipped++;
          continue;
        }
        const capturedAt = Date.now();
        const started = performance.now();
        const verdict = checker.check(grayCheck.scale(frame), capturedAt, session.corrupt);
        let jpeg: Uint8Array = EMPTY;
        let width = frame.width;
        let height = frame.height;
        let thumbnail: SampledFrame['thumbnail'];
        if (!verdict.drop) {
          const img = encoder.encode(frame);
          ({ jpeg, width, height } = img);
          if (thumbs) {
            const g = thumbs.scale(frame);
            thumbnail = { data: g.packed(), width: g.width, height: g.height };
          }
        }
        hooks.onFrame({
          jpeg,
          width,
          height,
          ptsMs: Math.round(ptsMs),
          capturedAt,
          decodeMs,
          encodeMs: performance.now() - started,
          skipped,
          flags: verdict.flags,
          drop: verdict.drop,
          frozenForMs: verdict.frozenForMs,
          luma: verdict.luma,
          thumbnail,
        });
        skipped = 0;
        decodeMs = 0;
      }
      session.close();
      session = undefined;
      if (!o.loop || o.kind !== 'file') {
        if (o.kind === 'rtsp') throw new SourceError(`Video source "${o.label}" ended`, { code: AVERROR_EOF, stage: 'read' });
        if (frames === 0)
          throw new SourceError(`Video source "${o.label}" has no decodable video frames`, { stage: 'open', reason: 'not_video' });
        return;
      }
      if (frames === 0)
        throw new SourceError(`Video source "${o.label}" has no decodable video frames`, { stage: 'open', reason: 'not_video' });
    }
  } finally {
    setPhase(PHASE.done);
    session?.close();
    encoder.close();
    grayCheck.close();
    thumbs?.close();
    if (decodeTimes.length) stats();
  }
}

const EMPTY = new Uint8Array(0);

/** One opened input with its decoder; reopened when a file loops. */
class Session {
  private readonly fmt = new FormatContext();
  private readonly pkt = new Packet();
  private readonly frame = new Frame();
  private dec?: CodecContext;
  private streamIndex = -1;
  private timeBase = new Rational(1, 1000);
  private msPerTick = 1;
  private flushed = false;
  private closed = false;
  private codecName = '';
  private nativeFps?: number;
  /** Decode errors since the last clean key frame: the pictures reference damaged ones. */
  corrupt = false;
  lastDecodeMs = 0;

  private constructor(private readonly o: ReaderOptions) {
    this.pkt.alloc();
    this.frame.alloc();
  }

  /** Opens, or returns undefined when stopped meanwhile. */
  static open(o: ReaderOptions, stopped: () => boolean): Session | undefined {
    const s = new Session(o);
    try {
      s.openInput();
      if (stopped()) {
        s.close();
        return undefined;
      }
      s.openDecoder();
      return s;
    } catch (err) {
      s.close();
      throw err;
    }
  }

  info(): OpenInfo {
    return { codec: this.codecName, width: this.dec?.width ?? 0, height: this.dec?.height ?? 0, nativeFps: this.nativeFps };
  }

  private openInput(): void {
    const { o } = this;
    const format = o.kind === 'lavfi' ? InputFormat.findInputFormat('lavfi') : null;
    const dict = Dictionary.fromObject(o.demuxOptions);
    const started = performance.now();
    let ret: number;
    try {
      ret = this.fmt.openInputSync(o.url, format, dict);
      if (ret >= 0) ret = this.fmt.findStreamInfoSync(null);
    } finally {
      dict.free();
    }
    if (ret < 0) {
      // FFmpeg reports an RTSP server that stays silent past `timeout` as INVALIDDATA.
      const silence = o.rtspTimeoutMs;
      if (ret === AVERROR_INVALIDDATA && silence && performance.now() - started >= silence - 50) {
        throw new SourceTimeoutError(`Timed out after ${silence} ms opening video source "${o.label}"`, {
          code: AVERROR_ETIMEDOUT,
          stage: 'open',
          cause: FFmpegError.fromCode(ret),
        });
      }
      throw sourceError(ret, `Cannot open video source "${o.label}"`, 'open');
    }
    this.streamIndex = this.fmt.findBestStream(AVMEDIA_TYPE_VIDEO);
    if (this.streamIndex < 0)
      throw new SourceError(`Video source "${o.label}" has no video stream`, { stage: 'open', reason: 'not_video' });
    for (const st of this.fmt.streams) {
      if (st.index !== this.streamIndex) st.discard = AVDISCARD_ALL;
    }
  }

  private openDecoder(): void {
    const stream = this.fmt.streams[this.streamIndex];
    const codec = Codec.findDecoder(stream.codecpar.codecId);
    if (!codec) {
      throw new SourceError(`Video source "${this.o.label}": no decoder for codec id ${stream.codecpar.codecId}`, {
        stage: 'open',
        reason: 'not_video',
      });
    }
    const dec = new CodecContext();
    this.dec = dec;
    dec.allocContext3(codec);
    let ret = dec.parametersToContext(stream.codecpar);
    if (ret >= 0) {
      dec.pktTimebase = stream.timeBase;
      // One thread per camera: frame threads add latency and CPU, and cameras already run in parallel.
      dec.threadCount = this.o.decoderThreads;
      ret = dec.open2Sync(codec, null);
    }
    if (ret < 0) throw sourceError(ret, `Cannot open the ${codec.name} decoder for "${this.o.label}"`, 'open');
    this.codecName = codec.name ?? 'unknown';
    const tb = stream.timeBase;
    this.timeBase = new Rational(tb.num, tb.den);
    this.msPerTick = (1000 * tb.num) / tb.den;
    const rate = stream.avgFrameRate.num > 0 ? stream.avgFrameRate : stream.rFrameRate;
    if (rate.num > 0 && rate.den > 0) this.nativeFps = rate.num / rate.den;
  }

  /** The next decoded frame (valid until the next call), or null once the input is drained. */
  next(progress: Float64Array): Frame | null {
    const dec = this.dec!;
    let decodeMs = 0;
    let lastData = performance.now();
    for (;;) {
      let t = performance.now();
      const got = dec.receiveFrameSync(this.frame);
      decodeMs += performance.now() - t;
      if (got >= 0) {
        this.frame.timeBase = this.timeBase;
        const damaged = this.frame.decodeErrorFlags !== 0 || (this.frame.flags & AV_FRAME_FLAG_CORRUPT) !== 0;
        if (damaged) this.corrupt = true;
        else if ((this.frame.flags & AV_FRAME_FLAG_KEY) !== 0) this.corrupt = false;
        this.lastDecodeMs = decodeMs;
        return this.frame;
      }
      if (got === AVERROR_EOF || this.flushed) return null;
      // EAGAIN or a decode error (corrupt data on a lossy link): feed the next packet.

      const ret = this.fmt.readFrameSync(this.pkt);
      if (ret === AVERROR_EOF) {
        this.flushed = true;
        dec.sendPacketSync(null);
        continue;
      }
      if (ret === AVERROR_EAGAIN) {
        if (performance.now() - lastData > this.o.readTimeoutMs) {
          throw new SourceTimeoutError(`Timed out after ${this.o.readTimeoutMs} ms reading video source "${this.o.label}"`, {
            code: AVERROR_ETIMEDOUT,
            stage: 'read',
          });
        }
        Atomics.wait(SLEEPER, 0, 0, 10);
        continue;
      }
      if (ret < 0) throw sourceError(ret, `Cannot read from video source "${this.o.label}"`, 'read');
      lastData = performance.now();
      progress[PROGRESS.lastPacketAt] = Date.now();
      if (this.pkt.streamIndex === this.streamIndex) {
        t = performance.now();
        // Errors are per packet (e.g. a lost slice); decoding resumes at the next one.
        if (dec.sendPacketSync(this.pkt) < 0) this.corrupt = true;
        decodeMs += performance.now() - t;
      }
      this.pkt.unref();
    }
  }

  ptsMs(frame: Frame): number {
    const ts = frame.bestEffortTimestamp;
    return ts === AV_NOPTS_VALUE ? Number.NaN : Number(ts) * this.msPerTick;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dec?.freeContext();
    this.dec = undefined;
    try {
      // Also after a failed open: FFmpeg keeps the socket until this.
      this.fmt.closeInputSync();
    } catch {
      // Nothing left to do with a context that failed to close.
    }
    this.pkt.free();
    this.frame.free();
  }
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

function sourceError(code: number, message: string, stage: 'open' | 'read'): SourceError | SourceTimeoutError {
  const cause = FFmpegError.fromCode(code) ?? new Error(`AVERROR ${code}`);
  const text = `${message}: ${FFmpegError.strerror(code)}`;
  return code === AVERROR_ETIMEDOUT ? new SourceTimeoutError(text, { code, stage, cause }) : new SourceError(text, { code, stage, cause });
}

/** Puts the frames of successive sessions (a looping file) on one increasing timeline, in ms. */
export class Timeline {
  private last = Number.NEGATIVE_INFINITY;
  private offset?: number;

  constructor(private stepMs: number) {}

  /** The next frames come from a reopened input, whose clock starts over. */
  restart(): void {
    this.offset = undefined;
  }

  place(rawMs: number): number {
    const continuing = this.last > Number.NEGATIVE_INFINITY;
    let ms: number;
    if (Number.isNaN(rawMs)) {
      // No timestamp (e.g. RTSP's first frame, before RTP timing settles): one step on.
      ms = continuing ? this.last + this.stepMs : 0;
    } else {
      this.offset ??= continuing ? this.last + this.stepMs - rawMs : 0;
      ms = rawMs + this.offset;
    }
    const step = ms - this.last;
    if (step > 0 && step < 1000) this.stepMs = step;
    this.last = ms;
    return ms;
  }
}

/** Keeps frames on a `intervalMs` grid of stream time; frames in between are skipped, not dropped. */
export class Sampler {
  private due = Number.NEGATIVE_INFINITY;
  private last = Number.NEGATIVE_INFINITY;

  constructor(private readonly intervalMs: number) {}

  keep(ptsMs: number): boolean {
    // The clock went far back (a camera restart): a new grid. A small step back (RTSP
    // re-basing its timestamps on the first RTCP report) keeps the grid.
    if (ptsMs < this.last - MAX_PACING_DRIFT_MS) this.due = ptsMs;
    this.last = ptsMs;
    // 1 ms of slack absorbs rounding in time-base conversions (e.g. 1/30 s ticks).
    if (ptsMs + 1 < this.due) return false;
    this.due += this.intervalMs;
    if (this.due <= ptsMs) this.due = ptsMs + this.intervalMs; // after a gap, restart the grid
    return true;
  }
}

/** Holds each frame until its stream time has elapsed in real time, like ffmpeg `-re`. */
class Pacer {
  private originWall = 0;
  private originPts = Number.NaN;

  constructor(private readonly sleep: (ms: number) => void) {}

  wait(ptsMs: number): void {
    const now = performance.now();
    const delay = this.originWall + (ptsMs - this.originPts) - now;
    // A slow consumer or a timestamp jump restarts the clock: no burst, no long sleep.
    if (!(Math.abs(delay) <= MAX_PACING_DRIFT_MS)) {
      this.originWall = now;
      this.originPts = ptsMs;
      return;
    }
    if (delay >= 1) this.sleep(delay);
  }
}

/** A swscale context re-made when the input size or format changes. */
class Scaler {
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
class GrayScaler {
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

/** Range-converting (and optionally downscaling) swscale plus the mjpeg encoder. */
class JpegEncoder {
  private readonly scaler = new Scaler(SWS_BILINEAR);
  private readonly pkt = new Packet();
  private readonly lambda: number;
  private ctx?: CodecContext;
  private pts = 0n;

  constructor(
    quality: number,
    private readonly maxWidth?: number,
  ) {
    // Quality 1..100 onto mjpeg's qscale 31..2.
    const qscale = Math.round(2 + ((100 - quality) / 99) * 29);
    this.lambda = qscale * FF_QP2LAMBDA;
    this.pkt.alloc();
  }

  encode(frame: Frame): { jpeg: Buffer; width: number; height: number } {
    let width = frame.width;
    let height = frame.height;
    if (this.maxWidth && width > this.maxWidth) {
      height = Math.max(2, Math.round((height * this.maxWidth) / width / 2) * 2);
      width = this.maxWidth;
    }
    const out = this.scaler.scale(frame, width, height, AV_PIX_FMT_YUV420P, true);
    const ctx = this.encoderFor(out);
    out.quality = this.lambda;
    // A looped file restarts its timestamps; the encoder rejects pts going back.
    out.pts = this.pts++;
    let ret = ctx.sendFrameSync(out);
    if (ret >= 0) ret = ctx.receivePacketSync(this.pkt);
    FFmpegError.throwIfError(ret, 'JPEG encoding failed');
    const jpeg = this.pkt.data;
    this.pkt.unref();
    if (!jpeg) throw new Error('JPEG encoder returned an empty packet');
    return { jpeg, width, height };
  }

  private encoderFor(frame: Frame): CodecContext {
    const cur = this.ctx;
    if (cur && cur.width === frame.width && cur.height === frame.height) return cur;
    cur?.freeContext();
    this.ctx = undefined;
    const codec = Codec.findEncoderByName(FF_ENCODER_MJPEG);
    if (!codec) throw new Error('This FFmpeg build has no mjpeg encoder');
    const ctx = new CodecContext();
    ctx.allocContext3(codec);
    ctx.width = frame.width;
    ctx.height = frame.height;
    ctx.pixelFormat = AV_PIX_FMT_YUV420P;
    ctx.colorRange = AVCOL_RANGE_JPEG;
    ctx.timeBase = new Rational(1, 1000);
    ctx.threadCount = 1;
    ctx.setFlags(AV_CODEC_FLAG_QSCALE);
    ctx.globalQuality = this.lambda;
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
    this.pkt.free();
  }
}

/** CPU time of the calling thread, from /proc/thread-self/stat (Linux); 0 elsewhere. */
class ThreadCpu {
  private last = ThreadCpu.read();
  private static readonly MS_PER_TICK = 10; // USER_HZ is 100 on Linux

  static read(): number {
    try {
      const stat = readFileSync('/proc/thread-self/stat', 'latin1');
      // Fields after the ")" that ends the (possibly spaced) thread name; utime, stime are 14, 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * ThreadCpu.MS_PER_TICK;
    } catch {
      return 0;
    }
  }

  takeMs(): number {
    const now = ThreadCpu.read();
    const d = now - this.last;
    this.last = now;
    return d;
  }
}
