import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/domain/errors.js';
import { fetchSpans, frameTraceQL, otlpSpans, parseBackendKind, traceLinks, TraceBackendError } from '../../src/trace/trace-backend.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const ROOT = '00f067aa0ba902b7';
const CHILD = '53995c3f42cd8ad8';
const FRAME = '01JD8X3Q5R7ZC1V2W3X4Y5Z6A7';
const T = Date.parse('2024-11-20T10:00:00.000Z');
const ns = (ms: number) => `${BigInt(ms) * 1_000_000n + 250_000n}`; // +0.25 ms, as strings like OTLP JSON

const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

/** OTLP JSON resource spans: capture_frame (root) -> send ..., with ids as `id()` writes them. */
function resourceSpans(id: (hex: string) => string) {
  return [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'detektr-capture' } }] },
      scopeSpans: [
        {
          scope: { name: 'detektr' },
          spans: [
            {
              traceId: id(TRACE),
              spanId: id(ROOT),
              parentSpanId: '',
              name: 'capture_frame',
              kind: 1,
              startTimeUnixNano: ns(T),
              endTimeUnixNano: ns(T + 4),
              attributes: [
                { key: 'frame.id', value: { stringValue: FRAME } },
                { key: 'frame.width', value: { intValue: '1280' } },
              ],
              status: {},
            },
          ],
        },
      ],
    },
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'detektr-process' } }] },
      scopeSpans: [
        {
          scope: { name: 'detektr' },
          spans: [
            {
              traceId: id(TRACE),
              spanId: id(CHILD),
              parentSpanId: id(ROOT),
              name: 'process detektr:frames:ready:motion',
              kind: 'SPAN_KIND_CONSUMER',
              startTimeUnixNano: ns(T + 10),
              endTimeUnixNano: ns(T + 52),
              attributes: [{ key: 'frame.id', value: { stringValue: FRAME } }],
              status: { code: 2, message: 'model not loaded' },
            },
          ],
        },
      ],
    },
  ];
}

interface Seen {
  path: string;
  query: URLSearchParams;
  authorization?: string;
}

/** Answers like Jaeger v2 (api_v3) and Grafana Tempo (v2, v1, search) do, per `mode`. */
function startBackend(): Promise<{ url: string; seen: Seen[]; mode: { tempo: 'v2' | 'v1-only' }; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const mode: { tempo: 'v2' | 'v1-only' } = { tempo: 'v2' };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x');
    seen.push({ path: u.pathname, query: u.searchParams, authorization: req.headers.authorization });
    const json = (status: number, body: unknown, raw?: string) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(raw ?? JSON.stringify(body));
    };
    // Jaeger v2 query service: api_v3, OTLP JSON with hex ids, the trace split across lines.
    if (u.pathname === `/jaeger/api/v3/traces/${TRACE}`) {
      const all = resourceSpans((h) => h);
      return json(
        200,
        null,
        `${JSON.stringify({ result: { resourceSpans: [all[0]] } })}\n${JSON.stringify({ result: { resourceSpans: [all[1]] } })}\n`,
      );
    }
    if (u.pathname.startsWith('/jaeger/api/v3/traces/')) {
      return json(404, { error: { httpCode: 404, message: 'trace not found' } });
    }
    if (u.pathname.startsWith('/jaeger/api/traces/')) return json(500, { errors: [{ msg: 'the internal v1 API must not be used' }] });
    // Tempo: base64 ids.
    if (u.pathname === `/tempo/api/v2/traces/${TRACE}`) {
      if (mode.tempo === 'v1-only') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        return res.end('404 page not found\n');
      }
      return json(200, { trace: { resourceSpans: resourceSpans(b64) }, status: 'COMPLETE' });
    }
    if (u.pathname.startsWith('/tempo/api/v2/traces/')) return json(404, { error: 'trace not found' });
    if (u.pathname === `/tempo/api/traces/${TRACE}`) return json(200, { batches: resourceSpans(b64) });
    if (u.pathname === '/tempo/api/search') {
      const found = u.searchParams.get('q') === frameTraceQL(FRAME);
      // Tempo leaves leading zeros out of search results' trace ids.
      return json(200, {
        traces: found
          ? [
              {
                traceID: TRACE.replace(/^0+/, ''),
                rootServiceName: 'detektr-capture',
                rootTraceName: 'capture_frame',
                startTimeUnixNano: ns(T),
                durationMs: 52,
              },
            ]
          : [],
        metrics: {},
      });
    }
    if (u.pathname === '/broken/api/v3/traces/' + TRACE) return json(503, null, 'upstream unavailable');
    json(404, { error: 'no route' });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}`, seen, mode, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

let backend: Awaited<ReturnType<typeof startBackend>>;
beforeAll(async () => {
  backend = await startBackend();
});
afterAll(async () => {
  await backend.close();
});

const ref = { traceId: TRACE, frameId: FRAME, capturedAtMs: T };

describe('trace links', () => {
  it('Jaeger: the trace page and a tag search for the frame', () => {
    const l = traceLinks({ kind: 'jaeger', uiUrl: 'http://jaeger:16686/' }, ref);
    expect(l.traceUrl).toBe(`http://jaeger:16686/trace/${TRACE}`);
    const search = new URL(l.traceSearchUrl!);
    expect(search.pathname).toBe('/search');
    expect(JSON.parse(search.searchParams.get('tags')!)).toEqual({ 'frame.id': FRAME });
    expect(Number(search.searchParams.get('start'))).toBe((T - 3_600_000) * 1000);
  });

  it('Tempo: Grafana Explore panes on the Tempo data source, by trace id and by TraceQL', () => {
    const l = traceLinks({ kind: 'tempo', uiUrl: 'https://grafana.example', tempoDatasource: 'tempo-prod' }, ref);
    const panes = (u: string) => JSON.parse(new URL(u).searchParams.get('panes')!).detektr;
    expect(new URL(l.traceUrl!).pathname).toBe('/explore');
    expect(panes(l.traceUrl!).queries[0]).toEqual({
      refId: 'A',
      datasource: { type: 'tempo', uid: 'tempo-prod' },
      queryType: 'traceql',
      query: TRACE,
    });
    expect(panes(l.traceSearchUrl!).queries[0].query).toBe(`{ span.frame.id = "${FRAME}" }`);
    expect(panes(l.traceSearchUrl!).range).toEqual({ from: String(T - 3_600_000), to: String(T + 3_600_000) });
  });

  it('a template URL is filled in, whatever the backend; nothing without a UI URL', () => {
    expect(traceLinks({ kind: 'tempo', uiUrl: 'https://g/explore?trace={traceId}&f={frameId}' }, ref).traceUrl).toBe(
      `https://g/explore?trace=${TRACE}&f=${FRAME}`,
    );
    expect(traceLinks({ kind: 'jaeger', uiUrl: 'https://g/q={traceql}' }, { ...ref, traceId: null }).traceUrl).toBe(
      `https://g/q=${encodeURIComponent(`{ span.frame.id = "${FRAME}" }`)}`,
    );
    expect(traceLinks({ kind: 'jaeger' }, ref)).toEqual({});
    expect(() => parseBackendKind('zipkin')).toThrow(InvalidInputError);
  });
});

describe('fetchSpans', () => {
  it('Jaeger v2: GET /api/v3/traces/<id> with the time hints, streamed results merged', async () => {
    const spans = await fetchSpans({ kind: 'jaeger', uiUrl: `${backend.url}/jaeger` }, ref);
    expect(backend.seen.at(-1)!.path).toBe(`/jaeger/api/v3/traces/${TRACE}`);
    expect(backend.seen.at(-1)!.query.get('start_time')).toBe(new Date(T - 3_600_000).toISOString());
    expect(spans).toEqual([
      {
        traceId: TRACE,
        spanId: ROOT,
        name: 'capture_frame',
        service: 'detektr-capture',
        kind: 'internal',
        startMs: T + 0.25,
        durationMs: 4,
        status: 'unset',
        attributes: { 'frame.id': FRAME, 'frame.width': 1280 },
      },
      {
        traceId: TRACE,
        spanId: CHILD,
        parentSpanId: ROOT,
        name: 'process detektr:frames:ready:motion',
        service: 'detektr-process',
        kind: 'consumer',
        startMs: T + 10.25,
        durationMs: 42,
        status: 'error',
        statusMessage: 'model not loaded',
        attributes: { 'frame.id': FRAME },
      },
    ]);
    expect(backend.seen.some((s) => s.path.startsWith('/jaeger/api/traces/'))).toBe(false);
  });

  it('credentials in the API URL go in a Basic Authorization header (fetch refuses them in URLs)', async () => {
    const withCreds = backend.url.replace('http://', 'http://ops:s%40cret@');
    const spans = await fetchSpans({ kind: 'jaeger', apiUrl: `${withCreds}/jaeger` }, ref);
    expect(spans).toHaveLength(2);
    expect(backend.seen.at(-1)!.authorization).toBe(`Basic ${Buffer.from('ops:s@cret').toString('base64')}`);
    await expect(fetchSpans({ kind: 'jaeger', apiUrl: 'http://ops:s3cretpass@127.0.0.1:1' }, ref)).rejects.toThrow(/^(?!.*s3cretpass)/s);
  });

  it('Jaeger: an unknown trace is no spans; an unreachable or failing backend is an error', async () => {
    expect(await fetchSpans({ kind: 'jaeger', apiUrl: `${backend.url}/jaeger` }, { ...ref, traceId: 'f'.repeat(32) })).toEqual([]);
    await expect(fetchSpans({ kind: 'jaeger', apiUrl: `${backend.url}/broken` }, ref)).rejects.toThrow(/answered 503/);
    await expect(fetchSpans({ kind: 'jaeger', apiUrl: 'http://127.0.0.1:1' }, ref)).rejects.toThrow(TraceBackendError);
    await expect(fetchSpans({ kind: 'jaeger' }, ref)).rejects.toThrow(/no trace API URL/);
  });

  it('Tempo: /api/v2/traces/<id>, base64 ids decoded', async () => {
    backend.mode.tempo = 'v2';
    const spans = await fetchSpans({ kind: 'tempo', apiUrl: `${backend.url}/tempo` }, ref);
    expect(spans.map((s) => [s.spanId, s.parentSpanId ?? null, s.service, s.status])).toEqual([
      [ROOT, null, 'detektr-capture', 'unset'],
      [CHILD, ROOT, 'detektr-process', 'error'],
    ]);
    const q = backend.seen.at(-1)!.query;
    expect([q.get('start'), q.get('end')]).toEqual([String((T - 3_600_000) / 1000), String((T + 3_600_000) / 1000)]);
  });

  it('Tempo before 2.5: falls back to /api/traces/<id> ({"batches": ...})', async () => {
    backend.mode.tempo = 'v1-only';
    const spans = await fetchSpans({ kind: 'tempo', apiUrl: `${backend.url}/tempo` }, ref);
    expect(spans.map((s) => s.spanId)).toEqual([ROOT, CHILD]);
    expect(backend.seen.at(-1)!.path).toBe(`/tempo/api/traces/${TRACE}`);
    backend.mode.tempo = 'v2';
  });

  it('Tempo without a trace id: TraceQL search on span.frame.id first', async () => {
    const spans = await fetchSpans({ kind: 'tempo', apiUrl: `${backend.url}/tempo` }, { ...ref, traceId: null });
    expect(spans).toHaveLength(2);
    const search = backend.seen.find((s) => s.path === '/tempo/api/search')!;
    expect(search.query.get('q')).toBe(`{ span.frame.id = "${FRAME}" }`);
    expect(
      await fetchSpans({ kind: 'tempo', apiUrl: `${backend.url}/tempo` }, { ...ref, traceId: null, frameId: '01JD8X3Q5R7ZC1V2W3X4Y5Z6A8' }),
    ).toEqual([]);
  });

  it('reads old OTLP JSON (instrumentationLibrarySpans) too', () => {
    const [rs] = resourceSpans((h) => h);
    const old = [{ resource: rs.resource, instrumentationLibrarySpans: rs.scopeSpans }];
    expect(otlpSpans(old).map((s) => s.name)).toEqual(['capture_frame']);
    expect(otlpSpans(undefined)).toEqual([]);
  });
});
