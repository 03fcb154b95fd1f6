import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetektr, spawnDetektr, type Spawned } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { metricsPort, promtoolCheckMetrics, scrape, startPrometheus, type PrometheusServer } from '../helpers/prometheus.js';
import { REDIS_URL, testRedis, uniquePrefix, waitFor, type TestRedis } from '../helpers/redis.js';

const RULES = fileURLToPath(new URL('../../observability/prometheus/detektr-alerts.yml', import.meta.url));
const OPENMETRICS = 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
const WORKERS = ['capture', 'buffer', 'process', 'store'] as const;
type WorkerName = (typeof WORKERS)[number];
const EXEMPLAR = (family: string) =>
  new RegExp(`^${family}_bucket\\{[^}]*\\} \\d+ # \\{trace_id="([0-9a-f]{32})"\\} [0-9.e+-]+ [0-9.]+$`, 'm');

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

/**
 * The pipeline's /metrics as the tools its users run see them: `promtool check metrics`
 * on every worker and on `run`, both exposition formats, and a real Prometheus scraping
 * the four workers with the shipped alert rules.
 */
describe('metrics under promtool and a real Prometheus (separate worker processes)', () => {
  const schema = uniqueSchema('prom');
  let t: TestRedis;
  let env: NodeJS.ProcessEnv;
  let pool: pg.Pool;
  let prometheus: PrometheusServer | undefined;
  const workers = {} as Record<WorkerName, Spawned>;
  const ports = {} as Record<WorkerName, number>;

  beforeAll(async () => {
    t = await testRedis('prom');
    env = { REDIS_URL, DATABASE_URL: TEST_DATABASE_URL, DETEKTR_PREFIX: t.prefix, DETEKTR_DB_SCHEMA: schema, DETEKTR_METRICS_PORT: '0' };
    pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
    const migrated = await runDetektr(['migrate'], env, 60_000);
    expect(migrated.code, migrated.stderr).toBe(0);
    workers.store = spawnDetektr(['store'], env);
    workers.buffer = spawnDetektr(['buffer'], env);
    workers.process = spawnDetektr(['process', '--processor', 'sample'], env);
    workers.capture = spawnDetektr(['capture', '--camera', 'demo=testsrc', '--fps', '5'], env);
    for (const w of WORKERS) ports[w] = await metricsPort(workers[w]);
  }, 120_000);

  afterAll(async () => {
    await prometheus?.close();
    await Promise.all(Object.values(workers).map((w) => w.stop(5000)));
    await pool?.end();
    await t?.cleanup();
    await dropSchema(schema);
  });

  const completed = async (port: number, component: string) => {
    const { body } = await scrape(port);
    const m = new RegExp(
      `^detektr_frames_processed_total\\{processor="sample",outcome="completed",component="${component}"\\} (\\d+)`,
      'm',
    ).exec(body);
    return m !== null && Number(m[1]) > 0;
  };

  it('every worker serves /metrics that `promtool check metrics` accepts, with the standard Node metric names', async () => {
    await waitFor('a processed frame', () => completed(ports.process, 'process'), 60_000, 250);
    for (const w of WORKERS) {
      const { contentType, body } = await scrape(ports[w]);
      expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(promtoolCheckMetrics(body), w).toEqual({ status: 0, output: '' });
      expect(body).toMatch(new RegExp(`^process_cpu_seconds_total\\{component="${w}"\\} `, 'm'));
      expect(body).toMatch(/^nodejs_eventloop_lag_seconds\{/m);
      expect(body).not.toContain('detektr_process_');
    }
    // Counters users alert on are there at 0 before their first event.
    const capture = (await scrape(ports.capture)).body;
    expect(capture).toContain('detektr_capture_reconnects_total{camera="demo",reason="refused",component="capture"} 0');
    expect(capture).toContain('detektr_frames_dropped_total{reason="publish_failed",component="capture"} 0');
    const buffer = (await scrape(ports.buffer)).body;
    expect(buffer).toMatch(
      /^detektr_stream_dead_lettered_total\{stream="[^"]+frames:captured",reason="malformed",component="buffer"\} 0$/m,
    );
    expect(buffer).toContain('detektr_breaker_transitions_total{processor="sample",to="open",component="buffer"} 0');
  }, 90_000);

  it('`detektr run` serves /metrics that promtool accepts', async () => {
    const runSchema = uniqueSchema('promrun');
    const run = spawnDetektr(['run', '--processor', 'sample'], {
      ...env,
      DETEKTR_PREFIX: uniquePrefix('promrun'),
      DETEKTR_DB_SCHEMA: runSchema,
    });
    try {
      const port = await metricsPort(run);
      await waitFor('a frame processed by run', () => completed(port, 'run'), 60_000, 250);
      expect(promtoolCheckMetrics((await scrape(port)).body)).toEqual({ status: 0, output: '' });
    } finally {
      await run.stop(5000);
      await dropSchema(runSchema);
    }
  }, 90_000);

  it('answers Accept: application/openmetrics-text in OpenMetrics, with trace ids of stored frames as exemplars', async () => {
    const { contentType, body } = await scrape(ports.process, OPENMETRICS);
    expect(contentType).toMatch(/^application\/openmetrics-text; version=1\.0\.0/);
    expect(body.endsWith('\n# EOF\n')).toBe(true);
    expect(body).toMatch(/^# TYPE detektr_frames_processed counter$/m);
    const traceId = EXEMPLAR('detektr_processing_seconds').exec(body)?.[1];
    expect(traceId).toBeDefined();
    expect(body).toMatch(EXEMPLAR('detektr_end_to_end_seconds'));
    expect((await scrape(ports.capture, OPENMETRICS)).body).toMatch(EXEMPLAR('detektr_capture_encode_seconds'));
    // The exemplar points at a real frame: the store has its trace id.
    await waitFor(
      'the exemplar frame in PostgreSQL',
      async () => (await pool.query(`SELECT 1 FROM "${schema}".frame_metadata WHERE trace_id = $1`, [traceId])).rowCount === 1,
      30_000,
      250,
    );
    // The classic format stays as it was (no exemplars, counters keep _total).
    const classic = (await scrape(ports.process)).body;
    expect(classic).not.toContain('trace_id');
    expect(classic).toMatch(/^# TYPE detektr_frames_processed_total counter$/m);
  }, 60_000);

  it('a real Prometheus scrapes the workers (OpenMetrics), keeps the exemplars and raises the right alerts', async () => {
    prometheus = await startPrometheus(
      WORKERS.map((w) => ({ job: `detektr-${w}`, ports: [ports[w]] })),
      RULES,
    );
    const p = prometheus;
    const query = (q: string) =>
      p.api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`query?query=${encodeURIComponent(q)}`);
    const alerts = async () => (await p.api<{ alerts: Alert[] }>('alerts')).alerts;
    const named = (list: Alert[], name: string, labels: Record<string, string> = {}) =>
      list.filter((a) => a.labels.alertname === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v));
    const evaluatedSince = async (since: number) => {
      const { groups } = await p.api<{ groups: { rules: { lastEvaluation: string }[] }[] }>('rules');
      return groups.every((g) => g.rules.every((r) => Date.parse(r.lastEvaluation) > since));
    };

    // Healthy: all four targets up (a target whose OpenMetrics failed to parse would be down).
    await waitFor('all four targets up', async () => (await query('up == 1')).result.length === 4, 30_000, 250);
    const upAt = Date.now();
    await waitFor('the rules evaluated with every target up', () => evaluatedSince(upAt), 15_000, 250);
    const healthy = await alerts();
    for (const name of ['DetektrWorkerDown', 'DetektrWorkerMissing', 'DetektrNoProcessor', 'DetektrCameraOffline'])
      expect(named(healthy, name), `${name} while healthy`).toEqual([]);
    const exemplars = await waitFor(
      'exemplars in Prometheus',
      async () => {
        const now = Date.now() / 1000;
        const data = await p.api<{ exemplars: { labels: Record<string, string> }[] }[]>(
          `query_exemplars?query=detektr_processing_seconds_bucket&start=${now - 300}&end=${now}`,
        );
        const all = data.flatMap((s) => s.exemplars);
        return all.length ? all : undefined;
      },
      15_000,
      250,
    );
    expect(exemplars[0].labels.trace_id).toMatch(/^[0-9a-f]{32}$/);

    // No processor: the only processor worker stops (it unregisters); the buffer has none left.
    await workers.process.stop(10_000);
    const noProcessor = await waitFor(
      'DetektrNoProcessor',
      async () => {
        const list = await alerts();
        return named(list, 'DetektrNoProcessor').length ? list : undefined;
      },
      20_000,
      250,
    );
    expect(named(noProcessor, 'DetektrNoProcessor').map((a) => a.labels.job)).toEqual(['detektr-buffer']);
    expect(named(noProcessor, 'DetektrCameraOffline')).toEqual([]);

    // A dead target: capture crashes. Its worker is down, and its camera counts as offline.
    workers.capture.proc.kill('SIGKILL');
    const dead = await waitFor(
      'DetektrWorkerDown and DetektrCameraOffline',
      async () => {
        const list = await alerts();
        // The process worker stopped before: its up == 0 may be evaluated a round after capture's.
        return named(list, 'DetektrWorkerDown', { job: 'detektr-capture' }).length &&
          named(list, 'DetektrWorkerDown', { job: 'detektr-process' }).length &&
          named(list, 'DetektrCameraOffline', { camera: 'demo' }).length
          ? list
          : undefined;
      },
      20_000,
      250,
    );
    for (const a of [...named(dead, 'DetektrWorkerDown'), ...named(dead, 'DetektrCameraOffline')])
      expect(['pending', 'firing']).toContain(a.state);
    expect(
      named(dead, 'DetektrWorkerDown')
        .map((a) => a.labels.job)
        .sort(),
    ).toEqual(['detektr-capture', 'detektr-process']);
    expect(named(dead, 'DetektrWorkerDown', { job: 'detektr-buffer' })).toEqual([]);
  }, 90_000);
});
