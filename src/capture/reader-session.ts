/** One opened input with its decoder (reader.ts reads through it); reopened when a file loops. */
import { constants as osConstants } from 'node:os';
import {
  AV_FRAME_FLAG_CORRUPT,
  AV_FRAME_FLAG_KEY,
  AV_NOPTS_VALUE,
  AVDISCARD_ALL,
  AVERROR_EAGAIN,
  AVERROR_EOF,
  AVERROR_INVALIDDATA,
  AVMEDIA_TYPE_VIDEO,
} from 'node-av/constants';
import {
  Codec,
  CodecContext,
  Dictionary,
  FFmpegError,
  FormatContext,
  Frame,
  HardwareDeviceContext,
  InputFormat,
  Packet,
  Rational,
} from 'node-av/lib';
import { hwPixelFormat, openDevice } from './hwaccel.js';
import type { OpenInfo, ReaderOptions } from './reader.js';
import { PROGRESS } from './reader-progress.js';
import { SourceError, SourceTimeoutError } from './source-errors.js';

export const AVERROR_ETIMEDOUT = -osConstants.errno.ETIMEDOUT;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

export class Session {
  private readonly fmt = new FormatContext();
  private readonly pkt = new Packet();
  private readonly frame = new Frame();
  /** Frames decoded on a device, copied back to memory. */
  private swFrame?: Frame;
  private hwDevice?: HardwareDeviceContext;
  private dec?: CodecContext;
  private streamIndex = -1;
  private timeBase = new Rational(1, 1000);
  private msPerTick = 1;
  private flushed = false;
  private closed = false;
  private codecName = '';
  private nativeFps?: number;
  private decode = 'software';
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
    return {
      codec: this.codecName,
      width: this.dec?.width ?? 0,
      height: this.dec?.height ?? 0,
      nativeFps: this.nativeFps,
      url: this.o.label,
      decode: this.decode,
    };
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
      this.useDevice(dec, codec);
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

  /** Decodes on the chosen device when it can decode this codec; else in software, and says why. */
  private useDevice(dec: CodecContext, codec: Codec): void {
    const type = this.o.hwaccel;
    if (!type || type === 'none') return;
    const pixFmt = hwPixelFormat(codec, type);
    if (pixFmt === undefined) {
      this.decode = `software (${type} cannot decode ${codec.name})`;
      return;
    }
    const device = openDevice(type);
    if (typeof device === 'string') {
      // It opened when capture started: losing it now is a camera failure, retried as any other.
      throw new SourceError(`Video source "${this.o.label}": ${device}`, { stage: 'open' });
    }
    this.hwDevice = device;
    dec.hwDeviceCtx = device;
    dec.setHardwarePixelFormat(pixFmt);
    this.swFrame = new Frame();
    this.swFrame.alloc();
    this.decode = type;
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
        t = performance.now();
        const out = this.swFrame && this.frame.isHwFrame() ? this.download(this.swFrame) : this.frame;
        this.lastDecodeMs = decodeMs + performance.now() - t;
        return out;
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

  /** A device frame copied to memory, with the decoded frame's properties. */
  private download(sw: Frame): Frame {
    sw.unref();
    const ret = this.frame.hwframeTransferDataSync(sw, 0);
    if (ret < 0) throw sourceError(ret, `Cannot copy a decoded frame from the ${this.decode} device for "${this.o.label}"`, 'read');
    sw.copyProps(this.frame);
    return sw;
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
    this.swFrame?.free();
    this.hwDevice?.free();
  }
}

export function sourceError(code: number, message: string, stage: 'open' | 'read'): SourceError | SourceTimeoutError {
  const cause = FFmpegError.fromCode(code) ?? new Error(`AVERROR ${code}`);
  const text = `${message}: ${FFmpegError.strerror(code)}`;
  return code === AVERROR_ETIMEDOUT ? new SourceTimeoutError(text, { code, stage, cause }) : new SourceError(text, { code, stage, cause });
}
