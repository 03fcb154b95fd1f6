// Generates a frame-tracking data set inside PostgreSQL, set-based (generate_series), for
// the `trace` benchmarks: N frames spread evenly over D days ending now, on C cameras,
// with their events, stages and metadata exactly as `detektr store` would have projected
// them, plus camera events. Frame ids are real ULIDs carrying the capture time, so
// lookups prune partitions as they do for real frames.
//
//   npx tsx scripts/gen-dataset.ts --frames 10000000 --days 30 --schema bench_trace_10000000
//
// Per frame (deterministic from the frame number i): frame.captured; 0.5% then
// frame.dropped (backpressure) and nothing else; otherwise frame.queued (+2 ms),
// processing.started (+5..14 ms), processing.completed after 10..59 ms more (1% of stages
// processing.failed instead) at motion-1, and for 10% of frames the same at sample-1:
// ~4.3 events per frame. Rows: frame_events ~4.3 N, frame_metadata N, processing_stages ~1.1 N.
// Loads one day (partition) per transaction, two transactions at a time, then VACUUM ANALYZE.
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { migrate } from '../src/store/migrate.js';
import { createPool, ensureDatabase } from '../src/store/pg.js';

export interface DatasetOptions {
  databaseUrl: string;
  schema: string;
  frames: number;
  days: number;
  cameras: number;
  /** End of the data set (ms); default now. */
  endMs?: number;
  log?: (line: string) => void;
}

export interface DatasetInfo {
  frames: number;
  days: number;
  cameras: number;
  startMs: number;
  endMs: number;
  events: number;
  seconds: number;
  bytes: number;
}

const B32 = `'0123456789ABCDEFGHJKMNPQRSTVWXYZ'`;

/**
 * ULID text of (ms, r), as one inlinable SQL expression: the 48-bit time in Crockford
 * base32 (10 characters), then 16 upper-case hex digits of a bijective hash of r (hex
 * digits are Crockford digits too, so the id is a valid ULID; 64 of its 80 random bits
 * are used). About 2 us per id.
 */
const FUNCTIONS = `
CREATE OR REPLACE FUNCTION pg_temp.ulid(ms bigint, r bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ${[45, 40, 35, 30, 25, 20, 15, 10, 5, 0].map((sh) => `substr(${B32}, ((ms >> ${sh}) & 31)::int + 1, 1)`).join(' || ')}
         || upper(lpad(to_hex(r * 2654435761), 16, '0'))
$$;
CREATE OR REPLACE FUNCTION pg_temp.hex16(v bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT lpad(to_hex((v * 2654435761) & 281474976710655), 12, '0') || lpad(to_hex(v & 65535), 4, '0')
$$;`;

/** Frames [lo, hi): f = per-frame facts, derived from i only. */
const FRAMES = `
  SELECT i, ms, pg_temp.ulid(ms, i) AS frame_id, 'epoch'::timestamptz + ms * interval '1 millisecond' AS cap,
         'cam' || lpad((i % $4)::text, 2, '0') AS camera_id,
         pg_temp.hex16(i) || pg_temp.hex16(i + 7919) AS trace_id,
         (i * 40503 + 12345) % 1000 AS r,
         5 + (i * 31) % 10 AS wait, 10 + (i * 7919) % 50 AS run
  FROM (SELECT i, $3::bigint + floor(i * $5::float8)::bigint AS ms FROM generate_series($1::bigint, $2::bigint - 1) i) s`;

// r < 5: dropped before routing; r % 10 = 7: a second processor (sample-1); 900 <= r < 910: motion fails.
const EVENTS_SQL = `
INSERT INTO frame_events (event_id, frame_id, camera_id, type, at, captured_at, source, processor_id, capability, attempt,
                          duration_ms, error, reason, trace_id, span_id, sampled, data)
SELECT pg_temp.ulid(f.ms + e.dt, f.i * 8 + e.k), f.frame_id, f.camera_id, e.type, f.cap + e.dt * interval '1 millisecond', f.cap,
       e.source, e.proc, e.capability, e.attempt, e.dur, e.err, e.reason, f.trace_id, pg_temp.hex16(f.i * 8 + e.k), true, e.data
FROM (${FRAMES}) f
CROSS JOIN LATERAL (VALUES
  (0, 0, 'frame.captured', 'capture', NULL, NULL, NULL::int, NULL::float8, NULL, NULL,
   jsonb_build_object('width', 1280, 'height', 720, 'format', 'jpeg', 'sizeBytes', 30000 + f.i % 5000, 'priority', 5), true),
  (1, 1, 'frame.dropped', 'buffer', NULL, NULL, NULL, NULL, NULL, 'backpressure: shed', NULL, f.r < 5),
  (2, 2, 'frame.queued', 'buffer', 'motion-1', 'motion', NULL, NULL, NULL, NULL, NULL, f.r >= 5),
  (3, 2 + f.wait, 'processing.started', 'process', 'motion-1', 'motion', 1, NULL, NULL, NULL, NULL, f.r >= 5),
  (4, 2 + f.wait + f.run, CASE WHEN f.r BETWEEN 900 AND 909 THEN 'processing.failed' ELSE 'processing.completed' END, 'process',
   'motion-1', 'motion', 1, f.run - 0.5, CASE WHEN f.r BETWEEN 900 AND 909 THEN 'TimeoutError: frame timeout after ' || f.run || ' ms' END,
   NULL, NULL, f.r >= 5),
  (5, 3, 'frame.queued', 'buffer', 'sample-1', 'sample', NULL, NULL, NULL, NULL, NULL, f.r >= 5 AND f.r % 10 = 7),
  (6, 4, 'processing.started', 'process', 'sample-1', 'sample', 1, NULL, NULL, NULL, NULL, f.r >= 5 AND f.r % 10 = 7),
  (7, 6, 'processing.completed', 'process', 'sample-1', 'sample', 1, 1.5, NULL, NULL, NULL, f.r >= 5 AND f.r % 10 = 7)
) AS e(k, dt, type, source, proc, capability, attempt, dur, err, reason, data, present)
WHERE e.present`;

const STAGES_SQL = `
INSERT INTO processing_stages (frame_id, captured_at, processor_id, capability, state, attempts, queued_at, started_at,
                               finished_at, duration_ms, error, trace_id, span_id)
SELECT f.frame_id, f.cap, s.proc, s.capability, s.state, 1, f.cap + s.q * interval '1 millisecond',
       f.cap + s.st * interval '1 millisecond', f.cap + s.fin * interval '1 millisecond', s.dur, s.err, f.trace_id, pg_temp.hex16(f.i * 8 + s.k)
FROM (${FRAMES}) f
CROSS JOIN LATERAL (VALUES
  (4, 'motion-1', 'motion', CASE WHEN f.r BETWEEN 900 AND 909 THEN 'failed' ELSE 'completed' END, 2, 2 + f.wait, 2 + f.wait + f.run,
   f.run - 0.5, CASE WHEN f.r BETWEEN 900 AND 909 THEN 'TimeoutError: frame timeout after ' || f.run || ' ms' END, f.r >= 5),
  (7, 'sample-1', 'sample', 'completed', 3, 4, 6, 1.5, NULL, f.r >= 5 AND f.r % 10 = 7)
) AS s(k, proc, capability, state, q, st, fin, dur, err, present)
WHERE s.present`;

const METADATA_SQL = `
INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state, dropped_reason,
                            trace_id, sampled, total_ms, first_event_at, last_event_at, updated_at)
SELECT f.frame_id, f.cap, f.camera_id, 1280, 720, 'jpeg', 30000 + f.i % 5000, 5,
       CASE WHEN f.r < 5 THEN 'dropped' WHEN f.r BETWEEN 900 AND 909 THEN 'failed' ELSE 'completed' END,
       CASE WHEN f.r < 5 THEN 'backpressure: shed' END, f.trace_id, true, t.total, f.cap, f.cap + t.total * interval '1 millisecond', now()
FROM (${FRAMES}) f
CROSS JOIN LATERAL (SELECT CASE WHEN f.r < 5 THEN 1 ELSE greatest(2 + f.wait + f.run, CASE WHEN f.r % 10 = 7 THEN 6 ELSE 0 END) END AS total) t`;

// Each camera goes offline for 20..80 s about every 6 hours, and freezes once a day.
const CAMERA_SQL = `
INSERT INTO camera_events (event_id, camera_id, type, at, source, reason)
SELECT pg_temp.ulid(ms + x.dt, c * 100000 + n * 4 + x.k), 'cam' || lpad(c::text, 2, '0'), x.type,
       'epoch'::timestamptz + (ms + x.dt) * interval '1 millisecond', 'capture', x.reason
FROM generate_series(0, $3::int - 1) c
CROSS JOIN LATERAL generate_series(0, floor(($2::bigint - $1::bigint) / 21600000.0)::int) n
CROSS JOIN LATERAL (SELECT $1::bigint + n * 21600000::bigint + (c * 977 % 3600) * 1000 AS ms) t
CROSS JOIN LATERAL (VALUES
  (0, 0, 'camera.offline', 'timeout: no frame for 5s'),
  (1, 20000 + (n * 7 + c) % 60 * 1000, 'camera.online', NULL),
  (2, 7200000, CASE WHEN n % 4 = 0 THEN 'camera.frozen' END, 'same picture for 10s')
) AS x(k, dt, type, reason)
WHERE x.type IS NOT NULL AND ms + x.dt < $2::bigint`;

const DAY = 86_400_000;

export async function generateDataset(opts: DatasetOptions): Promise<DatasetInfo> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = performance.now();
  await ensureDatabase(opts.databaseUrl);
  const admin = createPool(opts.databaseUrl, { max: 1 });
  await admin.query(`DROP SCHEMA IF EXISTS "${opts.schema}" CASCADE`);
  await admin.end();
  const pool = createPool(opts.databaseUrl, { schema: opts.schema, max: 2, statementTimeoutMs: 3_600_000 });
  try {
    await migrate({ pool, schema: opts.schema, storage: 'native', partitionInterval: '1 day' });
    const endMs = opts.endMs ?? Date.now();
    const startMs = endMs - opts.days * DAY;
    const step = (endMs - startMs) / opts.frames;
    // Partitions for every day of the data set.
    const days: string[] = [];
    for (let t = startMs - (startMs % DAY); t < endMs; t += DAY) days.push(new Date(t).toISOString());
    await pool.query('SELECT ensure_partitions($1::timestamptz[])', [days]);

    // One chunk per day (frames whose capture falls in it), loaded by two connections.
    const chunks: Array<[number, number]> = [];
    for (let d = startMs - (startMs % DAY); d < endMs; d += DAY) {
      const lo = Math.max(0, Math.ceil((d - startMs) / step));
      const hi = Math.min(opts.frames, Math.ceil((d + DAY - startMs) / step));
      if (hi > lo) chunks.push([lo, hi]);
    }
    let done = 0;
    let events = 0;
    const worker = async () => {
      const client = await pool.connect();
      try {
        await client.query('SET synchronous_commit = off');
        await client.query(FUNCTIONS);
        for (let c = chunks.shift(); c; c = chunks.shift()) {
          const args = [c[0], c[1], startMs, opts.cameras, step];
          await client.query('BEGIN');
          const ev = await client.query(EVENTS_SQL, args);
          await client.query(STAGES_SQL, args);
          await client.query(METADATA_SQL, args);
          await client.query('COMMIT');
          events += ev.rowCount ?? 0;
          done += c[1] - c[0];
          log(
            `  ${done.toLocaleString('en-US')} / ${opts.frames.toLocaleString('en-US')} frames (${Math.round((performance.now() - started) / 1000)} s)`,
          );
        }
      } finally {
        client.release();
      }
    };
    await Promise.all([worker(), worker()]);
    const c = await pool.connect();
    try {
      await c.query(FUNCTIONS);
      await c.query(CAMERA_SQL, [startMs, endMs, opts.cameras]);
    } finally {
      c.release();
    }
    log('  VACUUM ANALYZE ...');
    for (const t of ['frame_events', 'frame_metadata', 'processing_stages', 'camera_events']) await pool.query(`VACUUM (ANALYZE) ${t}`);
    const { rows } = await pool.query<{ bytes: string }>(
      `SELECT sum(pg_total_relation_size(c.oid))::bigint AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'r'`,
      [opts.schema],
    );
    const info: DatasetInfo = {
      frames: opts.frames,
      days: opts.days,
      cameras: opts.cameras,
      startMs,
      endMs,
      events,
      seconds: Math.round((performance.now() - started) / 1000),
      bytes: Number(rows[0].bytes),
    };
    await pool.query('CREATE TABLE bench_dataset (info jsonb NOT NULL)');
    await pool.query('INSERT INTO bench_dataset VALUES ($1)', [JSON.stringify(info)]);
    return info;
  } finally {
    await pool.end();
  }
}

/** The data set of a previous run, if this schema holds a complete one of that size. */
export async function existingDataset(databaseUrl: string, schema: string, frames: number): Promise<DatasetInfo | undefined> {
  const pool = createPool(databaseUrl, { schema, max: 1 });
  try {
    const { rows } = await pool.query<{ ok: boolean }>("SELECT to_regclass('bench_dataset') IS NOT NULL AS ok");
    if (!rows[0].ok) return undefined;
    const info = (await pool.query<{ info: DatasetInfo }>('SELECT info FROM bench_dataset')).rows[0]?.info;
    return info && info.frames === frames ? info : undefined;
  } catch {
    return undefined;
  } finally {
    await (pool as pg.Pool).end();
  }
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The id the generator gave frame number i (the same formula as pg_temp.ulid above). */
export function datasetFrameId(info: Pick<DatasetInfo, 'startMs' | 'endMs' | 'frames'>, i: number): string {
  const step = (info.endMs - info.startMs) / info.frames;
  let ms = BigInt(info.startMs + Math.floor(i * step));
  let time = '';
  for (let k = 0; k < 10; k++) {
    time = CROCKFORD[Number(ms & 31n)] + time;
    ms >>= 5n;
  }
  const r = (BigInt(i) * 2654435761n).toString(16).toUpperCase().padStart(16, '0');
  return time + r;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string', default: '1000000' },
      days: { type: 'string', default: '30' },
      cameras: { type: 'string', default: '8' },
      schema: { type: 'string' },
      'database-url': { type: 'string', default: process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/detektr_bench' },
    },
  });
  const frames = Number(values.frames);
  const info = await generateDataset({
    databaseUrl: values['database-url']!,
    schema: values.schema ?? `bench_trace_${frames}`,
    frames,
    days: Number(values.days),
    cameras: Number(values.cameras),
  });
  process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
}
