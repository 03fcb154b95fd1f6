import { ROOT_CONTEXT, SpanKind, trace, type Span, type Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import { makeEvent } from '../domain/events.js';
import { frameIdTime, newFrameId, type FrameId } from '../domain/frame-id.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import { endSpan, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { RedisKeys } from './keys.js';
import { addEvent, addFrame, execOrThrow } from './publish.js';

export interface PublishFrameDeps {
  redis: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  payloadTtlMs: number;
  streamMaxLen: number;
}

export interface FrameToPublish {
  cameraId: string;
  jpeg: Buffer;
  width: number;
  height: number;
  priority?: number;
  capabilities?: string[];
  /** Extra data for the frame.captured event (encode time, validation flags...). */
  data?: Record<string, unknown>;
}

export interface PublishedFrame {
  frameId: FrameId;
  capturedAt: number;
  traceId: string;
}

/**
 * Publishes one frame as capture does: root span `capture_frame`, the image stored once
 * with a TTL, then the frame.captured event and the frame message, all in one MULTI.
 * Used by capture, and by loadtest and validate --e2e to inject synthetic frames.
 */
export async function publishFrame(deps: PublishFrameDeps, f: FrameToPublish): Promise<PublishedFrame> {
  const { redis, keys, tracer } = deps;
  const frameId = newFrameId();
  const capturedAt = frameIdTime(frameId);
  const root = tracer.startSpan(
    'capture_frame',
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        [ATTR.frameId]: frameId,
        [ATTR.cameraId]: f.cameraId,
        [ATTR.frameWidth]: f.width,
        [ATTR.frameHeight]: f.height,
        [ATTR.frameSizeBytes]: f.jpeg.length,
      },
    },
    ROOT_CONTEXT,
  );
  const rootCtx = trace.setSpan(ROOT_CONTEXT, root);
  const send = startMessagingSpan(tracer, 'send', keys.captured, rootCtx, { [ATTR.frameId]: frameId, [ATTR.cameraId]: f.cameraId });
  const payloadKey = keys.payload(frameId);
  const priority = f.priority ?? 5;
  const frame: FrameMessage = {
    frameId,
    cameraId: f.cameraId,
    capturedAt,
    width: f.width,
    height: f.height,
    format: 'jpeg',
    sizeBytes: f.jpeg.length,
    priority,
    payloadKey,
    capabilities: f.capabilities ?? [],
    ...injectContext(trace.setSpan(rootCtx, send)),
  };
  const event = makeEvent({
    type: 'frame.captured',
    frameId,
    cameraId: f.cameraId,
    source: 'capture',
    at: capturedAt,
    ...spanIds(root),
    data: { width: f.width, height: f.height, format: 'jpeg', sizeBytes: f.jpeg.length, priority, ...f.data },
  });
  const tx = redis.multi().set(payloadKey, f.jpeg, 'PX', deps.payloadTtlMs);
  // The event goes first so the store never sees a frame's later events before its birth.
  addEvent(tx, keys, event, deps.streamMaxLen);
  addFrame(tx, keys.captured, frame, deps.streamMaxLen);
  try {
    await execOrThrow(tx);
  } catch (err) {
    endAll([send, root], err);
    throw err;
  }
  endAll([send, root]);
  return { frameId, capturedAt, traceId: root.spanContext().traceId };
}

function endAll(spans: Span[], err?: unknown): void {
  for (const s of spans) endSpan(s, err);
}
