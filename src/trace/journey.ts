import type pg from 'pg';
import type { CameraEventType } from '../domain/camera-events.js';
import type { EventType } from '../domain/events.js';
import { frameIdTime, parseFrameId, type FrameId } from '../domain/frame-id.js';
import {
  FRAME_DROP_EVENT,
  STAGE_EVENT_STATE,
  STAGE_RANK,
  TERMINAL_EVENT_TYPES,
  aggregateFrameState,
  projectFrame,
  transitionFrame,
  transitionStage,
  type FrameState,
  type StageEventType,
  type StageState,
} from '../domain/lifecycle.js';

/**
 * A frame's journey; also the `detektr trace find --json` output. Times are ISO-8601 UTC
 * strings, durations and offsets milliseconds; null where not known (yet).
 *
 * {
 *   "frameId": "01J...", "cameraId": "cam01",
 *   "capturedAt": "2024-05-01T10:00:00.000Z",        // time encoded in the frame id
 *   "state": "completed",                            // captured|queued|processing|completed|failed|dropped
 *   "droppedReason": "backpressure",                 // only when dropped
 *   "traceId": "4bf9...", "width": 1920, "height": 1080, "format": "jpeg", "sizeBytes": 231000,
 *   "events": [{ "eventId", "type", "at", "offsetMs",  // offsetMs: since capturedAt
 *                "source", "processorId"?, "capability"?, "attempt"?, "durationMs"?,
 *                "error"?, "reason"?, "spanId"? }],  // ordered by at, then eventId
 *   "stages": [{ "processorId", "capability", "state", "attempts",
 *                "queuedAt", "startedAt", "finishedAt", "durationMs",
 *                "waitMs",                             // queued -> first start
 *                "error"? }],
 *   "totalMs": 142,                                  // capture -> last terminal event; null if none
 *   "anomalies": ["processing.completed 01J... (motion) at +40ms: invalid stage transition completed -> completed"],
 *   "sampled": true,                                 // the trace's sampled flag; false: no spans were exported
 *                                                    // (the journey is complete anyway); null: no trace context
 *   "cameraEvents": [{ "eventId", "type",            // camera.online|camera.offline|camera.frozen of the frame's
 *                      "at", "offsetMs",              // camera within +-cameraWindowMs of the capture
 *                      "source", "reason"? }],
 *   "cameraWindowMs": 60000
 * }
 *
 * `detektr trace find --json` adds "traceUrl"/"traceSearchUrl" (links to the trace UI, when
 * configured) and, with --spans, "spans" (see src/trace/trace-backend.ts) or "spansError".
 */
export interface Journey {
  frameId: FrameId;
  cameraId: string;
  capturedAt: string;
  state: FrameState;
  droppedReason?: string;
  traceId: string | null;
  width: number | null;
  height: number | null;
  format: string | null;
  sizeBytes: number | null;
  events: JourneyEvent[];
  stages: JourneyStage[];
  totalMs: number | null;
  anomalies: string[];
  sampled: boolean | null;
  cameraEvents: JourneyCameraEvent[];
  cameraWindowMs: number;
}

export interface JourneyCameraEvent {
  eventId: string;
  type: CameraEventType;
  at: string;
  /** Since the frame's capture: negative before it. */
  offsetMs: number;
  source: string;
  reason?: string;
}

export interface JourneyEvent {
  eventId: string;
  type: EventType;
  at: string;
  offsetMs: number;
  source: string;
  processorId?: string;
  capability?: string;
  attempt?: number;
  durationMs?: number;
  error?: string;
  reason?: string;
  spanId?: string;
}

export interface JourneyStage {
  processorId: string;
  capability: string | null;
  state: StageState;
  attempts: number;
  queuedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  waitMs: number | null;
  error?: string;
}

interface Row {
  frame: {
    camera_id: string;
    state: FrameState;
    dropped_reason: string | null;
    trace_id: string | null;
    width: number | null;
    height: number | null;
    format: string | null;
    size_bytes: number | null;
    sampled: boolean | null;
  } | null;
  events: Array<{
    event_id: string;
    type: EventType;
    camera_id: string;
    at_ms: number;
    source: string;
    processor_id: string | null;
    capability: string | null;
    attempt: number | null;
    duration_ms: number | null;
    error: string | null;
    reason: string | null;
    trace_id: string | null;
    span_id: string | null;
    sampled: boolean | null;
  }>;
  camera: Array<{ event_id: string; type: CameraEventType; at_ms: number; source: string; reason: string | null }>;
  stages: Array<{
    processor_id: string;
    capability: string | null;
    state: StageState;
    attempts: number;
    queued_ms: number | null;
    started_ms: number | null;
    finished_ms: number | null;
    duration_ms: number | null;
    error: string | null;
  }>;
}

// One round trip. Every WHERE on the frame tables names captured_at (the time in the frame
// id), so a partitioned table is read in exactly one partition, by its primary key.
const JOURNEY_SQL = `
WITH m AS (
  SELECT camera_id, state, dropped_reason, trace_id, width, height, format, size_bytes, sampled
  FROM frame_metadata WHERE captured_at = $2 AND frame_id = $1
),
e AS (
  SELECT event_id, type, camera_id, extract(epoch FROM at) * 1000 AS at_ms, source, processor_id, capability,
         attempt, duration_ms, error, reason, trace_id, span_id, sampled
  FROM frame_events WHERE captured_at = $2 AND frame_id = $1
)
SELECT
  (SELECT row_to_json(m) FROM m) AS frame,
  (SELECT coalesce(json_agg(e ORDER BY e.at_ms, e.event_id), '[]') FROM e) AS events,
  (SELECT coalesce(json_agg(s ORDER BY s.queued_ms NULLS LAST, s.processor_id), '[]') FROM (
     SELECT processor_id, capability, state, attempts, extract(epoch FROM queued_at) * 1000 AS queued_ms,
            extract(epoch FROM started_at) * 1000 AS started_ms, extract(epoch FROM finished_at) * 1000 AS finished_ms,
            duration_ms, error
     FROM processing_stages WHERE captured_at = $2 AND frame_id = $1) s) AS stages,
  (SELECT coalesce(json_agg(c ORDER BY c.at_ms, c.event_id), '[]') FROM (
     SELECT event_id, type, extract(epoch FROM at) * 1000 AS at_ms, source, reason
     FROM camera_events
     WHERE camera_id = coalesce((SELECT camera_id FROM m), (SELECT camera_id FROM e LIMIT 1))
       AND at BETWEEN $2::timestamptz - $3 * interval '1 millisecond' AND $2::timestamptz + $3 * interval '1 millisecond'
     ORDER BY at LIMIT 200) c) AS camera`;

export interface FindJourneyOptions {
  /** Camera events this far before and after the capture are included; default 60 s. */
  cameraWindowMs?: number;
}

/** The journey of a frame, or null when the store knows nothing of it. Throws InvalidInputError for a non-ULID. */
export async function findJourney(db: pg.Pool | pg.PoolClient, frameId: string, opts: FindJourneyOptions = {}): Promise<Journey | null> {
  const id = parseFrameId(frameId);
  const capturedMs = frameIdTime(id);
  const cameraWindowMs = opts.cameraWindowMs ?? 60_000;
  const { rows } = await db.query<Row>(JOURNEY_SQL, [id, new Date(capturedMs).toISOString(), cameraWindowMs]);
  const { frame, events: evRows, stages: stRows, camera } = rows[0];
  if (!frame && evRows.length === 0) return null;

  const events = evRows.map((r) =>
    compact<JourneyEvent>({
      eventId: r.event_id,
      type: r.type,
      at: iso(r.at_ms),
      offsetMs: round(r.at_ms - capturedMs),
      source: r.source,
      processorId: r.processor_id,
      capability: r.capability,
      attempt: r.attempt,
      durationMs: r.duration_ms,
      error: r.error,
      reason: r.reason,
      spanId: r.span_id,
    }),
  );
  const stages = stRows.map((s) =>
    compact<JourneyStage>(
      {
        processorId: s.processor_id,
        capability: s.capability,
        state: s.state,
        attempts: s.attempts,
        queuedAt: isoOrNull(s.queued_ms),
        startedAt: isoOrNull(s.started_ms),
        finishedAt: isoOrNull(s.finished_ms),
        durationMs: s.duration_ms === null ? null : round(s.duration_ms),
        waitMs: s.queued_ms !== null && s.started_ms !== null ? round(s.started_ms - s.queued_ms) : null,
        error: s.error,
      },
      ['error'],
    ),
  );
  const { state, anomalies } = replay(events);
  const terminal = events.filter((e) => TERMINAL_EVENTS.has(e.type));
  const captured = evRows.find((e) => e.type === 'frame.captured');

  return compact<Journey>(
    {
      frameId: id,
      cameraId: frame?.camera_id ?? captured?.camera_id ?? evRows[0].camera_id,
      capturedAt: iso(capturedMs),
      state: frame?.state ?? state,
      droppedReason: (frame?.state ?? state) === 'dropped' ? frame?.dropped_reason : null,
      traceId: frame?.trace_id ?? captured?.trace_id ?? null,
      width: frame?.width ?? null,
      height: frame?.height ?? null,
      format: frame?.format ?? null,
      sizeBytes: frame?.size_bytes === null || frame?.size_bytes === undefined ? null : Number(frame.size_bytes),
      events,
      stages,
      totalMs: terminal.length ? Math.max(...terminal.map((e) => e.offsetMs)) : null,
      anomalies,
      sampled: frame?.sampled ?? captured?.sampled ?? evRows.find((e) => e.sampled !== null)?.sampled ?? null,
      cameraEvents: camera.map((c) =>
        compact<JourneyCameraEvent>({
          eventId: c.event_id,
          type: c.type,
          at: iso(c.at_ms),
          offsetMs: round(c.at_ms - capturedMs),
          source: c.source,
          reason: c.reason,
        }),
      ),
      cameraWindowMs,
    },
    ['droppedReason'],
  );
}

const TERMINAL_EVENTS = new Set<EventType>(TERMINAL_EVENT_TYPES);

/**
 * Replays the events (in journey order) through the domain state machines and says, once
 * per offending event, what they reject. After an invalid stage move the stage goes on from
 * the further of the two states. The state is the domain's projection of the events, the
 * one the store keeps, whatever the anomalies.
 */
export function replay(events: readonly JourneyEvent[]): { state: FrameState; anomalies: string[] } {
  const anomalies: string[] = [];
  const stages = new Map<string, StageState>();
  let frame: FrameState | undefined;
  let droppedBeforeRouting = false;
  let captured = false;

  for (const e of events) {
    const where = `${e.type} ${e.eventId}${e.processorId ? ` (${e.processorId})` : ''} at +${e.offsetMs}ms`;
    const problem = (msg: string) => anomalies.push(`${where}: ${msg}`);
    if (e.type === 'frame.captured') {
      if (captured) problem('frame captured twice');
      captured = true;
      frame ??= 'captured';
      continue;
    }
    if (!captured) problem('before frame.captured');

    const to = STAGE_EVENT_STATE[e.type as StageEventType];
    let stageOk = true;
    if (e.type === FRAME_DROP_EVENT && !e.processorId) {
      droppedBeforeRouting = true;
    } else if (!e.processorId) {
      problem('no processor id');
      continue;
    } else {
      const from = stages.get(e.processorId);
      try {
        stages.set(e.processorId, transitionStage(from, to));
      } catch (err) {
        stageOk = false;
        problem((err as Error).message);
        if (from === undefined || STAGE_RANK[to] > STAGE_RANK[from]) stages.set(e.processorId, to);
      }
    }

    const next = aggregateFrameState([...stages.values()], droppedBeforeRouting);
    if (frame !== undefined && next !== frame && stageOk) {
      try {
        transitionFrame(frame, next);
      } catch (err) {
        problem((err as Error).message);
      }
    }
    frame = next;
  }
  if (!captured && events.length > 0) anomalies.push('no frame.captured event');
  return { state: projectFrame(events.map((e) => ({ ...e, at: e.offsetMs }))).state, anomalies };
}

function iso(ms: number): string {
  return new Date(Math.round(ms)).toISOString();
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : iso(ms);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

type Nullable<T> = { [K in keyof T]: T[K] | null };

/** Drops null/undefined fields (all, or only `keys`) so the JSON shows only what is known. */
function compact<T extends object>(o: Nullable<T>, keys?: (keyof T & string)[]): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if ((v === null || v === undefined) && (keys === undefined || (keys as string[]).includes(k))) continue;
    out[k] = v;
  }
  return out as T;
}
