import { ROOT_CONTEXT, SpanKind, trace, type Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../bus/keys.js';
import { addEvent, addFrame, execOrThrow } from '../bus/publish.js';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { makeEvent } from '../domain/events.js';
import { frameIdTime, newFrameId } from '../domain/frame-id.js';
import type { FrameMessage } from '../domain/frame.js';
import { redactUrl } from '../config/redact.js';
import { redactSecrets } from '../config/redact-text.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { CameraSpec } from './camera-spec.js';
import { openVideoSource, type CapturedImage } from './video-source.js';

export interface CaptureOptions {
  redis: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  cameras: CameraSpec[];
  fps: number;
  jpegQuality: number;
  payloadTtlMs: number;
  streamMaxLen: number;
  /** Stop each camera after this many published frames (tests, probes). */
  maxFrames?: number;
  priority?: number;
  capabilities?: string[];
}

export interface CameraStatus {
  id: string;
  online: boolean;
  published: number;
  reconnects: number;
  lastFrameAt?: number;
  lastError?: string;
}

/**
 * One reader per camera; a camera that fails is retried with backoff while the others
 * keep going. Each frame: root span `capture_frame`, payload stored once with a TTL, the
 * frame.captured event and the frame message published in one MULTI.
 */
export class CaptureService {
  private readonly stop = new AbortController();
  readonly status = new Map<string, CameraStatus>();
  private running?: Promise<void>;

  constructor(private readonly opts: CaptureOptions) {
    for (const c of opts.cameras) this.status.set(c.id, { id: c.id, online: false, published: 0, reconnects: 0 });
  }

  run(): Promise<void> {
    this.running ??= Promise.all(this.opts.cameras.map((c) => this.runCamera(c))).then(() => undefined);
    return this.running;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
  }

  private async runCamera(camera: CameraSpec): Promise<void> {
    const { logger, metrics, maxFrames } = this.opts;
    const status = this.status.get(camera.id)!;
    const log = logger.child({ camera_id: camera.id });
    let failures = 0;
    while (!this.stop.signal.aborted && (maxFrames === undefined || status.published < maxFrames)) {
      try {
        log.info('opening camera', { url: redactUrl(camera.url) });
        for await (const image of openVideoSource({ url: camera.url, kind: camera.kind, fps: this.opts.fps, jpegQuality: this.opts.jpegQuality, signal: this.stop.signal })) {
          if (!status.online) log.info('camera online');
          status.online = true;
          failures = 0;
          metrics.framesCaptured.inc({ camera: camera.id });
          if (!(await this.publish(camera, image))) continue;
          status.published++;
          status.lastFrameAt = Date.now();
          if (maxFrames !== undefined && status.published >= maxFrames) break;
        }
      } catch (err) {
        if (this.stop.signal.aborted) break;
        failures++;
        status.lastError = redactSecrets((err as Error).message ?? String(err));
        metrics.captureErrors.inc({ camera: camera.id });
        log.warn('camera failed; reconnecting', { error: status.lastError, attempt: failures });
      }
      status.online = false;
      if (this.stop.signal.aborted || (maxFrames !== undefined && status.published >= maxFrames)) break;
      status.reconnects++;
      await sleep(backoffDelay(failures + 1, 500, 30_000), () => this.stop.signal.aborted);
    }
    status.online = false;
  }

  private async publish(camera: CameraSpec, image: CapturedImage): Promise<boolean> {
    const { redis, keys, tracer, metrics, payloadTtlMs, streamMaxLen } = this.opts;
    const frameId = newFrameId();
    const capturedAt = frameIdTime(frameId);
    const root = tracer.startSpan('capture_frame', {
      kind: SpanKind.INTERNAL,
      attributes: { [ATTR.frameId]: frameId, [ATTR.cameraId]: camera.id, [ATTR.frameWidth]: image.width, [ATTR.frameHeight]: image.height, [ATTR.frameSizeBytes]: image.jpeg.length },
    }, ROOT_CONTEXT);
    const rootCtx = trace.setSpan(ROOT_CONTEXT, root);
    const send = startMessagingSpan(tracer, 'send', keys.captured, rootCtx, { [ATTR.frameId]: frameId, [ATTR.cameraId]: camera.id });
    const payloadKey = keys.payload(frameId);
    const frame: FrameMessage = {
      frameId, cameraId: camera.id, capturedAt, width: image.width, height: image.height, format: 'jpeg',
      sizeBytes: image.jpeg.length, priority: this.opts.priority ?? 5, payloadKey, capabilities: this.opts.capabilities ?? [],
      ...injectContext(trace.setSpan(rootCtx, send)),
    };
    const event = makeEvent({
      type: 'frame.captured', frameId, cameraId: camera.id, source: 'capture', at: capturedAt, ...spanIds(root),
      data: { width: image.width, height: image.height, format: 'jpeg', sizeBytes: image.jpeg.length, priority: frame.priority, encodeMs: Math.round(image.encodeMs * 1000) / 1000 },
    });
    const tx = redis.multi().set(payloadKey, image.jpeg, 'PX', payloadTtlMs);
    // The event goes first so the store never sees a frame's later events before its birth.
    addEvent(tx, keys, event, streamMaxLen);
    addFrame(tx, keys.captured, frame, streamMaxLen);
    try {
      await execOrThrow(tx);
    } catch (err) {
      // Redis is unreachable: no event can say so, so the log and the counter must.
      endSpan(send, err);
      endSpan(root, err);
      metrics.framesDropped.inc({ reason: 'publish_failed' });
      this.opts.logger.error('frame dropped: could not publish', { frame_id: frameId, camera_id: camera.id, trace_id: root.spanContext().traceId, error: err });
      return false;
    }
    metrics.framesPublished.inc({ camera: camera.id });
    metrics.encodeSeconds.observe({ camera: camera.id }, image.encodeMs / 1000);
    send.end();
    root.end();
    return true;
  }
}
