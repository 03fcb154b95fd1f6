import type { Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import type { ShardSet } from '../bus/shards.js';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { redactSecrets } from '../config/redact-text.js';
import { ConnectionError } from '../domain/errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { DEFAULT_CAMERA_SETTINGS, effectiveSettings, type CameraConfig, type CameraSettings } from './camera-config.js';
import { cameraReadiness, initialStatus, type CameraStatus } from './camera-status.js';
import { CapturePublisher } from './capture-publisher.js';
import { classifyFailure } from './source-errors.js';
import { openVideoSource, ReaderThread, type CapturedImage } from './video-source.js';

export type { CameraState, CameraStatus } from './camera-status.js';

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
  redis: RedisClient;
  shards: ShardSet;
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

const DEFAULT_RECONNECT: ReconnectPolicy = { baseMs: 500, maxMs: 30_000, healthyAfterMs: 30_000, giveUpAfter: 3 };

/**
 * One reader (thread) per camera; a camera that fails or stalls is reconnected with
 * exponential backoff and full jitter while the others keep going. Each sampled frame is
 * published by CapturePublisher through publishFrame (root span `capture_frame`; payload
 * stored once with a TTL; frame.captured event and frame message in one MULTI). A frame
 * the validation policy drops gets frame.captured and frame.dropped events (no payload, no
 * frame message). Camera state changes go on the events stream as camera.online /
 * camera.offline / camera.frozen.
 */
export class CaptureService {
  private readonly stop = new AbortController();
  readonly status = new Map<string, CameraStatus>();
  private readonly reconnect: ReconnectPolicy;
  private readonly settings = new Map<string, CameraSettings>();
  private readonly publisher: CapturePublisher;
  private running?: Promise<void>;
  private fatal?: Error;

  constructor(private readonly opts: CaptureOptions) {
    this.reconnect = { ...DEFAULT_RECONNECT, ...opts.reconnect };
    this.publisher = new CapturePublisher(opts);
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
      this.status.set(c.id, initialStatus(c));
      opts.metrics.captureStreamUp.set({ camera: c.id }, 0);
      opts.metrics.captureFrozen.set({ camera: c.id }, 0);
      opts.metrics.seedCamera(c.id);
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
    return cameraReadiness(this.status.values(), this.opts.offlineGraceMs ?? 30_000, now);
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
          jpegTables: set.jpegTables,
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
    await this.publisher.cameraEvent(camera.id, 'camera.online', undefined, data);
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
    await this.publisher.cameraEvent(camera.id, 'camera.offline', reason, { error: message, url: st.url });
  }

  private async handleFrame(camera: CameraConfig, set: CameraSettings, st: CameraStatus, image: CapturedImage, log: Logger): Promise<void> {
    const { metrics } = this.opts;
    const cam = { camera: camera.id };
    st.captured++;
    st.lastFrameAt = Date.now();
    metrics.framesCaptured.inc(cam);
    if (image.backlogDropped > 0) {
      // Publishing fell behind the camera: the oldest waiting frames were let go.
      this.publisher.countDrop(camera.id, 'backlog', image.backlogDropped);
      st.dropped += image.backlogDropped;
      log.warn('frames dropped: publishing fell behind the camera', { count: image.backlogDropped });
    }
    if (image.flags.includes('frozen')) {
      if (!st.frozen) {
        st.frozen = true;
        metrics.captureFrozen.set(cam, 1);
        const seconds = Math.round(image.frozenForMs / 100) / 10;
        log.warn('camera frozen: the picture has not changed', { frozen_s: seconds });
        await this.publisher.cameraEvent(camera.id, 'camera.frozen', `picture unchanged for ${seconds} s`, {
          frozenMs: Math.round(image.frozenForMs),
        });
      }
    } else if (st.frozen && image.frozenForMs === 0) {
      st.frozen = false;
      metrics.captureFrozen.set(cam, 0);
      log.info('camera picture moving again');
      await this.publisher.cameraEvent(camera.id, 'camera.online', 'unfrozen', { url: st.url });
    }
    if (image.drop) {
      await this.publisher.dropped(camera.id, set, image);
      st.dropped++;
      return;
    }
    for (const flag of image.flags) metrics.captureFlagged.inc({ camera: camera.id, flag });
    if (await this.publisher.frame(camera.id, set, image)) st.published++;
    else st.dropped++;
  }

  private updateAges(): void {
    const now = Date.now();
    for (const s of this.status.values()) {
      if (s.lastFrameAt !== undefined) this.opts.metrics.captureLastFrameAge.set({ camera: s.id }, (now - s.lastFrameAt) / 1000);
    }
  }
}
