import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferApi, MAX_BODY_BYTES } from '../../src/buffer/api.js';
import type { BufferService } from '../../src/buffer/buffer-service.js';
import { ID_RE } from '../../src/bus/fields.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startHttpServer, type RunningHttpServer } from '../../src/telemetry/http-server.js';
import { fuzzRuns } from '../helpers/fuzz.js';
import { testRedis } from '../helpers/redis.js';
import { harness, type Harness } from './harness.js';

/**
 * Issue #7: the HTTP API under arbitrary input. Requests are written byte for byte on a raw
 * socket (no client library fixing them up): any method, path, query, headers and body,
 * framed by Content-Length or chunked. Whatever comes in, the answer is a status below 500
 * with a message, the server keeps serving /healthz, and only a valid, authorised
 * registration changes the registry.
 */

const TOKEN = 'fuzz-token-0123456789abcdef';
const RUNS = fuzzRuns(250);
const HB_ID = 'fz-hb';

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface RawRequest {
  method: string;
  target: string;
  headers: [string, string][];
  body?: Buffer;
  chunked?: number[]; // chunk sizes, when sent chunked
}

function encode(r: RawRequest): Buffer {
  const head = [`${r.method} ${r.target} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close'];
  for (const [k, v] of r.headers) head.push(`${k}: ${v}`);
  const body = r.body ?? Buffer.alloc(0);
  const parts: Buffer[] = [];
  if (r.chunked) {
    head.push('transfer-encoding: chunked');
    let at = 0;
    for (const size of [...r.chunked, body.length]) {
      const piece = body.subarray(at, Math.min(body.length, at + Math.max(1, size)));
      if (!piece.length) break;
      parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
      at += piece.length;
    }
    parts.push(Buffer.from('0\r\n\r\n'));
  } else if (r.body !== undefined) {
    head.push(`content-length: ${body.length}`);
    parts.push(body);
  }
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), ...parts]);
}

/** Parses the first final response (skipping 1xx) out of what the server sent before closing. */
function parseResponse(raw: Buffer): RawResponse | undefined {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) return undefined;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    rest = rest.subarray(end + 4);
    if (status >= 100 && status < 200) continue;
    let body = rest;
    if (headers['content-length'] !== undefined) body = rest.subarray(0, Number(headers['content-length']));
    else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const out: Buffer[] = [];
      let at = 0;
      for (;;) {
        const eol = body.indexOf('\r\n', at);
        const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
        if (!(size > 0)) break;
        out.push(body.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
      body = Buffer.concat(out);
    }
    return { status, headers, body: body.toString('utf8') };
  }
}

/** Sends one raw request and reads until the server closes the connection. */
function send(port: number, request: Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined); // a reset after the answer (unread body) is fine; judged on close
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      const res = parseResponse(raw);
      if (res) resolve(res);
      else reject(new Error(`connection closed without an HTTP answer; got ${JSON.stringify(raw.toString('latin1').slice(0, 300))}`));
    });
    socket.write(request);
  });
}

/** Every answer: below 500, and an error carries a message saying what was wrong. */
/** With FUZZ_STATS=1, how often each status and error came up (to see what the generators reach). */
const STATS: Record<string, number> = {};
function checkAnswer(req: RawRequest, res: RawResponse): void {
  if (process.env.FUZZ_STATS) {
    const key = `${res.status} ${/"error":"([^"]{0,40})/.exec(res.body)?.[1] ?? ''}`;
    STATS[key] = (STATS[key] ?? 0) + 1;
  }
  const what = `${req.method.slice(0, 40)} ${req.target.slice(0, 120)} -> ${res.status} ${res.body.slice(0, 200)}`;
  expect(res.status, what).toBeGreaterThanOrEqual(200);
  expect(res.status, what).toBeLessThan(500);
  if (res.status >= 400 && req.method !== 'HEAD') {
    expect(res.body.length, what).toBeGreaterThan(0);
    if (/json/.test(res.headers['content-type'] ?? '')) {
      const parsed = JSON.parse(res.body) as { error?: unknown };
      expect(typeof parsed.error, what).toBe('string');
      expect((parsed.error as string).length, what).toBeGreaterThan(3);
    }
  }
  expect(res.body, what).not.toContain(TOKEN);
}

// ---------------------------------------------------------------- generators

/** Text cut for a failure report: a 60 KiB counterexample helps nobody. */
const clip = (t: string, n = 300) => (t.length > n ? `${JSON.stringify(t.slice(0, n))}... (${t.length} chars)` : JSON.stringify(t));
const shown = <T extends object>(o: T, fmt: (o: T) => string): T =>
  Object.defineProperty(o, fc.toStringMethod, { value: () => fmt(o), enumerable: false });
const describeRequest = (r: RawRequest) =>
  `${clip(r.method, 40)} ${clip(r.target, 200)} headers=${JSON.stringify(r.headers)} body=${r.body ? clip(r.body.toString('latin1')) : 'none'}${r.chunked ? ` chunked=${JSON.stringify(r.chunked)}` : ''}`;
/** A body text printed short in a counterexample. */
const bodyText = (arb: fc.Arbitrary<string>) => arb.map((text) => shown({ text }, (o) => clip(o.text)));

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}$/);
const methodArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE') },
  { weight: 3, arbitrary: fc.constantFrom('PUT', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'post', 'Get') },
  { weight: 1, arbitrary: token },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 0, maxLength: 12 }).map((s) => s.replace(/[\r\n ]/g, '')) },
);

const idLike = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/),
  fc.constantFrom(
    '..',
    '.',
    '',
    'a b',
    'x'.repeat(65),
    '%2e%2e',
    '%2F',
    '%00',
    '%E0%A4%A',
    '%ED%A0%80',
    '%C3%A9',
    '__proto__',
    'constructor',
    'é',
    '☃',
    '\u{1F600}',
  ),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent),
  fc.string({ maxLength: 20 }),
);
const segment = fc.oneof(fc.constantFrom('processors', 'status', 'heartbeat', 'metrics', 'healthz', 'readyz', '..', '.', ''), idLike);
const pathArb = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '/processors',
      '/processors/',
      '//processors',
      '/status',
      '/status/',
      '/metrics',
      '/healthz',
      '/readyz',
      '/',
      '*',
      '/processors/x/heartbeat',
    ),
  },
  { weight: 4, arbitrary: idLike.map((id) => `/processors/${id}`) },
  { weight: 3, arbitrary: idLike.map((id) => `/processors/${id}/heartbeat`) },
  { weight: 3, arbitrary: fc.array(segment, { maxLength: 6 }).map((s) => `/${s.join('/')}`) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => `/processors/${'a'.repeat(n)}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'http://127.0.0.1/processors',
      '/processors/../status',
      '/processors/%2e%2e/heartbeat',
      '/processors?',
      '/%',
    ),
  },
);
const queryArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  {
    weight: 2,
    arbitrary: fc
      .dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 4 })
      .map((d) => `?${new URLSearchParams(d).toString()}`),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((s) => `?${s.replace(/[\s]/g, '')}`) },
);
/** The request target as sent: raw unicode (sent as UTF-8 bytes read as latin1) is left in on purpose. */
const targetArb = fc
  .tuple(pathArb, queryArb)
  .map(([p, q]) => Buffer.from(`${p}${q}`.replace(/[\r\n ]/g, '%20'), 'utf8').toString('latin1'));

const contentTypeArb = fc.constantFrom(
  undefined,
  'application/json',
  'APPLICATION/JSON; charset=utf-8',
  'application/json;charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'application/problem+json',
  '',
  ';',
  'application/json; ;;',
  '*/*',
);
const authArb = fc.constantFrom(
  undefined,
  `Bearer ${TOKEN}`,
  `bearer ${TOKEN}`,
  `Bearer  ${TOKEN}  `,
  'Bearer',
  'Bearer ',
  `Bearer ${TOKEN}x`,
  `Bearer ${TOKEN.slice(1)}`,
  `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`,
  'Bearer wrong',
  `${TOKEN}`,
);
const extraHeaderArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(token, fc.string({ unit: 'grapheme-ascii', maxLength: 30 })) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      token,
      fc.string({ unit: 'binary-ascii', maxLength: 30 }).map((s) => s.replace(/[\r\n\0]/g, '')),
    ),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom<[string, string]>(
      ['expect', '100-continue'],
      ['accept', 'application/json'],
      ['x-forwarded-for', '10.0.0.1'],
      ['connection', 'upgrade'],
      ['upgrade', 'websocket'],
      ['content-encoding', 'gzip'],
      ['cookie', 'a=b'],
      ['origin', 'http://evil.example'],
      ['x-http-method-override', 'DELETE'],
    ),
  },
);

/** Registration-like bodies: valid fields, wrong types, out of range, missing, extra. */
const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 20 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
  fc.constantFrom(1e308, -1e308, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, -0, 0.5, 'x'.repeat(20_000), '1', '', []),
);
const field = <T>(good: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 8, arbitrary: good }, { weight: 2, arbitrary: wrongValue }, { weight: 1, arbitrary: fc.constant(undefined) });
/** Extra fields, in about one body of five. */
const extras = (keys: string[]) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constant({}) },
    { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 2 }) },
  );
const registerShape = fc
  .record(
    {
      id: field(
        fc.oneof(
          { weight: 5, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/) },
          { weight: 1, arbitrary: fc.constantFrom('', 'a b', 'x'.repeat(65), 'é', '../x', 'a\u0000') },
        ),
      ),
      capabilities: field(
        fc.array(
          fc.oneof(
            { weight: 20, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/) },
            { weight: 1, arbitrary: fc.constantFrom('', 'a,b', ' x') },
          ),
          { minLength: 0, maxLength: 40 },
        ),
      ),
      capacity: field(fc.integer({ min: -2, max: 200_000 })),
      heartbeatMs: field(fc.integer({ min: 0, max: 4_000_000 })),
    },
    { requiredKeys: [] },
  )
  .chain((o) => extras(['admin', 'source', 'instance', '__proto__', 'constructor', 'x']).map((extra) => ({ ...o, ...extra })));
const heartbeatShape = fc
  .record(
    { completed: field(fc.nat()), failed: field(fc.nat()), consecutiveFailures: field(fc.nat()), inFlight: field(fc.nat()) },
    { requiredKeys: [] },
  )
  .chain((o) => extras(['capacity', 'id', '__proto__', 'x']).map((extra) => ({ ...o, ...extra })));

/** JSON text of a value with the keys JSON.stringify would drop (undefined) left out, plus hand-made nasties. */
const deep = (n: number, open: string, close: string, inner = '1') => `${open.repeat(n)}${inner}${close.repeat(n)}`;
const nastyJson = fc.oneof(
  fc.integer({ min: 1, max: 30_000 }).map((n) => deep(n, '[', ']')),
  fc.integer({ min: 1, max: 6_000 }).map((n) => `{"id":"a","capabilities":["x"],"capacity":${deep(n, '{"a":', '}')}}`),
  fc.integer({ min: 1, max: 30_000 }).map((n) => `{"id":"a","capabilities":["x"],"capacity":${deep(n, '[', ']')}}`),
  fc.integer({ min: 1, max: 30_000 }).map((n) => `{"completed":${deep(n, '[', ']')}}`),
  fc.constantFrom(
    '{"id":"a","capabilities":["x"],"capacity":1e400}',
    '{"capacity":-1e400}',
    '{"completed":1e21}',
    '{"id":"a","id":"b","capabilities":["x"]}',
    '\uFEFF{"id":"a","capabilities":["x"]}',
    '{"__proto__":{"admin":true},"id":"a","capabilities":["x"]}',
    'null',
    'true',
    '"x"',
    '[]',
    '{}',
    '1',
    ' ',
    '\n',
    '{"id":"a","capabilities":["x"]}garbage',
    `{"id":"${'x'.repeat(60_000)}","capabilities":["x"]}`,
    '{"id":"\\ud800","capabilities":["x"]}',
    '{"id":"a\\u0000","capabilities":["x"]}',
  ),
);
const bodyArb: fc.Arbitrary<Buffer | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)) },
  { weight: 3, arbitrary: registerShape.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 2, arbitrary: heartbeatShape.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 2, arbitrary: nastyJson.map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_BODY_BYTES - 16, max: MAX_BODY_BYTES * 4 }).map((n) => Buffer.alloc(n, 0x20)) },
);
const framingArb = fc.option(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }), { freq: 3 });

const requestArb: fc.Arbitrary<RawRequest> = fc
  .record({
    method: methodArb,
    target: targetArb,
    contentType: contentTypeArb,
    auth: authArb,
    extra: fc.array(extraHeaderArb, { maxLength: 3 }),
    body: bodyArb,
    chunked: framingArb,
  })
  .map(({ method, target, contentType, auth, extra, body, chunked }) => {
    const headers: [string, string][] = [];
    if (contentType !== undefined) headers.push(['content-type', contentType]);
    if (auth !== undefined) headers.push(['authorization', auth]);
    // Framing headers are the encoder's: a lying Content-Length would only make the server wait for bytes that never come.
    headers.push(...extra.filter(([k]) => !/^(content-length|transfer-encoding|host)$/i.test(k)));
    return shown<RawRequest>({ method, target, headers, body, chunked: body && chunked ? chunked : undefined }, describeRequest);
  });

// ---------------------------------------------------------------- oracles

const isInt = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** What the API must accept as a registration (independent of its code). */
function validRegistration(text: string): string | undefined {
  let b: unknown;
  try {
    b = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return undefined;
  const o = b as Record<string, unknown>;
  if (Object.keys(o).some((k) => !['id', 'capabilities', 'capacity', 'heartbeatMs'].includes(k))) return undefined;
  if (typeof o.id !== 'string' || !ID_RE.test(o.id)) return undefined;
  const caps = o.capabilities;
  if (!Array.isArray(caps) || caps.length < 1 || caps.length > 32 || !caps.every((c) => typeof c === 'string' && ID_RE.test(c)))
    return undefined;
  if (o.capacity !== undefined && !isInt(o.capacity, 1, 100_000)) return undefined;
  if (o.heartbeatMs !== undefined && !isInt(o.heartbeatMs, 100, 3_600_000)) return undefined;
  return o.id;
}

function validHeartbeat(text: string): boolean {
  if (text.length === 0) return true;
  let b: unknown;
  try {
    b = JSON.parse(text);
  } catch {
    return false;
  }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return false;
  const o = b as Record<string, unknown>;
  const fields = ['completed', 'failed', 'consecutiveFailures', 'inFlight'];
  return Object.keys(o).every((k) => fields.includes(k) && isInt(o[k], 0, Number.MAX_SAFE_INTEGER));
}

// ---------------------------------------------------------------- tests

describe('HTTP API fuzzing (fast-check, raw sockets, real Redis)', () => {
  let h: Harness;
  let buffer: BufferService;
  let api: RunningHttpServer;
  let plain: RunningHttpServer;

  const ids = async () => (await buffer.registry.live()).map((p) => p.id).sort();
  const hbStats = async () => {
    const p = await buffer.registry.get(HB_ID);
    const s = p?.instances.api;
    return s && { completed: s.completed, failed: s.failed, consecutiveFailures: s.consecutiveFailures, inFlight: s.inFlight };
  };
  const healthy = async (port: number) => {
    const res = await send(port, encode({ method: 'GET', target: '/healthz', headers: [] }));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
  };

  beforeAll(async () => {
    h = harness(await testRedis('api-fuzz'));
    // Processors live a minute here: the heartbeat target must not expire during the run.
    buffer = h.buffer({ strategy: 'least-loaded', processorTtlMs: 60_000 });
    api = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: h.metrics.registry,
      readiness: () => ({ ready: true, checks: {} }),
      routes: [bufferApi(buffer, { heartbeatMs: 500, token: TOKEN })],
    });
    const other = createMetrics('fuzz-capture');
    plain = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: other.registry,
      readiness: () => ({ ready: true, checks: { camera: 'online' } }),
    });
  });
  afterAll(async () => {
    if (process.env.FUZZ_STATS)
      console.log(
        Object.entries(STATS)
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${n}\t${k}`)
          .join('\n'),
      );
    await api?.close();
    await plain?.close();
    await h?.close();
    await h?.t.cleanup();
  });

  it('answers any request to the buffer API below 500 with a message; only a valid, authorised registration registers', async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        const before = await ids();
        const res = await send(api.port, encode(req));
        checkAnswer(req, res);
        const after = await ids();
        if (res.status === 201) {
          const id = validRegistration(req.body?.toString('utf8') ?? '');
          expect(id, `201 for ${req.body?.toString('utf8').slice(0, 200)}`).toBeDefined();
          expect(after).toContain(id);
          await buffer.registry.unregister(id!);
        } else {
          expect(after, `${req.method} ${req.target.slice(0, 100)} -> ${res.status} changed the registry`).toEqual(before);
        }
      }),
      { numRuns: RUNS },
    );
    await healthy(api.port);
  });

  it('validates registration bodies field by field: 201 exactly for valid ones, 4xx naming the problem otherwise', async () => {
    const body = bodyText(
      fc.oneof(
        { weight: 6, arbitrary: registerShape.map((o) => JSON.stringify(o)) },
        { weight: 2, arbitrary: nastyJson },
        { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
        {
          weight: 1,
          arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify({ id: 'fz-x', capabilities: ['a'], capacity: v })),
        },
      ),
    );
    await fc.assert(
      fc.asyncProperty(body, fc.boolean(), async ({ text }, chunked) => {
        const before = await ids();
        const req: RawRequest = {
          method: 'POST',
          target: '/processors',
          headers: [
            ['content-type', 'application/json'],
            ['authorization', `Bearer ${TOKEN}`],
          ],
          body: Buffer.from(text),
          chunked: chunked ? [7, 300, 4096] : undefined,
        };
        const res = await send(api.port, encode(req));
        checkAnswer(req, res);
        const valid = Buffer.byteLength(text) <= MAX_BODY_BYTES ? validRegistration(text) : undefined;
        if (valid) {
          expect(res.status, res.body).toBe(201);
          expect(JSON.parse(res.body)).toMatchObject({ id: valid, source: 'api' });
          await buffer.registry.unregister(valid);
        } else {
          expect(res.status, `${text.slice(0, 200)} -> ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
          expect(await ids()).toEqual(before);
        }
      }),
      { numRuns: RUNS },
    );
    await healthy(api.port);
  });

  it('validates heartbeat bodies: 200 exactly for valid ones, and a rejected one changes no stats', async () => {
    await buffer.registry.register({
      id: HB_ID,
      capabilities: ['fz'],
      heartbeatMs: 500,
      source: 'api',
      instance: 'api',
      stats: { capacity: 1, concurrency: 1, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 },
    });
    const body = bodyText(
      fc.oneof(
        { weight: 6, arbitrary: heartbeatShape.map((o) => JSON.stringify(o)) },
        { weight: 2, arbitrary: nastyJson },
        { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
        { weight: 1, arbitrary: fc.constant('') },
      ),
    );
    await fc.assert(
      fc.asyncProperty(body, fc.boolean(), async ({ text }, chunked) => {
        const before = await hbStats();
        const req: RawRequest = {
          method: 'POST',
          target: `/processors/${HB_ID}/heartbeat`,
          headers: [
            ['content-type', 'application/json'],
            ['authorization', `Bearer ${TOKEN}`],
          ],
          body: Buffer.from(text),
          chunked: chunked && text.length ? [1, 64, 9000] : undefined,
        };
        const res = await send(api.port, encode(req));
        checkAnswer(req, res);
        if (validHeartbeat(text)) {
          expect(res.status, `${text.slice(0, 200)} -> ${res.body.slice(0, 200)}`).toBe(200);
        } else {
          expect(res.status, `${text.slice(0, 200)} -> ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
          expect(await hbStats()).toEqual(before);
        }
      }),
      { numRuns: RUNS },
    );
    expect(await hbStats()).toBeDefined();
    await buffer.registry.unregister(HB_ID);
    await healthy(api.port);
  });

  it('answers any request to a plain metrics server (another worker) below 500 with a message', async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        const res = await send(plain.port, encode(req));
        checkAnswer(req, res);
        if (res.status === 200 && req.method === 'GET') expect(req.target).toMatch(/^\/(metrics|healthz|readyz)(\?|$)/);
      }),
      { numRuns: RUNS },
    );
    await healthy(plain.port);
  });
});
