import type { IncomingMessage, ServerResponse } from 'node:http';
import { ID_RE } from '../bus/fields.js';
import { bearerMatches, checkApiToken, isLoopbackHost, sendJson, type Route } from '../telemetry/http-server.js';
import type { BufferService } from './buffer-service.js';
import type { InstanceStats } from './registry.js';

export const MAX_BODY_BYTES = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * The request body, at most MAX_BODY_BYTES whether announced by Content-Length or sent
 * chunked: past the limit reading stops at once with a 413 (nothing more is buffered; the
 * rest is drained and the connection closed after the answer).
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
    req.resume();
    return Promise.reject(new HttpError(413, `body too large: ${declared} bytes (limit ${MAX_BODY_BYTES})`, { connection: 'close' }));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      done();
      req.resume(); // drain, discarding, so the answer can reach the client
      reject(new HttpError(413, `body too large: over ${MAX_BODY_BYTES} bytes`, { connection: 'close' }));
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      done();
      reject(new HttpError(400, `request body could not be read: ${err.message}`));
    };
    const onClose = () => {
      done();
      reject(new HttpError(400, 'request body incomplete: the client went away'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  const body = await readBody(req);
  if (body.length === 0) return undefined;
  if (type !== 'application/json')
    throw new HttpError(415, `content-type must be application/json, got ${type ? JSON.stringify(type.slice(0, 100)) : 'none'}`);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}

function object(body: unknown, what: string): Record<string, unknown> {
  if (body === undefined) throw new HttpError(400, `${what}: a JSON object body is required`);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, `${what}: body must be a JSON object`);
  return body as Record<string, unknown>;
}

function noUnknown(o: Record<string, unknown>, allowed: string[]): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length)
    throw new HttpError(
      400,
      `unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')} (allowed: ${allowed.join(', ')})`,
    );
}

/** A short, safe description of a client's value for an error message (no deep or huge stringify). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}...` : v);
  return String(v).slice(0, 64);
}

function intField(o: Record<string, unknown>, name: string, min: number, max: number, fallback?: number): number {
  const v = o[name];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new HttpError(
      400,
      `field ${name} must be an integer between ${min} and ${max}${v === undefined ? ' (missing)' : `, got ${describe(v)}`}`,
    );
  return v;
}

function idParam(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'processor id is not valid URL encoding');
  }
  if (!ID_RE.test(id))
    throw new HttpError(400, `processor id ${JSON.stringify(id.slice(0, 80))} must be 1-64 characters of letters, digits, _ . -`);
  return id;
}

function methods(req: IncomingMessage, allowed: string[]): void {
  if (!allowed.includes(req.method ?? ''))
    throw new HttpError(405, `method ${req.method} not allowed here (allowed: ${allowed.join(', ')})`, { allow: allowed.join(', ') });
}

const READ_ONLY = ['GET', 'HEAD'];

/**
 * Every request that may change something (anything but GET and HEAD) must carry the
 * token when one is set. Without a token such requests are only taken from loopback
 * connections: a server bound off loopback without a token is refused at start
 * (checkApiExposure), this is the second line.
 */
function authorize(req: IncomingMessage, token: string | undefined): void {
  if (READ_ONLY.includes(req.method ?? '')) return;
  const challenge = { 'www-authenticate': 'Bearer realm="detektr"' };
  if (token === undefined) {
    if (!isLoopbackHost(req.socket.localAddress)) {
      throw new HttpError(403, 'this API is reachable off loopback but no apiToken is set (DETEKTR_API_TOKEN): changes are refused');
    }
    return;
  }
  const header = req.headers.authorization;
  if (!header)
    throw new HttpError(
      401,
      `${req.method} needs the API token: send "Authorization: Bearer <apiToken>" (the buffer's DETEKTR_API_TOKEN)`,
      challenge,
    );
  if (!/^Bearer\s/i.test(header)) throw new HttpError(401, 'Authorization must be "Bearer <apiToken>"', challenge);
  if (!bearerMatches(header, token)) throw new HttpError(401, 'wrong API token', challenge);
}

export interface ApiOptions {
  /** Default heartbeat period announced for processors registered through the API. */
  heartbeatMs: number;
  /** Bearer token required on every POST/DELETE (apiToken); unset: only loopback clients may change things. */
  token?: string;
}

/**
 * The buffer's HTTP API (served with /metrics /healthz /readyz by the worker's server):
 *
 *   GET    /processors                  registry: every live processor with depth, load, breaker
 *   POST   /processors                  register {id, capabilities, capacity?, heartbeatMs?} -> 201
 *   GET    /processors/:id              one processor, 404 when not live
 *   DELETE /processors/:id              unregister (every instance) -> 204, 404 when unknown
 *   POST   /processors/:id/heartbeat    keep an API-registered processor alive {completed?, failed?, consecutiveFailures?, inFlight?}
 *   GET    /status                      pressure, lanes, input lag, processors, breakers, dead-letter counts
 *
 * Bodies are JSON objects of at most 64 KiB, validated field by field; bad input gets a 4xx
 * with a JSON {error} naming the problem, never a 500. POST and DELETE need
 * `Authorization: Bearer <token>` when `opts.token` is set (401 without it); GETs stay open.
 */
export function bufferApi(buffer: BufferService, opts: ApiOptions): Route {
  checkApiToken(opts.token);
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
    const parts = path.split('/').filter(Boolean);
    if (parts[0] !== 'processors' && path !== '/status') return false;
    try {
      authorize(req, opts.token);
      if (path === '/status') {
        methods(req, ['GET', 'HEAD']);
        sendJson(res, 200, await buffer.status());
      } else if (parts.length === 1) {
        methods(req, ['GET', 'HEAD', 'POST']);
        if (req.method === 'POST') {
          const body = object(await readJson(req), 'register');
          noUnknown(body, ['id', 'capabilities', 'capacity', 'heartbeatMs']);
          if (typeof body.id !== 'string' || !ID_RE.test(body.id))
            throw new HttpError(400, 'field id must be 1-64 characters of letters, digits, _ . -');
          const caps = body.capabilities;
          if (!Array.isArray(caps) || caps.length < 1 || caps.length > 32 || !caps.every((c) => typeof c === 'string' && ID_RE.test(c))) {
            throw new HttpError(400, 'field capabilities must be an array of 1-32 names (1-64 characters of letters, digits, _ . -)');
          }
          const capacity = intField(body, 'capacity', 1, 100_000, 1);
          const heartbeatMs = intField(body, 'heartbeatMs', 100, 3_600_000, opts.heartbeatMs);
          await buffer.registry.register({
            id: body.id,
            capabilities: [...new Set(caps as string[])],
            heartbeatMs,
            source: 'api',
            instance: 'api',
            stats: apiStats(capacity),
          });
          buffer.invalidate();
          const p = (await buffer.processorList()).find((x) => x.id === body.id);
          sendJson(res, 201, p ?? { id: body.id });
        } else {
          sendJson(res, 200, { processors: await buffer.processorList() });
        }
      } else if (parts.length === 2) {
        const id = idParam(parts[1]);
        methods(req, ['GET', 'HEAD', 'DELETE']);
        if (req.method === 'DELETE') {
          if (!(await buffer.registry.unregister(id))) throw new HttpError(404, `no processor ${id}`);
          buffer.invalidate();
          res.writeHead(204).end();
        } else {
          const p = (await buffer.processorList()).find((x) => x.id === id);
          if (!p) throw new HttpError(404, `no live processor ${id}`);
          sendJson(res, 200, p);
        }
      } else if (parts.length === 3 && parts[2] === 'heartbeat') {
        const id = idParam(parts[1]);
        methods(req, ['POST']);
        const raw = await readJson(req);
        const body = raw === undefined ? {} : object(raw, 'heartbeat');
        const fields = ['completed', 'failed', 'consecutiveFailures', 'inFlight'] as const;
        noUnknown(body, [...fields]);
        const given: Partial<Record<(typeof fields)[number], number>> = {};
        for (const f of fields) if (body[f] !== undefined) given[f] = intField(body, f, 0, Number.MAX_SAFE_INTEGER);
        const current = await buffer.registry.get(id);
        if (!current) throw new HttpError(404, `no live processor ${id}: register it first (POST /processors)`);
        const prev = current.instances.api;
        if (!prev) throw new HttpError(409, `processor ${id} was not registered through the API (its own workers heartbeat for it)`);
        const stats: InstanceStats = { ...prev, ...given };
        await buffer.registry.heartbeat({
          id,
          capabilities: current.capabilities,
          heartbeatMs: current.heartbeatMs,
          source: 'api',
          instance: 'api',
          stats,
        });
        buffer.invalidate();
        sendJson(res, 200, { id, lastHeartbeat: Date.now() });
      } else {
        throw new HttpError(404, `no route ${JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}...` : path)}`);
      }
    } catch (err) {
      if (err instanceof HttpError) {
        if (!req.complete) {
          req.resume(); // an unread body is drained so the answer reaches the client, and the connection closed after it
          err.headers.connection = 'close';
        }
        if (!res.headersSent) {
          for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
          sendJson(res, err.status, { error: err.message });
        }
      } else {
        throw err;
      }
    }
    return true;
  };
}

function apiStats(capacity: number): InstanceStats {
  return { capacity, concurrency: capacity, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 };
}
