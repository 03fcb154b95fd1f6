import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferApi, MAX_BODY_BYTES } from '../../src/buffer/api.js';
import type { BufferService } from '../../src/buffer/buffer-service.js';
import { deleteKeysWithPrefix } from '../../src/bus/redis.js';
import { decodeFrame } from '../../src/bus/frame-codec.js';
import { checkApiExposure, isLoopbackHost, startHttpServer, type RunningHttpServer } from '../../src/telemetry/http-server.js';
import { runDetektr, spawnDetektr } from '../helpers/cli.js';
import { REDIS_URL, testRedis, uniquePrefix, waitFor } from '../helpers/redis.js';
import { harness, slowProcessor, type Harness } from './harness.js';

/** Sends a body chunked (no Content-Length) of `total` bytes in 16 KiB writes; resolves with the answer, however early it comes. */
function postChunked(
  url: string,
  total: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; sentBeforeAnswer: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      answered = true;
      const sentBeforeAnswer = sent;
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body, sentBeforeAnswer }));
    });
    req.on('error', (err) => {
      if (!answered) reject(err); // after the answer, the server closing on the rest of the body is expected
    });
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const pump = () => {
      while (sent < total && !answered) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

describe('buffer HTTP API (real Redis, in-process buffer)', () => {
  let h: Harness;
  let buffer: BufferService;
  let server: RunningHttpServer;
  let base: string;

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined, text };
  };

  beforeAll(async () => {
    h = harness(await testRedis('api'));
    h.runtime(slowProcessor('motion-1', ['motion'], 0), { concurrency: 2 });
    buffer = h.buffer({ strategy: 'least-loaded' });
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: h.metrics.registry,
      readiness: () => ({ ready: true, checks: {} }),
      routes: [bufferApi(buffer, { heartbeatMs: 500 })],
    });
    base = `http://127.0.0.1:${server.port}`;
    await waitFor('motion-1 registered', async () => (await buffer.liveProcessors()).length === 1);
  });
  afterAll(async () => {
    await server?.close();
    await h?.close();
    await h?.t.cleanup();
  });

  it('lists the registry with load and breaker state, and gets one processor', async () => {
    const list = await call('GET', '/processors');
    expect(list.status).toBe(200);
    expect(list.json.processors).toHaveLength(1);
    const p = list.json.processors[0];
    expect(p).toMatchObject({
      id: 'motion-1',
      capabilities: ['motion'],
      capacity: 32,
      depth: 0,
      load: 0,
      source: 'process',
      breaker: { state: 'closed' },
    });
    expect(Object.values(p.instances)).toEqual([expect.objectContaining({ concurrency: 2, pid: process.pid })]);
    expect((await call('GET', '/processors/motion-1')).json.id).toBe('motion-1');
    expect(await call('GET', '/processors/nope')).toMatchObject({ status: 404, json: { error: 'no live processor nope' } });
  });

  it('registers a processor (which then gets frames on its ready stream), keeps it alive by heartbeat, unregisters it', async () => {
    const reg = await call('POST', '/processors', { id: 'ext-1', capabilities: ['person_detection'], capacity: 3 });
    expect(reg.status).toBe(201);
    expect(reg.json).toMatchObject({ id: 'ext-1', capabilities: ['person_detection'], capacity: 3, source: 'api' });
    const f = await h.publish({ capabilities: ['person_detection'] });
    await waitFor('frame on ext-1', async () => (await h.t.redis.xlen(h.t.keys.ready('ext-1'))) === 1);
    const [[, fields]] = await h.t.redis.xrange(h.t.keys.ready('ext-1'), '-', '+');
    expect(decodeFrame(fields)).toMatchObject({ frameId: f.frameId, processorId: 'ext-1', capability: 'person_detection' });
    expect((await call('POST', '/processors/ext-1/heartbeat', { completed: 1 })).status).toBe(200);
    expect((await call('GET', '/processors/ext-1')).json).toMatchObject({ completed: 1, depth: 1, load: 1 / 3 });
    expect((await call('POST', '/processors/motion-1/heartbeat')).status).toBe(409); // its own workers heartbeat for it
    expect((await call('DELETE', '/processors/ext-1')).status).toBe(204);
    expect((await call('GET', '/processors/ext-1')).status).toBe(404);
    expect((await call('DELETE', '/processors/ext-1')).status).toBe(404);
    expect((await call('POST', '/processors/ext-1/heartbeat')).status).toBe(404);
  });

  it('expires an API-registered processor that stops heart-beating', async () => {
    expect((await call('POST', '/processors', { id: 'ext-2', capabilities: ['lpr'] })).status).toBe(201);
    await waitFor('ext-2 expired', async () => (await call('GET', '/processors/ext-2')).status === 404, 5000, 100);
  });

  it('rejects bad input with a 4xx and a JSON error naming the problem', async () => {
    const cases: [string, string, unknown, number, RegExp, Record<string, string>?][] = [
      ['POST', '/processors', undefined, 400, /a JSON object body is required/],
      ['POST', '/processors', '{"id":', 400, /not valid JSON/],
      ['POST', '/processors', '[1]', 400, /body must be a JSON object/],
      [
        'POST',
        '/processors',
        'id=x',
        415,
        /content-type must be application\/json/,
        { 'content-type': 'application/x-www-form-urlencoded' },
      ],
      ['POST', '/processors', { id: 'a b', capabilities: ['x'] }, 400, /field id must be/],
      ['POST', '/processors', { id: 'a', capabilities: [] }, 400, /field capabilities must be/],
      ['POST', '/processors', { id: 'a', capabilities: ['x', 7] }, 400, /field capabilities must be/],
      [
        'POST',
        '/processors',
        { id: 'a', capabilities: ['x'], capacity: 0 },
        400,
        /field capacity must be an integer between 1 and 100000, got 0/,
      ],
      ['POST', '/processors', { id: 'a', capabilities: ['x'], capacity: '5' }, 400, /field capacity/],
      ['POST', '/processors', { id: 'a', capabilities: ['x'], admin: true }, 400, /unknown field "admin"/],
      ['POST', '/processors', { id: 'x'.repeat(MAX_BODY_BYTES), capabilities: ['x'] }, 413, /body too large/],
      ['GET', '/processors/bad%20id', undefined, 400, /processor id "bad id" must be/],
      ['GET', '/processors/%E0%A4%A', undefined, 400, /not valid URL encoding/],
      ['PUT', '/processors', { id: 'a' }, 405, /method PUT not allowed here \(allowed: GET, HEAD, POST\)/],
      ['GET', '/processors/motion-1/heartbeat', undefined, 405, /allowed: POST/],
      ['POST', '/processors/motion-1/heartbeat', { completed: -1 }, 400, /field completed must be an integer/],
      ['GET', '/processors/a/b/c', undefined, 404, /no route/],
      ['POST', '/status', undefined, 405, /allowed: GET, HEAD/],
    ];
    for (const [method, path, body, status, error, headers] of cases) {
      const r = await call(method, path, body, headers);
      expect(r.status, `${method} ${path} ${JSON.stringify(body)?.slice(0, 80)}`).toBe(status);
      expect(r.json?.error, `${method} ${path}`).toMatch(error);
      expect(r.headers.get('content-type')).toBe('application/json');
      if (status === 405) expect(r.headers.get('allow')).toBeTruthy();
    }
    // Nothing was registered by all that.
    expect((await call('GET', '/processors')).json.processors.map((p: { id: string }) => p.id)).toEqual(['motion-1']);
  });

  it('reports status: strategy, pressure, lanes, input lag, processors with breaker, dead-letter counts; and serves /metrics /healthz /readyz', async () => {
    for (let i = 0; i < 5; i++) await h.publish({ capabilities: ['motion'] });
    await waitFor('frames done', async () => (await h.t.redis.xlen(h.t.keys.results)) >= 5);
    const s = await call('GET', '/status');
    expect(s.status).toBe(200);
    expect(s.json).toMatchObject({
      strategy: 'least-loaded',
      shedPolicy: 'lowest-priority',
      pressure: { level: 'normal', backlog: 0, capacity: 32, highBound: 128, criticalBound: 512, shedding: false },
      lanes: { high: 0, normal: 0, low: 0 },
      input: { stream: h.t.keys.captured, lag: 0, pending: 0 },
      capabilities: { motion: ['motion-1'] },
      deadLetter: {},
    });
    expect(s.json.processors[0]).toMatchObject({ id: 'motion-1', breaker: { state: 'closed', opened: 0 } });
    const metrics = await fetch(`${base}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/detektr_routing_decision_seconds_count\{[^}]*strategy="least-loaded"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/detektr_frames_routed_total\{[^}]*processor="motion-1"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/detektr_buffer_pressure_level\{component="test"\} 0/);
    expect(metrics).not.toMatch(/frame_id|[0-9A-HJKMNP-TV-Z]{26}/); // no frame ids as labels
    expect((await call('GET', '/healthz')).json).toEqual({ status: 'ok' });
    expect((await call('GET', '/readyz')).status).toBe(200);
  });
});

describe('buffer HTTP API: the token rule and body limits (issue #7)', () => {
  const TOKEN = `tok-${randomBytes(16).toString('hex')}`;
  const WRONG = `tok-${randomBytes(16).toString('hex')}`;
  let h: Harness;
  let buffer: BufferService;
  let open: RunningHttpServer; // 0.0.0.0 with a token
  let local: RunningHttpServer; // 127.0.0.1 with a token
  let bare: RunningHttpServer; // 0.0.0.0 without a token (the command refuses this; the API still guards itself)
  let base: string;

  const call = async (method: string, path: string, opts: { body?: unknown; token?: string; at?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    const res = await fetch(`${opts.at ?? base}${path}`, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await res.text();
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(WRONG);
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined, text };
  };
  const ids = async () => (await buffer.registry.live()).map((p) => p.id);

  beforeAll(async () => {
    h = harness(await testRedis('api-token'));
    buffer = h.buffer({ processorTtlMs: 30_000 });
    const serve = (host: string, token?: string) =>
      startHttpServer({
        host,
        port: 0,
        registry: h.metrics.registry,
        readiness: () => ({ ready: true, checks: {} }),
        routes: [bufferApi(buffer, { heartbeatMs: 500, token })],
      });
    [open, local, bare] = await Promise.all([serve('0.0.0.0', TOKEN), serve('127.0.0.1', TOKEN), serve('0.0.0.0')]);
    base = `http://127.0.0.1:${open.port}`;
  });
  afterAll(async () => {
    await Promise.all([open?.close(), local?.close(), bare?.close()]);
    await h?.close();
    await h?.t.cleanup();
  });

  it('tells loopback from exposed addresses, and refuses an exposed bind without a usable token', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1'])
      expect(isLoopbackHost(host), host).toBe(true);
    for (const host of [
      '0.0.0.0',
      '::',
      '10.0.0.5',
      '192.168.1.2',
      '::ffff:10.0.0.1',
      'example.com',
      'localhost.example.com',
      '128.0.0.1',
      '',
      'fe80::1%eth0',
    ])
      expect(isLoopbackHost(host), host).toBe(false);
    expect(() => checkApiExposure('127.0.0.1', undefined)).not.toThrow();
    expect(() => checkApiExposure('0.0.0.0', TOKEN)).not.toThrow();
    expect(() => checkApiExposure('0.0.0.0', undefined)).toThrow(
      /metricsHost \(DETEKTR_METRICS_HOST, --metrics-host\) is "0\.0\.0\.0", which is not loopback.*Set apiToken \(DETEKTR_API_TOKEN, --api-token\)/,
    );
    expect(() => checkApiExposure('::', undefined)).toThrow(/not loopback/);
    for (const bad of ['short', 'has a space in it!!', 'x'.repeat(4097), 'nön-ascii-token-value']) {
      let message = '';
      try {
        checkApiExposure('127.0.0.1', bad);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/^apiToken \(DETEKTR_API_TOKEN, --api-token\) must be 16-4096 visible ASCII characters/);
      expect(message).not.toContain(bad);
    }
    expect(() => bufferApi(buffer, { heartbeatMs: 500, token: 'short' })).toThrow(/apiToken/);
  });

  it('off loopback (0.0.0.0): POST and DELETE need the bearer token (401 without or with a wrong one), GETs stay open', async () => {
    const reg = { id: 'tok-1', capabilities: ['lpr'], capacity: 2 };
    const missing = await call('POST', '/processors', { body: reg });
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatch(/needs the API token: send "Authorization: Bearer <apiToken>"/);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="detektr"');
    expect(missing.headers.get('content-type')).toBe('application/json');
    expect(await call('POST', '/processors', { body: reg, token: WRONG })).toMatchObject({
      status: 401,
      json: { error: 'wrong API token' },
    });
    expect(await call('POST', '/processors', { body: reg, token: TOKEN.slice(0, -1) })).toMatchObject({
      status: 401,
      json: { error: 'wrong API token' },
    });
    const basic = await fetch(`${base}/processors`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
    });
    expect(basic.status).toBe(401);
    expect(await basic.json()).toEqual({ error: 'Authorization must be "Bearer <apiToken>"' });
    expect(await ids()).toEqual([]); // nothing registered by all that

    const ok = await call('POST', '/processors', { body: reg, token: TOKEN });
    expect(ok.status).toBe(201);
    expect(ok.json).toMatchObject({ id: 'tok-1', capabilities: ['lpr'], capacity: 2, source: 'api' });
    expect(await ids()).toEqual(['tok-1']);

    expect((await call('POST', '/processors/tok-1/heartbeat', { body: { completed: 3 } })).status).toBe(401);
    expect((await call('POST', '/processors/tok-1/heartbeat', { body: { completed: 3 }, token: WRONG })).status).toBe(401);
    expect((await call('POST', '/processors/tok-1/heartbeat', { body: { completed: 3 }, token: TOKEN })).status).toBe(200);

    // Read-only requests need nothing (Prometheus scrapes, dashboards).
    expect((await call('GET', '/processors')).json.processors.map((p: { id: string }) => p.id)).toEqual(['tok-1']);
    expect((await call('GET', '/processors/tok-1')).json).toMatchObject({ id: 'tok-1', completed: 3 });
    expect((await call('GET', '/status')).status).toBe(200);
    expect((await call('HEAD', '/processors')).status).toBe(200);
    for (const path of ['/metrics', '/healthz', '/readyz']) expect((await fetch(`${base}${path}`)).status, path).toBe(200);

    expect((await call('DELETE', '/processors/tok-1')).status).toBe(401);
    expect((await call('DELETE', '/processors/tok-1', { token: WRONG })).status).toBe(401);
    expect(await ids()).toEqual(['tok-1']);
    expect((await call('DELETE', '/processors/tok-1', { token: TOKEN })).status).toBe(204);
    expect(await ids()).toEqual([]);
  });

  it('on loopback a configured token is enforced as well', async () => {
    const at = `http://127.0.0.1:${local.port}`;
    expect((await call('POST', '/processors', { at, body: { id: 'tok-2', capabilities: ['x'] } })).status).toBe(401);
    expect((await call('DELETE', '/processors/tok-2', { at })).status).toBe(401);
    expect((await call('POST', '/processors', { at, body: { id: 'tok-2', capabilities: ['x'] }, token: TOKEN })).status).toBe(201);
    expect((await call('DELETE', '/processors/tok-2', { at, token: TOKEN })).status).toBe(204);
    expect((await call('GET', '/processors', { at })).status).toBe(200);
  });

  const lan = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  it.skipIf(!lan)(
    'without a token, a server bound off loopback refuses changes that arrive over a non-loopback address (403)',
    async () => {
      const viaLan = await call('POST', '/processors', { at: `http://${lan}:${bare.port}`, body: { id: 'tok-3', capabilities: ['x'] } });
      expect(viaLan.status).toBe(403);
      expect(viaLan.json.error).toMatch(/no apiToken is set \(DETEKTR_API_TOKEN\)/);
      expect((await call('GET', '/processors', { at: `http://${lan}:${bare.port}` })).status).toBe(200);
      expect(await ids()).toEqual([]);
    },
  );

  it('limits bodies sent chunked without Content-Length, on register and heartbeat, answering before the client has sent it all', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const path of ['/processors', '/processors/tok-4/heartbeat']) {
      const r = await postChunked(`${base}${path}`, 8 * 1024 * 1024, auth);
      expect(r.status, path).toBe(413);
      expect(JSON.parse(r.body), path).toEqual({ error: `body too large: over ${MAX_BODY_BYTES} bytes` });
      expect(r.sentBeforeAnswer, path).toBeLessThan(8 * 1024 * 1024);
    }
    // Just under the limit is read whole (and then judged on its content).
    const under = await postChunked(`${base}/processors`, MAX_BODY_BYTES - (MAX_BODY_BYTES % (16 * 1024)), auth);
    expect(under).toMatchObject({ status: 400 });
    expect(JSON.parse(under.body).error).toMatch(/not valid JSON|body must be a JSON object/);
    // Without the token the body is never read: 401 at once.
    const unauth = await postChunked(`${base}/processors`, 8 * 1024 * 1024);
    expect(unauth.status).toBe(401);
    expect(unauth.sentBeforeAnswer).toBeLessThan(8 * 1024 * 1024);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await ids()).toEqual([]);
  });

  describe('the detektr buffer command', () => {
    const prefix = uniquePrefix('api-token-cli');
    const env = { REDIS_URL, DETEKTR_PREFIX: prefix, DETEKTR_API_TOKEN: '', DETEKTR_METRICS_HOST: '' };
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'detektr-api-token-'));
    });
    afterAll(async () => {
      rmSync(dir, { recursive: true, force: true });
      await deleteKeysWithPrefix(h.t.redis, prefix);
    });

    it('refuses to bind off loopback without a token: exit 2 naming metricsHost and apiToken', async () => {
      const viaFlag = await runDetektr(['buffer', '--metrics-host', '0.0.0.0', '--metrics-port', '0'], env);
      expect(viaFlag.code).toBe(2);
      expect(viaFlag.stderr).toMatch(/metricsHost \(DETEKTR_METRICS_HOST, --metrics-host\) is "0\.0\.0\.0", which is not loopback/);
      expect(viaFlag.stderr).toMatch(/Set apiToken \(DETEKTR_API_TOKEN, --api-token\)/);
      const viaEnv = await runDetektr(['buffer', '--metrics-port', '0'], { ...env, DETEKTR_METRICS_HOST: '::' });
      expect(viaEnv.code).toBe(2);
      expect(viaEnv.stderr).toMatch(/metricsHost .* is "::", which is not loopback/);
      const weak = await runDetektr(['buffer', '--metrics-host', '0.0.0.0', '--api-token', 'hunter2'], env);
      expect(weak.code).toBe(2);
      expect(weak.stderr).toMatch(/apiToken \(DETEKTR_API_TOKEN, --api-token\) must be 16-4096 visible ASCII characters/);
      expect(weak.stderr).not.toContain('hunter2');
    });

    it('with --api-token on 0.0.0.0 it serves, asks for the token, and never logs it', async () => {
      const p = spawnDetektr(
        ['buffer', '--metrics-host', '0.0.0.0', '--metrics-port', '0', '--api-token', TOKEN, '--log-level', 'debug'],
        env,
      );
      try {
        const listening = await waitFor(
          'buffer listening',
          () => {
            const line = p
              .stderr()
              .split('\n')
              .find((l) => l.includes('"msg":"listening"'));
            return line ? (JSON.parse(line) as { port: number }) : undefined;
          },
          20_000,
        );
        const at = `http://127.0.0.1:${listening.port}`;
        expect((await call('POST', '/processors', { at, body: { id: 'cli-1', capabilities: ['x'] } })).status).toBe(401);
        expect((await call('POST', '/processors', { at, body: { id: 'cli-1', capabilities: ['x'] }, token: WRONG })).status).toBe(401);
        expect((await call('POST', '/processors', { at, body: { id: 'cli-1', capabilities: ['x'] }, token: TOKEN })).status).toBe(201);
        expect((await call('GET', '/processors/cli-1', { at })).status).toBe(200);
        expect((await call('DELETE', '/processors/cli-1', { at, token: TOKEN })).status).toBe(204);
      } finally {
        expect(await p.stop()).toBe(0);
      }
      expect(p.stderr()).toContain('"apiToken":"***"'); // the start-up config line, redacted
      expect(p.stderr()).not.toContain(TOKEN);
      expect(p.stdout()).not.toContain(TOKEN);
    });

    it('config show and config show --json redact the token, from the environment or a config file', async () => {
      const file = join(dir, 'detektr.yml');
      writeFileSync(file, `apiToken: "${WRONG}"\n`);
      for (const [args, extra] of [
        [['config', 'show'], { DETEKTR_API_TOKEN: TOKEN }],
        [['config', 'show', '--json'], { DETEKTR_API_TOKEN: TOKEN }],
        [['config', 'show', '--config', file], {}],
        [['config', 'show', '--json', '--config', file], {}],
      ] as [string[], Record<string, string>][]) {
        const r = await runDetektr(args, { ...env, ...extra });
        expect(r.code, args.join(' ')).toBe(0);
        expect(r.stdout, args.join(' ')).not.toContain(TOKEN);
        expect(r.stdout, args.join(' ')).not.toContain(WRONG);
        expect(r.stderr, args.join(' ')).not.toContain(TOKEN);
        if (args.includes('--json')) {
          const apiToken = (JSON.parse(r.stdout) as { values: Record<string, { value: unknown; source: string; env: string }> }).values
            .apiToken;
          expect(apiToken).toEqual({ value: '***', source: extra.DETEKTR_API_TOKEN ? 'env' : 'file', env: 'DETEKTR_API_TOKEN' });
        } else {
          expect(r.stdout).toMatch(/apiToken\s*│\s*\*\*\*\s*│/);
        }
      }
    });
  });
});
