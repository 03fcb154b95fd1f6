import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferApi, MAX_BODY_BYTES } from '../../src/buffer/api.js';
import type { BufferService } from '../../src/buffer/buffer-service.js';
import { decodeFrame } from '../../src/bus/frame-codec.js';
import { startHttpServer, type RunningHttpServer } from '../../src/telemetry/http-server.js';
import { testRedis, waitFor } from '../helpers/redis.js';
import { harness, slowProcessor, type Harness } from './harness.js';

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
      host: '127.0.0.1', port: 0, registry: h.metrics.registry, readiness: () => ({ ready: true, checks: {} }),
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
    expect(p).toMatchObject({ id: 'motion-1', capabilities: ['motion'], capacity: 32, depth: 0, load: 0, source: 'process', breaker: { state: 'closed' } });
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
      ['POST', '/processors', 'id=x', 415, /content-type must be application\/json/, { 'content-type': 'application/x-www-form-urlencoded' }],
      ['POST', '/processors', { id: 'a b', capabilities: ['x'] }, 400, /field id must be/],
      ['POST', '/processors', { id: 'a', capabilities: [] }, 400, /field capabilities must be/],
      ['POST', '/processors', { id: 'a', capabilities: ['x', 7] }, 400, /field capabilities must be/],
      ['POST', '/processors', { id: 'a', capabilities: ['x'], capacity: 0 }, 400, /field capacity must be an integer between 1 and 100000, got 0/],
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
      strategy: 'least-loaded', shedPolicy: 'lowest-priority',
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
