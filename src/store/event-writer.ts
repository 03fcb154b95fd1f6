import type pg from 'pg';
import { MalformedMessageError } from '../domain/errors.js';
import { EVENT_TYPES, type LifecycleEvent } from '../domain/events.js';
import { frameIdTime, isFrameId } from '../domain/frame-id.js';

/**
 * Store a batch of lifecycle events and bring the projections of the frames they touch up
 * to date, in two statements whatever the batch size:
 *
 * 1. lock the batch's frames (advisory locks on 64 hash buckets, taken in order: no deadlock);
 * 2. one statement: insert the events (unnest of column arrays) ON CONFLICT DO NOTHING, then
 *    recompute processing_stages and frame_metadata of the frames that got a new event from
 *    ALL their events (those already stored plus the ones just inserted), so the result does
 *    not depend on the order or batching of arrival. A replayed batch inserts nothing and so
 *    changes nothing.
 *
 * The lock is what makes concurrent writers (several `detektr store`) safe: a writer that
 * waited for a frame's lock starts statement 2 after the other committed, and under READ
 * COMMITTED that statement's snapshot sees the other's events. (A big batch takes most
 * buckets, so big-batch writers mostly take turns; one writer does ~40k events/s.) Hence the
 * contract:
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
  const batch = toBatch(events);
  if (!isPool(db)) return writeInTransaction(db, batch);
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await writeInTransaction(client, batch);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function writeInTransaction(client: pg.PoolClient, batch: Batch): Promise<{ inserted: number }> {
  await client.query(LOCK_SQL, [LOCK_NAMESPACE, lockBuckets(batch.frames)]);
  const { rows } = await client.query<{ inserted: number }>(WRITE_SQL, batch.columns);
  return { inserted: rows[0].inserted };
}

function isPool(db: pg.PoolClient | pg.Pool): db is pg.Pool {
  return typeof (db as pg.PoolClient).release !== 'function';
}

const TYPES = new Set<string>(EVENT_TYPES);

interface Batch {
  /** Array literals, one per frame_events column. */
  columns: string[];
  frames: string[];
}

function toBatch(events: readonly LifecycleEvent[]): Batch {
  const n = events.length;
  const cols = Array.from({ length: 16 }, () => new Array<string | number | null>(n));
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
    for (const f of ['eventId', 'cameraId', 'source'] as const) {
      if (typeof e[f] !== 'string' || e[f] === '') throw malformed(e, f);
    }
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
    cols[15][i] = e.data === undefined ? null : dataJson(e.data);
  }
  return { columns: cols.map(arrayLiteral), frames: [...capturedMs.keys()] };
}

// Ids, types and numbers need no quoting; "null" would read as NULL, so it is quoted.
const BARE = /^[A-Za-z0-9_.:+-]+$/;

/**
 * The PostgreSQL array literal of a column. pg's generic array serialisation cost about
 * as much as the INSERT itself at 10k-event batches; this is ~5x cheaper.
 */
function arrayLiteral(values: ReadonlyArray<string | number | null>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null) out += 'NULL';
    else if (typeof v === 'number') out += String(v);
    else if (BARE.test(v) && v.toLowerCase() !== 'null') out += v;
    else out += `"${(v.includes('\0') ? v.replaceAll('\0', '') : v).replace(/[\\"]/g, '\\$&')}"`;
  }
  return `${out}}`;
}

// PostgreSQL text and jsonb cannot hold U+0000; one in a processor's message must not make
// the batch fail on every retry.
function dataJson(data: Record<string, unknown>): string {
  const json = JSON.stringify(data);
  if (!json.includes('\\u0000')) return json;
  return JSON.stringify(data, (_k, v: unknown) => (typeof v === 'string' ? v.replaceAll('\0', '') : v));
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

/** A number from the frame.captured data, or NULL when absent, not a number or out of range. */
function num(key: string, type: string, max: number): string {
  const v = `(cap.data -> '${key}')`;
  return `CASE WHEN jsonb_typeof(${v}) = 'number' AND ${v}::numeric BETWEEN 0 AND ${max} THEN round(${v}::numeric)::${type} END`;
}

const EVENT_COLUMN_LIST = [
  'event_id', 'frame_id', 'camera_id', 'type', 'at', 'captured_at', 'source', 'processor_id', 'capability',
  'attempt', 'duration_ms', 'error', 'reason', 'trace_id', 'span_id', 'data',
];
const EVENT_COLUMNS = EVENT_COLUMN_LIST.join(', ');

/*
 * Stage state: the "furthest" event of the stage decides (terminal > started > queued; among
 * equals the latest attempt, then the latest time). Frame state: aggregateFrameState() of
 * src/domain/lifecycle.ts over the stage states, with a frame.dropped without processor
 * meaning "dropped before routing". Unchanged stages are not rewritten.
 */
const WRITE_SQL = `
WITH ins AS (
  INSERT INTO frame_events (${EVENT_COLUMNS})
  SELECT e.event_id, e.frame_id, e.camera_id, e.type, 'epoch'::timestamptz + e.at_ms ${MS},
         'epoch'::timestamptz + e.cap_ms ${MS}, e.source, e.processor_id, e.capability, e.attempt,
         e.duration_ms, e.error, e.reason, e.trace_id, e.span_id, e.data::jsonb
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::text[],
              $8::text[], $9::text[], $10::int[], $11::float8[], $12::text[], $13::text[], $14::text[],
              $15::text[], $16::text[])
       AS e(event_id, frame_id, camera_id, type, at_ms, cap_ms, source, processor_id, capability, attempt,
            duration_ms, error, reason, trace_id, span_id, data)
  ON CONFLICT (captured_at, event_id) DO NOTHING
  RETURNING ${EVENT_COLUMNS}
),
touched AS (
  SELECT DISTINCT frame_id, captured_at FROM ins
),
-- All events of the touched frames. The statement's snapshot does not see what ins wrote,
-- so stored and new events are added up, not double counted.
ev AS (
  -- An index probe per frame, whatever the planner guesses of the table's size (OFFSET 0
  -- keeps the subquery from being flattened into a join it could hash over a seq scan).
  SELECT e.* FROM touched t
  CROSS JOIN LATERAL (
    SELECT ${EVENT_COLUMNS} FROM frame_events
    WHERE frame_events.captured_at = t.captured_at AND frame_events.frame_id = t.frame_id
    OFFSET 0
  ) e
  UNION ALL
  SELECT ${EVENT_COLUMNS} FROM ins
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
  WHERE (processing_stages.*) IS DISTINCT FROM (EXCLUDED.*)
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
-- The frame's own drop first, else the first stage drop.
drop_reason AS (
  SELECT DISTINCT ON (frame_id) frame_id, coalesce(reason, error) AS reason
  FROM ev WHERE type = 'frame.dropped'
  ORDER BY frame_id, processor_id IS NOT NULL, at, event_id
),
fr AS (
  SELECT frame_id, captured_at, min(camera_id) AS camera_id, min(at) AS first_at, max(at) AS last_at,
         bool_or(type = 'frame.dropped' AND processor_id IS NULL) AS dropped_before_routing,
         min(trace_id) AS any_trace_id
  FROM ev GROUP BY frame_id, captured_at
),
upsert_frames AS (
  INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
                              dropped_reason, trace_id, first_event_at, last_event_at, updated_at)
  SELECT fr.frame_id, fr.captured_at, coalesce(cap.camera_id, fr.camera_id),
         ${num('width', 'int', 2147483647)}, ${num('height', 'int', 2147483647)},
         CASE WHEN jsonb_typeof(cap.data -> 'format') = 'string' THEN cap.data ->> 'format' END,
         ${num('sizeBytes', 'bigint', 9e18)}, ${num('priority', 'smallint', 32767)},
         s.state, CASE WHEN s.state = 'dropped' THEN d.reason END,
         -- Frames whose frame.captured has not arrived yet still link to their trace.
         coalesce(cap.trace_id, fr.any_trace_id), fr.first_at, fr.last_at, now()
  FROM fr
  LEFT JOIN cap USING (frame_id)
  LEFT JOIN stage_counts c USING (frame_id)
  LEFT JOIN drop_reason d USING (frame_id)
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
    first_event_at = EXCLUDED.first_event_at, last_event_at = EXCLUDED.last_event_at, updated_at = now()
)
SELECT count(*)::int AS inserted FROM ins`;
