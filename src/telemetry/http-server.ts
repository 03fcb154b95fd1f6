import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo, type Socket } from 'node:net';
import { CONTENT_TYPES, negotiateFormat, type DualFormatRegistry } from './exposition.js';
import { redactSecrets } from '../config/redact-text.js';
import { InvalidInputError } from '../domain/errors.js';

export interface Readiness {
  ready: boolean;
  checks: Record<string, string>;
}

export type Route = (req: IncomingMessage, res: ServerResponse) => Promise<boolean> | boolean;

export interface HttpServerOptions {
  host: string;
  port: number;
  registry: DualFormatRegistry;
  readiness: () => Readiness | Promise<Readiness>;
  /** Extra routes tried first (the buffer's API); return true when handled. */
  routes?: Route[];
}

export interface RunningHttpServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * True when `host` only accepts connections from this machine: 127.0.0.0/8, ::1 (also
 * written [::1] or as an IPv4-mapped ::ffff:127.x.y.z) and the name localhost. Any other
 * name or address (0.0.0.0, ::, a LAN address, a host name) counts as reachable from outside.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  let h = (host ?? '').trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h === 'localhost') return true;
  const family = isIP(h);
  if (!family) return false;
  try {
    return LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return false;
  }
}

/** A usable API token: visible ASCII without spaces (it travels in a header), 16 to 4096 characters. */
export const API_TOKEN_RE = /^[\x21-\x7e]{16,4096}$/;

/** A token, when set, must be usable: throws an InvalidInputError (exit 2) that never contains it. */
export function checkApiToken(token: string | undefined): void {
  if (token !== undefined && !API_TOKEN_RE.test(token)) {
    throw new InvalidInputError(
      'apiToken (DETEKTR_API_TOKEN, --api-token) must be 16-4096 visible ASCII characters without spaces (generate one with: openssl rand -hex 32)',
    );
  }
}

/**
 * The start-up rule for a server that serves mutating routes (the buffer's API): a token,
 * when set, must be usable; a server bound off loopback must have one. Throws an
 * InvalidInputError (exit 2) naming the settings; the token itself is never part of a message.
 */
export function checkApiExposure(host: string, token: string | undefined): void {
  checkApiToken(token);
  if (token === undefined && !isLoopbackHost(host)) {
    throw new InvalidInputError(
      `metricsHost (DETEKTR_METRICS_HOST, --metrics-host) is ${JSON.stringify(host)}, which is not loopback: the HTTP API would let anyone who can reach it register and unregister processors. ` +
        'Set apiToken (DETEKTR_API_TOKEN, --api-token) to require "Authorization: Bearer <token>" on POST/DELETE, or bind to 127.0.0.1',
    );
  }
}

/** Constant-time check of an `Authorization: Bearer <token>` header (both sides hashed, so lengths leak nothing). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header ?? '');
  const given = createHash('sha256')
    .update(m?.[1] ?? '')
    .digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want) && m !== null;
}

/** The status Node gives a request its parser rejects, by the parser's error code. */
function clientErrorStatus(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return 413;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

const PHRASES: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
};

/** A JSON error written straight on the socket (no response object exists), then the connection closed. */
function rawAnswer(socket: Socket, status: number, error: string): void {
  if (!socket.writable) return void socket.destroy();
  const text = JSON.stringify({ error });
  const allow = status === 405 ? 'allow: GET, HEAD\r\n' : '';
  socket.end(
    `HTTP/1.1 ${status} ${PHRASES[status] ?? 'Error'}\r\nconnection: close\r\n${allow}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** /metrics, /healthz and /readyz for every long-lived worker. */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: redactSecrets(err instanceof Error ? err.message : String(err)) });
      else res.end();
    });
  });
  // CONNECT (a proxy tunnel) would otherwise get its connection dropped without an answer.
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    rawAnswer(socket, 405, 'method CONNECT not allowed: this is not a proxy'),
  );
  // A request the HTTP parser rejects (bad method token, bad header, bad chunk, headers too
  // large, too slow) gets a JSON answer naming the problem instead of Node's bare status
  // line; nothing of the raw request is echoed.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable || socket.bytesWritten > 0) {
      socket.destroy();
      return;
    }
    const reason = (err as { reason?: string }).reason ?? err.message;
    rawAnswer(socket, clientErrorStatus(err.code), `malformed HTTP request: ${reason}${err.code ? ` (${err.code})` : ''}`);
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const route of opts.routes ?? []) if (await route(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    const shown = JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}...` : path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, 405, { error: `method ${req.method} not allowed on ${shown} (allowed: GET, HEAD)` });
    }
    if (path === '/metrics') {
      const format = negotiateFormat(req.headers.accept);
      const body = await opts.registry.render(format);
      res.writeHead(200, { 'content-type': CONTENT_TYPES[format], vary: 'accept' });
      res.end(body);
    } else if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      const r = await opts.readiness();
      sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks });
    } else {
      sendJson(res, 404, { error: `no route ${shown}` });
    }
  }
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
