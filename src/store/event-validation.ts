import { isCameraEventType, type CameraEvent } from '../domain/camera-events.js';
import { MalformedMessageError } from '../domain/errors.js';
import { EVENT_TYPES, type LifecycleEvent } from '../domain/events.js';
import { isFrameId } from '../domain/frame-id.js';

const TYPES = new Set<string>(EVENT_TYPES);
const MAX_MS = 281_474_976_710_655; // the largest ULID time

/**
 * Throws MalformedMessageError when the event is one the schema would reject. The store
 * runs it when decoding an entry, so such an entry is dead-lettered instead of failing its
 * batch on every retry.
 */
export function validateEvent(e: LifecycleEvent): void {
  validateFrameId(e);
  validateEventFields(e);
}

export function validateFrameId(e: LifecycleEvent): void {
  if (typeof e.frameId !== 'string' || !isFrameId(e.frameId)) throw malformed(e, 'frameId');
}

/** Everything but the frame id (the batch builder checks that once per frame). */
export function validateEventFields(e: LifecycleEvent): void {
  if (!TYPES.has(e.type)) throw malformed(e, 'type');
  if (!Number.isFinite(e.at) || e.at < 0 || e.at > MAX_MS) throw malformed(e, 'at');
  if (typeof e.eventId !== 'string' || e.eventId === '') throw malformed(e, 'eventId');
  if (typeof e.cameraId !== 'string' || e.cameraId === '') throw malformed(e, 'cameraId');
  if (typeof e.source !== 'string' || e.source === '') throw malformed(e, 'source');
  if (e.attempt !== undefined && !(Number.isInteger(e.attempt) && e.attempt >= 0 && e.attempt < 2 ** 31)) {
    throw malformed(e, 'attempt');
  }
  if (e.durationMs !== undefined && !Number.isFinite(e.durationMs)) throw malformed(e, 'durationMs');
}

export function validateCameraEvent(e: CameraEvent): void {
  const bad = (field: string) => malformed(e as unknown as LifecycleEvent, field);
  if (typeof e.eventId !== 'string' || e.eventId === '') throw bad('eventId');
  if (!isCameraEventType(e.type)) throw bad('type');
  if (typeof e.cameraId !== 'string' || e.cameraId === '') throw bad('cameraId');
  if (!Number.isFinite(e.at) || e.at < 0 || e.at > MAX_MS) throw bad('at');
  if (typeof e.source !== 'string' || e.source === '') throw bad('source');
}

function malformed(e: LifecycleEvent, field: string): MalformedMessageError {
  const value = (e as unknown as Record<string, unknown>)[field];
  return new MalformedMessageError(`event ${String(e.eventId)} has an invalid ${field}: ${JSON.stringify(value)}`, field);
}
