import { Cluster } from 'ioredis';
import { clusterConnectError } from '../bus/cluster-nodes.js';
import type { RedisClient } from '../bus/redis.js';

const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL', 'EAI_NODATA']);
const UNREACHABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);
const TLS_CERT = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
// PostgreSQL: invalid_password, invalid_authorization_specification (unknown role, pg_hba).
const PG_AUTH = new Set(['28P01', '28000']);
const AUTH_TEXT = /WRONGPASS|NOAUTH|invalid password|invalid username-password|password authentication failed|authentication failed/i;

/**
 * What an operator needs from a failed connection: the kind of failure (refused, DNS, TLS
 * certificate, authentication...) and the driver's own words, rather than the "Command
 * timed out" a client reports for a command queued behind a connection that never came up.
 */
export function connectionCause(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // A Cluster that reached none of its nodes says "Failed to refresh slots cache."; the node's error says why.
  const nodeError = (err as { lastNodeError?: unknown }).lastNodeError;
  if (nodeError instanceof Error) return `${connectionCause(nodeError)} (Redis Cluster: ${err.message.replace(/\.$/, '')})`;
  const code = String((err as { code?: unknown }).code ?? '');
  const msg = err.message;
  if (code === 'ECONNREFUSED') return `connection refused (${msg})`;
  if (DNS.has(code)) return `host not found: DNS lookup failed (${msg})`;
  if (TLS_CERT.has(code)) return `TLS certificate rejected: ${msg} (${code})`;
  if (code === 'EPROTO' || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) return `TLS handshake failed: ${msg}`;
  if (PG_AUTH.has(code) || AUTH_TEXT.test(msg)) return `authentication failed: ${msg}`;
  if (code === 'ETIMEDOUT') return `connection timed out (${msg})`;
  if (UNREACHABLE.has(code)) return `host unreachable (${msg})`;
  if (code === 'ECONNRESET') return `connection reset by the server (${msg}; TLS expected?)`;
  return msg;
}

/**
 * Resolves once the connection is ready; rejects with the latest connection error (seen
 * here or by `lastError`, which saw the ones before we looked; describe it with
 * connectionCause), or, when none came, with how long it waited and in which state.
 */
export async function redisReady(redis: RedisClient, timeoutMs: number, lastError?: () => unknown): Promise<void> {
  const started = Date.now();
  try {
    await untilReady(redis, timeoutMs, lastError);
  } catch (err) {
    // A Cluster often knows only "Connection is closed.": ask a node directly for the real cause (TLS, protocol).
    if (!(redis instanceof Cluster) || !/Connection is closed|Failed to refresh slots cache/.test(String((err as Error)?.message)))
      throw err;
    const left = timeoutMs - (Date.now() - started);
    throw (left > 100 ? await clusterConnectError(redis, Math.min(1000, left)) : undefined) ?? err;
  }
}

function untilReady(redis: RedisClient, timeoutMs: number, lastError?: () => unknown): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (fn: () => void) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      if (redis instanceof Cluster) redis.off('node error', onError);
      fn();
    };
    const onReady = () => done(resolve);
    const onError = (err: unknown) => done(() => reject(err));
    const timer = setTimeout(() => {
      const seen = lastError?.();
      done(() =>
        reject(
          seen ?? new Error(`no connection within ${timeoutMs} ms (still ${redis.status}; a TLS server on a plain port, or the reverse?)`),
        ),
      );
    }, timeoutMs);
    redis.on('ready', onReady);
    redis.on('error', onError);
    // A Cluster's connection errors are its nodes' (a refused node, a TLS or auth failure).
    if (redis instanceof Cluster) redis.on('node error', onError);
    const seen = lastError?.();
    // A refusal seen before we looked settles it: the next retry would say the same.
    if (seen && redis.status !== 'connect') onError(seen);
  });
}
