import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetektr } from '../helpers/cli.js';
import { startOtlpGrpcReceiver, startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, type TestRedis } from '../helpers/redis.js';

/**
 * The OTEL_* variables as a user sets them, on `detektr run` (capture, buffer, process and
 * store in one process, against the real Redis and PostgreSQL), with the real exporters
 * sending to a receiver in this test that decodes what arrives.
 */
describe('OpenTelemetry configuration (issue #12)', () => {
  const schemas: string[] = [];
  const redises: TestRedis[] = [];
  let pool: pg.Pool;

  beforeAll(() => {
    pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
  });
  afterAll(async () => {
    await pool?.end();
    for (const t of redises) await t.cleanup();
    for (const s of schemas) await dropSchema(s);
  });

  /** `detektr run --max-frames n` in a fresh prefix and schema, with extra environment. */
  async function run(env: NodeJS.ProcessEnv, frames = 3) {
    const t = await testRedis('otel');
    redises.push(t);
    const schema = uniqueSchema('otel');
    schemas.push(schema);
    const r = await runDetektr(
      ['run', '--max-frames', String(frames), '--fps', '10', '--processor', 'sample'],
      {
        REDIS_URL,
        DATABASE_URL: TEST_DATABASE_URL,
        DETEKTR_PREFIX: t.prefix,
        DETEKTR_DB_SCHEMA: schema,
        DETEKTR_METRICS_PORT: '0',
        DETEKTR_CONFIG: undefined,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
        OTEL_EXPORTER_OTLP_PROTOCOL: undefined,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: undefined,
        OTEL_TRACES_EXPORTER: undefined,
        OTEL_TRACES_SAMPLER: undefined,
        OTEL_TRACES_SAMPLER_ARG: undefined,
        ...env,
      },
      90_000,
    );
    return { ...r, t, schema };
  }

  /** Every component's spans of the run's frames arrived, each frame one trace. */
  function expectPipelineSpans(rx: OtlpReceiver, prefix: string, frames: number) {
    const names = new Set(rx.spans.map((s) => s.name));
    for (const n of ['capture_frame', `send ${prefix}frames:captured`, `process ${prefix}frames:captured`, `process ${prefix}events`])
      expect(names, [...names].join(', ')).toContain(n);
    expect(new Set(rx.spans.filter((s) => s.name === 'capture_frame').map((s) => s.traceId)).size).toBe(frames);
  }

  it.each([
    ['http/protobuf (the default, nothing set)', undefined, 'application/x-protobuf'],
    ['http/protobuf', 'http/protobuf', 'application/x-protobuf'],
    ['http/json', 'http/json', 'application/json'],
  ])(
    'OTEL_EXPORTER_OTLP_PROTOCOL %s: spans arrive over HTTP in that encoding',
    async (_label, protocol, contentType) => {
      const rx = await startOtlpReceiver();
      try {
        const r = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_EXPORTER_OTLP_PROTOCOL: protocol });
        expect(r.code, r.stderr).toBe(0);
        expect(rx.encodings.length).toBeGreaterThan(0);
        expect(rx.encodings.every((e) => e.startsWith(contentType))).toBe(true);
        expectPipelineSpans(rx, r.t.prefix, 3);
      } finally {
        await rx.close();
      }
    },
    120_000,
  );

  it('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc: spans arrive at a gRPC TraceService (and win over OTEL_EXPORTER_OTLP_PROTOCOL)', async () => {
    const rx = await startOtlpGrpcReceiver();
    try {
      const r = await run({
        OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
      });
      expect(r.code, r.stderr).toBe(0);
      expect(rx.encodings.length).toBeGreaterThan(0);
      expect(new Set(rx.encodings)).toEqual(new Set(['grpc']));
      expectPipelineSpans(rx, r.t.prefix, 3);
    } finally {
      await rx.close();
    }
  }, 120_000);

  it.each([
    ['OTEL_EXPORTER_OTLP_PROTOCOL', 'thrift'],
    ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'http'],
    ['OTEL_TRACES_EXPORTER', 'zipkin'],
  ])(
    '%s=%s is a usage error naming the variable (exit 2)',
    async (name, value) => {
      const r = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', [name]: value });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`detektr: ${name} "${value}" is not one of`);
    },
    120_000,
  );

  it('OTEL_TRACES_EXPORTER=none exports nothing even with an endpoint; console writes spans to stderr, never stdout', async () => {
    const rx = await startOtlpReceiver();
    try {
      const none = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_TRACES_EXPORTER: 'none' });
      expect(none.code, none.stderr).toBe(0);
      expect(rx.spans).toEqual([]);

      const consoleRun = await run({ OTEL_TRACES_EXPORTER: 'console' });
      expect(consoleRun.code, consoleRun.stderr).toBe(0);
      const spans = consoleRun.stderr
        .split('\n')
        .filter((l) => l.startsWith('{"span"'))
        .map((l) => JSON.parse(l) as { span: string; traceId: string; service: string });
      expect(spans.map((s) => s.span)).toContain('capture_frame');
      expect(spans.map((s) => s.span)).toContain(`process ${consoleRun.t.prefix}events`);
      expect(consoleRun.stdout).not.toContain('traceId');
      expect(consoleRun.stdout).toMatch(/^published 3 frames/m);
      expect(rx.spans).toEqual([]);
    } finally {
      await rx.close();
    }
  }, 180_000);

  it.each(['traceidratio', 'parentbased_traceidratio'])(
    'OTEL_TRACES_SAMPLER=%s, arg 0: no span leaves any component, frames and events are stored sampled = false, trace find says so',
    async (sampler) => {
      const rx = await startOtlpReceiver();
      try {
        const r = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: '0' });
        expect(r.code, r.stderr).toBe(0);
        // `run` flushed its exporter on the way out: whatever was sent has arrived.
        expect(rx.spans.map((s) => s.name)).toEqual([]);

        const frames = await pool.query<{ frame_id: string; trace_id: string; sampled: boolean }>(
          `SELECT frame_id, trace_id, sampled FROM "${r.schema}".frame_metadata ORDER BY frame_id`,
        );
        expect(frames.rows).toHaveLength(3);
        expect(frames.rows.every((f) => /^[0-9a-f]{32}$/.test(f.trace_id) && f.sampled === false)).toBe(true);
        const events = await pool.query<{ n: number; sampled: boolean }>(
          `SELECT sampled, count(*)::int AS n FROM "${r.schema}".frame_events GROUP BY sampled`,
        );
        expect(events.rows.map((e) => e.sampled)).toEqual([false]);

        // The frames themselves carry the flag to every stage.
        const entries = (await r.t.redis.xrange(r.t.keys.captured, '-', '+')) as [string, string[]][];
        expect(entries).toHaveLength(3);
        for (const [, f] of entries) expect(f[f.indexOf('traceparent') + 1]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);

        const env = { REDIS_URL, DATABASE_URL: TEST_DATABASE_URL, DETEKTR_PREFIX: r.t.prefix, DETEKTR_DB_SCHEMA: r.schema };
        const id = frames.rows[0].frame_id;
        const json = await runDetektr(['trace', 'find', id, '--json'], env);
        expect(json.code, json.stderr).toBe(0);
        expect((JSON.parse(json.stdout) as { sampled: boolean }).sampled).toBe(false);
        const table = await runDetektr(['trace', 'find', id], env);
        expect(table.stdout).toContain(`${frames.rows[0].trace_id} (not sampled`);
      } finally {
        await rx.close();
      }
    },
    120_000,
  );

  it('with the default sampler, frames and events are stored sampled = true and carry flag 01', async () => {
    const r = await run({});
    expect(r.code, r.stderr).toBe(0);
    const frames = await pool.query<{ sampled: boolean }>(`SELECT DISTINCT sampled FROM "${r.schema}".frame_metadata`);
    expect(frames.rows).toEqual([{ sampled: true }]);
    const events = await pool.query<{ sampled: boolean }>(`SELECT DISTINCT sampled FROM "${r.schema}".frame_events`);
    expect(events.rows).toEqual([{ sampled: true }]);
    const entries = (await r.t.redis.xrange(r.t.keys.captured, '-', '+')) as [string, string[]][];
    for (const [, f] of entries) expect(f[f.indexOf('traceparent') + 1]).toMatch(/-01$/);
  }, 120_000);
});
