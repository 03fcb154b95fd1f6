import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetektr, spawnDetektr, type Spawned } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, waitFor, type TestRedis } from '../helpers/redis.js';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';

const FRAMES = 100;

/**
 * The walking skeleton, as a user runs it: migrate, then capture, buffer, process and
 * store as four separate detektr processes against the real Redis and PostgreSQL, with
 * the real OTLP exporter sending spans to a receiver in this test.
 */
describe('pipeline end to end (separate processes, real Redis + PostgreSQL)', () => {
  const schema = uniqueSchema('e2e');
  let t: TestRedis;
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let pool: pg.Pool;
  let env: NodeJS.ProcessEnv;
  const workers: Spawned[] = [];
  let frames: { frame_id: string; state: string; trace_id: string }[] = [];
  let elapsedMs = 0;

  beforeAll(async () => {
    t = await testRedis('e2e');
    otlp = await startOtlpReceiver();
    env = {
      REDIS_URL,
      DATABASE_URL: TEST_DATABASE_URL,
      DETEKTR_PREFIX: t.prefix,
      DETEKTR_DB_SCHEMA: schema,
      DETEKTR_METRICS_PORT: '0',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop(5000)));
    await pool?.end();
    await otlp?.close();
    await t?.cleanup();
    await dropSchema(schema);
  });

  it('migrates the schema', async () => {
    const r = await runDetektr(['migrate'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/applied 001_/);
    const again = await runDetektr(['migrate'], env);
    expect(again.stdout).toMatch(/up to date/);
  });

  it(`carries ${FRAMES} frames from a synthetic camera to ${FRAMES} completed journeys`, async () => {
    const started = Date.now();
    workers.push(spawnDetektr(['store'], env), spawnDetektr(['buffer'], env), spawnDetektr(['process', '--processor', 'sample'], env));
    const capture = spawnDetektr(['capture', '--camera', 'demo=testsrc', '--fps', '25', '--max-frames', String(FRAMES)], env);
    workers.push(capture);
    const code = await capture.exited;
    expect(code, capture.stderr()).toBe(0);
    await waitFor(
      `${FRAMES} completed frames in PostgreSQL`,
      async () => {
        const r = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".frame_metadata WHERE state = 'completed'`);
        return r.rows[0].n === FRAMES;
      },
      30_000,
      100,
    );
    elapsedMs = Date.now() - started;
    console.log(`${FRAMES} frames end to end (process start to last completed journey stored): ${elapsedMs} ms`);
    frames = (await pool.query(`SELECT frame_id, state, trace_id FROM "${schema}".frame_metadata ORDER BY frame_id`)).rows;
    expect(frames).toHaveLength(FRAMES);
    expect(new Set(frames.map((f) => f.trace_id)).size).toBe(FRAMES);
    const events = await pool.query(`SELECT type, count(*)::int AS n FROM "${schema}".frame_events GROUP BY type ORDER BY type`);
    expect(Object.fromEntries(events.rows.map((r) => [r.type, r.n]))).toEqual({
      'frame.captured': FRAMES,
      'frame.queued': FRAMES,
      'processing.started': FRAMES,
      'processing.completed': FRAMES,
    });
  }, 90_000);

  it('stops every worker cleanly on SIGTERM, leaving nothing pending', async () => {
    const codes = await Promise.all(workers.map((w) => w.stop(15_000)));
    expect(codes).toEqual(codes.map(() => 0));
    for (const [stream, group] of [
      [t.keys.captured, 'buffer'],
      [t.keys.ready('sample'), 'processor'],
      [t.keys.events, 'store'],
    ]) {
      const [pending] = (await t.redis.xpending(stream, group)) as [number];
      expect(pending, `${stream} ${group}`).toBe(0);
    }
    expect(await t.redis.xlen(t.keys.deadLetter)).toBe(0);
  });

  it('gives each frame ONE trace, with spans from all four components and correct parent links', () => {
    const byTrace = new Map<string, ReceivedSpan[]>();
    for (const s of otlp.spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
    for (const f of frames) {
      const spans = byTrace.get(f.trace_id) ?? [];
      const services = new Set(spans.map((s) => s.service));
      expect([...services].sort(), `trace of ${f.frame_id}`).toEqual([
        'detektr-buffer',
        'detektr-capture',
        'detektr-process',
        'detektr-store',
      ]);
      const ids = new Set(spans.map((s) => s.spanId));
      const roots = spans.filter((s) => !s.parentSpanId);
      expect(roots.map((s) => s.name)).toEqual(['capture_frame']);
      for (const s of spans) if (s.parentSpanId) expect(ids.has(s.parentSpanId), `${s.name} has its parent in the trace`).toBe(true);
      expect(spans.every((s) => s.attributes['frame.id'] === undefined || s.attributes['frame.id'] === f.frame_id)).toBe(true);
      const names = spans.map((s) => s.name);
      expect(names).toContain(`send ${t.keys.captured}`);
      expect(names).toContain(`process ${t.keys.captured}`);
      expect(names).toContain(`send ${t.keys.ready('sample')}`);
      expect(names).toContain(`process ${t.keys.ready('sample')}`);
      expect(names.filter((n) => n === `process ${t.keys.events}`)).toHaveLength(4);
    }
  });

  it('answers `trace find` for a frame, as a table and as JSON', async () => {
    const f = frames[Math.floor(frames.length / 2)];
    const table = await runDetektr(['trace', 'find', f.frame_id], env);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain(f.frame_id);
    expect(table.stdout).toContain('completed');
    expect(table.stdout).toContain(f.trace_id);
    expect(table.stdout).toContain('processing.completed');
    const json = await runDetektr(['trace', 'find', f.frame_id, '--json'], env);
    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout);
    expect(j.frameId).toBe(f.frame_id);
    expect(j.state).toBe('completed');
    expect(j.traceId).toBe(f.trace_id);
    expect(j.events.map((e: { type: string }) => e.type)).toEqual([
      'frame.captured',
      'frame.queued',
      'processing.started',
      'processing.completed',
    ]);
    expect(j.stages).toHaveLength(1);
    expect(j.stages[0].processorId).toBe('sample');
  });

  it('exits 1 for an unknown frame and 2 for a malformed id, naming it', async () => {
    const unknown = await runDetektr(['trace', 'find', '01JD8X3Q5R7ZC1V2W3X4Y5Z6A7'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/frame 01JD8X3Q5R7ZC1V2W3X4Y5Z6A7 not found/);
    const bad = await runDetektr(['trace', 'find', 'frame-42'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"frame-42" is not a ULID/);
  });
});
