import { EVENT_TYPES, type EventType, type LifecycleEvent } from '../domain/events.js';
import { isCameraEventType, type CameraEvent } from '../domain/camera-events.js';
import { MalformedMessageError } from '../domain/errors.js';
import { decodeFieldMap, FieldReader, ID_RE, MESSAGE_VERSION, toFieldList, toFieldMap, type FieldList } from './fields.js';

const MAX_TEXT = 2000;

/**
 * The W3C traceparent of the span that emitted an event, with its sampled flag (absent
 * means sampled), so a consumer of the event continues the emitter's trace as the emitter's
 * sampler decided. All-zero ids come from a no-op tracer: not a trace context (decoders
 * reject them).
 */
export function eventTraceparent(e: Pick<LifecycleEvent, 'traceId' | 'spanId' | 'sampled'>): string | undefined {
  if (!e.traceId || !e.spanId || /^0+$/.test(e.traceId) || /^0+$/.test(e.spanId)) return undefined;
  return `00-${e.traceId}-${e.spanId}-${e.sampled === false ? '00' : '01'}`;
}

export function encodeEvent(e: LifecycleEvent): FieldList {
  return toFieldList({
    v: MESSAGE_VERSION,
    event_id: e.eventId,
    type: e.type,
    frame_id: e.frameId,
    camera_id: e.cameraId,
    at: e.at,
    source: e.source,
    processor_id: e.processorId,
    capability: e.capability,
    attempt: e.attempt,
    duration_ms: e.durationMs === undefined ? undefined : Math.round(e.durationMs * 1000) / 1000,
    error: e.error?.slice(0, MAX_TEXT),
    reason: e.reason?.slice(0, MAX_TEXT),
    traceparent: eventTraceparent(e),
    data: e.data === undefined ? undefined : JSON.stringify(e.data),
  });
}

export function decodeEvent(fields: FieldList): LifecycleEvent {
  const r = new FieldReader(decodeFieldMap(fields));
  const type = r.string('type');
  if (!(EVENT_TYPES as readonly string[]).includes(type))
    throw new MalformedMessageError(`unknown event type ${JSON.stringify(type.slice(0, 64))}`, 'type');
  const durationRaw = r.optional('duration_ms');
  const durationMs = durationRaw === undefined ? undefined : Number(durationRaw);
  if (durationMs !== undefined && (!Number.isFinite(durationMs) || durationMs < 0))
    throw new MalformedMessageError('field duration_ms must be a non-negative number', 'duration_ms');
  const traceparent = r.traceparent();
  const processorId = r.optional('processor_id');
  const capability = r.optional('capability');
  const frameId = r.id('frame_id');
  return {
    eventId: r.id('event_id'),
    type: type as EventType,
    frameId,
    cameraId: r.string('camera_id', ID_RE),
    at: r.int('at', 0, 281_474_976_710_655),
    source: r.string('source', ID_RE),
    processorId: processorId === undefined ? undefined : r.string('processor_id', ID_RE),
    capability: capability === undefined ? undefined : r.string('capability', ID_RE),
    attempt: r.optionalInt('attempt', 1, 1_000_000),
    durationMs,
    error: r.optional('error')?.slice(0, MAX_TEXT),
    reason: r.optional('reason')?.slice(0, MAX_TEXT),
    traceId: traceparent?.slice(3, 35),
    spanId: traceparent?.slice(36, 52),
    sampled: traceparent === undefined ? undefined : (parseInt(traceparent.slice(53, 55), 16) & 1) === 1,
    data: r.json('data'),
  };
}

export function encodeCameraEvent(e: CameraEvent): FieldList {
  return toFieldList({
    v: MESSAGE_VERSION,
    event_id: e.eventId,
    type: e.type,
    camera_id: e.cameraId,
    at: e.at,
    source: e.source,
    reason: e.reason?.slice(0, MAX_TEXT),
    data: e.data === undefined ? undefined : JSON.stringify(e.data),
  });
}

function decodeCameraEvent(fields: FieldList): CameraEvent {
  const r = new FieldReader(decodeFieldMap(fields));
  const type = r.string('type');
  if (!isCameraEventType(type)) throw new MalformedMessageError(`unknown camera event type ${JSON.stringify(type.slice(0, 64))}`, 'type');
  return {
    eventId: r.id('event_id'),
    type,
    cameraId: r.string('camera_id', ID_RE),
    at: r.int('at', 0, 281_474_976_710_655),
    source: r.string('source', ID_RE),
    reason: r.optional('reason')?.slice(0, MAX_TEXT),
    data: r.json('data'),
  };
}

export type BusEvent = LifecycleEvent | CameraEvent;

export function isCameraEvent(e: BusEvent): e is CameraEvent {
  return isCameraEventType(e.type);
}

/** Decodes any entry of the events stream: frame lifecycle or camera lifecycle. */
export function decodeBusEvent(fields: FieldList): BusEvent {
  const map = toFieldMap(fields);
  const type = map.get('type') ?? '';
  return isCameraEventType(type) ? decodeCameraEvent(fields) : decodeEvent(fields);
}
