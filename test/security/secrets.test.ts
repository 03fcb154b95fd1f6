import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningPort, runDetektr, spawnDetektr, type Spawned } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-redis.js';
import { uniquePrefix, waitFor } from '../helpers/redis.js';
import { freePort, startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';

/**
 * Issue #7: passwords and tokens in URLs and in the config never appear in logs, metrics,
 * traces, events, stored rows, error messages or `config show`. The whole pipeline runs as
 * separate processes (bin/detektr: `npm run build` first) against a password-protected
 * Redis of its own, a PostgreSQL URL with a password, and an RTSP camera that asks for one;
 * then every output is grepped for every secret, raw and URL-encoded.
 */

// Distinctive secrets; '/' and '%' must be percent-encoded in a URL, so both forms are checked.
const RTSP_USER = 'admin';
const RTSP_PW = 'rtspS3cret!x';
const RTSP_WRONG = 'rtspWr0ng!q';
const REDIS_PW = 'redisS3cret/y';
const REDIS_WRONG = 'redisWr0ng/q';
const PG_PW = 'pgS3cret%z';
const UI_PW = 'uiS3cret~w';
const UI_TOKEN = 'uiT0ken-v';
/** The buffer API's bearer token (DETEKTR_API_TOKEN), a secret that is not a URL. */
const API_TOKEN = 'apiS3cretT0ken-u';
/** Not valid in a URL unencoded, yet accepted by URL parsers (encoded for you): it ends a URL in free text. */
const ODD_PW = 'odd S3cret"q';
const enc = encodeURIComponent;

const SECRETS = [RTSP_PW, RTSP_WRONG, REDIS_PW, REDIS_WRONG, PG_PW, UI_PW, UI_TOKEN, API_TOKEN, ODD_PW];
/** Every form a secret could leak in: raw, URL-encoded, and Basic-auth base64 of user:password. */
const FORBIDDEN = [
  ...new Set([
    ...SECRETS,
    ...SECRETS.map(enc),
    ...[RTSP_PW, RTSP_WRONG].map((pw) => Buffer.from(`${RTSP_USER}:${pw}`).toString('base64')),
    Buffer.from(`:${REDIS_PW}`).toString('base64'),
    // A secret cut short or re-encoded differently still carries these.
    'S3cret',
    'Wr0ng',
    'T0ken',
  ]),
];

/** Asserts no output holds a secret; names the output and shows the hit's surroundings. */
function expectNoSecrets(outputs: [label: string, text: string][]): void {
  const hits: string[] = [];
  for (const [label, text] of outputs) {
    for (const s of FORBIDDEN) {
      const i = text.indexOf(s);
      if (i >= 0) hits.push(`${label} contains "${s}": ...${text.slice(Math.max(0, i - 120), i + 60)}...`);
    }
  }
  expect(hits, hits.join('\n\n')).toEqual([]);
}

/** An OTLP/HTTP receiver that keeps every request body whole: attributes, events, resources, status. */
async function startRawOtlp(): Promise<{ url: string; bodies: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      bodies.push(`${req.url} ${JSON.stringify(req.headers)}\n${body}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function get(url: string): Promise<string> {
  const res = await fetch(url);
  return `${res.status} ${await res.text()}`;
}

/** Every key under the prefix, whatever its type, with its whole content. */
async function dumpRedis(redis: Redis, prefix: string): Promise<[string, string][]> {
  const out: [string, string][] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      let content: unknown;
      if (type === 'stream') {
        const groups = (await redis.xinfo('GROUPS', key)) as unknown[];
        content = { entries: await redis.xrange(key, '-', '+'), groups };
      } else if (type === 'hash') content = await redis.hgetall(key);
      else if (type === 'set') content = await redis.smembers(key);
      else if (type === 'zset') content = await redis.call('ZRANGE', key, '0', '-1', 'WITHSCORES');
      else if (type === 'list') content = await redis.lrange(key, 0, -1);
      else if (type === 'string') content = (await redis.getBuffer(key))?.toString('latin1');
      out.push([`redis ${type} ${key}`, JSON.stringify(content)]);
    }
  } while (cursor !== '0');
  return out;
}

describe('secrets never leak (issue #7)', () => {
  const schema = uniqueSchema('sec');
  const prefix = uniquePrefix('sec');
  let dir: string;
  let cam: RtspServer;
  let redis: PrivateRedis;
  let otlp: Awaited<ReturnType<typeof startRawOtlp>>;
  let pool: pg.Pool;
  let configFile: string;
  let redisUrl: string;
  let databaseUrl: string;
  let goodCamera: string;
  let wrongCamera: string;
  /** Environment of every process; REDIS_URL / DATABASE_URL blank so the config file or flags decide. */
  let base: NodeJS.ProcessEnv;
  const outputs: [string, string][] = [];
  const spawned: Spawned[] = [];

  beforeAll(async () => {
    [cam, redis, otlp] = await Promise.all([
      startRtspServer({ user: RTSP_USER, password: RTSP_PW, speed: 2, fps: 15 }),
      startPrivateRedis({ password: REDIS_PW }),
      startRawOtlp(),
    ]);
    dir = mkdtempSync(join(tmpdir(), 'detektr-secrets-'));
    redisUrl = `redis://:${enc(REDIS_PW)}@127.0.0.1:${redis.port}`;
    expect(redis.url).toBe(redisUrl);
    const pgBase = new URL(TEST_DATABASE_URL);
    databaseUrl = `postgres://${pgBase.username || 'postgres'}:${enc(PG_PW)}@${pgBase.host}${pgBase.pathname}`;
    goodCamera = `rtsp://${RTSP_USER}:${RTSP_PW}@127.0.0.1:${cam.port}/cam`;
    wrongCamera = `rtsp://${RTSP_USER}:${RTSP_WRONG}@127.0.0.1:${cam.port}/cam`;
    configFile = join(dir, 'secrets.yml');
    writeFileSync(
      configFile,
      [
        `redisUrl: "${redisUrl}"`,
        `databaseUrl: "${databaseUrl}"`,
        `dbSchema: ${schema}`,
        `prefix: "${prefix}"`,
        'logLevel: debug',
        `traceUiUrl: "http://jaeger:${enc(UI_PW)}@127.0.0.1:16686/?token=${UI_TOKEN}"`,
        'cameras:',
        '  - id: front',
        `    url: "${goodCamera}"`,
        `  - "yard=${wrongCamera}"`,
        '',
      ].join('\n'),
    );
    base = {
      REDIS_URL: '',
      DATABASE_URL: '',
      DETEKTR_CONFIG: undefined,
      DETEKTR_TRACE_UI_URL: '',
      DETEKTR_PREFIX: prefix,
      DETEKTR_DB_SCHEMA: schema,
      DETEKTR_LOG_LEVEL: 'debug',
      DETEKTR_METRICS_PORT: '0',
      DETEKTR_API_TOKEN: API_TOKEN,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_SERVICE_NAME: undefined,
    };
    pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
  });

  afterAll(async () => {
    await Promise.all(spawned.map((p) => p.stop(5000)));
    await pool?.end();
    await Promise.all([otlp?.close(), cam?.close(), redis?.stop()]);
    await dropSchema(schema);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs the pipeline with credentials everywhere and no output holds one', async () => {
    // migrate: the PostgreSQL URL as a flag.
    const migrate = await runDetektr(['migrate', '--database-url', databaseUrl, '--db-schema', schema], base);
    expect(migrate.code, migrate.stderr).toBe(0);
    outputs.push(['migrate stdout+stderr', migrate.stdout + migrate.stderr]);

    // Every way in: capture takes its cameras as flags (in argv, which OpenTelemetry's process
    // resource would report) and the rest from the config file; store reads only the file;
    // buffer has its Redis URL as a flag; process reads the environment.
    const envUrls = { ...base, REDIS_URL: redisUrl, DATABASE_URL: databaseUrl };
    // Every HTTP server on a port the kernel picks (DETEKTR_METRICS_PORT=0), read from its log.
    const workers: Record<string, { p: Spawned; port?: number; extra: string[] }> = {
      capture: {
        p: spawnDetektr(
          [
            'capture',
            '--config',
            configFile,
            '--camera',
            `front=${goodCamera}`,
            '--camera',
            `yard=${wrongCamera}`,
            '--fps',
            '10',
            '--timeout',
            '2s',
          ],
          base,
        ),
        extra: ['/cameras'],
      },
      buffer: {
        p: spawnDetektr(['buffer', '--redis-url', redisUrl, '--database-url', databaseUrl], base),
        extra: ['/status', '/processors'],
      },
      process: {
        p: spawnDetektr(['process', '--processor', 'sample'], envUrls),
        extra: [],
      },
      store: { p: spawnDetektr(['store', '--config', configFile], base), extra: [] },
    };
    spawned.push(...Object.values(workers).map((w) => w.p));

    const completed = async () =>
      (await pool.query(`SELECT count(*)::int AS n FROM "${schema}".frame_metadata WHERE state = 'completed'`)).rows[0].n as number;
    await waitFor('30 completed frames in PostgreSQL', async () => (await completed()) >= 30, 40_000, 200).catch((err: Error) => {
      throw new Error(
        `${err.message}\n${Object.entries(workers)
          .map(([n, w]) => `--- ${n}\n${w.p.stderr().slice(-2000)}`)
          .join('\n')}`,
      );
    });
    const yardEvents = async () =>
      (await pool.query(`SELECT count(*)::int AS n FROM "${schema}".camera_events WHERE camera_id = 'yard'`)).rows[0].n as number;
    await waitFor('the camera with the wrong password stored as offline', async () => (await yardEvents()) >= 1, 10_000, 200);
    for (const [name, w] of Object.entries(workers)) w.port = await listeningPort(w.p, name);

    for (const [name, w] of Object.entries(workers)) {
      for (const path of ['/metrics', '/readyz', '/healthz', ...w.extra]) {
        const body = await get(`http://127.0.0.1:${w.port}${path}`);
        outputs.push([`${name} GET ${path}`, body]);
      }
    }
    const cameras = outputs.find(([l]) => l === 'capture GET /cameras')![1];
    expect(cameras).toContain(`${RTSP_USER}:***@127.0.0.1:${cam.port}`);
    expect(cameras).toMatch(/401/);
    expect(outputs.find(([l]) => l === 'capture GET /metrics')![1]).toMatch(/detektr_frames_published_total/);

    const codes = await Promise.all(Object.values(workers).map((w) => w.p.stop(15_000)));
    expect(codes).toEqual([0, 0, 0, 0]);
    for (const [name, w] of Object.entries(workers)) {
      outputs.push([`${name} stdout+stderr`, w.p.stdout() + w.p.stderr()]);
      // Logs at debug level, with the redacted URLs in them: the grep has something to bite on.
      expect(w.p.stderr(), name).toContain('"logLevel":"debug"');
      expect(w.p.stderr(), name).toContain(`redis://:***@127.0.0.1:${redis.port}`);
      expect(w.p.stderr(), name).toContain('postgres://postgres:***@');
    }
    expect(Object.values(workers).some((w) => w.p.stderr().includes('"level":"debug"'))).toBe(true);
    expect(workers.capture.p.stderr()).toContain(`${RTSP_USER}:***@127.0.0.1:${cam.port}/cam`);
    expect(workers.store.p.stderr()).toContain('postgres:***@');

    await waitFor(
      'spans of all four workers',
      () => ['capture', 'buffer', 'process', 'store'].every((c) => otlp.bodies.some((b) => b.includes(`detektr-${c}`))),
      5000,
    );
    const exported = otlp.bodies.join('\n');
    // The resource reports the command line, flags and all: redacted.
    expect(exported).toContain('process.command_args');
    expect(exported).toContain(`yard=rtsp://${RTSP_USER}:***@127.0.0.1:${cam.port}/cam`);
    outputs.push(['OTLP requests (spans with attributes, events, resources)', exported]);

    const r = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const dump = await dumpRedis(r, prefix);
      expect(dump.map(([l]) => l).join('\n')).toMatch(/stream .*events/);
      outputs.push(...dump);
      outputs.push(['redis CLIENT LIST', String(await r.client('LIST'))]);
    } finally {
      r.disconnect();
    }

    const tables = (await pool.query<{ t: string }>('SELECT tablename AS t FROM pg_tables WHERE schemaname = $1', [schema])).rows.map(
      (x) => x.t,
    );
    expect(tables).toEqual(expect.arrayContaining(['frame_events', 'camera_events', 'frame_metadata', 'processing_stages']));
    for (const t of tables) {
      const rows = (await pool.query<{ r: string }>(`SELECT x::text AS r FROM "${schema}"."${t}" x`)).rows.map((x) => x.r);
      outputs.push([`postgres ${t} (${rows.length} rows)`, rows.join('\n')]);
    }
    const stored = outputs
      .filter(([l]) => /^postgres (camera_events|frame_events) /.test(l))
      .map(([, t]) => t)
      .join('\n');
    expect(stored).toMatch(/401/);
    expect(stored).toContain(`${RTSP_USER}:***@`);

    // A frame's journey, with links to the trace UI and spans fetched from a trace API (both URLs with credentials).
    const frameId = (
      await pool.query<{ f: string }>(`SELECT frame_id AS f FROM "${schema}".frame_metadata WHERE state = 'completed' LIMIT 1`)
    ).rows[0].f;
    const traceApi = `http://tempo:${enc(UI_PW)}@127.0.0.1:${await freePort()}/?token=${UI_TOKEN}`;
    const finds = await Promise.all([
      runDetektr(['trace', 'find', frameId, '--config', configFile, '--spans', '--trace-api-url', traceApi], base),
      runDetektr(['trace', 'find', frameId, '--config', configFile, '--spans', '--json'], { ...base, DETEKTR_TRACE_API_URL: traceApi }),
    ]);
    for (const [i, r] of finds.entries()) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(frameId);
      outputs.push([`trace find ${i ? '--json ' : ''}--spans (trace UI and API URLs with credentials)`, r.stdout + r.stderr]);
    }

    expectNoSecrets(outputs);
  }, 60_000);

  it('`detektr run` (one process) keeps them out of its output and spans too', async () => {
    const from = otlp.bodies.length;
    const r = await runDetektr(
      [
        'run',
        '--camera',
        `front=${goodCamera}`,
        '--processor',
        'sample',
        '--fps',
        '10',
        '--max-frames',
        '10',
        '--redis-url',
        redisUrl,
        '--database-url',
        databaseUrl,
      ],
      { ...base, DETEKTR_PREFIX: `${prefix}run:` },
      40_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/published 10 frames/);
    expect(r.stderr).toContain('postgres://postgres:***@');
    await waitFor('spans of run', () => otlp.bodies.slice(from).some((b) => b.includes('detektr-run')), 5000);
    expectNoSecrets([
      ['run stdout+stderr', r.stdout + r.stderr],
      ['run OTLP requests', otlp.bodies.slice(from).join('\n')],
    ]);
  }, 45_000);

  it('`config show` (table and JSON) redacts secrets from the file, the environment and flags', async () => {
    const fromFile = await runDetektr(['config', 'show', '--config', configFile], base);
    const fromFileJson = await runDetektr(['config', 'show', '--json', '--config', configFile], base);
    const fromEnv = await runDetektr(['config', 'show', '--json'], {
      ...base,
      REDIS_URL: redisUrl,
      DATABASE_URL: databaseUrl,
      DETEKTR_CAMERAS: `front=${goodCamera},yard=${wrongCamera}`,
      DETEKTR_TRACE_UI_URL: `http://jaeger:${enc(UI_PW)}@127.0.0.1:16686/?token=${UI_TOKEN}`,
    });
    const fromFlags = await runDetektr(['config', 'show', '--redis-url', redisUrl, '--database-url', databaseUrl], base);
    // A password with a space and a quote, unencoded: still a URL to the parser, and to the redactor.
    const oddFlags = await runDetektr(['config', 'show', '--json', '--redis-url', `redis://:${ODD_PW}@127.0.0.1:6379`], {
      ...base,
      DETEKTR_CAMERAS: `x=rtsp://a:${ODD_PW}@h/cam`,
    });
    const all = { fromFile, fromFileJson, fromEnv, fromFlags, oddFlags };
    for (const [name, r] of Object.entries(all)) expect(r.code, `${name}: ${r.stderr}`).toBe(0);
    const json = JSON.parse(fromFileJson.stdout) as { values: Record<string, { value: unknown }> };
    expect(json.values.redisUrl.value).toBe(`redis://:***@127.0.0.1:${redis.port}`);
    expect(json.values.databaseUrl.value).toMatch(/^postgres:\/\/postgres:\*\*\*@/);
    expect(json.values.cameras.value).toEqual([
      `front=rtsp://${RTSP_USER}:***@127.0.0.1:${cam.port}/cam`,
      `yard=rtsp://${RTSP_USER}:***@127.0.0.1:${cam.port}/cam`,
    ]);
    expect(json.values.traceUiUrl.value).toBe('http://jaeger:***@127.0.0.1:16686/?token=***');
    expect(fromFile.stdout).toContain('redis://:***@');
    expect(JSON.parse(fromEnv.stdout).values.apiToken?.value ?? '***').toBe('***');
    expect(JSON.parse(oddFlags.stdout).values.redisUrl.value).toBe('redis://:***@127.0.0.1:6379');
    expect(JSON.parse(oddFlags.stdout).values.cameras.value).toEqual(['x=rtsp://a:***@h/cam']);
    expectNoSecrets(Object.entries(all).map(([name, r]) => [`config show ${name}`, r.stdout + r.stderr]));
  });

  it('failing commands name what failed without the password', async () => {
    const deadPort = await freePort();
    const deadDb = `postgres://postgres:${enc(PG_PW)}@127.0.0.1:${deadPort}/detektr`;
    const wrongRedis = `redis://:${enc(REDIS_WRONG)}@127.0.0.1:${redis.port}`;
    // Workers that keep retrying (a wrong Redis password, a camera that refuses): look at them, then stop them.
    const badAuth = spawnDetektr(['buffer'], { ...base, REDIS_URL: wrongRedis });
    const refused = spawnDetektr(
      [
        'capture',
        '--camera',
        `front=rtsp://${RTSP_USER}:${enc(RTSP_PW)}@127.0.0.1:${deadPort}/cam`,
        '--timeout',
        '2s',
        '--reconnect-max',
        '2s',
      ],
      { ...base, REDIS_URL: redisUrl },
    );
    spawned.push(badAuth, refused);
    const [metricsPort, capturePort] = [await listeningPort(badAuth, 'buffer'), await listeningPort(refused, 'capture')];
    const runs = await Promise.all([
      runDetektr(['trace', 'find', '01JD8X3Q5R7ZC1V2W3X4Y5Z6A7'], { ...base, DATABASE_URL: deadDb }),
      runDetektr(['validate'], { ...base, REDIS_URL: redisUrl, DATABASE_URL: deadDb }),
      runDetektr(['validate', '--json'], { ...base, REDIS_URL: wrongRedis, DATABASE_URL: deadDb }),
      runDetektr(['migrate'], { ...base, DATABASE_URL: deadDb }),
      runDetektr(['capture', '--camera', `front=${wrongCamera}`, '--timeout', '2s'], { ...base, REDIS_URL: redisUrl }),
      runDetektr(['capture', '--camera', `front=rtsp://${RTSP_USER}:${RTSP_PW}@no-such-camera.invalid:554/cam`, '--timeout', '2s'], {
        ...base,
        REDIS_URL: redisUrl,
      }),
      // Bad values of URL settings: the error quotes the value, redacted.
      runDetektr(['config', 'show', '--database-url', `postgres://u:${enc(PG_PW)}@ bad/x`], base),
      runDetektr(['config', 'show'], { ...base, DETEKTR_TRACE_UI_URL: `http://jaeger:${UI_PW}@ bad/?token=${UI_TOKEN}` }),
      runDetektr(['config', 'show', '--redis-url', `redis://:${ODD_PW}@/x y`], base),
    ]);
    const [find, validate, validateJson, migrate, wrongPw, noHost, badDbUrl, badUiUrl, badOddUrl] = runs;
    await waitFor('the auth failure logged', () => /WRONGPASS|NOAUTH|invalid (username-)?password/i.test(badAuth.stderr()), 15_000);
    await waitFor('the refused camera logged', () => /Connection refused/.test(refused.stderr()), 15_000);
    const endpoints: [string, string][] = [];
    for (const [name, port] of [
      ['buffer (wrong redis password)', metricsPort],
      ['capture (camera refuses)', capturePort],
    ] as const) {
      for (const path of ['/readyz', '/healthz', '/metrics', ...(port === capturePort ? ['/cameras'] : [])]) {
        endpoints.push([
          `${name} GET ${path}`,
          await get(`http://127.0.0.1:${port}${path}`).catch((err: Error) => `unreachable: ${err.message}`),
        ]);
      }
    }
    await Promise.all([badAuth.stop(5000), refused.stop(5000)]);

    expect(find.code).toBe(1);
    expect(find.stderr).toMatch(/^detektr: .*ECONNREFUSED/m);
    expect(validate.code).toBe(1);
    expect(validate.stdout).toMatch(/postgres.*FAIL/);
    expect(validateJson.code).toBe(1);
    expect(migrate.code).toBe(1);
    expect(migrate.stderr).toContain('postgres:***@127.0.0.1');
    expect(wrongPw.code).toBe(1);
    expect(wrongPw.stderr).toContain(`${RTSP_USER}:***@127.0.0.1:${cam.port}/cam`);
    expect(wrongPw.stderr).toMatch(/401/);
    expect(noHost.code).toBe(1);
    expect(refused.stderr()).toContain(`${RTSP_USER}:***@127.0.0.1:${deadPort}/cam`);
    expect(noHost.stderr).toContain(`${RTSP_USER}:***@no-such-camera.invalid`);
    expect(badDbUrl.code).toBe(2);
    expect(badDbUrl.stderr).toContain('postgres://u:***@ bad/x');
    expect(badUiUrl.code).toBe(2);
    expect(badUiUrl.stderr).toMatch(/DETEKTR_TRACE_UI_URL/);
    expect(badOddUrl.code).toBe(2);
    expect(badOddUrl.stderr).toContain('--redis-url: "redis://:***@/x y"');
    expect(badAuth.stderr()).toContain(`redis://:***@127.0.0.1:${redis.port}`);

    const labels = [
      'trace find (database down)',
      'validate (database down)',
      'validate --json (wrong redis password, database down)',
      'migrate (database down)',
      'capture (wrong camera password)',
      'capture (camera host unknown)',
      'config show (bad database URL)',
      'config show (bad trace UI URL)',
      'config show (bad redis URL, odd password)',
    ];
    const out: [string, string][] = runs.map((r, i) => [labels[i], r.stdout + r.stderr]);
    out.push(
      ['buffer (wrong redis password) stdout+stderr', badAuth.stdout() + badAuth.stderr()],
      ['capture (camera refuses) stdout+stderr', refused.stdout() + refused.stderr()],
      ...endpoints,
    );
    for (const [label, text] of out) expect(text.trim(), `${label} says something`).not.toBe('');
    expectNoSecrets(out);
  }, 45_000);
});
