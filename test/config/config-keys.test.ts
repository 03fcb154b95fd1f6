import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { bufferOptions } from '../../src/buffer/options.js';
import { decodeBusEvent } from '../../src/bus/event-codec.js';
import { singleShard } from '../../src/bus/shards.js';
import { deleteKeysWithPrefix } from '../../src/bus/redis.js';
import { CAMERA_KEY_NAMES } from '../../src/capture/camera-config.js';
import { captureOptions } from '../../src/capture/options.js';
import { loadConfig, type Config } from '../../src/config/load-config.js';
import { CONFIG_KEYS, type ConfigKey } from '../../src/config/schema.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { pipelineOptions } from '../../src/ops/local-pipeline.js';
import { builtinProcessor } from '../../src/process/builtin-processors.js';
import { processorOptions } from '../../src/process/options.js';
import { storeOptions } from '../../src/store/options.js';
import { createPool } from '../../src/store/pg.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { runDetektr } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';

type Service = 'capture' | 'buffer' | 'process' | 'store';

/**
 * How each configuration key reaches the services. Every key of src/config/schema.ts
 * needs an entry (the Record type and the first test both insist), with a non-default
 * value to set in a config file:
 * - `services`: the options those services are built with change, and are the same under
 *   `run` as under their separate worker;
 * - `host`: read by the worker host or `run` itself (connections, key prefix, logging,
 *   metrics server, embedded backends), the same code under every worker: the end-to-end
 *   test at the bottom (or the test named) runs `run` with it;
 * - `notUnderRun`: a key of a part `run` does not have, with the reason.
 */
type Entry = { value: unknown } & ({ services: Service[] } | { host: string } | { notUnderRun: string });

const KEYS: Record<ConfigKey, Entry> = {
  redisUrl: { value: 'redis://127.0.0.1:6379/0', host: 'end to end below: run uses the URL of the config file' },
  redisTlsCa: {
    value: '/etc/detektr/redis-ca.pem',
    host: 'read at connect by createRedis, the one constructor of every worker and command: test/bus/redis-connection.test.ts (TLS)',
  },
  redisTlsCert: { value: '/etc/detektr/redis-client.pem', host: 'as redisTlsCa: test/bus/redis-connection.test.ts (TLS)' },
  redisTlsKey: { value: '/etc/detektr/redis-client.key', host: 'as redisTlsCa: test/bus/redis-connection.test.ts (TLS)' },
  databaseUrl: { value: 'postgres://postgres@127.0.0.1:5432/test', host: 'end to end below' },
  pgPoolSize: { value: 4, host: 'the pool of run, store and migrate: test/config/pg-pool-size.test.ts' },
  dbSchema: { value: 'other_schema', host: 'end to end below: run migrates and stores into it' },
  prefix: { value: 'elsewhere:', host: 'end to end below: every key under it' },
  shards: { value: 3, host: 'test/bus/shards.test.ts: run --shards 3 spreads cameras over three tagged shards, every frame completes' },
  cameraShards: { value: ['a=0'], host: 'test/bus/shards.test.ts: a pinned camera lands in its shard; an unknown camera or shard exits 2' },
  logLevel: { value: 'debug', host: 'end to end below: debug lines appear' },
  metricsHost: { value: 'localhost', host: 'end to end below: the listening line names it' },
  metricsPort: { value: 0, host: 'end to end below: 0 (any free port) instead of the default 9100' },
  streamMaxLen: { value: 5000, services: ['capture', 'buffer', 'process'] },
  payloadTtl: { value: '45s', services: ['capture'] },
  maxDeliveries: { value: 7, services: ['buffer', 'process', 'store'] },
  claimIdle: { value: '20s', services: ['buffer', 'process', 'store'] },
  blockTime: { value: '500ms', services: ['buffer', 'process', 'store'] },
  batchSize: { value: 800, services: ['buffer', 'store'] },
  heartbeatInterval: { value: '1s', services: ['process'] },
  processorTtl: { value: '20s', services: ['buffer', 'process'] },
  fps: { value: 12, services: ['capture'] },
  jpegQuality: { value: 60, services: ['capture'] },
  cameras: { value: [{ id: 'front', url: 'testsrc' }, 'back=testsrc'], services: ['capture'] },
  traceUiUrl: { value: 'http://jaeger.example:16686', notUnderRun: 'only `trace find` prints trace UI links' },
  dataDir: { value: '/tmp/detektr-elsewhere', host: 'test/ops/run.test.ts (--data-dir: embedded backends and run.json there)' },
  strategy: { value: 'round-robin', services: ['buffer'] },
  apiToken: {
    value: 'a-token',
    notUnderRun: "the buffer's HTTP API: run's processors are in-process and register through Redis, run serves no buffer API",
  },
  apiPort: { value: 9200, notUnderRun: "the buffer's HTTP API, which run does not serve (see apiToken)" },
  shedPolicy: { value: 'oldest', services: ['buffer'] },
  pressureHigh: { value: 3, services: ['buffer'] },
  pressureCritical: { value: 12, services: ['buffer'] },
  starvationLimit: { value: 4, services: ['buffer'] },
  breakerFailures: { value: 9, services: ['buffer'] },
  breakerCooldown: { value: '3s', services: ['buffer'] },
  concurrency: { value: 3, services: ['process'] },
  frameTimeout: { value: '12s', services: ['process'] },
  rtspTransport: { value: 'udp', services: ['capture'] },
  cameraTimeout: { value: '2s', services: ['capture'] },
  stallTimeout: { value: '4s', services: ['capture'] },
  reconnectMax: { value: '8s', services: ['capture'] },
  offlineGrace: { value: '9s', services: ['capture'] },
  invalidFrames: { value: 'corrupt=drop,black=drop,frozen=off', services: ['capture'] },
  frozenAfter: { value: '4s', services: ['capture'] },
  thumbnailWidth: { value: 64, services: ['capture'] },
  jpegWidth: { value: 640, services: ['capture'] },
  jpegTables: { value: 'optimal', services: ['capture'] },
  detectUrls: { value: ['a=testsrc'], services: ['capture'] },
  hwaccel: {
    value: 'auto',
    host: 'resolved once in captureOptions, which capture and run share; without a GPU auto decodes in software (test/capture/hwaccel.test.ts)',
  },
};

/** Keys of a camera's own entry in the config file, each with a value that is not the default. */
const CAMERA_KEYS: Record<string, unknown> = {
  fps: 2,
  jpegQuality: 50,
  transport: 'udp',
  timeout: '3s',
  stallTimeout: '6s',
  invalidFrames: 'black=drop',
  frozenAfter: '2s',
  thumbnailWidth: 40,
  maxWidth: 640,
  jpegWidth: 320,
  detectUrl: 'testsrc',
  ffmpegOptions: { buffer_size: 1048576 },
  loop: false,
  priority: 8,
  capabilities: ['motion'],
};

const SERVICES: Service[] = ['capture', 'buffer', 'process', 'store'];
const dir = mkdtempSync(join(tmpdir(), 'detektr-config-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configWith(values: Record<string, unknown>): Config {
  const path = join(dir, `c${files++}.yml`);
  writeFileSync(path, stringify({ cameras: ['a=testsrc'], ...values }));
  return loadConfig({ configPath: path, env: {} }).config;
}

// Real objects that are passed through untouched; nothing connects.
const redis = new Redis({ lazyConnect: true });
const pool = createPool('postgres://postgres@127.0.0.1:5432/test');
const deps = {
  redis,
  blocking: [redis],
  shards: singleShard('detektr:'),
  tracer: trace.getTracer('config-keys'),
  metrics: createMetrics('test'),
  logger: createLogger({ component: 'test', level: 'error' }),
};
const processor = builtinProcessor('sample');

/** The options each separate worker builds, as its command does with no flags. */
function workerOptions(config: Config): Record<Service, unknown> {
  return {
    capture: captureOptions(config, { camerasFrom: 'cameras' })(deps),
    buffer: bufferOptions(config)(deps),
    process: processorOptions(config, { processor, id: processor.name })(deps),
    store: storeOptions(config)({ ...deps, pool }),
  };
}

/** The options `run` builds for the same services. */
function runOptions(config: Config): Record<Service, unknown> {
  const plan = pipelineOptions(config, { processors: [processor], camerasFrom: 'cameras' });
  expect(plan.processors.map((p) => p.id)).toEqual([processor.name]);
  return {
    capture: plan.capture(deps),
    buffer: plan.buffer(deps),
    process: plan.processors[0].options(deps),
    store: plan.store({ ...deps, pool }),
  };
}

describe('every configuration key takes effect under run as under its separate worker', () => {
  afterAll(async () => {
    redis.disconnect();
    await pool.end();
  });

  it('has an entry for every key of the schema, and only for those', () => {
    expect(Object.keys(KEYS).sort()).toEqual(Object.keys(CONFIG_KEYS).sort());
    expect(Object.keys(CAMERA_KEYS).sort()).toEqual([...CAMERA_KEY_NAMES].sort());
  });

  const defaultConfig = configWith({});
  const defaults = runOptions(defaultConfig);

  for (const [key, entry] of Object.entries(KEYS) as [ConfigKey, Entry][]) {
    it(`${key}: ${'services' in entry ? entry.services.join(', ') : 'host' in entry ? 'host' : 'not under run'}`, () => {
      const config = configWith({ [key]: entry.value });
      expect(config[key], 'the value must not be the default').not.toEqual(defaultConfig[key]);
      const run = runOptions(config);
      const worker = workerOptions(config);
      const changed = 'services' in entry ? entry.services : [];
      for (const s of SERVICES) {
        expect(run[s], `${s}: run builds what the ${s} worker builds`).toEqual(worker[s]);
        if (changed.includes(s)) expect(run[s], `${s} is built with ${key}`).not.toEqual(defaults[s]);
        else expect(run[s], `${s} does not read ${key}`).toEqual(defaults[s]);
      }
    });
  }

  for (const [key, value] of Object.entries(CAMERA_KEYS)) {
    it(`a camera's own ${key} in the config file`, () => {
      const config = configWith({ cameras: [{ id: 'a', url: 'testsrc', [key]: value }] });
      const run = runOptions(config);
      expect(run.capture).toEqual(workerOptions(config).capture);
      expect(run.capture, `capture is built with the camera's ${key}`).not.toEqual(defaults.capture);
    });
  }
});

describe('under run, end to end: the host keys and per-camera settings of a config file', () => {
  it('run uses the URLs, schema, prefix, log level and metrics address of the config file, and each camera its own settings', async () => {
    const prefix = uniquePrefix('cfgkeys');
    const schema = uniqueSchema('cfgkeys');
    const path = join(dir, 'run.yml');
    writeFileSync(
      path,
      stringify({
        'redis-url': REDIS_URL,
        'database-url': TEST_DATABASE_URL,
        'db-schema': schema,
        prefix,
        'log-level': 'debug',
        'metrics-host': 'localhost',
        'metrics-port': 0,
        fps: 10,
        'thumbnail-width': 32,
        cameras: [
          { id: 'cam1', url: 'testsrc', priority: 7 },
          { id: 'cam2', url: 'testsrc', 'thumbnail-width': 48 },
        ],
      }),
    );
    const t = await testRedis('cfgkeys-check');
    const db = new pg.Client({ connectionString: TEST_DATABASE_URL });
    try {
      const clean = Object.fromEntries(
        Object.keys(process.env)
          .filter((k) => k.startsWith('DETEKTR_'))
          .map((k) => [k, undefined]),
      );
      const run = await runDetektr(
        ['run', '--config', path, '--processor', 'sample', '--max-frames', '3'],
        { ...clean, REDIS_URL: undefined, DATABASE_URL: undefined },
        90_000,
      );
      expect(run.code, run.stderr).toBe(0);
      const lines = run.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.some((l) => l.level === 'debug')).toBe(true);
      expect(lines.find((l) => l.msg === 'listening')?.metrics).toMatch(/^http:\/\/localhost:\d+\/metrics$/);
      expect(lines.find((l) => l.msg === 'listening')?.port).not.toBe(9100);
      expect(lines.find((l) => l.msg === 'backends')).toMatchObject({ redis: expect.stringMatching(/^external/) as unknown });

      const events = (await t.redis.xrange(`${prefix}events`, '-', '+')).map(([, f]) => decodeBusEvent(f));
      const captured = events.filter((e): e is LifecycleEvent => e.type === 'frame.captured');
      const of = (camera: string) => captured.filter((e) => e.cameraId === camera);
      expect(of('cam1').length).toBeGreaterThanOrEqual(3);
      expect(of('cam2').length).toBeGreaterThanOrEqual(3);
      for (const e of of('cam1')) expect(e.data).toMatchObject({ priority: 7, thumbnail: { width: 32 } });
      for (const e of of('cam2')) expect(e.data).toMatchObject({ priority: 5, thumbnail: { width: 48 } });

      await db.connect();
      const rows = await db.query<{ camera_id: string; n: string }>(
        `SELECT camera_id, count(*) AS n FROM "${schema}".frame_metadata GROUP BY camera_id ORDER BY camera_id`,
      );
      expect(rows.rows.map((r) => [r.camera_id, Number(r.n) >= 3])).toEqual([
        ['cam1', true],
        ['cam2', true],
      ]);
    } finally {
      await db.end().catch(() => undefined);
      await deleteKeysWithPrefix(t.redis, prefix);
      await t.cleanup();
      await dropSchema(schema);
    }
  }, 120_000);
});
