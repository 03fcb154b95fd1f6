import pg from 'pg';
import { redactUrl } from '../config/redact.js';
import { ConnectionError, InvalidInputError } from '../domain/errors.js';

export interface PoolOptions {
  /** Every connection runs with search_path set to this schema. */
  schema?: string;
  max?: number;
  /** Give up connecting (or waiting for a free client) after this long. */
  connectionTimeoutMs?: number;
  /** Server-side statement_timeout; also the client-side query_timeout (plus slack). */
  statementTimeoutMs?: number;
  idleTimeoutMs?: number;
  applicationName?: string;
  /** Errors of idle clients (server restart, network cut). The pool replaces the client. */
  onError?: (err: Error) => void;
  /** Allow JIT compilation of queries (default: off, see createPool). */
  jit?: boolean;
}

export const DEFAULT_POOL_OPTIONS = {
  max: 10, // = pgPoolSize's default (src/config/schema.ts); run, store and migrate pass the setting
  connectionTimeoutMs: 5_000,
  statementTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
} as const;

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export function assertSchemaName(schema: string): string {
  if (!SCHEMA_RE.test(schema)) {
    throw new InvalidInputError(
      `schema name "${schema}" is invalid: use lowercase letters, digits and _ (not first), at most 63 characters`,
    );
  }
  return schema;
}

/** A validated schema as an SQL identifier; quoted so names like "user" work too. */
export function schemaIdent(schema: string): string {
  return `"${assertSchemaName(schema)}"`;
}

export function createPool(databaseUrl: string, opts: PoolOptions = {}): pg.Pool {
  const o = { ...DEFAULT_POOL_OPTIONS, ...opts };
  // pg lets the URL's own parameters override the config object, so an `options` in the
  // URL would silently drop ours: merge the two instead.
  const url = parseUrl(databaseUrl);
  const fromUrl = url.searchParams.get('options');
  if (fromUrl !== null) url.searchParams.delete('options');
  const connectionString = fromUrl !== null ? url.toString() : databaseUrl;
  const options = [
    fromUrl,
    o.schema !== undefined ? `-c search_path=${schemaIdent(o.schema)}` : null,
    // detektr's statements are short and index-driven, but on big partitioned tables the
    // planner's estimates pass jit_above_cost, and compiling then costs 10-100x the query
    // (measured: a 10 ms search took 150 ms). Off unless the caller wants it.
    o.jit ? null : '-c jit=off',
  ]
    .filter(Boolean)
    .join(' ');
  const pool = new pg.Pool({
    connectionString,
    options: options || undefined,
    max: o.max,
    connectionTimeoutMillis: o.connectionTimeoutMs,
    idleTimeoutMillis: o.idleTimeoutMs,
    statement_timeout: o.statementTimeoutMs,
    // Client-side backstop for a server that stops answering (statement_timeout needs a live server).
    query_timeout: o.statementTimeoutMs + 5_000,
    idle_in_transaction_session_timeout: o.statementTimeoutMs * 2,
    application_name: o.applicationName ?? 'detektr',
  });
  // Without a listener an idle client's error would crash the process.
  pool.on('error', o.onError ?? (() => {}));
  return pool;
}

/**
 * Create the URL's database if it does not exist, connecting to the `postgres` database of
 * the same server (a fresh server has only that one). Returns whether it created it.
 */
export async function ensureDatabase(databaseUrl: string, opts: { connectionTimeoutMs?: number } = {}): Promise<boolean> {
  const url = parseUrl(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database === '' || database === 'postgres') return false;
  const timeout = opts.connectionTimeoutMs ?? DEFAULT_POOL_OPTIONS.connectionTimeoutMs;

  const admin = new URL(url.toString());
  admin.pathname = '/postgres';
  const client = new pg.Client({
    connectionString: admin.toString(),
    connectionTimeoutMillis: timeout,
    statement_timeout: timeout * 6,
    query_timeout: timeout * 6,
  });
  try {
    await client.connect();
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount) return false;
    await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
    return true;
  } catch (err) {
    // Another `detektr migrate` created it between our check and our CREATE.
    if ((err as { code?: string }).code === '42P04') return false;
    throw connectionError(`cannot create database "${database}"`, databaseUrl, err);
  } finally {
    await client.end().catch(() => {});
  }
}

/** A ConnectionError whose message names the server without its password. */
export function connectionError(what: string, databaseUrl: string, err: unknown): ConnectionError {
  const detail = err instanceof Error ? err.message : String(err);
  return new ConnectionError(`${what} on ${redactUrl(databaseUrl)}: ${detail}`, { cause: err });
}

function parseUrl(databaseUrl: string): URL {
  try {
    return new URL(databaseUrl);
  } catch {
    throw new InvalidInputError(`database URL "${redactUrl(databaseUrl)}" is not a valid URL (postgres://user@host:5432/db)`);
  }
}

/**
 * Runs fn with a client checked out of the pool. A checked-out pg client has no 'error'
 * listener, and one whose connection dies between two queries (server restart,
 * pg_terminate_backend, network cut) emits an 'error' that would crash the process: this
 * listens for it while the client is held, and then destroys the client instead of
 * returning it to the pool.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    if (isConnectionFailure(err)) broken ??= err as Error;
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/** Errors after which a connection is not worth keeping: network, server shutdown, protocol. */
export function isConnectionFailure(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  if (/^(08|57P)/.test(code)) return true; // connection exception, operator intervention
  const msg = (err as Error)?.message ?? '';
  return /Connection terminated|ECONNRESET|ECONNREFUSED|EPIPE|timeout|not queryable/i.test(msg);
}
