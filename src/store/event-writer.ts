import type pg from 'pg';
import { isCameraEventType, type CameraEvent } from '../domain/camera-events.js';
import { MalformedMessageError } from '../domain/errors.js';
import { EVENT_TYPES, type LifecycleEvent } from '../domain/events.js';
import { frameIdTime, isFrameId } from '../domain/frame-id.js';
import { withClient } from './pg.js';

/**
 * Store a batch of lifecycle events and bring the projections of the frames they touch up
 * to date, in two statements whatever the batch size:
 *
 * 1. lock the batch's frames (advisory locks on 64 hash buckets, taken in order: no deadlock);
 * 2. one statement: insert the events not stored yet (unnest of column arrays), then
 *    recompute processing_stages and frame_metadata of the frames that got a new event from
 *    ALL their events (those already stored plus the new ones), so the result does not
 *    depend on the order or batching of arrival. A replayed batch inserts nothing and so
 *    changes nothing.
 *
 * The lock is what makes concurrent writers (several `detektr store`, or the parallel
 * sub-batches of writeBatch) safe: a writer that waited for a frame's lock starts
 * statement 2 after the other committed, and under READ COMMITTED that statement's
 * snapshot sees the other's events. Hence the contract:
 * - with a PoolClient, call it inside the caller's transaction (BEGIN .. COMMIT, READ
 *   COMMITTED), one batch per transaction;
 * - with a Pool, it runs its own transaction.
 *
 * Throws MalformedMessageError (nothing written) for an event that the schema would reject.
 */
export async function writeEvents(db: pg.PoolClient | pg.Pool, events: readonly LifecycleEvent[]): Promise<{ inserted: number }> {
  if (events.length === 0) return { inserted: 0 };
  const batch = toBatch(events);
  if (!isPool(db)) return writeInTransaction(db, batch);
  return inTransaction(db, (client) => writeInTransaction(client, batch));
}

export interface WriteBatchOptions {
  /**
   * Sub-batches written concurrently, each on its own connection and in its own
   * transaction. Frames are split by lock bucket, so the sub-batches never wait for each
   * other, and PostgreSQL projects them on as many cores. Default 2.
   */
  parallelism?: number;
}

export interface WriteBatchResult {
  /** New lifecycle events (not replays). */
  inserted: number;
  /** New camera events. */
  cameraInserted: number;
}

/**
 * What `detektr store` does with one batch read from the events stream: lifecycle events
 * through writeEvents, split by frame into `parallelism` sub-batches written concurrently,
 * and camera events into camera_events, all idempotent by event id. Resolves once every
 * sub-batch has committed; if one fails it throws (after the others settle), and the
 * caller retries the whole batch, which is safe: what committed is not written twice.
 * Validates everything before writing anything (MalformedMessageError).
 */
export async function writeBatch(
  pool: pg.Pool,
  events: readonly LifecycleEvent[],
  cameraEvents: readonly CameraEvent[] = [],
  opts: WriteBatchOptions = {},
): Promise<WriteBatchResult> {
  const k = Math.max(1, Math.floor(opts.parallelism ?? 2));
  const groups: LifecycleEvent[][] = Array.from({ length: k }, () => []);
  if (k === 1) groups[0] = events as LifecycleEvent[];
  else for (const e of events) groups[frameBucket(e.frameId) % k].push(e);
  const batches = groups.filter((g) => g.length > 0).map(toBatch);
  const camera = cameraEvents.length ? toCameraColumns(cameraEvents) : undefined;

  const results = await Promise.allSettled([
    ...batches.map((batch) => inTransaction(pool, (client) => writeInTransaction(client, batch))),
    camera ? pool.query<{ n: number }>(CAMERA_SQL, camera).then((r) => r.rows[0].n) : Promise.resolve(0),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const values = results.map((r) => (r as PromiseFulfilledResult<{ inserted: number } | number>).value);
  const cameraInserted = values.pop() as number;
  return { inserted: (values as { inserted: number }[]).reduce((sum, r) => sum + r.inserted, 0), cameraInserted };
}

function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      // A ROLLBACK that fails too means the connection is gone: withClient destroys it.
      await client.query('ROLLBACK').catch((e: Error) => client.emit('error', e));
      throw err;
    }
  });
}

async function writeInTransaction(client: pg.PoolClient, batch: Batch): Promise<{ inserted: number }> {
  try {
    await ensurePartitions(client, batch.hours);
    await client.query(LOCK_SQL, [LOCK_NAMESPACE, batch.buckets]);
    const { rows } = await client.query<{ inserted: number }>(WRITE_SQL, batch.columns);
    return { inserted: rows[0].inserted };
  } catch (err) {
    // Partitions created in this (now failed) transaction are rolled back, and one this
    // connection had seen may have been dropped since (retention): forget what it knows,
    // so the caller's retry ensures them again.
    ensured.delete(client);
    throw err;
  }
}

const HOUR = 3_600_000;

/**
 * Hours (ms, floored) whose partitions a connection has already ensured. A connection's
 * search_path, hence its schema, never changes, so this is per connection; partitions
 * are at least an hour wide, so an hour is covered by exactly one partition.
 */
const ensured = new WeakMap<object, Set<number>>();

/**
 * Makes sure the partitions for the batch's capture hours exist (native partitioning; on
 * TimescaleDB the function does nothing). `detektr maintain` creates them ahead; this is
 * the safety net for a store that runs without it, or for late frames. Normally a cache
 * hit and no round trip at all.
 */
async function ensurePartitions(client: pg.PoolClient, hours: number[]): Promise<void> {
  let known = ensured.get(client);
  if (!known) ensured.set(client, (known = new Set()));
  const missing = hours.filter((h) => !known.has(h));
  if (missing.length === 0) return;
  await client.query('SELECT ensure_partitions($1::timestamptz[])', [missing.map((h) => new Date(h).toISOString())]);
  for (const h of missing) known.add(h);
}

function isPool(db: pg.PoolClient | pg.Pool): db is pg.Pool {
  return typeof (db as pg.PoolClient).release !== 'function';
}

const TYPES = new Set<string>(EVENT_TYPES);
const MAX_MS = 281_474_976_710_655; // the largest ULID time

/**
 * Throws MalformedMessageError when the event is one the schema would reject. The store
 * runs it when decoding an entry, so such an entry is dead-lettered instead of failing its
 * batch on every retry.
 */
export function validateEvent(e: LifecycleEvent): void {
  if (typeof e.frameId !== 'string' || !isFrameId(e.frameId)) throw malformed(e, 'frameId');
  validateEventFields(e);
}

/** Everything but the frame id (toBatch checks that once per frame). */
function validateEventFields(e: LifecycleEvent): void {
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

interface Batch {
  /** Array literals, one per frame_events column. */
  columns: string[];
  /** Sorted distinct lock buckets of the batch's frames. */
  buckets: number[];
  /** Distinct capture hours (ms since epoch, floored to the hour). */
  hours: number[];
}

/** The batch as column arrays (validated, duplicates dropped). */
function toBatch(events: readonly LifecycleEvent[]): Batch {
  const cols = Array.from({ length: EVENT_COLUMN_LIST.length }, () => new Array<string | number | boolean | null>(events.length));
  const capturedMs = new Map<string, number>();
  // A redelivered entry can sit twice in one batch: keep the first (event id -> frame id).
  const seen = new Map<string, string>();
  let i = 0;
  for (const e of events) {
    let cap = capturedMs.get(e.frameId);
    if (cap === undefined) {
      if (typeof e.frameId !== 'string' || !isFrameId(e.frameId)) throw malformed(e, 'frameId');
      cap = frameIdTime(e.frameId);
      capturedMs.set(e.frameId, cap);
    }
    validateEventFields(e);
    // Same event id: the same event, unless (never, with ULIDs) it names another frame.
    const other = seen.get(e.eventId);
    if (other === e.frameId) continue;
    if (other === undefined) seen.set(e.eventId, e.frameId);
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
    // Absent flag with a trace id: sampled (the codec's convention); no trace id: unknown.
    cols[15][i] = e.traceId ? e.sampled !== false : null;
    cols[16][i] = e.data === undefined ? null : dataJson(e.data);
    i++;
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

function toCameraColumns(events: readonly CameraEvent[]): unknown[] {
  const seen = new Set<string>();
  const rows = events.filter((e) => {
    validateCameraEvent(e);
    if (seen.has(e.eventId)) return false;
    seen.add(e.eventId);
    return true;
  });
  const col = <T>(f: (e: CameraEvent) => T) => rows.map(f);
  return [
    col((e) => e.eventId),
    col((e) => e.cameraId),
    col((e) => e.type),
    col((e) => e.at),
    col((e) => e.source),
    col((e) => (e.reason === undefined ? null : e.reason.replaceAll('\0', ''))),
    col((e) => (e.data === undefined ? null : dataJson(e.data))),
  ];
}

const CAMERA_SQL = `
WITH ins AS (
  INSERT INTO camera_events (event_id, camera_id, type, at, source, reason, data)
  SELECT e.event_id, e.camera_id, e.type, 'epoch'::timestamptz + e.at_ms * interval '1 millisecond', e.source, e.reason, e.data::jsonb
  FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[])
       AS e(event_id, camera_id, type, at_ms, source, reason, data)
  ON CONFLICT (event_id) DO NOTHING
  RETURNING 1
)
SELECT count(*)::int AS n FROM ins`;

/**
 * The PostgreSQL array literal of a column. pg's generic array serialisation cost about
 * as much as the INSERT itself at 10k-event batches; this is several times cheaper: every
 * string is quoted (so "NULL" stays a string), and escaped only when it holds a quote or a
 * backslash; U+0000, which text cannot hold, is dropped.
 */
function arrayLiteral(values: ReadonlyArray<string | number | boolean | null>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) parts[i] = 'NULL';
    else if (typeof v === 'number') parts[i] = String(v);
    else if (typeof v === 'boolean') parts[i] = v ? 't' : 'f';
    else if (v.includes('"') || v.includes('\\') || v.includes('\0')) parts[i] = `"${v.replaceAll('\0', '').replace(/[\\"]/g, '\\$&')}"`;
    else parts[i] = `"${v}"`;
  }
  return `{${parts.join(',')}}`;
}

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

function malformed(e: LifecycleEvent, field: string): MalformedMessageError {
  const value = (e as unknown as Record<string, unknown>)[field];
  return new MalformedMessageError(`event ${String(e.eventId)} has an invalid ${field}: ${JSON.stringify(value)}`, field);
}

// pg_advisory_xact_lock(int, int): the first key keeps us apart from other users of advisory locks.
const LOCK_NAMESPACE = 0x64746b72; // "dtkr"
const LOCK_BUCKETS = 64;

/** The frame's lock bucket: FNV-1a over the id. Buckets are locked in ascending order. */
function frameBucket(frameId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < frameId.length; i++) h = Math.imul(h ^ frameId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % LOCK_BUCKETS;
}

const LOCK_SQL = 'SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k';

const MS = `* interval '1 millisecond'`;

/** A number from the frame.captured data, or NULL when absent, not a number or out of range. */
function num(key: string, type: string, max: number): string {
  const v = `(cap.data -> '${key}')`;
  return `CASE WHEN jsonb_typeof(${v}) = 'number' AND ${v}::numeric BETWEEN 0 AND ${max} THEN round(${v}::numeric)::${type} END`;
}

const EVENT_COLUMN_LIST = [
  'event_id',
  'frame_id',
  'camera_id',
  'type',
  'at',
  'captured_at',
  'source',
  'processor_id',
  'capability',
  'attempt',
  'duration_ms',
  'error',
  'reason',
  'trace_id',
  'span_id',
  'sampled',
  'data',
];
const EVENT_COLUMNS = EVENT_COLUMN_LIST.join(', ');

/*
 * One statement, so one snapshot, taken after the frames' locks:
 * - input: the batch (deduplicated by event id in JS);
 * - stored: every stored event of the batch's frames, one index range per frame (the key
 *   starts with (captured_at, frame_id), so this reads one partition per frame);
 * - new_ev: the input minus what is stored. The locks guarantee no other writer adds
 *   events of these frames meanwhile, so a plain INSERT (no speculative ON CONFLICT
 *   insertion, no RETURNING) is exact; a writer that ignored the locks would get a
 *   unique violation and a retry, never a duplicate;
 * - ev: all events (stored + new) of the frames that got a new event; the projections of
 *   those frames are recomputed from them, so order and batching of arrival do not matter.
 *
 * Stage state: the "furthest" event of the stage decides (terminal > started > queued; among
 * equals the latest attempt, then the latest time). Frame state: aggregateFrameState() of
 * src/domain/lifecycle.ts over the stage states, with a frame.dropped without processor
 * meaning "dropped before routing". Unchanged stages are not rewritten.
 */
const NARROW =
  'event_id, frame_id, camera_id, type, at, captured_at, processor_id, capability, attempt, duration_ms, error, reason, trace_id, span_id, sampled';

const WRITE_SQL = `
WITH input AS (
  SELECT e.event_id, e.frame_id, e.camera_id, e.type, 'epoch'::timestamptz + e.at_ms ${MS} AS at,
         'epoch'::timestamptz + e.cap_ms ${MS} AS captured_at, e.source, e.processor_id, e.capability, e.attempt,
         e.duration_ms, e.error, e.reason, e.trace_id, e.span_id, e.sampled, e.data::jsonb AS data
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::text[],
              $8::text[], $9::text[], $10::int[], $11::float8[], $12::text[], $13::text[], $14::text[],
              $15::text[], $16::bool[], $17::text[])
       AS e(event_id, frame_id, camera_id, type, at_ms, cap_ms, source, processor_id, capability, attempt,
            duration_ms, error, reason, trace_id, span_id, sampled, data)
),
touched AS (
  SELECT DISTINCT frame_id, captured_at FROM input
),
stored AS (
  -- An index probe per frame, whatever the planner guesses of the table's size (OFFSET 0
  -- keeps the subquery from being flattened into a join it could hash over a seq scan).
  SELECT s.* FROM touched t
  CROSS JOIN LATERAL (
    SELECT ${NARROW}, CASE WHEN f.type = 'frame.captured' THEN f.data END AS data
    FROM frame_events f
    WHERE f.captured_at = t.captured_at AND f.frame_id = t.frame_id
    OFFSET 0
  ) s
),
new_ev AS (
  SELECT i.* FROM input i
  WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.frame_id = i.frame_id AND s.event_id = i.event_id)
),
ins AS (
  INSERT INTO frame_events (${EVENT_COLUMNS})
  SELECT ${EVENT_COLUMNS} FROM new_ev
),
ev AS (
  SELECT ${NARROW}, data FROM stored s WHERE s.frame_id IN (SELECT frame_id FROM new_ev)
  UNION ALL
  SELECT ${NARROW}, CASE WHEN type = 'frame.captured' THEN data END FROM new_ev
),
-- One sort gives each stage its decisive event (the first row) and, over the same
-- partition, its aggregates.
st AS (
  SELECT DISTINCT ON (e.frame_id, e.processor_id)
         e.frame_id, e.captured_at, e.processor_id,
         max(e.capability) OVER w AS capability,
         CASE e.type WHEN 'frame.queued' THEN 'queued' WHEN 'processing.started' THEN 'processing'
                     WHEN 'processing.completed' THEN 'completed' WHEN 'processing.failed' THEN 'failed'
                     ELSE 'dropped' END AS state,
         greatest(coalesce(max(e.attempt) FILTER (WHERE e.rank > 1) OVER w, 0),
                  count(*) FILTER (WHERE e.type = 'processing.started') OVER w)::int AS attempts,
         min(e.at) FILTER (WHERE e.type = 'frame.queued') OVER w AS queued_at,
         min(e.at) FILTER (WHERE e.type = 'processing.started') OVER w AS started_at,
         CASE WHEN e.rank = 3 THEN e.at END AS finished_at,
         CASE WHEN e.type IN ('processing.completed', 'processing.failed')
              THEN coalesce(e.duration_ms, extract(epoch FROM e.at - min(e.at) FILTER (WHERE e.type = 'processing.started') OVER w) * 1000) END AS duration_ms,
         CASE e.type WHEN 'processing.failed' THEN coalesce(e.error, e.reason)
                     WHEN 'frame.dropped' THEN coalesce(e.reason, e.error) END AS error,
         e.trace_id, e.span_id
  FROM (
    SELECT ev.*, CASE ev.type WHEN 'frame.queued' THEN 1 WHEN 'processing.started' THEN 2 ELSE 3 END AS rank
    FROM ev WHERE ev.processor_id IS NOT NULL AND ev.type <> 'frame.captured'
  ) e
  WINDOW w AS (PARTITION BY e.frame_id, e.processor_id)
  ORDER BY e.frame_id, e.processor_id, e.rank DESC, e.attempt DESC NULLS LAST, e.at DESC, e.event_id DESC
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
  SELECT DISTINCT ON (frame_id) frame_id, camera_id, data, trace_id, sampled
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
         min(trace_id) AS any_trace_id, bool_or(sampled) AS any_sampled,
         max(at) FILTER (WHERE type IN ('processing.completed', 'processing.failed', 'frame.dropped')) AS last_terminal_at
  FROM ev GROUP BY frame_id, captured_at
),
upsert_frames AS (
  INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
                              dropped_reason, trace_id, sampled, total_ms, first_event_at, last_event_at, updated_at)
  SELECT fr.frame_id, fr.captured_at, coalesce(cap.camera_id, fr.camera_id),
         ${num('width', 'int', 2147483647)}, ${num('height', 'int', 2147483647)},
         CASE WHEN jsonb_typeof(cap.data -> 'format') = 'string' THEN cap.data ->> 'format' END,
         ${num('sizeBytes', 'bigint', 9e18)}, ${num('priority', 'smallint', 32767)},
         s.state, CASE WHEN s.state = 'dropped' THEN d.reason END,
         -- Frames whose frame.captured has not arrived yet still link to their trace.
         coalesce(cap.trace_id, fr.any_trace_id), coalesce(cap.sampled, fr.any_sampled),
         CASE WHEN s.state IN ('completed', 'failed', 'dropped')
              THEN extract(epoch FROM fr.last_terminal_at - fr.captured_at) * 1000 END,
         fr.first_at, fr.last_at, now()
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
    dropped_reason = EXCLUDED.dropped_reason, trace_id = EXCLUDED.trace_id, sampled = EXCLUDED.sampled,
    total_ms = EXCLUDED.total_ms, first_event_at = EXCLUDED.first_event_at, last_event_at = EXCLUDED.last_event_at,
    updated_at = now()
)
SELECT count(*)::int AS inserted FROM new_ev`;
