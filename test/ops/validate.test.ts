import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { BufferService } from '../../src/buffer/buffer-service.js';
import { publishFrame } from '../../src/bus/publish-frame.js';
import { validate, type ValidateOptions } from '../../src/ops/validate.js';
import { SYNTHETIC_JPEG_SIZE, syntheticJpeg } from '../../src/ops/synthetic-jpeg.js';
import { ProcessorRuntime } from '../../src/process/processor-runtime.js';
import { sampleProcessor } from '../../src/process/processors/sample.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { StoreService } from '../../src/store/store-service.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { initTracing } from '../../src/telemetry/tracing.js';
import { runDetektr } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, waitFor, type TestRedis } from '../helpers/redis.js';

const tracing = initTracing('detektr-test');
const logger = createLogger({ component: 'test', level: 'error' });
const common = { blockMs: 100, claimIdleMs: 5000, maxDeliveries: 5 };

describe('detektr validate (real Redis + PostgreSQL, in-process pipeline)', () => {
  const schema = uniqueSchema('validate');
  let t: TestRedis;
  let pool: pg.Pool;
  let buffer: BufferService;
  let processor: ProcessorRuntime;
  let store: StoreService;
  let opts: ValidateOptions;
  const extra: { disconnect(): void }[] = [];
  const blocking = () => {
    const c = t.blocking.duplicate();
    extra.push(c);
    return c;
  };
  const byName = (checks: { check: string; status: string; detail: string }[], name: string) => checks.find((c) => c.check === name);

  beforeAll(async () => {
    t = await testRedis('validate');
    pool = createPool(TEST_DATABASE_URL, { schema });
    await migrate({ pool, schema });
    const metrics = createMetrics('test');
    const deps = { redis: t.redis, shards: t.shards, tracer: tracing.tracer, metrics, logger, ...common };
    buffer = new BufferService({ ...deps, blocking: [t.blocking], processorTtlMs: 2000, streamMaxLen: 1000, batchSize: 50 });
    processor = new ProcessorRuntime({
      ...deps,
      blocking: [blocking()],
      processor: sampleProcessor,
      id: 'sample',
      concurrency: 1,
      frameTimeoutMs: 5000,
      heartbeatMs: 200,
      processorTtlMs: 2000,
      streamMaxLen: 1000,
    });
    store = new StoreService({ ...deps, blocking: [blocking()], pool, batchSize: 100 });
    void buffer.run();
    void processor.run();
    void store.run();
    await publishFrame(
      { redis: t.redis, keys: t.keys, tracer: tracing.tracer, payloadTtlMs: 60_000, streamMaxLen: 1000 },
      { cameraId: 'front', jpeg: syntheticJpeg(2000), ...SYNTHETIC_JPEG_SIZE },
    );
    await waitFor(
      'the first frame stored',
      async () => (await pool.query("SELECT 1 FROM frame_metadata WHERE camera_id = 'front' AND state = 'completed'")).rowCount === 1,
    );
    opts = {
      redis: t.redis,
      pool,
      shards: t.shards,
      tracer: tracing.tracer,
      processorTtlMs: 2000,
      maxLag: 100,
      maxFrameAgeMs: 60_000,
      e2e: { timeoutMs: 10_000, payloadTtlMs: 60_000, streamMaxLen: 1000 },
    };
  });

  afterAll(async () => {
    await Promise.all([buffer?.close(), processor?.close(), store?.close()]);
    await pool?.end();
    for (const c of extra) c.disconnect();
    await t?.cleanup();
    await dropSchema(schema);
  });

  it('passes on a healthy pipeline, with a probe frame completing its journey', async () => {
    const r = await validate(opts);
    expect(
      r.checks.filter((c) => c.status !== 'ok'),
      JSON.stringify(r.checks),
    ).toEqual([]);
    expect(r.status).toBe('ok');
    expect(byName(r.checks, 'e2e probe')?.detail).toMatch(/completed in \d+ ms through sample/);
    expect(byName(r.checks, 'camera front')?.status).toBe('ok');
    expect(byName(r.checks, `group ${t.keys.ready('sample')} processor`)?.status).toBe('ok');
  });

  it('sends no probe frame without --e2e (so it waits for none)', async () => {
    const captured = await t.redis.xlen(t.keys.captured);
    const r = await validate({ ...opts, e2e: undefined });
    expect(r.status).toBe('ok');
    expect(byName(r.checks, 'e2e probe')).toBeUndefined();
    expect(await t.redis.xlen(t.keys.captured)).toBe(captured);
  });

  it('warns about a camera whose newest frame is too old', async () => {
    const r = await validate({ ...opts, e2e: undefined, maxFrameAgeMs: 1 });
    expect(byName(r.checks, 'camera front')?.status).toBe('warn');
    expect(r.status).toBe('warn');
  });

  it('warns when the dead-letter stream grew since the last run', async () => {
    const deadLettered = async () => Number((await t.redis.hget(t.keys.counters, `dead_letter:${t.keys.captured}`)) ?? 0);
    const before = await deadLettered();
    await t.redis.xadd(t.keys.captured, '*', 'v', '1', 'garbage', 'yes');
    await waitFor('the buffer dead-lettered the garbage', async () => (await deadLettered()) > before);
    const r = await validate({ ...opts, e2e: undefined });
    expect(byName(r.checks, 'dead-letter')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining(`dead_letter:${t.keys.captured} +1`),
    });
    const again = await validate({ ...opts, e2e: undefined });
    expect(byName(again.checks, 'dead-letter')?.status).toBe('ok');
  });

  it('fails when the schema is behind the migrations', async () => {
    const { rows } = await pool.query('SELECT max(version) AS v FROM schema_migrations');
    const saved = await pool.query('SELECT * FROM schema_migrations WHERE version = $1', [rows[0].v]);
    await pool.query('DELETE FROM schema_migrations WHERE version = $1', [rows[0].v]);
    try {
      const r = await validate({ ...opts, e2e: undefined });
      expect(byName(r.checks, 'schema')).toMatchObject({ status: 'fail', detail: expect.stringContaining('run detektr migrate') });
    } finally {
      const s = saved.rows[0];
      await pool.query('INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)', [
        s.version,
        s.name,
        s.checksum,
        s.applied_at,
      ]);
    }
  });

  it('fails when a consumer group is missing', async () => {
    await store.close(); // a running store recreates its group at once
    await t.redis.xgroup('DESTROY', t.keys.events, 'store');
    const r = await validate({ ...opts, e2e: undefined });
    expect(byName(r.checks, `group ${t.keys.events} store`)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('no consumer group "store"'),
    });
    expect(r.status).toBe('fail');
  });

  it('fails when no processor is alive, and the CLI exits 1 with JSON for monitoring', async () => {
    await processor.close();
    const r = await validate({ ...opts, e2e: undefined });
    expect(byName(r.checks, 'processors')?.status).toBe('fail');
    const cli = await runDetektr(['validate', '--json'], {
      REDIS_URL,
      DATABASE_URL: TEST_DATABASE_URL,
      DETEKTR_PREFIX: t.prefix,
      DETEKTR_DB_SCHEMA: schema,
    });
    expect(cli.code).toBe(1);
    const report = JSON.parse(cli.stdout);
    expect(report.status).toBe('fail');
    expect(report.checks.find((c: { check: string }) => c.check === 'processors').status).toBe('fail');
  });
});
