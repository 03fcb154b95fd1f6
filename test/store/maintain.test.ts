import type pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { writeBatch, writeEvents } from '../../src/store/event-writer.js';
import { listPartitions, maintain, partitionName } from '../../src/store/maintain.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { findJourney } from '../../src/trace/journey.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';

const DAY = 86_400_000;
const schemas: string[] = [];
const pools: pg.Pool[] = [];

async function newDb(): Promise<pg.Pool> {
  const schema = uniqueSchema('maint');
  schemas.push(schema);
  const pool = createPool(TEST_DATABASE_URL, { schema, max: 3 });
  pools.push(pool);
  await migrate({ pool, schema });
  return pool;
}

afterAll(async () => {
  for (const p of pools) await p.end();
  for (const s of schemas) await dropSchema(s);
});

function frame(t0: number, camera = 'cam01', outcome: 'completed' | 'failed' = 'completed'): LifecycleEvent[] {
  const frameId = ulid(t0);
  const base = { frameId, cameraId: camera, traceId: 'c'.repeat(32) };
  const p = { processorId: 'motion-1', capability: 'motion' };
  return [
    { ...base, eventId: ulid(t0), type: 'frame.captured', at: t0, source: 'capture' },
    { ...base, eventId: ulid(t0 + 1), type: 'frame.queued', at: t0 + 1, source: 'buffer', ...p },
    { ...base, eventId: ulid(t0 + 2), type: 'processing.started', at: t0 + 2, source: 'process', attempt: 1, ...p },
    outcome === 'completed'
      ? { ...base, eventId: ulid(t0 + 40), type: 'processing.completed', at: t0 + 40, source: 'process', attempt: 1, durationMs: 38, ...p }
      : {
          ...base,
          eventId: ulid(t0 + 40),
          type: 'processing.failed',
          at: t0 + 40,
          source: 'process',
          attempt: 1,
          durationMs: 38,
          error: 'boom',
          ...p,
        },
  ];
}

describe('native partitions', () => {
  let pool: pg.Pool;
  beforeAll(async () => {
    pool = await newDb();
  });

  it('the store creates the partition of a frame older than any partition (late event, no maintain run)', async () => {
    const old = Date.parse('2023-03-04T05:06:07.000Z');
    const events = frame(old);
    await writeEvents(pool, events);
    const parts = (await listPartitions(pool)).filter((p) => p.from === '2023-03-04T00:00:00.000Z');
    expect(parts.map((p) => p.name).sort()).toEqual(
      ['frame_events', 'frame_metadata', 'processing_stages'].map((t) => partitionName(t, Date.parse('2023-03-04T00:00:00Z'))),
    );
    const j = await findJourney(pool, events[0].frameId);
    expect(j?.state).toBe('completed');
  });

  it('a frame lookup reads one partition of each table, by primary key', async () => {
    const t = Date.now() - 60_000;
    const events = frame(t);
    await writeEvents(pool, events);
    const { rows } = await pool.query(
      `EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF, TIMING OFF)
       SELECT * FROM frame_events WHERE captured_at = $2 AND frame_id = $1`,
      [events[0].frameId, new Date(t)],
    );
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index Scan using frame_events_p\d{8}_0000_pkey/);
    expect(plan.match(/frame_events_p\d{8}/g)!.every((n: string) => n === plan.match(/frame_events_p\d{8}/)![0])).toBe(true);
  });

  it('two writers creating the same missing partition at once do not collide', async () => {
    const t = Date.parse('2022-01-01T10:00:00Z');
    const a = frame(t, 'camA');
    const b = frame(t + 1000, 'camB');
    await Promise.all([writeEvents(pool, a), writeEvents(pool, b)]);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM frame_metadata WHERE captured_at::date = $1', ['2022-01-01']);
    expect(rows[0].n).toBe(2);
  });
});

describe('maintain', () => {
  it('creates partitions ahead, drops whole partitions behind the retention, trims camera events, refreshes stats', async () => {
    const pool = await newDb();
    const now = Date.parse('2030-06-15T12:00:00Z');
    // Frames on 2030-05-01 (old), 2030-06-14 and 2030-06-15 (kept).
    const events = [
      ...frame(Date.parse('2030-05-01T08:00:00Z')),
      ...frame(Date.parse('2030-06-14T08:00:00Z'), 'cam01', 'failed'),
      ...frame(Date.parse('2030-06-15T08:00:00Z')),
      ...frame(Date.parse('2030-06-15T08:30:00Z'), 'cam02'),
    ];
    const camera = [
      {
        eventId: ulid(Date.parse('2030-05-01T08:00:00Z')),
        type: 'camera.offline' as const,
        cameraId: 'cam01',
        at: Date.parse('2030-05-01T08:00:00Z'),
        source: 'capture',
        reason: 'timeout',
      },
      {
        eventId: ulid(Date.parse('2030-06-15T08:00:00Z')),
        type: 'camera.online' as const,
        cameraId: 'cam01',
        at: Date.parse('2030-06-15T08:00:00Z'),
        source: 'capture',
      },
    ];
    expect(await writeBatch(pool, events, camera)).toEqual({ inserted: 16, cameraInserted: 2 });

    const dry = await maintain({ pool, now, retentionMs: 30 * DAY, aheadMs: 2 * DAY, dryRun: true });
    // (the partitions migrate made for today are older than the cutoff of 2030 too)
    expect(
      dry.dropped
        .filter((p) => p.from.startsWith('2030'))
        .map((p) => p.name)
        .sort(),
    ).toEqual(['frame_events_p20300501_0000', 'frame_metadata_p20300501_0000', 'processing_stages_p20300501_0000']);
    expect(dry.created.map((p) => p.from)).toEqual(expect.arrayContaining(['2030-06-16T00:00:00.000Z', '2030-06-17T00:00:00.000Z']));
    expect(dry.retention).toEqual({ cutoff: '2030-05-16T12:00:00.000Z', cameraEventsDeleted: 1 });
    expect((await listPartitions(pool)).some((p) => p.name === 'frame_events_p20300501_0000')).toBe(true);

    const report = await maintain({ pool, now, retentionMs: 30 * DAY, aheadMs: 2 * DAY });
    expect(report.storage).toBe('native');
    expect(report.dropped.filter((p) => p.from.startsWith('2030'))).toHaveLength(3);
    // 2030-06-16 and -17 for three tables (06-15 existed).
    expect(report.created).toHaveLength(6);
    const parts = await listPartitions(pool);
    expect(parts.some((p) => p.from.startsWith('2030-05-01'))).toBe(false);
    expect(parts.some((p) => p.from.startsWith('2030-06-17'))).toBe(true);
    const { rows: tables } = await pool.query(
      "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%_p20300501_0000' AND relnamespace = current_schema()::regnamespace",
    );
    expect(tables[0].n).toBe(0);
    const left = await pool.query('SELECT count(*)::int AS n FROM frame_metadata');
    expect(left.rows[0].n).toBe(3);
    expect((await pool.query('SELECT count(*)::int AS n FROM camera_events')).rows[0].n).toBe(1);

    const stats = await pool.query(
      'SELECT bucket, camera_id, frames::int, completed::int, failed::int, max_total_ms FROM frame_stats_hourly ORDER BY bucket, camera_id',
    );
    expect(stats.rows).toEqual([
      { bucket: new Date('2030-06-14T08:00:00Z'), camera_id: 'cam01', frames: 1, completed: 0, failed: 1, max_total_ms: 40 },
      { bucket: new Date('2030-06-15T08:00:00Z'), camera_id: 'cam01', frames: 1, completed: 1, failed: 0, max_total_ms: 40 },
      { bucket: new Date('2030-06-15T08:00:00Z'), camera_id: 'cam02', frames: 1, completed: 1, failed: 0, max_total_ms: 40 },
    ]);

    // Idempotent, and the next refresh picks up frames that arrived meanwhile.
    await writeEvents(pool, frame(Date.parse('2030-06-15T11:10:00Z'), 'cam02'));
    const again = await maintain({ pool, now: now + 60_000, retentionMs: 30 * DAY, aheadMs: 2 * DAY });
    expect(again.created).toEqual([]);
    expect(again.dropped).toEqual([]);
    const hours = await pool.query("SELECT count(*)::int AS n FROM frame_stats_hourly WHERE bucket = '2030-06-15T11:00:00Z'");
    expect(hours.rows[0].n).toBe(1);
  });

  it('keeps everything without a retention and reports the partition sizing', async () => {
    const pool = await newDb();
    const now = Date.now();
    await writeEvents(pool, frame(now - (now % DAY) - DAY + 3_600_000));
    const r = await maintain({ pool, now });
    expect(r.retention).toBeNull();
    expect(r.dropped).toEqual([]);
    expect(r.sizing).toMatchObject({ partitionStart: new Date(now - (now % DAY) - DAY).toISOString() });
    expect(r.sizing!.indexBytes).toBeGreaterThan(0);
    expect(r.sizing!.sharedBuffersBytes).toBeGreaterThan(0);
  });
});
