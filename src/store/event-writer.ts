import type pg from 'pg';
import type { CameraEvent } from '../domain/camera-events.js';
import type { LifecycleEvent } from '../domain/events.js';
import { frameBucket, toBatch, toCameraColumns, type Batch } from './event-batch.js';
import { withClient } from './pg.js';
import { CAMERA_SQL, WRITE_SQL } from './projection-sql.js';

export { validateCameraEvent, validateEvent } from './event-validation.js';

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

// pg_advisory_xact_lock(int, int): the first key keeps us apart from other users of advisory locks.
const LOCK_NAMESPACE = 0x64746b72; // "dtkr"
const LOCK_SQL = 'SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k';
