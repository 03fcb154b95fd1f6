import type { CameraEvent } from '../domain/camera-events.js';
import type { LifecycleEvent } from '../domain/events.js';
import { fromEpochMs, type Column } from './columns.js';

/** The columns of frame_events, in table order; the context is the frame's capture time (ms). */
export const FRAME_EVENT_COLUMNS: readonly Column<LifecycleEvent, number>[] = [
  { name: 'event_id', type: 'text', value: (e) => e.eventId },
  { name: 'frame_id', type: 'text', value: (e) => e.frameId },
  { name: 'camera_id', type: 'text', value: (e) => e.cameraId },
  { name: 'type', type: 'text', value: (e) => e.type },
  { name: 'at', type: 'float8', sql: fromEpochMs, value: (e) => e.at },
  { name: 'captured_at', type: 'float8', sql: fromEpochMs, value: (_e, capturedMs) => capturedMs },
  { name: 'source', type: 'text', value: (e) => e.source },
  { name: 'processor_id', type: 'text', value: (e) => e.processorId ?? null },
  { name: 'capability', type: 'text', value: (e) => e.capability ?? null },
  { name: 'attempt', type: 'int', value: (e) => e.attempt ?? null },
  { name: 'duration_ms', type: 'float8', value: (e) => e.durationMs ?? null },
  { name: 'error', type: 'text', value: (e) => e.error ?? null },
  { name: 'reason', type: 'text', value: (e) => e.reason ?? null },
  { name: 'trace_id', type: 'text', value: (e) => e.traceId ?? null },
  { name: 'span_id', type: 'text', value: (e) => e.spanId ?? null },
  // Absent flag with a trace id: sampled (the codec's convention); no trace id: unknown.
  { name: 'sampled', type: 'bool', value: (e) => (e.traceId ? e.sampled !== false : null) },
  { name: 'data', type: 'text', sql: (v) => `${v}::jsonb`, value: (e) => (e.data === undefined ? null : dataJson(e.data)) },
];

/** The columns of camera_events. */
export const CAMERA_EVENT_COLUMNS: readonly Column<CameraEvent>[] = [
  { name: 'event_id', type: 'text', value: (e) => e.eventId },
  { name: 'camera_id', type: 'text', value: (e) => e.cameraId },
  { name: 'type', type: 'text', value: (e) => e.type },
  { name: 'at', type: 'float8', sql: fromEpochMs, value: (e) => e.at },
  { name: 'source', type: 'text', value: (e) => e.source },
  { name: 'reason', type: 'text', value: (e) => e.reason ?? null },
  { name: 'data', type: 'text', sql: (v) => `${v}::jsonb`, value: (e) => (e.data === undefined ? null : dataJson(e.data)) },
];

// PostgreSQL text and jsonb cannot hold U+0000, nor jsonb an unpaired surrogate ("\ud800"),
// in a value or a key; one in a processor's message must not make the batch fail on every retry.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
function dataJson(data: Record<string, unknown>): string {
  const json = JSON.stringify(data);
  if (!json.includes('\\u0000') && !/\\ud[89a-f]/.test(json)) return json;
  const clean = (s: string) => s.replaceAll('\0', '').replace(LONE_SURROGATE, '\ufffd');
  return JSON.stringify(data, (_k, v: unknown) =>
    typeof v === 'string'
      ? clean(v)
      : v !== null && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [clean(k), x]))
        : v,
  );
}
