import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import { redactSecrets } from '../config/redact-text.js';
import type { Logger } from '../telemetry/logger.js';

/** A connection to one Redis, or to a Redis Cluster (ioredis Cluster routes each key to its node). */
export type RedisClient = Redis | Cluster;

export interface RedisConnectOptions {
  url: string;
  /** Shown in CLIENT LIST, so an operator can tell the workers apart. */
  name: string;
  /** Longest a command may take before it fails (never hang on a dead server). */
  commandTimeoutMs?: number;
  logger?: Logger;
}

/**
 * A connection that reconnects forever with capped backoff and never blocks a call
 * forever: commands time out, and queued commands fail after the retry budget.
 * Blocking reads get their own connection (blockingRedis) so they never delay other calls.
 */
export function createRedis(opts: RedisConnectOptions): RedisClient {
  const options: RedisOptions = {
    connectionName: opts.name,
    connectTimeout: 5000,
    commandTimeout: opts.commandTimeoutMs ?? 5000,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000) + Math.floor(Math.random() * 100),
    reconnectOnError: () => false,
  };
  const redis = new Redis(opts.url, options);
  let lastError = '';
  redis.on('error', (err: Error) => {
    // ioredis emits one error per retry; log each distinct one, not a flood.
    const msg = redactSecrets(err.message);
    if (msg !== lastError) opts.logger?.warn('redis error', { connection: opts.name, error: msg });
    lastError = msg;
  });
  redis.on('ready', () => {
    if (lastError) opts.logger?.info('redis reconnected', { connection: opts.name });
    lastError = '';
  });
  return redis;
}

/** A connection for XREADGROUP BLOCK: its command timeout must outlast the block time. */
export function createBlockingRedis(opts: RedisConnectOptions & { blockMs: number }): RedisClient {
  return createRedis({ ...opts, name: `${opts.name}:blocking`, commandTimeoutMs: opts.blockMs + 5000 });
}

export async function closeRedis(...conns: RedisClient[]): Promise<void> {
  await Promise.all(
    conns.map(async (c) => {
      if (c.status === 'end') return;
      try {
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 1000))]);
      } catch {
        // quit fails when the server is gone; disconnect below frees the socket anyway.
      }
      c.disconnect();
    }),
  );
}

/** Deletes every key under a prefix (SCAN, not KEYS, so a big Redis is not blocked). */
export async function deleteKeysWithPrefix(redis: RedisClient, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (found.length) deleted += await redis.del(...found);
  } while (cursor !== '0');
  return deleted;
}
