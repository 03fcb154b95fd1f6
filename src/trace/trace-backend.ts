import { redactUrl } from '../config/redact.js';
import { redactSecrets } from '../config/redact-text.js';
import { InvalidInputError } from '../domain/errors.js';

/**
 * Links to, and spans from, the tracing backend that received detektr's spans.
 *
 * jaeger (Jaeger v2; v1 query service too):
 *   UI link   <ui>/trace/<traceId>; frame search <ui>/search?service=detektr-capture&tags={"frame.id":"<id>"}
 *   spans     GET <api>/api/v3/traces/<traceId>?start_time=..&end_time=..   (api_v3, OTLP JSON:
 *             {"result":{"resourceSpans":[...]}}, possibly several such objects, one per line;
 *             the old /api/traces is internal and gone from recent Jaeger)
 * tempo (Grafana Tempo, with Grafana as the UI):
 *   UI link   <ui>/explore?...  a Grafana Explore pane on the Tempo data source (uid
 *             `tempoDatasource`, default "tempo") with the trace id; frame search with the
 *             TraceQL query { span.frame.id = "<id>" }
 *   spans     GET <api>/api/v2/traces/<traceId>?start=..&end=.. ({"trace":{"resourceSpans":[...]}}),
 *             falling back to /api/traces/<traceId> ({"batches":[...]}) on Tempo before 2.5;
 *             without a trace id: GET <api>/api/search?q={ span.frame.id = "<id>" } first.
 *
 * A UI URL containing {traceId}, {frameId} or {traceql} is a template and is used as is
 * (with the values URL-encoded), whatever the backend.
 */
export const TRACE_BACKENDS = ['jaeger', 'tempo'] as const;
export type TraceBackendKind = (typeof TRACE_BACKENDS)[number];

export interface TraceBackendConfig {
  kind: TraceBackendKind;
  /** Where people click: Jaeger UI, or Grafana for Tempo. */
  uiUrl?: string;
  /** Where spans are fetched from: Jaeger query service (default: uiUrl), or Tempo's HTTP API. */
  apiUrl?: string;
  /** Grafana data source uid of Tempo (default "tempo"). */
  tempoDatasource?: string;
  /** Per request; default 5 s. */
  timeoutMs?: number;
}

export interface TraceRef {
  traceId: string | null;
  frameId: string;
  /** Capture time (ms): bounds the searches to the frame's hour. */
  capturedAtMs: number;
}

/** A span as `trace find --spans` shows it; also its JSON shape (in "spans"). */
export interface SpanSummary {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** resource service.name */
  service: string;
  kind: 'internal' | 'server' | 'client' | 'producer' | 'consumer' | 'unspecified';
  startMs: number;
  durationMs: number;
  status: 'unset' | 'ok' | 'error';
  statusMessage?: string;
  /** String, number and boolean attributes of the span. */
  attributes: Record<string, string | number | boolean>;
}

export function parseBackendKind(value: string | undefined): TraceBackendKind {
  const v = (value ?? 'jaeger').toLowerCase();
  if (!(TRACE_BACKENDS as readonly string[]).includes(v)) {
    throw new InvalidInputError(`trace backend "${value}" is not one of ${TRACE_BACKENDS.join(', ')}`);
  }
  return v as TraceBackendKind;
}

/** The TraceQL query that finds a frame's spans in Tempo. */
export function frameTraceQL(frameId: string): string {
  return `{ span.frame.id = "${frameId.replace(/["\\]/g, '')}" }`;
}

const HOUR = 3_600_000;
const TEMPLATE_RE = /\{(traceId|frameId|traceql)\}/;

/** A URL fit to print: no user:password@ (the browser asks for them), credential-like parameters masked. */
function printable(url: string): string {
  return redactUrl(url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/, '$1'));
}

export function traceLinks(cfg: TraceBackendConfig, ref: TraceRef): { traceUrl?: string; traceSearchUrl?: string } {
  const ui = cfg.uiUrl && printable(cfg.uiUrl.trim());
  if (!ui) return {};
  if (TEMPLATE_RE.test(ui)) {
    if (ui.includes('{traceId}') && !ref.traceId) return {};
    const url = ui
      .replaceAll('{traceId}', encodeURIComponent(ref.traceId ?? ''))
      .replaceAll('{frameId}', encodeURIComponent(ref.frameId))
      .replaceAll('{traceql}', encodeURIComponent(frameTraceQL(ref.frameId)));
    return { traceUrl: url };
  }
  const base = ui.replace(/\/+$/, '');
  if (cfg.kind === 'jaeger') {
    const search = new URLSearchParams({
      service: 'detektr-capture',
      tags: JSON.stringify({ 'frame.id': ref.frameId }),
      start: String((ref.capturedAtMs - HOUR) * 1000),
      end: String((ref.capturedAtMs + HOUR) * 1000),
      lookback: 'custom',
    });
    return {
      traceUrl: ref.traceId ? `${base}/trace/${ref.traceId}` : undefined,
      traceSearchUrl: `${base}/search?${search}`,
    };
  }
  const explore = (query: string) => {
    const ds = cfg.tempoDatasource ?? 'tempo';
    const panes = {
      detektr: {
        datasource: ds,
        queries: [{ refId: 'A', datasource: { type: 'tempo', uid: ds }, queryType: 'traceql', query }],
        range: { from: String(ref.capturedAtMs - HOUR), to: String(ref.capturedAtMs + HOUR) },
      },
    };
    return `${base}/explore?${new URLSearchParams({ schemaVersion: '1', panes: JSON.stringify(panes), orgId: '1' })}`;
  };
  return {
    traceUrl: ref.traceId ? explore(ref.traceId) : undefined,
    traceSearchUrl: explore(frameTraceQL(ref.frameId)),
  };
}

export type FetchLike = (
  url: string,
  init?: { signal?: AbortSignal; headers?: Record<string, string> },
) => Promise<{
  ok: boolean;
  status: number;
  text(): Promise<string>;
}>;

export class TraceBackendError extends Error {}

/**
 * The spans of the frame's trace, sorted by start time. Resolves [] when the backend does
 * not know the trace (not sampled, or expired); rejects with TraceBackendError when the
 * backend cannot be reached or answers something else.
 */
function splitCredentials(url: string): { api: string; authorization?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { api: url };
  }
  if (!u.username && !u.password) return { api: url };
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { api: u.toString().replace(/\/+$/, ''), authorization };
}

export async function fetchSpans(
  cfg: TraceBackendConfig,
  ref: TraceRef,
  fetchImpl: FetchLike = fetch as unknown as FetchLike,
): Promise<SpanSummary[]> {
  const configured = (cfg.apiUrl ?? cfg.uiUrl)?.trim().replace(/\/+$/, '');
  if (!configured || TEMPLATE_RE.test(configured))
    throw new TraceBackendError('no trace API URL configured (--trace-api-url or DETEKTR_TRACE_API_URL)');
  // fetch refuses URLs with credentials: user:password@ becomes a Basic Authorization header.
  const { api, authorization } = splitCredentials(configured);
  const headers: Record<string, string> = { accept: 'application/json', ...(authorization ? { authorization } : {}) };
  const get = async (path: string): Promise<{ status: number; body: string }> => {
    let res;
    try {
      res = await fetchImpl(`${api}${path}`, { signal: AbortSignal.timeout(cfg.timeoutMs ?? 5000), headers });
    } catch (err) {
      // fetch's message may quote the whole URL, credentials included.
      throw new TraceBackendError(redactSecrets(`${cfg.kind} at ${redactUrl(api)} cannot be reached: ${(err as Error).message}`));
    }
    return { status: res.status, body: await res.text() };
  };
  const fail = (path: string, r: { status: number; body: string }) =>
    new TraceBackendError(`${cfg.kind} answered ${r.status} to GET ${path}: ${r.body.slice(0, 200)}`);

  if (cfg.kind === 'jaeger') {
    if (!ref.traceId) return [];
    const q = new URLSearchParams({
      start_time: new Date(ref.capturedAtMs - HOUR).toISOString(),
      end_time: new Date(ref.capturedAtMs + HOUR).toISOString(),
    });
    const path = `/api/v3/traces/${ref.traceId}?${q}`;
    const r = await get(path);
    if (r.status === 404) return [];
    if (r.status !== 200) throw fail(path, r);
    const spans: SpanSummary[] = [];
    for (const doc of parseJsonStream(r.body)) {
      const d = doc as { result?: { resourceSpans?: unknown[] }; error?: { message?: string; httpCode?: number } };
      if (d.error) {
        if (d.error.httpCode === 404) return [];
        throw new TraceBackendError(`jaeger: ${d.error.message ?? JSON.stringify(d.error)}`);
      }
      spans.push(...otlpSpans(d.result?.resourceSpans));
    }
    return sortSpans(spans);
  }

  const range = `start=${Math.floor((ref.capturedAtMs - HOUR) / 1000)}&end=${Math.ceil((ref.capturedAtMs + HOUR) / 1000)}`;
  let traceId = ref.traceId;
  if (!traceId) {
    const path = `/api/search?${new URLSearchParams({ q: frameTraceQL(ref.frameId), limit: '5' })}&${range}`;
    const r = await get(path);
    if (r.status !== 200) throw fail(path, r);
    const found = (parseJson(r.body) as { traces?: Array<{ traceID?: string }> }).traces ?? [];
    if (!found.length || !found[0].traceID) return [];
    traceId = found[0].traceID.padStart(32, '0').toLowerCase();
  }
  const v2 = `/api/v2/traces/${traceId}?${range}`;
  let r = await get(v2);
  if (r.status === 200) {
    const d = parseJson(r.body) as { trace?: { resourceSpans?: unknown[]; batches?: unknown[] } };
    return sortSpans(otlpSpans(d.trace?.resourceSpans ?? d.trace?.batches));
  }
  // Tempo before 2.5 has no /api/v2/traces: its 404 is a plain-text "404 page not found".
  if (r.status === 404 && isJson(r.body)) return [];
  if (r.status !== 404) throw fail(v2, r);
  const v1 = `/api/traces/${traceId}?${range}`;
  r = await get(v1);
  if (r.status === 404) return [];
  if (r.status !== 200) throw fail(v1, r);
  const d = parseJson(r.body) as { batches?: unknown[]; resourceSpans?: unknown[] };
  return sortSpans(otlpSpans(d.batches ?? d.resourceSpans));
}

function isJson(body: string): boolean {
  try {
    JSON.parse(body);
    return true;
  } catch {
    return false;
  }
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new TraceBackendError(`the trace backend answered something that is not JSON: ${body.slice(0, 120)}`);
  }
}

/** One JSON document, or several back to back / one per line (grpc-gateway streaming). */
function parseJsonStream(body: string): unknown[] {
  const text = body.trim();
  if (!text) return [];
  try {
    return [JSON.parse(text)];
  } catch {
    return text
      .split(/\r?\n/)
      .filter((l) => l.trim())
      .map(parseJson);
  }
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpKeyValue {
  key: string;
  value?: OtlpValue;
}
interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number | string;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: OtlpKeyValue[];
  status?: { code?: number | string; message?: string };
}
interface OtlpResourceSpans {
  resource?: { attributes?: OtlpKeyValue[] };
  scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  instrumentationLibrarySpans?: Array<{ spans?: OtlpSpan[] }>;
}

const KINDS: SpanSummary['kind'][] = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];

/** OTLP JSON resource spans (ids hex, as Jaeger writes them, or base64, as Tempo does). */
export function otlpSpans(resourceSpans: unknown): SpanSummary[] {
  if (!Array.isArray(resourceSpans)) return [];
  const out: SpanSummary[] = [];
  for (const rs of resourceSpans as OtlpResourceSpans[]) {
    const service = String(attrs(rs.resource?.attributes)['service.name'] ?? 'unknown');
    for (const scope of [...(rs.scopeSpans ?? []), ...(rs.instrumentationLibrarySpans ?? [])]) {
      for (const s of scope.spans ?? []) {
        const start = nanosToMs(s.startTimeUnixNano);
        const end = nanosToMs(s.endTimeUnixNano);
        const parent = s.parentSpanId ? hexId(s.parentSpanId, 16) : '';
        out.push({
          traceId: hexId(s.traceId ?? '', 32),
          spanId: hexId(s.spanId ?? '', 16),
          ...(parent && !/^0+$/.test(parent) ? { parentSpanId: parent } : {}),
          name: s.name ?? '',
          service,
          kind: kindOf(s.kind),
          startMs: start,
          durationMs: Math.max(0, Math.round((end - start) * 1000) / 1000),
          status: statusOf(s.status?.code),
          ...(s.status?.message ? { statusMessage: s.status.message } : {}),
          attributes: attrs(s.attributes),
        });
      }
    }
  }
  return out;
}

function sortSpans(spans: SpanSummary[]): SpanSummary[] {
  return spans.sort((a, b) => a.startMs - b.startMs || a.spanId.localeCompare(b.spanId));
}

function attrs(list: OtlpKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    if (v.stringValue !== undefined) out[kv.key] = v.stringValue;
    else if (v.intValue !== undefined) out[kv.key] = Number(v.intValue);
    else if (v.doubleValue !== undefined) out[kv.key] = v.doubleValue;
    else if (v.boolValue !== undefined) out[kv.key] = v.boolValue;
  }
  return out;
}

function nanosToMs(v: string | number | undefined): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v / 1e6;
  // Nanoseconds since 1970 exceed 2^53: split off the sub-millisecond part before converting.
  const s = v.padStart(7, '0');
  return Number(s.slice(0, -6)) + Number(s.slice(-6)) / 1e6;
}

function kindOf(k: number | string | undefined): SpanSummary['kind'] {
  if (typeof k === 'number') return KINDS[k] ?? 'unspecified';
  const name = String(k ?? '')
    .replace(/^SPAN_KIND_/, '')
    .toLowerCase();
  return (KINDS as string[]).includes(name) ? (name as SpanSummary['kind']) : 'unspecified';
}

function statusOf(code: number | string | undefined): SpanSummary['status'] {
  if (code === 2 || code === 'STATUS_CODE_ERROR') return 'error';
  if (code === 1 || code === 'STATUS_CODE_OK') return 'ok';
  return 'unset';
}

/** Hex ids pass through (lower-cased); anything else is read as base64 (Tempo's JSON). */
function hexId(id: string, hexLength: number): string {
  if (new RegExp(`^[0-9a-fA-F]{${hexLength}}$`).test(id)) return id.toLowerCase();
  const bytes = Buffer.from(id, 'base64');
  return bytes.length * 2 === hexLength ? bytes.toString('hex') : id.toLowerCase();
}
