import { ROOT_CONTEXT, SpanKind, trace, type Span, type Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../bus/keys.js';
import { addCameraEvent, addEvent, addFrame, execOrThrow } from '../bus/publish.js';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { redactUrl } from '../config/redact.js';
import { redactSecrets } from '../config/redact-text.js';
import { makeCameraEvent, type CameraEventType } from '../domain/camera-events.js';
import { ConnectionError } from '../domain/errors.js';
import { makeEvent } from '../domain/events.js';
import { frameIdTime, newFrameId } from '../domain/frame-id.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import { DEFAULT_CAMERA_SETTINGS, effectiveSettings, type CameraConfig, type CameraSettings } from './camera-config.js';
import { classifyFailure, type FailureReason } from './source-errors.js';
import { openVideoSource, ReaderThread, type CapturedImage, type OpenInfo } from './video-source.js';

export interface ReconnectPolicy {
  /** First backoff ceiling; doubles per consecutive failure. Default 500 ms. */
  baseMs: number;
  /** Largest backoff ceiling. Default 30 s. */
  maxMs: number;
  /** Frames flowing this long reset the backoff. Default 30 s. */
  healthyAfterMs: number;
  /**
   * A camera that never delivered a frame and failed this many times in a row for a
   * reason retrying cannot fix (credentials, path, host, not video) is "failed"; when
   * every camera is, run() rejects. Default 3.
   */
  giveUpAfter: number;
}

export interface CaptureOptions {
  redis: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  cameras: CameraConfig[];
  fps: number;
  jpegQuality: number;
  payloadTtlMs: number;
  streamMaxLen: number;
  /** Stop each camera after this many published frames (tests, probes). */
  maxFrames?: number;
  priority?: number;
  capabilities?: string[];
  /** Defaults for every camera (a camera's own settings win); fps and jpegQuality above. */
  settings?: Partial<Omit<CameraSettings, 'fps' | 'jpegQuality'>>;
  reconnect?: Partial<ReconnectPolicy>;
  /** /readyz fails while a camera is offline longer than this. Default 30 s. */
  offlineGraceMs?: number;
}

export type CameraState = 'connecting' | 'online' | 'offline' | 'failed' | 'stopped';

/** What an operator (and /readyz, /cameras) sees of a camera; never holds a password. */
export interface CameraStatus {
  id: string;
  /** The url with its password masked. */
  url: string;
  state: CameraState;
  online: boolean;
  frozen: boolean;
  captured: number;
  published: number;
  dropped: number;
  /** Reconnect attempts since start. */
  reconnects: number;
  /** Failures in a row (the backoff exponent); reset after a healthy period. */
  failures: number;
  lastFrameAt?: number;
  /**
   * How far behind the camera's clock frames are handled: wall time minus stream time,
   * above the smallest value seen this session. Grows when the host cannot keep up.
   */
  lagMs?: number;
  onlineSince?: number;
  offlineSince?: number;
  lastError?: string;
  lastErrorReason?: FailureReason;
  /** Current backoff ceiling and the delay drawn from it (full jitter). */
  backoffCeilingMs?: number;
  nextRetryInMs?: number;
  stream?: OpenInfo;
}

const DEFAULT_RECONNECT: ReconnectPolicy = { baseMs: 500, maxMs: 30_000, healthyAfterMs: 30_000, giveUpAfter: 3 };

/**
 * One reader (thread) per camera; a camera that fails or stalls is reconnected with
 * exponential backoff and full jitter while the others keep going. Each sampled frame:
 * root span `capture_frame`; payload stored once with a TTL; frame.captured event and
 * frame message in one MULTI. A frame the validation policy drops gets frame.captured and
 * frame.dropped events (no payload, no frame message). Camera state changes go on the
 * events stream as camera.online / camera.offline / camera.frozen.
 */
export class CaptureService {
  private readonly stop = new AbortController();
  readonly status = new Map<string, CameraStatus>();
  private readonly reconnect: ReconnectPolicy;
  private readonly settings = new Map<string, CameraSettings>();
  private running?: Promise<void>;
  private fatal?: Error;

  constructor(private readonly opts: CaptureOptions) {
    this.reconnect = { ...DEFAULT_RECONNECT, ...opts.reconnect };
    const defaults: CameraSettings = {
      ...DEFAULT_CAMERA_SETTINGS,
      ...opts.settings,
      fps: opts.fps,
      jpegQuality: opts.jpegQuality,
      priority: opts.priority ?? opts.settings?.priority ?? DEFAULT_CAMERA_SETTINGS.priority,
      capabilities: opts.capabilities ?? opts.settings?.capabilities ?? [],
    };
    for (const c of opts.cameras) {
      this.settings.set(c.id, effectiveSettings(c, defaults));
      this.status.set(c.id, {
        id: c.id,
        url: c.kind === 'lavfi' ? `lavfi:${c.url}` : redactUrl(c.url),
        state: 'connecting',
        online: false,
        frozen: false,
        captured: 0,
        published: 0,
        dropped: 0,
        reconnects: 0,
        failures: 0,
        offlineSince: Date.now(),
      });
      opts.metrics.captureStreamUp.set({ camera: c.id }, 0);
      opts.metrics.captureFrozen.set({ camera: c.id }, 0);
    }
  }

  /** Resolves when every camera stopped (close(), maxFrames, finite sources); rejects when every camera failed for good. */
  run(): Promise<void> {
    this.running ??= (async () => {
      // The age is computed when /metrics is scraped (prom-client calls collect()).
      (this.opts.metrics.captureLastFrameAge as unknown as { collect?: () => void }).collect = () => this.updateAges();
      await Promise.all(this.opts.cameras.map((c) => this.runCamera(c)));
      if (this.fatal) throw this.fatal;
    })();
    return this.running;
  }

  /** Stops reading; frames already read are published; each online camera gets camera.offline (stopped). */
  async close(): Promise<void> {
    this.stop.abort();
    await this.running?.catch(() => undefined);
  }

  /** The error that made run() give up (every camera failed for good), if any. */
  get failure(): Error | undefined {
    return this.fatal;
  }

  /** Ready while every camera is online or has been offline for less than the grace period. */
  readiness(now = Date.now()): { ready: boolean; checks: Record<string, string> } {
    const grace = this.opts.offlineGraceMs ?? 30_000;
    const checks: Record<string, string> = {};
    let ready = true;
    for (const s of this.status.values()) {
      if (s.online) {
        checks[`camera:${s.id}`] = s.frozen ? 'online (frozen)' : 'online';
        continue;
      }
      const offlineMs = now - (s.offlineSince ?? now);
      if (s.state === 'failed' || offlineMs >= grace) ready = false;
      const why = s.lastError ? `: ${s.lastError}` : '';
      checks[`camera:${s.id}`] = `${s.state} for ${Math.round(offlineMs / 1000)}s${why}`;
    }
    return { ready, checks };
  }

  private settingsOf(id: string): CameraSettings {
    return this.settings.get(id)!;
  }

  private async runCamera(camera: CameraConfig): Promise<void> {
    const { logger, maxFrames } = this.opts;
    const st = this.status.get(camera.id)!;
    const set = this.settingsOf(camera.id);
    const log = logger.child({ camera_id: camera.id });
    const done = () => this.stop.signal.aborted || (maxFrames !== undefined && st.published >= maxFrames);
    // One thread per camera, reused across reconnects.
    const thread = new ReaderThread();
    try {
      await this.cameraLoop(camera, st, set, log, thread, done);
    } finally {
      thread.close();
    }
  }

  private async cameraLoop(
    camera: CameraConfig,
    st: CameraStatus,
    set: CameraSettings,
    log: Logger,
    thread: ReaderThread,
    done: () => boolean,
  ): Promise<void> {
    const { maxFrames } = this.opts;
    let permanentFailures = 0;
    let everOnline = false;
    while (!done()) {
      let session: { online: boolean; onlineAt: number; minOffset: number } = { online: false, onlineAt: 0, minOffset: Infinity };
      let failure: unknown;
      try {
        log.info('opening camera', { url: st.url, attempt: st.failures + 1 });
        const source = openVideoSource({
          // A sub-stream, when the camera has one, is where its frames come from.
          url: set.detect?.url ?? camera.url,
          kind: set.detect?.kind ?? camera.kind,
          hwaccel: set.hwaccel,
          fps: set.fps,
          jpegQuality: set.jpegQuality,
          maxWidth: set.maxWidth,
          thumbnailWidth: set.thumbnailWidth,
          openTimeoutMs: set.timeoutMs,
          readTimeoutMs: set.timeoutMs,
          stallTimeoutMs: set.stallTimeoutMs,
          transport: set.transport,
          ffmpegOptions: set.ffmpegOptions,
          loop: set.loop,
          validation: set.validation,
          signal: this.stop.signal,
          thread,
          onOpen: (info) => {
            st.stream = info;
            log.debug('camera opened', { codec: info.codec, width: info.width, height: info.height, native_fps: info.nativeFps });
          },
          onStats: (stats) => {
            const { metrics } = this.opts;
            if (stats.cpuMs > 0) metrics.captureCpuSeconds.inc({ camera: camera.id }, stats.cpuMs / 1000);
            for (const ms of stats.decodeMs) metrics.captureDecodeSeconds.observe({ camera: camera.id }, ms / 1000);
          },
        });
        for await (const image of source) {
          if (!session.online) {
            session = { online: true, onlineAt: Date.now(), minOffset: Infinity };
            everOnline = true;
            permanentFailures = 0;
            await this.cameraOnline(camera, st, log);
          }
          if (st.failures && Date.now() - session.onlineAt >= this.reconnect.healthyAfterMs) st.failures = 0;
          const offset = image.capturedAt - image.ptsMs;
          session.minOffset = Math.min(session.minOffset, offset);
          st.lagMs = offset - session.minOffset;
          this.opts.metrics.captureLag.set({ camera: camera.id }, st.lagMs / 1000);
          await this.handleFrame(camera, set, st, image, log);
          if (done()) break;
        }
      } catch (err) {
        failure = err;
      }
      if (this.stop.signal.aborted || (maxFrames !== undefined && st.published >= maxFrames)) break;

      if (failure === undefined) {
        // A finite source (a lavfi graph with a duration, a file not looped) ran out.
        await this.cameraOffline(camera, st, 'ended', 'the source ended', log);
        st.state = 'stopped';
        return;
      }
      const { reason, permanent } = classifyFailure(failure);
      const message = redactSecrets((failure as Error)?.message ?? String(failure));
      this.opts.metrics.captureErrors.inc({ camera: camera.id });
      st.lastError = message;
      st.lastErrorReason = reason;
      st.failures++;
      permanentFailures = permanent && !everOnline ? permanentFailures + 1 : 0;
      await this.cameraOffline(camera, st, reason, message, log);

      if (permanentFailures >= this.reconnect.giveUpAfter && !everOnline) {
        if (st.state !== 'failed') {
          st.state = 'failed';
          log.error('camera failed: retrying will not help until its url, credentials or the camera change', {
            reason,
            error: message,
            attempts: permanentFailures,
          });
          this.checkAllFailed();
        }
      } else if (st.state !== 'failed') {
        st.state = 'offline';
      }
      if (this.stop.signal.aborted) break;

      const ceiling = Math.min(this.reconnect.maxMs, this.reconnect.baseMs * 2 ** Math.min(st.failures - 1, 30));
      const delay = backoffDelay(st.failures, this.reconnect.baseMs, this.reconnect.maxMs);
      st.backoffCeilingMs = ceiling;
      st.nextRetryInMs = delay;
      log.warn('camera offline; reconnecting', { reason, error: message, attempt: st.failures, delay_ms: delay, max_delay_ms: ceiling });
      await sleep(delay, () => this.stop.signal.aborted);
      if (this.stop.signal.aborted) break;
      st.reconnects++;
      this.opts.metrics.captureReconnects.inc({ camera: camera.id, reason });
    }
    if (st.online) await this.cameraOffline(camera, st, 'stopped', 'capture stopped', log);
    if (st.state !== 'failed') st.state = 'stopped';
  }

  private checkAllFailed(): void {
    const all = [...this.status.values()];
    if (!all.every((s) => s.state === 'failed')) return;
    const detail = all.map((s) => `camera "${s.id}": ${s.lastError ?? s.lastErrorReason ?? 'failed'}`).join('; ');
    this.fatal = new ConnectionError(all.length === 1 ? detail : `no camera could be opened: ${detail}`);
    this.stop.abort();
  }

  private async cameraOnline(camera: CameraConfig, st: CameraStatus, log: Logger): Promise<void> {
    const wasDown = st.offlineSince;
    st.online = true;
    st.state = 'online';
    st.onlineSince = Date.now();
    st.offlineSince = undefined;
    st.nextRetryInMs = undefined;
    this.opts.metrics.captureStreamUp.set({ camera: camera.id }, 1);
    const data: Record<string, unknown> = { url: st.url, reconnects: st.reconnects };
    if (st.stream) Object.assign(data, { codec: st.stream.codec, width: st.stream.width, height: st.stream.height });
    if (wasDown !== undefined && st.lastError) data.offlineMs = Date.now() - wasDown;
    log.info('camera online', { ...data, url: undefined });
    await this.emitCameraEvent(camera.id, 'camera.online', undefined, data);
  }

  /** Emits camera.offline on the way down only: retries of a camera already offline emit nothing. */
  private async cameraOffline(camera: CameraConfig, st: CameraStatus, reason: string, message: string, log: Logger): Promise<void> {
    // The first failure of a camera never seen online is news too (offline since start).
    const first = st.state === 'connecting';
    if (!st.online && !first) return;
    if (st.online) st.offlineSince = Date.now();
    st.online = false;
    st.frozen = false;
    st.state = 'offline';
    this.opts.metrics.captureStreamUp.set({ camera: camera.id }, 0);
    this.opts.metrics.captureFrozen.set({ camera: camera.id }, 0);
    if (reason !== 'stopped') log.warn('camera offline', { reason, error: message });
    await this.emitCameraEvent(camera.id, 'camera.offline', reason, { error: message, url: st.url });
  }

  private async emitCameraEvent(cameraId: string, type: CameraEventType, reason?: string, data?: Record<string, unknown>): Promise<void> {
    const { redis, keys, streamMaxLen, logger } = this.opts;
    const event = makeCameraEvent({ type, cameraId, source: 'capture', reason: reason && redactSecrets(reason), data });
    try {
      await execOrThrow(addCameraEvent(redis.multi(), keys, event, streamMaxLen));
    } catch (err) {
      logger.error('could not publish camera event', { camera_id: cameraId, type, error: err });
    }
  }

  private async handleFrame(camera: CameraConfig, set: CameraSettings, st: CameraStatus, image: CapturedImage, log: Logger): Promise<void> {
    const { metrics } = this.opts;
    const cam = { camera: camera.id };
    st.captured++;
    st.lastFrameAt = Date.now();
    metrics.framesCaptured.inc(cam);
    if (image.backlogDropped > 0) {
      // Publishing fell behind the camera: the oldest waiting frames were let go.
      this.countDrop(camera.id, 'backlog', image.backlogDropped);
      st.dropped += image.backlogDropped;
      log.warn('frames dropped: publishing fell behind the camera', { count: image.backlogDropped });
    }
    if (image.flags.includes('frozen')) {
      if (!st.frozen) {
        st.frozen = true;
        metrics.captureFrozen.set(cam, 1);
        const seconds = Math.round(image.frozenForMs / 100) / 10;
        log.warn('camera frozen: the picture has not changed', { frozen_s: seconds });
        await this.emitCameraEvent(camera.id, 'camera.frozen', `picture unchanged for ${seconds} s`, {
          frozenMs: Math.round(image.frozenForMs),
        });
      }
    } else if (st.frozen && image.frozenForMs === 0) {
      st.frozen = false;
      metrics.captureFrozen.set(cam, 0);
      log.info('camera picture moving again');
      await this.emitCameraEvent(camera.id, 'camera.online', 'unfrozen', { url: st.url });
    }
    if (image.drop) {
      await this.publishDropped(camera, set, image);
      st.dropped++;
      return;
    }
    for (const flag of image.flags) metrics.captureFlagged.inc({ camera: camera.id, flag });
    if (await this.publish(camera, set, image)) st.published++;
    else st.dropped++;
  }

  private countDrop(cameraId: string, reason: string, n = 1): void {
    this.opts.metrics.framesDropped.inc({ reason }, n);
    this.opts.metrics.captureDropped.inc({ camera: cameraId, reason }, n);
  }

  private startRoot(camera: CameraConfig, frameId: string, image: CapturedImage): Span {
    return this.opts.tracer.startSpan(
      'capture_frame',
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          [ATTR.frameId]: frameId,
          [ATTR.cameraId]: camera.id,
          [ATTR.frameWidth]: image.width,
          [ATTR.frameHeight]: image.height,
          [ATTR.frameSizeBytes]: image.jpeg.length,
        },
      },
      ROOT_CONTEXT,
    );
  }

  private capturedData(set: CameraSettings, image: CapturedImage, extra: Record<string, unknown>): Record<string, unknown> {
    const data: Record<string, unknown> = {
      width: image.width,
      height: image.height,
      ...extra,
      priority: set.priority,
      ptsMs: image.ptsMs,
      encodeMs: round3(image.encodeMs),
      decodeMs: round3(image.decodeMs),
    };
    if (image.flags.length) data.flags = image.flags;
    return data;
  }

  /** A frame the validation policy drops: frame.captured (its metadata) then frame.dropped, no payload. */
  private async publishDropped(camera: CameraConfig, set: CameraSettings, image: CapturedImage): Promise<void> {
    const { redis, keys, streamMaxLen, logger } = this.opts;
    const reason = image.drop!;
    const frameId = newFrameId(image.capturedAt);
    const capturedAt = frameIdTime(frameId);
    const root = this.startRoot(camera, frameId, image);
    const ids = spanIds(root);
    const captured = makeEvent({
      type: 'frame.captured',
      frameId,
      cameraId: camera.id,
      source: 'capture',
      at: capturedAt,
      ...ids,
      data: this.capturedData(set, image, { format: 'none', sizeBytes: 0 }),
    });
    const dropped = makeEvent({ type: 'frame.dropped', frameId, cameraId: camera.id, source: 'capture', at: capturedAt, reason, ...ids });
    const tx = redis.multi();
    addEvent(tx, keys, captured, streamMaxLen);
    addEvent(tx, keys, dropped, streamMaxLen);
    this.countDrop(camera.id, reason);
    try {
      await execOrThrow(tx);
      root.setAttribute('detektr.frame.dropped', reason);
      root.end();
    } catch (err) {
      endSpan(root, redactedError(err));
      logger.error("could not publish a dropped frame's events", { frame_id: frameId, camera_id: camera.id, reason, error: err });
    }
  }

  private async publish(camera: CameraConfig, set: CameraSettings, image: CapturedImage): Promise<boolean> {
    const { redis, keys, tracer, metrics, payloadTtlMs, streamMaxLen } = this.opts;
    const frameId = newFrameId(image.capturedAt);
    const capturedAt = frameIdTime(frameId);
    const root = this.startRoot(camera, frameId, image);
    const rootCtx = trace.setSpan(ROOT_CONTEXT, root);
    const send = startMessagingSpan(tracer, 'send', keys.captured, rootCtx, { [ATTR.frameId]: frameId, [ATTR.cameraId]: camera.id });
    const payloadKey = keys.payload(frameId);
    const frame: FrameMessage = {
      frameId,
      cameraId: camera.id,
      capturedAt,
      width: image.width,
      height: image.height,
      format: 'jpeg',
      sizeBytes: image.jpeg.length,
      priority: set.priority,
      payloadKey,
      capabilities: set.capabilities,
      ...injectContext(trace.setSpan(rootCtx, send)),
    };
    const extra: Record<string, unknown> = { format: 'jpeg', sizeBytes: image.jpeg.length };
    const tx = redis.multi().set(payloadKey, image.jpeg, 'PX', payloadTtlMs);
    if (image.thumbnail) {
      const thumbKey = thumbnailKey(keys, frameId);
      tx.set(thumbKey, image.thumbnail.data, 'PX', payloadTtlMs);
      extra.thumbnail = { key: thumbKey, width: image.thumbnail.width, height: image.thumbnail.height, format: 'gray8' };
    }
    const event = makeEvent({
      type: 'frame.captured',
      frameId,
      cameraId: camera.id,
      source: 'capture',
      at: capturedAt,
      ...spanIds(root),
      data: this.capturedData(set, image, extra),
    });
    // The event goes first so the store never sees a frame's later events before its birth.
    addEvent(tx, keys, event, streamMaxLen);
    addFrame(tx, keys.captured, frame, streamMaxLen);
    try {
      await execOrThrow(tx);
    } catch (err) {
      // Redis is unreachable: no event can say so, so the log and the counter must.
      endSpan(send, redactedError(err));
      endSpan(root, redactedError(err));
      this.countDrop(camera.id, 'publish_failed');
      this.opts.logger.error('frame dropped: could not publish', {
        frame_id: frameId,
        camera_id: camera.id,
        trace_id: root.spanContext().traceId,
        error: err,
      });
      return false;
    }
    metrics.framesPublished.inc({ camera: camera.id });
    metrics.encodeSeconds.observe({ camera: camera.id }, image.encodeMs / 1000);
    send.end();
    root.end();
    return true;
  }

  private updateAges(): void {
    const now = Date.now();
    for (const s of this.status.values()) {
      if (s.lastFrameAt !== undefined) this.opts.metrics.captureLastFrameAge.set({ camera: s.id }, (now - s.lastFrameAt) / 1000);
    }
  }
}

/** Where the gray thumbnail of a frame is stored (beside its JPEG, same TTL). */
export function thumbnailKey(keys: RedisKeys, frameId: string): string {
  return `${keys.payload(frameId)}:thumb`;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function redactedError(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const message = redactSecrets(e.message);
  return message === e.message ? e : new Error(message);
}
