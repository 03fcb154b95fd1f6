/**
 * Video source for `detektr capture`: open (lavfi / file / rtsp), decode, sample to a
 * target fps by stream timestamps, pace non-live sources to real time, encode kept
 * frames to JPEG.
 *
 * node-av 6.1 / FFmpeg 8.1 facts this module relies on (checked here, Node 20):
 * - The high-level Demuxer swallows read errors (packets() just ends) and sets
 *   AVFMT_FLAG_NONBLOCK, so this reads through the low-level FormatContext, whose
 *   readFrame() returns the AVERROR code.
 * - FormatContext.interrupt() unblocks neither a pending openInput() nor readFrame().
 *   Only the RTSP `timeout` option (microseconds) bounds native I/O: a silent server
 *   fails an open after ~1x timeout, reported as AVERROR_INVALIDDATA (not ETIMEDOUT),
 *   and a stalled read after ~2x timeout + 0.2 s with ETIMEDOUT. So native calls are
 *   also raced against JS deadlines; an abandoned call keeps its context (and socket)
 *   alive until it returns, as freeing it earlier would be a use-after-free.
 * - A failed openInput() keeps its socket open until closeInput() is called.
 * - Frames from a low-level CodecContext carry timeBase 0/1, which FilterAPI's buffer
 *   source rejects: the stream time base is copied onto each frame.
 * - The mjpeg encoder refuses limited-range yuv420p ("Non full-range YUV is
 *   non-standard") and frames whose pts goes back (EINVAL, e.g. after a file loops).
 *   node-av's Scaler.toJpeg() only re-tags the range (grey blacks); here swscale
 *   converts it (out_range=full), ~0.8 ms per 720p frame.
 * - The first frame of an RTSP stream can come without a timestamp.
 * - Packet.data returns a copy, so the JPEG Buffer outlives the packet.
 * - FFmpeg logs (e.g. "Failed reading RTSP data") go straight to stderr unless the app
 *   sets Log.setLevel / Log.setCallback: left to the CLI, as it is process-wide.
 */
import './node-av-polyfill.js';
import { constants as osConstants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { FilterAPI } from 'node-av/api';
import {
  AV_CODEC_FLAG_QSCALE,
  AV_NOPTS_VALUE,
  AVDISCARD_ALL,
  AVERROR_EAGAIN,
  AVERROR_EOF,
  AVERROR_INVALIDDATA,
  AVMEDIA_TYPE_VIDEO,
  FF_ENCODER_MJPEG,
  FF_QP2LAMBDA,
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
} from 'node-av/lib';
import { redactUrl } from '../config/redact.js';
import { ConnectionError, InvalidInputError, TimeoutError } from '../domain/errors.js';

export interface CapturedImage {
  jpeg: Buffer;
  width: number;
  height: number;
  /** stream timestamp in ms */
  ptsMs: number;
  /** wall-clock ms when the frame was taken */
  capturedAt: number;
  /** ms spent decoding+encoding this frame */
  encodeMs: number;
}

export interface VideoSourceOptions {
  url: string;
  kind: 'lavfi' | 'file' | 'rtsp';
  /** sample to this rate from the native rate (skipped frames are not drops) */
  fps: number;
  /** 1..100, default 80 */
  jpegQuality?: number;
  /** optional downscale keeping aspect */
  maxWidth?: number;
  /** default 5000 */
  openTimeoutMs?: number;
  /** default 5000 */
  readTimeoutMs?: number;
  /** rtsp only, default tcp */
  transport?: 'tcp' | 'udp';
  /** demuxer/protocol options; they override the defaults set here */
  ffmpegOptions?: Record<string, string>;
  /** files: reopen at EOF (default true) */
  loop?: boolean;
  /** abort -> the iterator ends promptly, resources freed */
  signal?: AbortSignal;
}

interface Resolved {
  url: string;
  kind: VideoSourceOptions['kind'];
  label: string;
  fps: number;
  quality: number;
  maxWidth?: number;
  openTimeoutMs: number;
  readTimeoutMs: number;
  /** FFmpeg's own RTSP I/O timeout: an open fails after this much silence. */
  rtspTimeoutMs?: number;
  demuxOptions: Record<string, string>;
  loop: boolean;
  signal?: AbortSignal;
}

const AVERROR_ETIMEDOUT = -osConstants.errno.ETIMEDOUT;
/** A JS deadline this much past FFmpeg's own read timeout, so FFmpeg's clearer error usually wins. */
const READ_GRACE_MS = 1000;
/** Pacing restarts instead of bursting (or sleeping long) when off by more than this. */
const MAX_PACING_DRIFT_MS = 1000;

/**
 * Frames of `opts.url` as JPEGs at `opts.fps`. Validates options at once (InvalidInputError);
 * opening happens on the first `next()`. Open/read failures reject with ConnectionError or
 * TimeoutError naming the redacted url. Aborting `opts.signal` ends the iteration.
 */
export function openVideoSource(opts: VideoSourceOptions): AsyncIterable<CapturedImage> {
  const o = resolveOptions(opts);
  return { [Symbol.asyncIterator]: () => capture(o) };
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
  const openTimeoutMs = opts.openTimeoutMs ?? 5000;
  const readTimeoutMs = opts.readTimeoutMs ?? 5000;
  if (!(openTimeoutMs > 0) || !(readTimeoutMs > 0)) throw bad('timeouts must be > 0 ms');

  // Small probes: first frame in ~0.2 s instead of ~1.25 s with FFmpeg's defaults.
  const demuxOptions: Record<string, string> = { probesize: '32768', analyzeduration: '500000' };
  if (kind === 'rtsp') {
    demuxOptions.rtsp_transport = opts.transport ?? 'tcp';
    demuxOptions.allowed_media_types = 'video';
    // Microseconds. Halved because a stalled read fails after ~2x this (~readTimeoutMs + 0.2 s);
    // it is also how long an open waits for each answer of the camera.
    demuxOptions.timeout = String(Math.round(readTimeoutMs * 500));
  }
  Object.assign(demuxOptions, opts.ffmpegOptions);
  const rtspTimeoutMs = kind === 'rtsp' ? Number(demuxOptions.timeout) / 1000 || undefined : undefined;

  return {
    url,
    kind,
    label,
    fps: opts.fps,
    quality,
    maxWidth: opts.maxWidth,
    openTimeoutMs,
    readTimeoutMs,
    rtspTimeoutMs,
    demuxOptions,
    loop: opts.loop ?? true,
    signal: opts.signal,
  };
}

async function* capture(o: Resolved): AsyncGenerator<CapturedImage> {
  const { signal } = o;
  const sampler = new Sampler(1000 / o.fps);
  // lavfi and files would otherwise run as fast as the CPU allows (ffmpeg `-re`).
  const pacer = o.kind === 'rtsp' ? undefined : new Pacer();
  const encoder = new JpegEncoder(o.quality, o.maxWidth);
  const timeline = new Timeline(1000 / o.fps);
  let session: Session | undefined;
  try {
    for (;;) {
      if (signal?.aborted) return;
      session = await Session.open(o);
      timeline.restart();
      let frames = 0;
      for (;;) {
        if (signal?.aborted) return;
        const frame = await session.next();
        if (!frame) break;
        frames++;
        const ptsMs = timeline.place(session.ptsMs(frame));
        if (pacer) await pacer.wait(ptsMs, signal);
        if (!sampler.keep(ptsMs)) {
          session.takeDecodeMs();
          continue;
        }
        const capturedAt = Date.now();
        const started = performance.now();
        const image = await encoder.encode(frame);
        const encodeMs = session.takeDecodeMs() + performance.now() - started;
        yield { ...image, ptsMs: Math.round(ptsMs), capturedAt, encodeMs };
      }
      const ended = session;
      session = undefined;
      await ended.close();
      if (o.kind === 'rtsp') throw new ConnectionError(`Video source "${o.label}" ended: the server closed the stream`);
      if (o.kind === 'lavfi' || !o.loop) return;
      if (frames === 0) throw new ConnectionError(`Video source "${o.label}" has no decodable video frames`);
    }
  } catch (err) {
    // Whatever failed after an abort failed because of it: abort just ends the iteration.
    if (signal?.aborted) return;
    throw err;
  } finally {
    encoder.close();
    await session?.close();
  }
}

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
  /** A native call still running after its JS deadline passed. */
  private pending = false;
  private closing?: Promise<void>;
  private settled: Promise<unknown> = Promise.resolve();
  private decodeMs = 0;

  private constructor(private readonly o: Resolved) {
    this.pkt.alloc();
    this.frame.alloc();
  }

  static async open(o: Resolved): Promise<Session> {
    const s = new Session(o);
    try {
      await s.openInput();
      await s.openDecoder();
      return s;
    } catch (err) {
      await s.close();
      throw err;
    }
  }

  private async openInput(): Promise<void> {
    const { o } = this;
    const format = o.kind === 'lavfi' ? InputFormat.findInputFormat('lavfi') : null;
    const dict = Dictionary.fromObject(o.demuxOptions);
    const opening = (async () => {
      try {
        const ret = await this.fmt.openInput(o.url, format, dict);
        return ret < 0 ? ret : await this.fmt.findStreamInfo(null);
      } finally {
        dict.free();
      }
    })();
    const started = performance.now();
    const ret = await this.bounded(opening, o.openTimeoutMs, 'opening');
    if (ret < 0) {
      // FFmpeg reports an RTSP server that stays silent past `timeout` as INVALIDDATA.
      const silence = o.rtspTimeoutMs;
      if (ret === AVERROR_INVALIDDATA && silence && performance.now() - started >= silence - 50) {
        throw this.timeout(silence, 'opening', FFmpegError.fromCode(ret));
      }
      throw sourceError(ret, `Cannot open video source "${o.label}"`);
    }

    this.streamIndex = this.fmt.findBestStream(AVMEDIA_TYPE_VIDEO);
    if (this.streamIndex < 0) throw new ConnectionError(`Video source "${o.label}" has no video stream`);
    for (const st of this.fmt.streams) {
      if (st.index !== this.streamIndex) st.discard = AVDISCARD_ALL;
    }
  }

  private async openDecoder(): Promise<void> {
    const stream = this.fmt.streams[this.streamIndex];
    const codec = Codec.findDecoder(stream.codecpar.codecId);
    if (!codec) {
      throw new ConnectionError(`Video source "${this.o.label}": no decoder for codec id ${stream.codecpar.codecId}`);
    }
    const dec = new CodecContext();
    this.dec = dec;
    dec.allocContext3(codec);
    let ret = dec.parametersToContext(stream.codecpar);
    if (ret >= 0) {
      dec.pktTimebase = stream.timeBase;
      ret = await dec.open2(codec, null);
    }
    if (ret < 0) throw sourceError(ret, `Cannot open the ${codec.name} decoder for "${this.o.label}"`);
    const tb = stream.timeBase;
    this.timeBase = new Rational(tb.num, tb.den);
    this.msPerTick = (1000 * tb.num) / tb.den;
  }

  /** The next decoded frame (valid until the next call), or null once the input is drained. */
  async next(): Promise<Frame | null> {
    const dec = this.dec!;
    let lastData = performance.now();
    for (;;) {
      let t = performance.now();
      const got = await dec.receiveFrame(this.frame);
      this.decodeMs += performance.now() - t;
      if (got >= 0) {
        this.frame.timeBase = this.timeBase;
        return this.frame;
      }
      if (got === AVERROR_EOF || this.flushed) return null;
      // EAGAIN or a decode error (corrupt data on a lossy link): feed the next packet.

      const ret = await this.bounded(this.fmt.readFrame(this.pkt), this.o.readTimeoutMs + READ_GRACE_MS, 'reading');
      if (ret === AVERROR_EOF) {
        this.flushed = true;
        await dec.sendPacket(null);
        continue;
      }
      if (ret === AVERROR_EAGAIN) {
        if (performance.now() - lastData > this.o.readTimeoutMs) throw this.timeout(this.o.readTimeoutMs, 'reading');
        await sleep(10);
        continue;
      }
      if (ret < 0) throw sourceError(ret, `Cannot read from video source "${this.o.label}"`);
      lastData = performance.now();
      if (this.pkt.streamIndex === this.streamIndex) {
        t = performance.now();
        // Errors are per packet (e.g. a lost slice); decoding resumes at the next one.
        await dec.sendPacket(this.pkt);
        this.decodeMs += performance.now() - t;
      }
      this.pkt.unref();
    }
  }

  ptsMs(frame: Frame): number {
    const ts = frame.bestEffortTimestamp;
    return ts === AV_NOPTS_VALUE ? Number.NaN : Number(ts) * this.msPerTick;
  }

  /** Decode time spent since the last call. */
  takeDecodeMs(): number {
    const ms = this.decodeMs;
    this.decodeMs = 0;
    return ms;
  }

  /** Frees everything now, or, while a native call is still running, right after it returns. */
  close(): Promise<void> {
    if (!this.closing) {
      if (this.pending) {
        void this.settled.then(() => this.free());
        this.closing = Promise.resolve();
      } else {
        this.closing = this.free();
      }
    }
    return this.closing;
  }

  private async free(): Promise<void> {
    this.dec?.freeContext();
    this.dec = undefined;
    try {
      await this.fmt.closeInput();
    } catch {
      // Nothing left to do with a context that failed to close.
    }
    this.pkt.free();
    this.frame.free();
  }

  /** Races a native call against a deadline and the abort signal (which the call itself ignores). */
  private bounded<T>(call: Promise<T>, ms: number, doing: string): Promise<T> {
    this.pending = true;
    this.settled = call.then(
      () => (this.pending = false),
      () => (this.pending = false),
    );
    const signal = this.o.signal;
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(this.timeout(ms, doing));
      }, ms);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      call.then(
        (v) => {
          done();
          resolve(v);
        },
        (e: unknown) => {
          done();
          reject(e);
        },
      );
    });
  }

  private timeout(ms: number, doing: string, cause?: unknown): TimeoutError {
    return new TimeoutError(`Timed out after ${ms} ms ${doing} video source "${this.o.label}"`, { cause });
  }
}

function sourceError(code: number, message: string): ConnectionError {
  const cause = FFmpegError.fromCode(code) ?? new Error(`AVERROR ${code}`);
  const text = `${message}: ${FFmpegError.strerror(code)}`;
  return code === AVERROR_ETIMEDOUT ? new TimeoutError(text, { cause }) : new ConnectionError(text, { cause });
}

/** Puts the frames of successive sessions (a looping file) on one increasing timeline, in ms. */
class Timeline {
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
class Sampler {
  private due = Number.NEGATIVE_INFINITY;
  private last = Number.NEGATIVE_INFINITY;

  constructor(private readonly intervalMs: number) {}

  keep(ptsMs: number): boolean {
    if (ptsMs < this.last) this.due = ptsMs; // the clock went back (camera restart): new grid
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

  async wait(ptsMs: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    const delay = this.originWall + (ptsMs - this.originPts) - now;
    // A slow consumer or a timestamp jump restarts the clock: no burst, no long sleep.
    if (!(Math.abs(delay) <= MAX_PACING_DRIFT_MS)) {
      this.originWall = now;
      this.originPts = ptsMs;
      return;
    }
    if (delay >= 1) await sleep(delay, undefined, { signal });
  }
}

/** Range-converting scaler plus mjpeg encoder, reopened when the frame size or format changes. */
class JpegEncoder {
  private readonly filter: FilterAPI;
  private readonly pkt = new Packet();
  private readonly lambda: number;
  private ctx?: CodecContext;
  private pts = 0n;

  constructor(quality: number, maxWidth?: number) {
    const size = maxWidth ? `w='min(iw,${maxWidth})':h=-2:` : '';
    this.filter = FilterAPI.create(`scale=${size}out_range=full,format=yuv420p`);
    // Quality 1..100 onto mjpeg's qscale 31..2.
    const qscale = Math.round(2 + ((100 - quality) / 99) * 29);
    this.lambda = qscale * FF_QP2LAMBDA;
    this.pkt.alloc();
  }

  async encode(frame: Frame): Promise<{ jpeg: Buffer; width: number; height: number }> {
    await this.filter.process(frame);
    const out = await this.filter.receive();
    if (!(out instanceof Frame)) throw new Error('JPEG scaler produced no frame');
    try {
      const ctx = await this.encoderFor(out);
      out.quality = this.lambda;
      // A looped file restarts its timestamps; the encoder rejects pts going back.
      out.pts = this.pts++;
      let ret = await ctx.sendFrame(out);
      if (ret >= 0) ret = await ctx.receivePacket(this.pkt);
      FFmpegError.throwIfError(ret, 'JPEG encoding failed');
      const jpeg = this.pkt.data;
      this.pkt.unref();
      if (!jpeg) throw new Error('JPEG encoder returned an empty packet');
      return { jpeg, width: out.width, height: out.height };
    } finally {
      out.free();
    }
  }

  private async encoderFor(frame: Frame): Promise<CodecContext> {
    const cur = this.ctx;
    if (cur && cur.width === frame.width && cur.height === frame.height && cur.pixelFormat === frame.format) return cur;
    cur?.freeContext();
    this.ctx = undefined;
    const codec = Codec.findEncoderByName(FF_ENCODER_MJPEG);
    if (!codec) throw new Error('This FFmpeg build has no mjpeg encoder');
    const ctx = new CodecContext();
    ctx.allocContext3(codec);
    ctx.width = frame.width;
    ctx.height = frame.height;
    ctx.pixelFormat = frame.format as AVPixelFormat;
    ctx.colorRange = frame.colorRange;
    ctx.timeBase = new Rational(1, 1000);
    ctx.setFlags(AV_CODEC_FLAG_QSCALE);
    ctx.globalQuality = this.lambda;
    const ret = await ctx.open2(codec, null);
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
    this.filter.close();
    this.pkt.free();
  }
}
