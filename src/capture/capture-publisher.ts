import type { Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import type { ShardSet } from '../bus/shards.js';
import { addCameraEvent, addEvent, execOrThrow } from '../bus/publish.js';
import {
  FramePublishError,
  publishFrame,
  redactedError,
  startCaptureRoot,
  type PublishedFrame,
  type PublishFrameDeps,
} from '../bus/publish-frame.js';
import { redactSecrets } from '../config/redact-text.js';
import { makeCameraEvent, type CameraEventType } from '../domain/camera-events.js';
import { makeEvent } from '../domain/events.js';
import { frameIdTime, newFrameId } from '../domain/frame-id.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, spanIds } from '../telemetry/tracing.js';
import type { CameraSettings } from './camera-config.js';
import type { CapturedImage } from './video-source.js';

export interface CapturePublisherOptions {
  redis: RedisClient;
  /** A camera's frames and events go to its shard. */
  shards: ShardSet;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  payloadTtlMs: number;
  streamMaxLen: number;
}

/**
 * What capture writes to Redis: frames (through publishFrame, the path loadtest and
 * validate --e2e take too), frames the validation policy drops (frame.captured and
 * frame.dropped, no payload) and camera events. A failed write is logged and counted,
 * never thrown: one camera's frame must not stop the others.
 */
export class CapturePublisher {
  /** publishFrame's dependencies per camera (its shard's keys), built once, not per frame. */
  private readonly deps = new Map<string, PublishFrameDeps>();

  constructor(private readonly opts: CapturePublisherOptions) {}

  private depsOf(cameraId: string): PublishFrameDeps {
    let d = this.deps.get(cameraId);
    if (!d) this.deps.set(cameraId, (d = { ...this.opts, keys: this.opts.shards.forCamera(cameraId) }));
    return d;
  }

  countDrop(cameraId: string, reason: string, n = 1): void {
    this.opts.metrics.framesDropped.inc({ reason }, n);
    this.opts.metrics.captureDropped.inc({ camera: cameraId, reason }, n);
  }

  async cameraEvent(cameraId: string, type: CameraEventType, reason?: string, data?: Record<string, unknown>): Promise<void> {
    const { redis, shards, streamMaxLen, logger } = this.opts;
    const keys = shards.forCamera(cameraId);
    const event = makeCameraEvent({ type, cameraId, source: 'capture', reason: reason && redactSecrets(reason), data });
    try {
      await execOrThrow(addCameraEvent(redis.multi(), keys, event, streamMaxLen));
    } catch (err) {
      logger.error('could not publish camera event', { camera_id: cameraId, type, error: err });
    }
  }

  /** True when published; false when Redis refused it (counted as dropped: publish_failed). */
  async frame(cameraId: string, set: CameraSettings, image: CapturedImage): Promise<boolean> {
    const { metrics } = this.opts;
    let published: PublishedFrame;
    try {
      published = await publishFrame(this.depsOf(cameraId), {
        cameraId,
        jpeg: image.jpeg,
        width: image.width,
        height: image.height,
        priority: set.priority,
        capabilities: set.capabilities,
        capturedAt: image.capturedAt,
        thumbnail: image.thumbnail,
        data: frameData(image),
      });
    } catch (err) {
      // Redis is unreachable: no event can say so, so the log and the counter must.
      this.countDrop(cameraId, 'publish_failed');
      this.opts.logger.error('frame dropped: could not publish', {
        frame_id: err instanceof FramePublishError ? err.frameId : undefined,
        camera_id: cameraId,
        trace_id: err instanceof FramePublishError ? err.traceId : undefined,
        error: err,
      });
      return false;
    }
    metrics.framesPublished.inc({ camera: cameraId });
    metrics.encodeSeconds.observe({ camera: cameraId }, image.encodeMs / 1000, published.spanContext);
    return true;
  }

  /** A frame the validation policy drops: frame.captured (its metadata) then frame.dropped, no payload. */
  async dropped(cameraId: string, set: CameraSettings, image: CapturedImage): Promise<void> {
    const { redis, shards, streamMaxLen, logger, tracer } = this.opts;
    const keys = shards.forCamera(cameraId);
    const reason = image.drop!;
    const frameId = newFrameId(image.capturedAt);
    const capturedAt = frameIdTime(frameId);
    const root = startCaptureRoot(tracer, { frameId, cameraId, width: image.width, height: image.height, sizeBytes: image.jpeg.length });
    const ids = spanIds(root);
    const captured = makeEvent({
      type: 'frame.captured',
      frameId,
      cameraId,
      source: 'capture',
      at: capturedAt,
      ...ids,
      data: { width: image.width, height: image.height, format: 'none', sizeBytes: 0, priority: set.priority, ...frameData(image) },
    });
    const dropped = makeEvent({ type: 'frame.dropped', frameId, cameraId, source: 'capture', at: capturedAt, reason, ...ids });
    const tx = redis.multi();
    addEvent(tx, keys, captured, streamMaxLen);
    addEvent(tx, keys, dropped, streamMaxLen);
    this.countDrop(cameraId, reason);
    try {
      await execOrThrow(tx);
      root.setAttribute('detektr.frame.dropped', reason);
      root.end();
    } catch (err) {
      endSpan(root, redactedError(err));
      logger.error("could not publish a dropped frame's events", { frame_id: frameId, camera_id: cameraId, reason, error: err });
    }
  }
}

/** What the frame.captured event tells of how the frame was read, beyond size and priority. */
function frameData(image: CapturedImage): Record<string, unknown> {
  const data: Record<string, unknown> = { ptsMs: image.ptsMs, encodeMs: round3(image.encodeMs), decodeMs: round3(image.decodeMs) };
  if (image.flags.length) data.flags = image.flags;
  return data;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
