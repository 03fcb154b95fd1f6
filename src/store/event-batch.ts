import type { CameraEvent } from '../domain/camera-events.js';
import type { LifecycleEvent } from '../domain/events.js';
import { frameIdTime } from '../domain/frame-id.js';
import { arrayLiteral, newColumns, setRow } from './columns.js';
import { CAMERA_EVENT_COLUMNS, FRAME_EVENT_COLUMNS } from './event-columns.js';
import { validateCameraEvent, validateEventFields, validateFrameId } from './event-validation.js';

const HOUR = 3_600_000;
const LOCK_BUCKETS = 64;

export interface Batch {
  /** Array literals, one per FRAME_EVENT_COLUMNS column. */
  columns: string[];
  /** Sorted distinct lock buckets of the batch's frames. */
  buckets: number[];
  /** Distinct capture hours (ms since epoch, floored to the hour). */
  hours: number[];
}

/** The batch as column arrays (validated, duplicates dropped). */
export function toBatch(events: readonly LifecycleEvent[]): Batch {
  const cols = newColumns(FRAME_EVENT_COLUMNS, events.length);
  const capturedMs = new Map<string, number>();
  // A redelivered entry can sit twice in one batch: keep the first (event id -> frame id).
  const seen = new Map<string, string>();
  let i = 0;
  for (const e of events) {
    let cap = capturedMs.get(e.frameId);
    if (cap === undefined) {
      validateFrameId(e);
      cap = frameIdTime(e.frameId);
      capturedMs.set(e.frameId, cap);
    }
    validateEventFields(e);
    // Same event id: the same event, unless (never, with ULIDs) it names another frame.
    const other = seen.get(e.eventId);
    if (other === e.frameId) continue;
    if (other === undefined) seen.set(e.eventId, e.frameId);
    setRow(FRAME_EVENT_COLUMNS, cols, i++, e, cap);
  }
  for (const c of cols) c.length = i;
  const hours = new Set<number>();
  const buckets = new Set<number>();
  for (const [frameId, cap] of capturedMs) {
    hours.add(cap - (cap % HOUR));
    buckets.add(frameBucket(frameId));
  }
  return { columns: cols.map(arrayLiteral), buckets: [...buckets].sort((a, b) => a - b), hours: [...hours] };
}

/** Camera events as array literals, one per CAMERA_EVENT_COLUMNS column (validated, duplicates dropped). */
export function toCameraColumns(events: readonly CameraEvent[]): string[] {
  const cols = newColumns(CAMERA_EVENT_COLUMNS, events.length);
  const seen = new Set<string>();
  let i = 0;
  for (const e of events) {
    validateCameraEvent(e);
    if (seen.has(e.eventId)) continue;
    seen.add(e.eventId);
    setRow(CAMERA_EVENT_COLUMNS, cols, i++, e, undefined);
  }
  for (const c of cols) c.length = i;
  return cols.map(arrayLiteral);
}

/** The frame's lock bucket: FNV-1a over the id. Buckets are locked in ascending order. */
export function frameBucket(frameId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < frameId.length; i++) h = Math.imul(h ^ frameId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % LOCK_BUCKETS;
}
