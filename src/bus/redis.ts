import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { redactSecrets } from '../config/redact-text.js';
import { InvalidInputError } from '../domain/errors.js';
import type { Logger } from '../telemetry/logger.js';
import { rememberStartupNodes } from './cluster-nodes.js';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';

/** A connection to one Redis, or to a Redis Cluster (ioredis Cluster routes each key to its node). */
export type RedisClient = Redis | Cluster;

/** PEM files for TLS (config keys redisTlsCa, redisTlsCert, redisTlsKey); only with the rediss* URL forms. */
export interface RedisTlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface RedisConnectOptions {
  /** redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel://, rediss+sentinel:// (src/bus/redis-url.ts). */
  url: string;
  /** Shown in CLIENT LIST (on every node of a cluster), so an operator can tell the workers apart. */
  name: string;
  /** Longest a command may take before it fails (never hang on a dead server). */
  commandTimeoutMs?: number;
  tls?: RedisTlsFiles;
  logger?: Logger;
}

const TLS_KEYS = { ca: 'redisTlsCa', cert: 'redisTlsCert', key: 'redisTlsKey' } as const;

/** The TLS files of a loaded config, for RedisConnectOptions.tls. */
export function redisTlsFiles(config: { redisTlsCa?: string; redisTlsCert?: string; redisTlsKey?: string }): RedisTlsFiles {
  return { ca: config.redisTlsCa, cert: config.redisTlsCert, key: config.redisTlsKey };
}

/**
 * Node's TLS options for a rediss* URL, the files read now (at connect): a missing or
 * unreadable file names its key and path. TLS files with a plain redis* URL are a config
 * error, not silently ignored: the operator meant TLS and would get none.
 */
function tlsOptions(target: RedisTarget, files: RedisTlsFiles = {}): ConnectionOptions | undefined {
  const given = (Object.keys(TLS_KEYS) as (keyof RedisTlsFiles)[]).filter((k) => files[k]);
  if (!target.tls) {
    if (given.length) {
      throw new InvalidInputError(
        `${given.map((k) => TLS_KEYS[k]).join(', ')} set but the Redis URL is not TLS: use rediss://, rediss+cluster:// or rediss+sentinel://, or unset ${given.length > 1 ? 'them' : 'it'}`,
      );
    }
    return undefined;
  }
  if (Boolean(files.cert) !== Boolean(files.key)) {
    throw new InvalidInputError(
      `${files.cert ? 'redisTlsCert' : 'redisTlsKey'} set without ${files.cert ? 'redisTlsKey' : 'redisTlsCert'}: a client certificate needs its key`,
    );
  }
  const out: ConnectionOptions = {};
  for (const k of given) {
    const path = files[k]!;
    try {
      out[k] = readFileSync(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new InvalidInputError(`${TLS_KEYS[k]} ${path}: cannot be read (${why})`, { cause: err });
    }
  }
  return out;
}

const retryDelay = (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000) + Math.floor(Math.random() * 100);

/**
 * A connection that reconnects forever with capped backoff and never blocks a call
 * forever: commands time out, and queued commands fail after the retry budget.
 * Blocking reads get their own connection (blockingRedis) so they never delay other calls.
 * A cluster URL gives a Cluster with the same guarantees (see createCluster).
 */
export function createRedis(opts: RedisConnectOptions): RedisClient {
  const target = parseRedisUrl(opts.url);
  const tls = tlsOptions(target, opts.tls);
  const commandTimeout = opts.commandTimeoutMs ?? 5000;
  const options: RedisOptions = {
    connectionName: opts.name,
    connectTimeout: 5000,
    commandTimeout,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: false,
    reconnectOnError: () => false,
    // A standalone URL carries its own credentials (ioredis parses it); the multi-host forms' go to every node.
    ...(target.kind !== 'standalone' && target.password ? { password: target.password } : {}),
    ...(target.kind !== 'standalone' && target.username ? { username: target.username } : {}),
    ...(tls ? { tls } : {}),
  };
  let client: RedisClient;
  if (target.kind === 'cluster') client = createCluster(target, options, commandTimeout);
  else if (target.kind === 'sentinel') {
    client = new Redis({
      ...options,
      retryStrategy: retryDelay,
      sentinels: target.sentinels,
      name: target.masterName,
      db: target.db,
      sentinelUsername: target.sentinelUsername,
      sentinelPassword: target.sentinelPassword,
      sentinelRetryStrategy: retryDelay,
      sentinelCommandTimeout: commandTimeout,
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    });
  } else client = new Redis(opts.url, { ...options, retryStrategy: retryDelay });
  logErrorsOnce(client, opts);
  return client;
}

/**
 * A Cluster: MOVED/ASK are followed and the slot map refreshed by ioredis; the delays
 * below let a master's failover (a replica promoted after cluster-node-timeout) be ridden
 * out rather than failing every command at once. ioredis keeps commands issued while the
 * cluster is not ready in its own queue with no time limit, so each command gets one
 * deadline for its whole life (queue, redirects, retries): no call hangs forever.
 */
function createCluster(target: Extract<RedisTarget, { kind: 'cluster' }>, redisOptions: RedisOptions, commandTimeout: number): Cluster {
  const options: ClusterOptions = {
    clusterRetryStrategy: retryDelay,
    enableOfflineQueue: true,
    enableReadyCheck: true,
    scaleReads: 'master',
    maxRedirections: 16,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    retryDelayOnMoved: 50,
    slotsRefreshTimeout: 2000,
    slotsRefreshInterval: 5000,
    // Without it a node that restarts (a replica, a master back as replica) is only found again by the slot refresh.
    clusterNodeRetryStrategy: retryDelay,
    enableAutoPipelining: false,
    redisOptions,
  };
  const cluster = new Cluster(target.nodes, options);
  rememberStartupNodes(cluster, target.nodes);
  type Send = Cluster['sendCommand'];
  const send: Send = cluster.sendCommand.bind(cluster);
  cluster.sendCommand = ((command: Parameters<Send>[0], ...rest: unknown[]) => {
    // Command.setTimeout arms once; the node's own commandTimeout later finds it armed.
    (command as unknown as { setTimeout(ms: number): void }).setTimeout(commandTimeout);
    return (send as (...a: unknown[]) => unknown)(command, ...rest);
  }) as Send;
  return cluster;
}

function logErrorsOnce(client: RedisClient, opts: RedisConnectOptions): void {
  let lastError = '';
  const onError = (err: Error, node?: string) => {
    // ioredis emits one error per retry; log each distinct one, not a flood.
    const msg = redactSecrets(err.message);
    if (msg !== lastError) opts.logger?.warn('redis error', { connection: opts.name, error: msg, ...(node ? { node } : {}) });
    lastError = msg;
  };
  client.on('error', (err: Error) => onError(err));
  // A Cluster reports each node's connection errors separately, with the node's address.
  if (client instanceof Cluster) client.on('node error', (err: Error, node: string) => onError(err, node));
  client.on('ready', () => {
    if (lastError) opts.logger?.info('redis reconnected', { connection: opts.name });
    lastError = '';
  });
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

/**
 * The connections to scan for keys: the one server, or every master of a cluster (each
 * holds its own slots; replicas hold copies). Waits for the cluster to be ready first:
 * before that its node list is empty.
 */
export async function masterConnections(redis: RedisClient, timeoutMs = 10_000): Promise<Redis[]> {
  if (!(redis instanceof Cluster)) return [redis];
  if (redis.status !== 'ready') await redis.cluster('INFO').catch(() => undefined); // queued until ready, or its deadline
  if (redis.status !== 'ready') await untilReady(redis, timeoutMs);
  return redis.nodes('master');
}

function untilReady(cluster: Cluster, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cluster.off('ready', onReady);
      reject(new Error(`Redis Cluster not ready within ${timeoutMs} ms (status ${cluster.status})`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    cluster.once('ready', onReady);
  });
}

/** Every key matching a SCAN pattern, on every master (SCAN, not KEYS, so a big Redis is not blocked). */
export async function* scanKeys(redis: RedisClient, pattern: string, count = 1000): AsyncGenerator<string> {
  for (const node of await masterConnections(redis)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      cursor = next;
      yield* found;
    } while (cursor !== '0');
  }
}

/**
 * Deletes every key under a prefix. On a cluster each key is deleted by itself (through
 * the cluster client, which routes it): a DEL of keys in different slots is CROSSSLOT.
 */
export async function deleteKeysWithPrefix(redis: RedisClient, prefix: string): Promise<number> {
  const glob = `${prefix}*`; // prefixes are validated [A-Za-z0-9_.:-]: no glob characters
  let deleted = 0;
  let batch: string[] = [];
  const flush = async () => {
    if (!batch.length) return;
    if (redis instanceof Cluster) {
      const counts = await Promise.all(batch.map((k) => redis.del(k)));
      deleted += counts.reduce((a, b) => a + b, 0);
    } else deleted += await redis.del(...batch);
    batch = [];
  };
  for await (const key of scanKeys(redis, glob)) {
    batch.push(key);
    if (batch.length >= 500) await flush();
  }
  await flush();
  return deleted;
}
