import type pg from 'pg';
import { MalformedMessageError } from '../domain/errors.js';
import { EVENT_TYPES, type LifecycleEvent } from '../domain/events.js';
import { frameIdTime, isFrameId } from '../domain/frame-id.js';

/**
 * Store a batch of lifecycle events and bring the projections of the frames they touch up
 * to date. Three statements whatever the batch size:
 *
 * 1. insert the events (unnest of column arrays) ON CONFLICT DO NOTHING, returning the
 *    frames that got a new event: a replayed batch inserts nothing and changes nothing else;
 * 2. lock those frames (advisory locks on 64 hash buckets, in order, so no deadlock);
 * 3. recompute processing_stages and frame_metadata of those frames from ALL their rows in
 *    frame_events, so the result does not depend on the order or batching of arrival.
 *
 * Step 2 is what makes concurrent writers (several `detektr store`) safe: the last one to
 * take a frame's lock recomputes after the other committed, and READ COMMITTED gives
 * statement 3 a snapshot that sees it. Hence the contract:
 * - with a PoolClient, call it inside the caller's transaction (BEGIN .. COMMIT, READ
 *   COMMITTED), one batch per transaction;
 * - with a Pool, it runs its own transaction.
 *
 * Throws MalformedMessageError (nothing written) for an event that the schema would reject.
 */
export async function writeEvents(
  db: pg.PoolClient | pg.Pool,
  events: readonly LifecycleEvent[],
): Promise<{ inserted: number }> {
  if (events.length === 0) return { inserted: 0 };
  const params = toColumns(events);
  if (!isPool(db)) return writeInTransaction(db, params);
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await writeInTransaction(client, params);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function writeInTransaction(client: pg.PoolClient, params: unknown[]): Promise<{ inserted: number }> {
  const ins = await client.query<{ frame_id: string; n: string }>(INSERT_SQL, params);
  if (ins.rows.length === 0) return { inserted: 0 };
  const frames = ins.rows.map((r) => r.frame_id);
  await client.query(LOCK_SQL, [LOCK_NAMESPACE, lockBuckets(frames)]);
  await client.query(PROJECT_SQL, [frames, frames.map(frameIdTime)]);
  return { inserted: ins.rows.reduce((sum, r) => sum + Number(r.n), 0) };
}

function isPool(db: pg.PoolClient | pg.Pool): db is pg.Pool {
  return typeof (db as pg.PoolClient).release !== 'function';
}

const TYPES = new Set<string>(EVENT_TYPES);

function toColumns(events: readonly LifecycleEvent[]): unknown[] {
  const n = events.length;
  const cols = Array.from({ length: 16 }, () => new Array<unknown>(n));
  const capturedMs = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const e = events[i];
    let cap = capturedMs.get(e.frameId);
    if (cap === undefined) {
      if (typeof e.frameId !== 'string' || !isFrameId(e.frameId)) throw malformed(e, 'frameId');
      cap = frameIdTime(e.frameId);
      capturedMs.set(e.frameId, cap);
    }
    if (!TYPES.has(e.type)) throw malformed(e, 'type');
    if (!Number.isFinite(e.at)) throw malformed(e, 'at');
    if (!e.eventId || !e.cameraId || !e.source) throw malformed(e, !e.eventId ? 'eventId' : !e.cameraId ? 'cameraId' : 'source');
    if (e.attempt !== undefined && !(Number.isInteger(e.attempt) && e.attempt >= 0 && e.attempt < 2 ** 31)) {
      throw malformed(e, 'attempt');
    }
    if (e.durationMs !== undefined && !Number.isFinite(e.durationMs)) throw malformed(e, 'durationMs');
    cols[0][i] = e.eventId;
    cols[1][i] = e.frameId;
    cols[2][i] = e.cameraId;
    cols[3][i] = e.type;
    cols[4][i] = e.at;
    cols[5][i] = cap;
    cols[6][i] = e.source;
    cols[7][i] = e.processorId ?? null;
    cols[8][i] = e.capability ?? null;
    cols[9][i] = e.attempt ?? null;
    cols[10][i] = e.durationMs ?? null;
    cols[11][i] = e.error ?? null;
    cols[12][i] = e.reason ?? null;
    cols[13][i] = e.traceId ?? null;
    cols[14][i] = e.spanId ?? null;
    cols[15][i] = e.data === undefined ? null : JSON.stringify(e.data);
  }
  return cols;
}

function malformed(e: LifecycleEvent, field: string): MalformedMessageError {
  const value = (e as unknown as Record<string, unknown>)[field];
  return new MalformedMessageError(`event ${String(e.eventId)} has an invalid ${field}: ${JSON.stringify(value)}`, field);
}

// pg_advisory_xact_lock(int, int): the first key keeps us apart from other users of advisory locks.
const LOCK_NAMESPACE = 0x64746b72; // "dtkr"
const LOCK_BUCKETS = 64;

/** Sorted distinct buckets: every writer locks in the same order. FNV-1a over the id. */
function lockBuckets(frames: string[]): number[] {
  const set = new Set<number>();
  for (const f of frames) {
    let h = 0x811c9dc5;
    for (let i = 0; i < f.length; i++) h = Math.imul(h ^ f.charCodeAt(i), 0x01000193);
    set.add((h >>> 0) % LOCK_BUCKETS);
  }
  return [...set].sort((a, b) => a - b);
}

const LOCK_SQL = 'SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k';

const MS = `* interval '1 millisecond'`;

const INSERT_SQL = `
WITH ins AS (
  INSERT INTO frame_events (event_id, frame_id, camera_id, type, at, captured_at, source, processor_id,
                            capability, attempt, duration_ms, error, reason, trace_id, span_id, data)
  SELECT e.event_id, e.frame_id, e.camera_id, e.type, 'epoch'::timestamptz + e.at_ms ${MS},
         'epoch'::timestamptz + e.cap_ms ${MS}, e.source, e.processor_id, e.capability, e.attempt,
         e.duration_ms, e.error, e.reason, e.trace_id, e.span_id, e.data::jsonb
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::text[],
              $8::text[], $9::text[], $10::int[], $11::float8[], $12::text[], $13::text[], $14::text[],
              $15::text[], $16::text[])
       AS e(event_id, frame_id, camera_id, type, at_ms, cap_ms, source, processor_id, capability, attempt,
            duration_ms, error, reason, trace_id, span_id, data)
  ON CONFLICT (captured_at, event_id) DO NOTHING
  RETURNING frame_id
)
SELECT frame_id, count(*) AS n FROM ins GROUP BY frame_id`;

/** A number from the frame.captured data, or NULL when absent, not a number or out of range. */
function num(key: string, type: string, max: number): string {
  const v = `(cap.data -> '${key}')`;
  return `CASE WHEN jsonb_typeof(${v}) = 'number' AND ${v}::numeric BETWEEN 0 AND ${max} THEN round(${v}::numeric)::${type} END`;
}

/*
 * Stage state: the "furthest" event of the stage decides (terminal > started > queued; among
 * equals the latest attempt, then the latest time). Frame state: aggregateFrameState() of
 * src/domain/lifecycle.ts over the stage states, with a frame.dropped without processor
 * meaning "dropped before routing".
 */
const PROJECT_SQL = `
WITH touched AS (
  SELECT t.frame_id, 'epoch'::timestamptz + t.cap_ms ${MS} AS captured_at
  FROM unnest($1::text[], $2::float8[]) AS t(frame_id, cap_ms)
),
ev AS (
  SELECT e.* FROM touched t
  JOIN frame_events e ON e.captured_at = t.captured_at AND e.frame_id = t.frame_id
),
stage_ev AS (
  SELECT ev.*, CASE ev.type WHEN 'frame.queued' THEN 1 WHEN 'processing.started' THEN 2 ELSE 3 END AS rank
  FROM ev WHERE ev.processor_id IS NOT NULL AND ev.type <> 'frame.captured'
),
decisive AS (
  SELECT DISTINCT ON (frame_id, processor_id) *
  FROM stage_ev
  ORDER BY frame_id, processor_id, rank DESC, attempt DESC NULLS LAST, at DESC, event_id DESC
),
agg AS (
  SELECT frame_id, processor_id, max(capability) AS capability,
         greatest(coalesce(max(attempt) FILTER (WHERE rank > 1), 0),
                  count(*) FILTER (WHERE type = 'processing.started'))::int AS attempts,
         min(at) FILTER (WHERE type = 'frame.queued') AS queued_at,
         min(at) FILTER (WHERE type = 'processing.started') AS started_at
  FROM stage_ev GROUP BY frame_id, processor_id
),
st AS (
  SELECT d.frame_id, d.captured_at, d.processor_id, a.capability,
         CASE d.type WHEN 'frame.queued' THEN 'queued' WHEN 'processing.started' THEN 'processing'
                     WHEN 'processing.completed' THEN 'completed' WHEN 'processing.failed' THEN 'failed'
                     ELSE 'dropped' END AS state,
         a.attempts, a.queued_at, a.started_at,
         CASE WHEN d.rank = 3 THEN d.at END AS finished_at,
         CASE WHEN d.type IN ('processing.completed', 'processing.failed')
              THEN coalesce(d.duration_ms, extract(epoch FROM d.at - a.started_at) * 1000) END AS duration_ms,
         CASE d.type WHEN 'processing.failed' THEN coalesce(d.error, d.reason)
                     WHEN 'frame.dropped' THEN coalesce(d.reason, d.error) END AS error,
         d.trace_id, d.span_id
  FROM decisive d JOIN agg a USING (frame_id, processor_id)
),
upsert_stages AS (
  INSERT INTO processing_stages (frame_id, captured_at, processor_id, capability, state, attempts, queued_at,
                                 started_at, finished_at, duration_ms, error, trace_id, span_id)
  SELECT frame_id, captured_at, processor_id, capability, state, attempts, queued_at,
         started_at, finished_at, duration_ms, error, trace_id, span_id
  FROM st
  ON CONFLICT (captured_at, frame_id, processor_id) DO UPDATE SET
    capability = EXCLUDED.capability, state = EXCLUDED.state, attempts = EXCLUDED.attempts,
    queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error, trace_id = EXCLUDED.trace_id,
    span_id = EXCLUDED.span_id
),
stage_counts AS (
  SELECT frame_id, count(*) AS n,
         count(*) FILTER (WHERE state = 'dropped') AS dropped,
         count(*) FILTER (WHERE state = 'queued') AS queued,
         count(*) FILTER (WHERE state = 'processing') AS processing,
         count(*) FILTER (WHERE state = 'failed') AS failed
  FROM st GROUP BY frame_id
),
cap AS (
  SELECT DISTINCT ON (frame_id) frame_id, camera_id, data, trace_id
  FROM ev WHERE type = 'frame.captured'
  ORDER BY frame_id, at, event_id
),
fr AS (
  SELECT frame_id, captured_at, min(camera_id) AS camera_id, min(at) AS first_at, max(at) AS last_at,
         bool_or(type = 'frame.dropped' AND processor_id IS NULL) AS dropped_before_routing,
         (array_agg(coalesce(reason, error) ORDER BY processor_id IS NOT NULL, at, event_id)
            FILTER (WHERE type = 'frame.dropped'))[1] AS drop_reason,
         min(trace_id) AS any_trace_id
  FROM ev GROUP BY frame_id, captured_at
)
INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
                            dropped_reason, trace_id, first_event_at, last_event_at, updated_at)
SELECT fr.frame_id, fr.captured_at, coalesce(cap.camera_id, fr.camera_id),
       ${num('width', 'int', 2147483647)}, ${num('height', 'int', 2147483647)},
       CASE WHEN jsonb_typeof(cap.data -> 'format') = 'string' THEN cap.data ->> 'format' END,
       ${num('sizeBytes', 'bigint', 9e18)}, ${num('priority', 'smallint', 32767)},
       s.state, CASE WHEN s.state = 'dropped' THEN fr.drop_reason END,
       -- Frames whose frame.captured has not arrived yet still link to their trace.
       coalesce(cap.trace_id, fr.any_trace_id), fr.first_at, fr.last_at, now()
FROM fr
LEFT JOIN cap USING (frame_id)
LEFT JOIN stage_counts c USING (frame_id)
CROSS JOIN LATERAL (SELECT CASE
  WHEN fr.dropped_before_routing THEN 'dropped'
  WHEN c.n IS NULL THEN 'captured'
  WHEN c.dropped = c.n THEN 'dropped'
  WHEN c.queued = c.n - c.dropped THEN 'queued'
  WHEN c.queued + c.processing > 0 THEN 'processing'
  WHEN c.failed > 0 THEN 'failed'
  ELSE 'completed' END AS state) s
ON CONFLICT (captured_at, frame_id) DO UPDATE SET
  camera_id = EXCLUDED.camera_id, width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
  size_bytes = EXCLUDED.size_bytes, priority = EXCLUDED.priority, state = EXCLUDED.state,
  dropped_reason = EXCLUDED.dropped_reason, trace_id = EXCLUDED.trace_id,
  first_event_at = EXCLUDED.first_event_at, last_event_at = EXCLUDED.last_event_at, updated_at = now()`;
