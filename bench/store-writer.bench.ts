// Store projection throughput: the event writer (insert + per-frame projection, idempotent)
// vs a raw unnest INSERT of the same rows into frame_events, in the same run. The three
// write the same batches in turn (raw, writer, writer with 2 parallel sub-batches), each
// into its own fresh schema, so a noisy machine slows all three alike.
//
//   npm run bench store-writer                          # 200k events, batches of 1000 and 5000
//   npx tsx bench/store-writer.bench.ts --events 1000000 --batch 500,1000,5000 --service
//
// --service also runs StoreService end to end: entries pre-filled into a Redis stream,
// read, decoded, written with writeBatch, acked (Redis: $REDIS_URL).
// Database: $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/detektr_bench).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { trace } from '@opentelemetry/api';
import type pg from 'pg';
import type { LifecycleEvent } from '../src/domain/events.js';
import { frameIdTime } from '../src/domain/frame-id.js';
import { writeBatch, writeEvents } from '../src/store/event-writer.js';
import { migrate } from '../src/store/migrate.js';
import { createPool, ensureDatabase } from '../src/store/pg.js';
import { eventStream } from './lib/event-stream.js';
import { printTable } from './lib/table.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: process.env.BENCH_STORE_EVENTS ?? '200000' },
    batch: { type: 'string', default: '1000,5000' },
    service: { type: 'boolean', default: false },
  },
});
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/detektr_bench';
const targetEvents = Number(values.events);
const batches = values.batch!.split(',').map(Number);

await ensureDatabase(DATABASE_URL);
const events = eventStream({ frames: Math.ceil(targetEvents / 4.2), t0: Date.now() - 2 * 3_600_000 }).slice(0, targetEvents);

interface Target {
  schema: string;
  pool: pg.Pool;
  client?: pg.PoolClient;
  ms: number;
  /** CPU of this process while writing, and of the PostgreSQL backends serving it. */
  nodeCpuMs: number;
  pgCpuMs: number;
}

/**
 * CPU time (ms) of the backends of a pool, from /proc (PostgreSQL on this machine, read by
 * a user allowed to): what the database spent, whatever else the machine is doing.
 */
async function backendCpuMs(t: Target): Promise<number> {
  const { rows } = await t.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [t.schema]);
  let ms = 0;
  for (const { pid } of rows) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ms += ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, CLK_TCK 100
    } catch {
      return NaN; // not local, or not readable
    }
  }
  return ms;
}

async function target(): Promise<Target> {
  const schema = `bench_w_${process.pid}_${Math.random().toString(36).slice(2, 7)}`;
  const pool = createPool(DATABASE_URL, { schema, max: 4, statementTimeoutMs: 600_000, idleTimeoutMs: 600_000, applicationName: schema });
  await migrate({ pool, schema, storage: 'native' });
  // The partitions exist before timing starts, as `detektr maintain` makes sure.
  await pool.query('SELECT ensure_partitions(ARRAY[$1::timestamptz, $2::timestamptz])', [
    new Date(events[0].at).toISOString(),
    new Date(events[events.length - 1].at).toISOString(),
  ]);
  // Open the connections the run will use, so their backends exist from the start.
  const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
  for (const c of clients) c.release();
  return { schema, pool, ms: 0, nodeCpuMs: 0, pgCpuMs: 0 };
}

async function drop(t: Target): Promise<void> {
  t.client?.release();
  await t.pool.query(`DROP SCHEMA IF EXISTS "${t.schema}" CASCADE`);
  await t.pool.end();
}

async function timed(t: Target, fn: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(cpu);
  t.nodeCpuMs += (used.user + used.system) / 1000;
  t.ms += performance.now() - started;
}

async function inTx(t: Target, fn: (c: pg.PoolClient) => Promise<unknown>): Promise<void> {
  t.client ??= await t.pool.connect();
  await t.client.query('BEGIN');
  await fn(t.client);
  await t.client.query('COMMIT');
}

const RAW_SQL = `
INSERT INTO frame_events (event_id, frame_id, camera_id, type, at, captured_at, source, processor_id, capability,
                          attempt, duration_ms, error, reason, trace_id, span_id, sampled, data)
SELECT e.event_id, e.frame_id, e.camera_id, e.type, 'epoch'::timestamptz + e.at_ms * interval '1 millisecond',
       'epoch'::timestamptz + e.cap_ms * interval '1 millisecond', e.source, e.processor_id, e.capability, e.attempt,
       e.duration_ms, e.error, e.reason, e.trace_id, e.span_id, e.sampled, e.data::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::text[], $8::text[],
            $9::text[], $10::int[], $11::float8[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::text[])
     AS e(event_id, frame_id, camera_id, type, at_ms, cap_ms, source, processor_id, capability, attempt, duration_ms,
          error, reason, trace_id, span_id, sampled, data)`;

/** The raw baseline: the same 17 columns, pg's own array serialisation, no conflict check, no projection. */
function rawInsert(c: pg.PoolClient, part: LifecycleEvent[]): Promise<unknown> {
  const col = <T>(f: (e: LifecycleEvent) => T) => part.map(f);
  return c.query(RAW_SQL, [
    col((e) => e.eventId),
    col((e) => e.frameId),
    col((e) => e.cameraId),
    col((e) => e.type),
    col((e) => e.at),
    col((e) => frameIdTime(e.frameId)),
    col((e) => e.source),
    col((e) => e.processorId ?? null),
    col((e) => e.capability ?? null),
    col((e) => e.attempt ?? null),
    col((e) => e.durationMs ?? null),
    col((e) => e.error ?? null),
    col((e) => e.reason ?? null),
    col((e) => e.traceId ?? null),
    col((e) => e.spanId ?? null),
    col((e) => (e.traceId ? e.sampled !== false : null)),
    col((e) => (e.data === undefined ? null : JSON.stringify(e.data))),
  ]);
}

const rate = (t: Target) => Math.round(events.length / (t.ms / 1000));
const per1k = (ms: number) => (ms / events.length) * 1000;
const cpu = (t: Target) => `${per1k(t.pgCpuMs).toFixed(1)}+${per1k(t.nodeCpuMs).toFixed(1)}`;
const rows: Record<string, string | number>[] = [];
for (const batch of batches) {
  const raw = await target();
  const one = await target();
  const two = await target();
  try {
    const pg0 = await Promise.all([raw, one, two].map(backendCpuMs));
    for (let i = 0; i < events.length; i += batch) {
      const part = events.slice(i, i + batch);
      await timed(raw, () => inTx(raw, (c) => rawInsert(c, part)));
      await timed(one, () => inTx(one, (c) => writeEvents(c, part)));
      await timed(two, () => writeBatch(two.pool, part, [], { parallelism: 2 }));
    }
    const pg1 = await Promise.all([raw, one, two].map(backendCpuMs));
    [raw, one, two].forEach((t, k) => (t.pgCpuMs = pg1[k] - pg0[k]));
    // A replay of everything (a crash between COMMIT and XACK, at scale) inserts nothing.
    const replay = { ...one, ms: 0 };
    for (let i = 0; i < events.length; i += batch) {
      const part = events.slice(i, i + batch);
      await timed(replay, () => inTx(one, (c) => writeEvents(c, part)));
    }
    for (const t of [one, two]) {
      const { rows: n } = await t.pool.query<{ events: number }>('SELECT count(*)::int AS events FROM frame_events');
      if (n[0].events !== events.length) throw new Error(`stored ${n[0].events} events of ${events.length}`);
    }
    rows.push({
      events: events.length,
      batch,
      'raw unnest ev/s': rate(raw),
      'writer ev/s': rate(one),
      'writer 2 parallel ev/s': rate(two),
      'best / raw': `${Math.round((Math.max(rate(one), rate(two)) / rate(raw)) * 100)}%`,
      'replay ev/s': rate(replay),
      'CPU ms / 1k ev raw (pg+node)': cpu(raw),
      'writer (pg+node)': cpu(one),
      'writer 2 parallel (pg+node)': cpu(two),
    });
  } finally {
    for (const t of [raw, one, two]) await drop(t);
  }
}
const [l1, l5] = (await import('node:os')).loadavg();
printTable(
  `store projection: writer (insert + projection, idempotent) vs raw unnest INSERT, one transaction per batch (per sub-batch); load average ${l1.toFixed(1)} / ${l5.toFixed(1)}`,
  rows,
);
const best = Math.max(...rows.flatMap((r) => [r['writer ev/s'] as number, r['writer 2 parallel ev/s'] as number]));
process.stdout.write(`target >= 50,000 events/s: ${best >= 50_000 ? 'met' : 'NOT met'} (best ${best.toLocaleString('en-US')} ev/s)\n`);

if (values.service) {
  const { StoreService } = await import('../src/store/store-service.js');
  const { encodeEvent } = await import('../src/bus/event-codec.js');
  const { singleShard } = await import('../src/bus/shards.js');
  const { createMetrics } = await import('../src/telemetry/metrics.js');
  const { createLogger } = await import('../src/telemetry/logger.js');
  const { Redis } = await import('ioredis');
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const blocking = redis.duplicate();
  const shards = singleShard(`bench:store:${process.pid}:`);
  const [keys] = shards.all;
  const t = await target();
  try {
    for (let i = 0; i < events.length; i += 1000) {
      const tx = redis.pipeline();
      for (const e of events.slice(i, i + 1000)) tx.xadd(keys.events, '*', ...encodeEvent(e));
      await tx.exec();
    }
    const service = new StoreService({
      redis,
      blocking: [blocking],
      shards,
      pool: t.pool,
      tracer: trace.getTracer('bench'),
      metrics: createMetrics('bench'),
      logger: createLogger({ component: 'bench', level: 'error' }),
      batchSize: 1000,
      blockMs: 100,
      claimIdleMs: 60_000,
      maxDeliveries: 5,
    });
    const started = performance.now();
    const running = service.run();
    for (;;) {
      const { rows: n } = await t.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM frame_events');
      if (n[0].n >= events.length) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const ms = performance.now() - started;
    await service.close();
    await running;
    printTable("StoreService end to end (XREADGROUP 1000 + decode overlapping the previous batch's writeBatch x2 + XACK)", [
      { events: events.length, 'events/s': Math.round(events.length / (ms / 1000)) },
    ]);
  } finally {
    await drop(t);
    const found = await redis.keys(`bench:store:${process.pid}:*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
    blocking.disconnect();
  }
}
