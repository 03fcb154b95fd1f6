/**
 * Video source for `detektr capture`: frames of one camera (lavfi / file / rtsp) decoded,
 * sampled to a target fps, validated and encoded to JPEG, as an async iterable.
 *
 * The work runs on a worker thread (reader-thread.ts, camera-worker.ts, reader.ts: see
 * there why), one per camera and reused across reconnects, so a camera that hangs inside
 * FFmpeg blocks only its thread. This side enforces the deadlines FFmpeg cannot: it watches
 * the thread's progress (shared memory, no messages) and fails the iteration with a
 * TimeoutError when an open, a read or the next decoded frame is overdue; the abandoned
 * session frees its context once its native call returns (bounded by FFmpeg's RTSP
 * `timeout`), and the next session gets a fresh thread.
 */
import { lookup } from 'node:dns/promises';
import { redactUrl } from '../config/redact.js';
import { InvalidInputError } from '../domain/errors.js';
import { DEFAULT_VALIDATION, type FrameFlag, type ValidationOptions } from './frame-check.js';
import type { HwaccelChoice } from './hwaccel.js';
import { PHASE, PROGRESS, type OpenInfo, type ReaderOptions, type ReaderStats, type SourceKind } from './reader.js';
import { ReaderThread, type ReaderSession } from './reader-thread.js';
import { AV, deserializeError, SourceError, SourceTimeoutError } from './source-errors.js';

export type { OpenInfo, ReaderStats } from './reader.js';
export { ReaderThread } from './reader-thread.js';

export interface CapturedImage {
  /** The JPEG; empty when the frame is dropped by validation policy (see `drop`). */
  jpeg: Buffer;
  width: number;
  height: number;
  /** stream timestamp in ms */
  ptsMs: number;
  /** wall-clock ms when the frame was taken */
  capturedAt: number;
  /** ms spent decoding (since the previous sampled frame) + validating + encoding this frame */
  encodeMs: number;
  /** of which decoding */
  decodeMs: number;
  /** validation flags: corrupt, black, frozen */
  flags: FrameFlag[];
  /** set when a flag's policy is drop: the frame was not encoded */
  drop?: FrameFlag;
  /** how long the picture has not changed */
  frozenForMs: number;
  /** mean gray level 0-255 */
  luma: number;
  /** full-range 8-bit gray, `width` x `height` bytes (when thumbnailWidth is set) */
  thumbnail?: { data: Buffer; width: number; height: number };
  /** decoded frames skipped by sampling since the previous one (not drops) */
  skipped: number;
  /** sampled frames discarded since the previous one because the consumer fell behind */
  backlogDropped: number;
}

export interface VideoSourceOptions {
  url: string;
  kind: SourceKind;
  /** sample to this rate from the native rate (skipped frames are not drops) */
  fps: number;
  /** 1..100, default 80 */
  jpegQuality?: number;
  /** optional downscale keeping aspect */
  maxWidth?: number;
  /** mjpeg's Huffman tables; default standard */
  jpegTables?: 'standard' | 'optimal';
  /** gray thumbnail of this width (height keeps the aspect ratio); default none */
  thumbnailWidth?: number;
  /** default 5000; counted from when the reader thread starts opening */
  openTimeoutMs?: number;
  /** default 5000 */
  readTimeoutMs?: number;
  /** no decoded frame for this long fails the source (the stall watchdog); default 2x readTimeoutMs */
  stallTimeoutMs?: number;
  /** rtsp only, default tcp */
  transport?: 'tcp' | 'udp';
  /** demuxer/protocol options; they override the defaults set here */
  ffmpegOptions?: Record<string, string>;
  /** decoder threads (default 1: cameras already decode in parallel) */
  decoderThreads?: number;
  /** decode on this device (already resolved: resolveHwaccel in hwaccel.ts); default none */
  hwaccel?: HwaccelChoice;
  /** files: reopen at EOF (default true) */
  loop?: boolean;
  validation?: Partial<ValidationOptions>;
  /** sampled frames held for a slow consumer before the oldest are discarded (default 50) */
  maxQueued?: number;
  /** abort -> the iterator ends promptly, resources freed */
  signal?: AbortSignal;
  /** run on this (reusable) thread instead of a thread of its own; the caller closes it */
  thread?: ReaderThread;
  /** the source opened (once per open: files reopen when they loop) */
  onOpen?(info: OpenInfo): void;
  /** about once a second: CPU of the reader thread and decode times */
  onStats?(stats: ReaderStats): void;
}

interface Resolved {
  reader: ReaderOptions;
  openTimeoutMs: number;
  readTimeoutMs: number;
  stallTimeoutMs: number;
  maxQueued: number;
  signal?: AbortSignal;
  thread?: ReaderThread;
  onOpen?(info: OpenInfo): void;
  onStats?(stats: ReaderStats): void;
}

/** A JS deadline this much past FFmpeg's own read timeout, so FFmpeg's clearer error usually wins. */
const READ_GRACE_MS = 1000;
const WATCH_EVERY_MS = 100;
const THREAD_START_MS = 30_000;

/**
 * Frames of `opts.url` as JPEGs at `opts.fps`. Validates options at once (InvalidInputError);
 * opening happens on the first `next()`. Open/read failures reject with a SourceError
 * (a ConnectionError) or SourceTimeoutError (a TimeoutError) naming the redacted url.
 * Aborting `opts.signal` ends the iteration.
 */
export function openVideoSource(opts: VideoSourceOptions): AsyncIterable<CapturedImage> {
  const o = resolveOptions(opts);
  return { [Symbol.asyncIterator]: () => iterate(o) };
}

function resolveOptions(opts: VideoSourceOptions): Resolved {
  const { url, kind } = opts;
  const label = kind === 'lavfi' ? `lavfi:${url}` : redactUrl(url);
  const bad = (what: string): InvalidInputError => new InvalidInputError(`Video source "${label}": ${what}`);
  if (!url) throw bad('empty url');
  if (!(opts.fps > 0 && opts.fps <= 1000)) throw bad(`fps must be in (0, 1000], got ${opts.fps}`);
  const quality = opts.jpegQuality ?? 80;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw bad(`jpegQuality must be an integer 1..100, got ${quality}`);
  }
  if (opts.maxWidth !== undefined && !(Number.isInteger(opts.maxWidth) && opts.maxWidth >= 16)) {
    throw bad(`maxWidth must be an integer >= 16, got ${opts.maxWidth}`);
  }
  const thumbnailWidth = opts.thumbnailWidth ?? 0;
  if (!(Number.isInteger(thumbnailWidth) && (thumbnailWidth === 0 || (thumbnailWidth >= 8 && thumbnailWidth <= 1920)))) {
    throw bad(`thumbnailWidth must be 0 (none) or an integer 8..1920, got ${thumbnailWidth}`);
  }
  const openTimeoutMs = opts.openTimeoutMs ?? 5000;
  const readTimeoutMs = opts.readTimeoutMs ?? 5000;
  const stallTimeoutMs = opts.stallTimeoutMs ?? 2 * readTimeoutMs;
  if (!(openTimeoutMs > 0) || !(readTimeoutMs > 0) || !(stallTimeoutMs > 0)) throw bad('timeouts must be > 0 ms');
  const decoderThreads = opts.decoderThreads ?? 1;
  if (!(Number.isInteger(decoderThreads) && decoderThreads >= 0 && decoderThreads <= 64)) {
    throw bad(`decoderThreads must be an integer 0..64, got ${decoderThreads}`);
  }
  if (opts.transport !== undefined && opts.transport !== 'tcp' && opts.transport !== 'udp') {
    throw bad(`transport must be tcp or udp, got ${String(opts.transport)}`);
  }

  // Small probes: first frame in ~0.2 s instead of ~1.25 s with FFmpeg's defaults.
  const demuxOptions: Record<string, string> = { probesize: '32768', analyzeduration: '500000' };
  if (kind === 'rtsp') {
    demuxOptions.rtsp_transport = opts.transport ?? 'tcp';
    demuxOptions.allowed_media_types = 'video';
    // Microseconds. Halved because a stalled read fails after ~2x this (~readTimeoutMs + 0.2 s);
    // it is also how long an open waits for each answer of the camera.
    demuxOptions.timeout = String(Math.round(readTimeoutMs * 500));
  }
  for (const [k, v] of Object.entries(opts.ffmpegOptions ?? {})) demuxOptions[k] = String(v);
  const rtspTimeoutMs = kind === 'rtsp' ? Number(demuxOptions.timeout) / 1000 || undefined : undefined;

  return {
    reader: {
      url,
      kind,
      label,
      fps: opts.fps,
      quality,
      maxWidth: opts.maxWidth,
      jpegHuffman: opts.jpegTables === 'optimal' ? 'optimal' : 'default',
      thumbnailWidth,
      readTimeoutMs,
      rtspTimeoutMs,
      demuxOptions,
      decoderThreads,
      loop: opts.loop ?? true,
      validation: { ...DEFAULT_VALIDATION, ...opts.validation },
      hwaccel: opts.hwaccel ?? 'none',
    },
    openTimeoutMs,
    readTimeoutMs,
    stallTimeoutMs,
    maxQueued: Math.max(1, opts.maxQueued ?? 50),
    signal: opts.signal,
    thread: opts.thread,
    onOpen: opts.onOpen,
    onStats: opts.onStats,
  };
}

async function* iterate(o: Resolved): AsyncGenerator<CapturedImage> {
  if (o.signal?.aborted) return;
  const source = new ThreadedSource(o);
  try {
    for (;;) {
      const image = await source.next();
      if (!image) return;
      yield image;
    }
  } finally {
    source.stop();
  }
}

type Settled = { done: true } | { error: Error };

/** One reader session on a thread, and the deadlines around it. */
class ThreadedSource {
  private readonly thread: ReaderThread;
  private readonly session: ReaderSession;
  private readonly queue: CapturedImage[] = [];
  private backlogDropped = 0;
  private settled?: Settled;
  private waiter?: { resolve(v: CapturedImage | null): void; reject(e: Error): void };
  private readonly openTimer: NodeJS.Timeout;
  private readonly watch: NodeJS.Timeout;
  private readonly onAbort = () => this.finish({ done: true });
  private stopped = false;

  constructor(private readonly o: Resolved) {
    this.thread = o.thread ?? new ReaderThread();
    this.session = this.thread.start(o.reader, (m) => this.onMessage(m));
    // The open deadline runs from when the thread starts opening (check()); a thread that
    // does not even start (a fresh one loads node-av first) has this long.
    this.openTimer = setTimeout(() => {
      if (this.session.progress[PROGRESS.phase] === PHASE.starting) {
        this.finish({
          error: new SourceError(`Video source "${o.reader.label}": the reader thread did not start in ${THREAD_START_MS} ms`),
        });
      }
    }, THREAD_START_MS);
    this.watch = setInterval(() => this.check(), WATCH_EVERY_MS);
    o.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  next(): Promise<CapturedImage | null> {
    const image = this.queue.shift();
    if (image) return Promise.resolve(image);
    const s = this.settled;
    if (s) return 'error' in s ? Promise.reject(s.error) : Promise.resolve(null);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Asks the session to stop; it frees everything when its current native call returns. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.openTimer);
    clearInterval(this.watch);
    this.o.signal?.removeEventListener('abort', this.onAbort);
    this.thread.release(this.session);
    if (!this.o.thread) this.thread.close();
  }

  private onMessage(m: Parameters<Parameters<ReaderThread['start']>[1]>[0]): void {
    // The last stats (CPU, decode times) still count after the end.
    if (this.settled && m.type !== 'stats') return;
    switch (m.type) {
      case 'open':
        this.o.onOpen?.(m.info);
        break;
      case 'stats':
        this.o.onStats?.(m.stats);
        break;
      case 'frame': {
        const f = m.frame;
        const image: CapturedImage = {
          ...f,
          jpeg: toBuffer(f.jpeg),
          thumbnail: f.thumbnail && { ...f.thumbnail, data: toBuffer(f.thumbnail.data) },
          encodeMs: f.decodeMs + f.encodeMs,
          backlogDropped: 0,
        };
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          image.backlogDropped = this.takeBacklog();
          w.resolve(image);
        } else {
          this.queue.push(image);
          if (this.queue.length > this.o.maxQueued) {
            // The discarded frame's own count of discarded predecessors moves on with it.
            const gone = this.queue.shift()!;
            this.backlogDropped += 1 + gone.backlogDropped;
          }
          // Whoever takes the next frame learns how many were discarded before it.
          if (this.backlogDropped) this.queue[0].backlogDropped += this.takeBacklog();
        }
        break;
      }
      case 'end':
        this.finish({ done: true });
        break;
      case 'error':
        // Hold the deadlines off while DNS is asked (failed() settles right after).
        clearInterval(this.watch);
        clearTimeout(this.openTimer);
        void this.failed(deserializeError(m.error));
        break;
      case 'lost':
        this.finish({ error: new SourceError(`Video source "${this.o.reader.label}": ${m.error.message}`, { cause: m.error }) });
        break;
    }
  }

  private takeBacklog(): number {
    const n = this.backlogDropped;
    this.backlogDropped = 0;
    return n;
  }

  /** FFmpeg says only "Input/output error" for a host name that does not resolve: ask DNS. */
  private async failed(err: SourceError | SourceTimeoutError): Promise<void> {
    const r = this.o.reader;
    if (r.kind === 'rtsp' && err instanceof SourceError && err.stage === 'open' && err.code === AV.EIO) {
      let host = '';
      try {
        host = new URL(r.url).hostname.replace(/^\[|\]$/g, '');
        await lookup(host);
      } catch (dnsErr) {
        const code = (dnsErr as NodeJS.ErrnoException).code;
        if (host && (code === 'ENOTFOUND' || code === 'EAI_NONAME' || code === 'EAI_FAIL')) {
          err = new SourceError(`Cannot open video source "${r.label}": host "${host}" not found`, {
            code: err.code,
            stage: 'open',
            reason: 'host_not_found',
            cause: err,
          });
        }
      }
    }
    this.finish({ error: err });
  }

  private check(): void {
    const p = this.session.progress;
    const now = Date.now();
    const phase = p[PROGRESS.phase];
    if (phase === PHASE.opening && now - p[PROGRESS.phaseSince] > this.o.openTimeoutMs) {
      return this.finish({ error: this.timeout(this.o.openTimeoutMs, 'opening', 'open') });
    }
    if (phase !== PHASE.reading) return;
    const lastData = Math.max(p[PROGRESS.lastPacketAt], p[PROGRESS.phaseSince]);
    if (now - lastData > this.o.readTimeoutMs + READ_GRACE_MS) {
      return this.finish({ error: this.timeout(this.o.readTimeoutMs, 'reading', 'read') });
    }
    const lastFrame = Math.max(p[PROGRESS.lastFrameAt], p[PROGRESS.phaseSince]);
    if (now - lastFrame > this.o.stallTimeoutMs) {
      this.finish({
        error: new SourceTimeoutError(`No frame decoded for ${this.o.stallTimeoutMs} ms from video source "${this.o.reader.label}"`, {
          stage: 'read',
          reason: 'stalled',
        }),
      });
    }
  }

  private timeout(ms: number, doing: string, stage: 'open' | 'read'): SourceTimeoutError {
    return new SourceTimeoutError(`Timed out after ${ms} ms ${doing} video source "${this.o.reader.label}"`, { stage });
  }

  private finish(s: Settled): void {
    if (this.settled) return;
    this.settled = s;
    this.stop();
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if ('error' in s) w.reject(s.error);
    else w.resolve(null);
  }
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
