import { ROOT_CONTEXT, SpanKind, trace, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { RedisClient } from './redis.js';
import { redactSecrets } from '../config/redact-text.js';
import { makeEvent } from '../domain/events.js';
import { frameIdTime, newFrameId, type FrameId } from '../domain/frame-id.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import { endSpan, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { RedisKeys } from './keys.js';
import { addEvent, addFrame, execOrThrow } from './publish.js';

export interface PublishFrameDeps {
  redis: RedisClient;
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
  /** When the camera took the frame (ms; the frame id carries it). Default: now. */
  capturedAt?: number;
  /** A gray thumbnail stored beside the JPEG, with the same TTL. */
  thumbnail?: { data: Buffer; width: number; height: number };
  /** Extra data for the frame.captured event (encode time, validation flags...). */
  data?: Record<string, unknown>;
}

export interface PublishedFrame {
  frameId: FrameId;
  capturedAt: number;
  traceId: string;
  /** The root span's context (trace id and sampled flag), for exemplars. */
  spanContext: SpanContext;
}

/** Publishing failed (Redis unreachable): nothing of the frame was written. Names the frame and its trace. */
export class FramePublishError extends Error {
  constructor(
    message: string,
    readonly frameId: FrameId,
    readonly traceId: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'FramePublishError';
  }
}

/** The root span of a frame's trace, `capture_frame`; also started for frames capture drops. */
export function startCaptureRoot(
  tracer: Tracer,
  f: { frameId: string; cameraId: string; width: number; height: number; sizeBytes: number },
): Span {
  return tracer.startSpan(
    'capture_frame',
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        [ATTR.frameId]: f.frameId,
        [ATTR.cameraId]: f.cameraId,
        [ATTR.frameWidth]: f.width,
        [ATTR.frameHeight]: f.height,
        [ATTR.frameSizeBytes]: f.sizeBytes,
      },
    },
    ROOT_CONTEXT,
  );
}

/**
 * Publishes one frame: root span `capture_frame`, the image (and thumbnail) stored once
 * with a TTL, then the frame.captured event and the frame message, all in one MULTI.
 * The one path of every frame: capture's, and loadtest's and validate --e2e's synthetic ones.
 */
export async function publishFrame(deps: PublishFrameDeps, f: FrameToPublish): Promise<PublishedFrame> {
  const { redis, keys, tracer } = deps;
  const frameId = newFrameId(f.capturedAt);
  const capturedAt = frameIdTime(frameId);
  const root = startCaptureRoot(tracer, { frameId, cameraId: f.cameraId, width: f.width, height: f.height, sizeBytes: f.jpeg.length });
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
  const stored: Record<string, unknown> = { format: 'jpeg', sizeBytes: f.jpeg.length };
  const tx = redis.multi().set(payloadKey, f.jpeg, 'PX', deps.payloadTtlMs);
  if (f.thumbnail) {
    const thumbKey = keys.thumbnail(payloadKey);
    tx.set(thumbKey, f.thumbnail.data, 'PX', deps.payloadTtlMs);
    stored.thumbnail = { key: thumbKey, width: f.thumbnail.width, height: f.thumbnail.height, format: 'gray8' };
  }
  const event = makeEvent({
    type: 'frame.captured',
    frameId,
    cameraId: f.cameraId,
    source: 'capture',
    at: capturedAt,
    ...spanIds(root),
    data: { width: f.width, height: f.height, ...stored, priority, ...f.data },
  });
  // The event goes first so the store never sees a frame's later events before its birth.
  addEvent(tx, keys, event, deps.streamMaxLen);
  addFrame(tx, keys.captured, frame, deps.streamMaxLen);
  try {
    await execOrThrow(tx);
  } catch (err) {
    const safe = redactedError(err);
    endAll([send, root], safe);
    throw new FramePublishError(safe.message, frameId, root.spanContext().traceId, { cause: err });
  }
  endAll([send, root]);
  return { frameId, capturedAt, traceId: root.spanContext().traceId, spanContext: root.spanContext() };
}

/** The error with any credentials in its message masked: what spans and logs may show. */
export function redactedError(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const message = redactSecrets(e.message);
  return message === e.message ? e : new Error(message);
}

function endAll(spans: Span[], err?: unknown): void {
  for (const s of spans) endSpan(s, err);
}
