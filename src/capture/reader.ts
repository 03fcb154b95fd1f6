/**
 * The synchronous camera reader: open (lavfi / file / rtsp), decode, sample to a target
 * fps by stream timestamps, pace non-live sources to real time, validate, encode kept
 * frames to JPEG (+ an optional gray thumbnail). It runs inside one worker thread per
 * camera (camera-worker.ts) and blocks only that thread. Its parts: reader-session.ts
 * (input + decoder, optionally on a device: hwaccel.ts), reader-clock.ts (timeline,
 * sampling, pacing), reader-scaler.ts (gray copies), jpeg-encoder.ts, frame-check.ts.
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
 *   looped file): jpeg-encoder.ts fixes the range from the planes, pts is renumbered.
 * - The first frame of an RTSP stream can come without a timestamp.
 * - H.264/H.265 decoders conceal lost slices and say so in decode_error_flags; the frames
 *   after it reference the damaged picture, so "corrupt" lasts until the next key frame.
 * - Packet.data returns a copy, so the JPEG Buffer outlives the packet.
 */
import './node-av-polyfill.js';
import { AVERROR_EOF, SWS_AREA, SWS_BILINEAR } from 'node-av/constants';
import type { HwaccelChoice } from './hwaccel.js';
import { JpegEncoder, type JpegHuffman, type JpegPath } from './jpeg-encoder.js';
import { Pacer, Sampler, Timeline } from './reader-clock.js';
import { ThreadCpu } from './reader-cpu.js';
import { PHASE, PROGRESS } from './reader-progress.js';
import { GrayScaler } from './reader-scaler.js';
import { Session } from './reader-session.js';
import { SourceError } from './source-errors.js';
import { FrameChecker, type FrameFlag, type ValidationOptions } from './frame-check.js';

export { PHASE, PROGRESS } from './reader-progress.js';
export { Sampler, Timeline } from './reader-clock.js';

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
  /** Decode on this device type (resolved beforehand, see hwaccel.ts); default none. */
  hwaccel?: HwaccelChoice;
  /** How frames reach the JPEG encoder (jpeg-encoder.ts); default planes. For the benchmark. */
  jpegPath?: JpegPath;
  /** mjpeg's Huffman tables (jpeg-encoder.ts has the default): the `jpegTables` setting. */
  jpegHuffman?: JpegHuffman;
}

export interface OpenInfo {
  codec: string;
  width: number;
  height: number;
  /** The stream's nominal frame rate, when it says. */
  nativeFps?: number;
  /** What was opened (redacted): the camera's url, or its detect (sub-stream) url. */
  url?: string;
  /** `software`, the device type, or `software (<why not the device>)`. */
  decode?: string;
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

const STATS_EVERY_MS = 1000;
const EMPTY = new Uint8Array(0);

/**
 * Reads until the source ends (a finite lavfi graph, a file with loop off), fails
 * (throws SourceError / SourceTimeoutError), or hooks.stopped() turns true.
 */
export function runReader(o: ReaderOptions, hooks: ReaderHooks): void {
  const sampler = new Sampler(1000 / o.fps);
  const pacer = o.kind === 'rtsp' ? undefined : new Pacer(hooks.wait);
  const timeline = new Timeline(1000 / o.fps);
  const encoder = new JpegEncoder(o.quality, o.maxWidth, { path: o.jpegPath, huffman: o.jpegHuffman });
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
