import type pg from 'pg';
import { DetektrError } from '../domain/errors.js';
import { openFrameStateSql } from './lifecycle-sql.js';
import type { StorageKind } from './migrate.js';
import { withClient } from './pg.js';

/**
 * `detektr maintain`: keeps the partitioned storage in shape. Run it from cron (hourly is
 * plenty); every step is idempotent, and it is safe beside a running `detektr store`.
 *
 * native (plain PostgreSQL):
 * - creates the partitions of the next `aheadMs` (the store also creates a missing one on
 *   demand, so a late run costs nothing but a short lock);
 * - with a retention: detaches (CONCURRENTLY: readers and the store keep going) and drops
 *   every partition whose whole range is older than now - retention, and deletes older
 *   camera events;
 * - refreshes frame_stats_hourly from the last refresh (minus 2 hours, for frames that
 *   finished late) to now;
 * - reports the size of the latest full partition's indexes against shared_buffers, the
 *   memory rule for the partition interval (see docs/architecture.md).
 * timescaledb: chunks are created by TimescaleDB; a retention replaces the retention
 * policy of the three hypertables (the policy job drops chunks); frame_stats_hourly is a
 * continuous aggregate with its own policy, refreshed here over the last 3 days too.
 */
export interface MaintainOptions {
  pool: pg.Pool;
  /** Drop data older than this (ms); undefined keeps everything. */
  retentionMs?: number;
  /** Create partitions this far ahead (ms); default 7 days. */
  aheadMs?: number;
  /** Refresh frame_stats_hourly; default true. */
  refreshStats?: boolean;
  dryRun?: boolean;
  now?: number;
  /** Client-side limit for the slow steps (detach, stats refresh); default 10 minutes. */
  statementTimeoutMs?: number;
}

export interface PartitionInfo {
  table: string;
  name: string;
  from: string;
  to: string;
}

export interface MaintainReport {
  storage: StorageKind;
  partitionInterval: string;
  dryRun: boolean;
  /** Partitions created (or, on a dry run, that would be). */
  created: PartitionInfo[];
  /** Partitions dropped by retention (or that would be). */
  dropped: PartitionInfo[];
  retention: { cutoff: string; cameraEventsDeleted: number } | null;
  stats: { from: string; to: string; rows: number } | null;
  /** The newest full interval's index size vs shared_buffers (native only). */
  sizing: {
    partitionStart: string;
    frames: number;
    indexBytes: number;
    sharedBuffersBytes: number;
    advice?: string;
  } | null;
}

interface Storage {
  kind: StorageKind;
  interval_ms: number;
  interval_text: string;
  stats_refreshed_to: Date | null;
}

const DAY = 86_400_000;

export async function readStorage(db: pg.Pool | pg.PoolClient): Promise<Storage> {
  const { rows: exists } = await db.query<{ ok: boolean }>("SELECT to_regclass('detektr_storage') IS NOT NULL AS ok");
  if (!exists[0].ok) throw new DetektrError('this schema has no detektr_storage table: run `detektr migrate` first');
  const { rows } = await db.query<Storage>(
    `SELECT kind, extract(epoch FROM partition_interval) * 1000 AS interval_ms, partition_interval::text AS interval_text, stats_refreshed_to
     FROM detektr_storage`,
  );
  if (!rows[0]) throw new DetektrError('detektr_storage is empty: migration 002 did not complete');
  return { ...rows[0], interval_ms: Number(rows[0].interval_ms) };
}

const PARTITIONED = ['frame_events', 'frame_metadata', 'processing_stages'] as const;

/** Attached partitions of the three tables with their ranges. */
export async function listPartitions(db: pg.Pool | pg.PoolClient): Promise<(PartitionInfo & { pending: boolean })[]> {
  const { rows } = await db.query<{ parent: string; name: string; lo: Date; hi: Date; pending: boolean }>(
    `SELECT p.relname AS parent, c.relname AS name, i.inhdetachpending AS pending,
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lo,
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS hi
     FROM pg_inherits i
     JOIN pg_class c ON c.oid = i.inhrelid
     JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.oid = ANY (ARRAY[to_regclass('frame_events'), to_regclass('frame_metadata'), to_regclass('processing_stages')])
     ORDER BY lo, p.relname`,
  );
  return rows.map((r) => ({ table: r.parent, name: r.name, from: r.lo.toISOString(), to: r.hi.toISOString(), pending: r.pending }));
}

export async function maintain(opts: MaintainOptions): Promise<MaintainReport> {
  return withClient(opts.pool, async (client) => {
    // Detaching waits for the transactions that still see the partition; refreshing scans
    // hours of frames: more than the pool's default statement timeout allows.
    await client.query("SELECT set_config('statement_timeout', $1, false)", [String(Math.floor(opts.statementTimeoutMs ?? 600_000))]);
    try {
      const storage = await readStorage(client);
      return storage.kind === 'native' ? await maintainNative(client, storage, opts) : await maintainTimescale(client, storage, opts);
    } finally {
      await client.query('RESET statement_timeout').catch(() => {});
    }
  });
}

async function maintainNative(client: pg.PoolClient, storage: Storage, opts: MaintainOptions): Promise<MaintainReport> {
  const now = opts.now ?? Date.now();
  const iv = storage.interval_ms;
  const aheadMs = opts.aheadMs ?? 7 * DAY;
  const dryRun = Boolean(opts.dryRun);

  // Ahead: every interval from the current one to now + ahead.
  const starts: number[] = [];
  for (let t = now - (now % iv); t <= now + aheadMs; t += iv) starts.push(t);
  const before = await listPartitions(client);
  const have = new Set(before.map((p) => `${p.table} ${Date.parse(p.from)}`));
  const created: PartitionInfo[] = [];
  for (const t of starts) {
    for (const table of PARTITIONED) {
      if (!have.has(`${table} ${t}`))
        created.push({ table, name: partitionName(table, t), from: new Date(t).toISOString(), to: new Date(t + iv).toISOString() });
    }
  }
  if (!dryRun && created.length) {
    await client.query('SELECT ensure_partitions($1::timestamptz[])', [[...new Set(created.map((p) => p.from))]]);
  }

  // Behind: whole partitions older than the cutoff.
  let retention: MaintainReport['retention'] = null;
  const dropped: PartitionInfo[] = [];
  if (opts.retentionMs !== undefined) {
    const cutoff = now - opts.retentionMs;
    for (const p of before) {
      if (Date.parse(p.to) > cutoff) continue;
      dropped.push({ table: p.table, name: p.name, from: p.from, to: p.to });
      if (dryRun) continue;
      // CONCURRENTLY: only a SHARE UPDATE EXCLUSIVE lock on the parent, so the store and
      // queries go on; it cannot run in a transaction (the pool's client is in autocommit).
      // A detach interrupted earlier is left pending: FINALIZE completes it.
      await client.query(`ALTER TABLE ${ident(p.table)} DETACH PARTITION ${ident(p.name)} ${p.pending ? 'FINALIZE' : 'CONCURRENTLY'}`);
      await client.query(`DROP TABLE ${ident(p.name)}`);
    }
    let deleted = 0;
    if (dryRun) {
      const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM camera_events WHERE at < $1', [new Date(cutoff)]);
      deleted = rows[0].n;
    } else {
      deleted = (await client.query('DELETE FROM camera_events WHERE at < $1', [new Date(cutoff)])).rowCount ?? 0;
    }
    retention = { cutoff: new Date(cutoff).toISOString(), cameraEventsDeleted: deleted };
  }

  const stats = opts.refreshStats === false ? null : await refreshStatsNative(client, storage, now, dryRun);
  const sizing = await sizingNative(client, storage, now);
  return { storage: 'native', partitionInterval: storage.interval_text, dryRun, created, dropped, retention, stats, sizing };
}

/**
 * frame_stats_hourly from (last refresh - 2 h) to now: deletes those hours and
 * re-aggregates them from frame_metadata, in one transaction (readers see the old or the
 * new figures, never none). The first run aggregates everything there is.
 */
async function refreshStatsNative(client: pg.PoolClient, storage: Storage, now: number, dryRun: boolean): Promise<MaintainReport['stats']> {
  let fromMs: number;
  if (storage.stats_refreshed_to) {
    fromMs = storage.stats_refreshed_to.getTime() - 2 * 3_600_000;
  } else {
    const { rows } = await client.query<{ t: Date | null }>('SELECT min(captured_at) AS t FROM frame_metadata');
    fromMs = rows[0].t?.getTime() ?? now;
  }
  fromMs -= fromMs % 3_600_000;
  const from = new Date(fromMs);
  const to = new Date(now);
  if (dryRun) return { from: from.toISOString(), to: to.toISOString(), rows: 0 };
  await client.query('BEGIN');
  try {
    await client.query('DELETE FROM frame_stats_hourly WHERE bucket >= $1', [from]);
    const res = await client.query(
      `INSERT INTO frame_stats_hourly (bucket, camera_id, frames, completed, failed, dropped, in_flight, avg_total_ms, max_total_ms)
       SELECT date_bin(interval '1 hour', captured_at, 'epoch'::timestamptz), camera_id, count(*),
              count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'failed'),
              count(*) FILTER (WHERE state = 'dropped'), count(*) FILTER (WHERE ${openFrameStateSql('state')}),
              avg(total_ms), max(total_ms)
       FROM frame_metadata WHERE captured_at >= $1
       GROUP BY 1, 2`,
      [from],
    );
    await client.query('UPDATE detektr_storage SET stats_refreshed_to = $1', [to]);
    await client.query('COMMIT');
    return { from: from.toISOString(), to: to.toISOString(), rows: res.rowCount ?? 0 };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * The memory rule (TimescaleDB's, and as true of native partitions): the indexes of the
 * partitions being written should fit in about 25% of main memory, i.e. in shared_buffers
 * when that is set to the usual 25%. Measured on the newest full interval.
 */
async function sizingNative(client: pg.PoolClient, storage: Storage, now: number): Promise<MaintainReport['sizing']> {
  const iv = storage.interval_ms;
  const start = now - (now % iv) - iv;
  const { rows } = await client.query<{ bytes: string | null; frames: string | null; shared: string }>(
    `SELECT (SELECT sum(pg_indexes_size(to_regclass(quote_ident(t || '_p' || to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI')))))
             FROM unnest(ARRAY['frame_events', 'frame_metadata', 'processing_stages']) t) AS bytes,
            (SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(quote_ident('frame_metadata_p' || to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI')))) AS frames,
            (SELECT setting::bigint * pg_size_bytes(unit) FROM pg_settings WHERE name = 'shared_buffers') AS shared`,
    [new Date(start)],
  );
  if (rows[0].bytes === null) return null;
  const indexBytes = Number(rows[0].bytes);
  const sharedBuffersBytes = Number(rows[0].shared);
  const frames = Math.max(0, Number(rows[0].frames ?? 0));
  let advice: string | undefined;
  if (indexBytes > sharedBuffersBytes) {
    // A shorter interval whose indexes would fit, rounded down to whole hours.
    const hours = Math.max(1, Math.floor((iv / 3_600_000) * (sharedBuffersBytes / indexBytes)));
    advice =
      `the indexes of one ${storage.interval_text} partition (${mb(indexBytes)}) exceed shared_buffers (${mb(sharedBuffersBytes)}): ` +
      `raise shared_buffers (about 25% of memory) or use a partition interval of about ${hours}h (\`detektr migrate --partition-interval\` on a new schema)`;
  }
  return { partitionStart: new Date(start).toISOString(), frames, indexBytes, sharedBuffersBytes, ...(advice ? { advice } : {}) };
}

async function maintainTimescale(client: pg.PoolClient, storage: Storage, opts: MaintainOptions): Promise<MaintainReport> {
  const now = opts.now ?? Date.now();
  const dryRun = Boolean(opts.dryRun);
  const { rows: ext } = await client.query<{ schema: string }>(
    "SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb'",
  );
  if (!ext[0]) throw new DetektrError('storage is timescaledb but the timescaledb extension is not installed in this database');
  const ts = ident(ext[0].schema);
  let retention: MaintainReport['retention'] = null;
  const dropped: PartitionInfo[] = [];
  if (opts.retentionMs !== undefined) {
    const cutoff = new Date(now - opts.retentionMs);
    const interval = `${Math.floor(opts.retentionMs / 1000)} seconds`;
    for (const t of PARTITIONED) {
      const { rows } = await client.query<{ name: string; lo: Date; hi: Date }>(
        `SELECT chunk_schema || '.' || chunk_name AS name, range_start AS lo, range_end AS hi
         FROM timescaledb_information.chunks WHERE hypertable_name = $1 AND hypertable_schema = current_schema() AND range_end <= $2`,
        [t, cutoff],
      );
      for (const r of rows) dropped.push({ table: t, name: r.name, from: r.lo.toISOString(), to: r.hi.toISOString() });
      if (dryRun) continue;
      await client.query(`SELECT ${ts}.remove_retention_policy($1::regclass, if_exists => true)`, [t]);
      await client.query(`SELECT ${ts}.add_retention_policy($1::regclass, drop_after => $2::interval)`, [t, interval]);
      // Run it now too, rather than at the policy's next schedule.
      await client.query(`SELECT ${ts}.drop_chunks($1::regclass, older_than => $2::timestamptz)`, [t, cutoff]);
    }
    const deleted = dryRun
      ? (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM camera_events WHERE at < $1', [cutoff])).rows[0].n
      : ((await client.query('DELETE FROM camera_events WHERE at < $1', [cutoff])).rowCount ?? 0);
    retention = { cutoff: cutoff.toISOString(), cameraEventsDeleted: deleted };
  }
  let stats: MaintainReport['stats'] = null;
  if (opts.refreshStats !== false) {
    const from = new Date(now - 3 * DAY);
    // A procedure that commits internally: the client is in autocommit here.
    if (!dryRun)
      await client.query(`CALL ${ts}.refresh_continuous_aggregate('frame_stats_hourly', $1::timestamptz, $2::timestamptz)`, [
        from,
        new Date(now),
      ]);
    stats = { from: from.toISOString(), to: new Date(now).toISOString(), rows: 0 };
  }
  return { storage: 'timescaledb', partitionInterval: storage.interval_text, dryRun, created: [], dropped, retention, stats, sizing: null };
}

/** ensure_partitions' naming: <table>_pYYYYMMDD_HHMI of the partition's UTC start. */
export function partitionName(table: string, startMs: number): string {
  const d = new Date(startMs);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${table}_p${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}_${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}
