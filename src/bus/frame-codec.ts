import type { FrameMessage } from '../domain/frame.js';
import { frameIdTime } from '../domain/frame-id.js';
import { MalformedMessageError } from '../domain/errors.js';
import { MAX_TIME_MS } from '../domain/frame-id.js';
import { decodeFieldMap, FieldReader, ID_RE, MESSAGE_VERSION, toFieldList, type FieldList } from './fields.js';

const CAPS_RE = /^[A-Za-z0-9_.-]{1,64}(,[A-Za-z0-9_.-]{1,64}){0,31}$/;

export function encodeFrame(m: FrameMessage): FieldList {
  return toFieldList({
    v: MESSAGE_VERSION,
    frame_id: m.frameId,
    camera_id: m.cameraId,
    captured_at: m.capturedAt,
    width: m.width,
    height: m.height,
    format: m.format,
    size_bytes: m.sizeBytes,
    priority: m.priority,
    payload_key: m.payloadKey,
    capabilities: m.capabilities.join(','),
    traceparent: m.traceparent,
    tracestate: m.tracestate,
    processor_id: m.processorId,
    capability: m.capability,
  });
}

export function decodeFrame(fields: FieldList): FrameMessage {
  const r = new FieldReader(decodeFieldMap(fields));
  const frameId = r.id('frame_id');
  const capturedAt = r.int('captured_at', 0, MAX_TIME_MS);
  if (frameIdTime(frameId) !== capturedAt)
    throw new MalformedMessageError('field captured_at does not match the time in frame_id', 'captured_at');
  const caps = r.optional('capabilities');
  if (caps !== undefined && !CAPS_RE.test(caps)) throw new MalformedMessageError('field capabilities is malformed', 'capabilities');
  return {
    frameId,
    cameraId: r.string('camera_id', ID_RE),
    capturedAt,
    width: r.int('width', 1, 16384),
    height: r.int('height', 1, 16384),
    format: r.string('format', /^[a-z0-9]{1,16}$/),
    sizeBytes: r.int('size_bytes', 0, 256 * 1024 * 1024),
    priority: r.int('priority', 0, 9),
    payloadKey: r.string('payload_key', /^[^\s]{1,200}$/),
    // A set: a capability named twice would be routed (and processed) twice.
    capabilities: caps ? [...new Set(caps.split(','))] : [],
    traceparent: r.traceparent(),
    tracestate: r.optional('tracestate'),
    processorId: r.optional('processor_id') === undefined ? undefined : r.string('processor_id', ID_RE),
    capability: r.optional('capability') === undefined ? undefined : r.string('capability', ID_RE),
  };
}

/** A ready stream's entry (frames:ready:<id>): a frame that also names its processor and capability. */
export function decodeReadyFrame(fields: FieldList): FrameMessage {
  const frame = decodeFrame(fields);
  if (frame.processorId === undefined) throw new MalformedMessageError('missing field processor_id', 'processor_id');
  if (frame.capability === undefined) throw new MalformedMessageError('missing field capability', 'capability');
  return frame;
}
