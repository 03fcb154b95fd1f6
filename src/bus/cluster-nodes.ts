import { Cluster, Redis } from 'ioredis';
import { redactSecrets } from '../config/redact-text.js';
import type { RedisClient } from './redis.js';

/** One Redis server as `validate` and `status` report it. */
export interface RedisNodeInfo {
  address: string;
  role: 'master' | 'replica' | 'standalone';
  /** 'ok', or what is wrong ('fail' as the cluster sees it, a timeout, an error message). */
  status: string;
  /** A master's slot ranges, e.g. "0-5460". */
  slots?: string;
  version?: string;
}

export interface ClusterState {
  /** cluster_state: 'ok', or 'fail' (a slot without a live master). */
  state: string;
  slotsAssigned: number;
  slotsFail: number;
  knownNodes: number;
}

/** Rejects after `ms`, so one dead node never stalls a report. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const field = (info: string, name: string) => new RegExp(`^${name}:(.*?)\\s*$`, 'm').exec(info)?.[1];

/** CLUSTER INFO of a cluster; undefined for a single server. */
export async function clusterState(redis: RedisClient, timeoutMs = 2000): Promise<ClusterState | undefined> {
  if (!(redis instanceof Cluster)) return undefined;
  const info = await within(redis.cluster('INFO') as Promise<string>, timeoutMs, 'CLUSTER INFO');
  return {
    state: field(info, 'cluster_state') ?? 'unknown',
    slotsAssigned: Number(field(info, 'cluster_slots_assigned') ?? 0),
    slotsFail: Number(field(info, 'cluster_slots_fail') ?? 0),
    knownNodes: Number(field(info, 'cluster_known_nodes') ?? 0),
  };
}

/**
 * Every node: for a cluster, those CLUSTER NODES lists (failed ones too, as the cluster
 * sees them) with each reachable one's version; for one server (or a sentinel's master),
 * that server. Each question has its own timeout: this never hangs on a dead node.
 */
export async function redisNodes(redis: RedisClient, timeoutMs = 2000): Promise<RedisNodeInfo[]> {
  if (!(redis instanceof Cluster)) {
    const info = await within(redis.info(), timeoutMs, 'INFO');
    const role =
      field(info, 'role') === 'slave'
        ? 'replica'
        : field(info, 'role') === 'master' && Number(field(info, 'connected_slaves') ?? 0) > 0
          ? 'master'
          : 'standalone';
    return [{ address: addressOf(redis), role, status: 'ok', version: field(info, 'redis_version') }];
  }
  const text = (await within(redis.cluster('NODES') as Promise<string>, timeoutMs, 'CLUSTER NODES')).trim();
  const conns = new Map(redis.nodes('all').map((n) => [`${n.options.host}:${n.options.port}`, n]));
  const nodes = text.split('\n').map((line) => parseNodeLine(line));
  await Promise.all(
    nodes.map(async (n) => {
      if (n.status !== 'ok') return;
      try {
        const conn = conns.get(n.address);
        const info = conn ? within(conn.info('server'), timeoutMs, n.address) : probe(redis, n.address, timeoutMs);
        n.version = field(await info, 'redis_version');
      } catch (err) {
        n.status = redactSecrets((err as Error).message);
      }
    }),
  );
  return nodes.sort((a, b) => (a.role === b.role ? a.address.localeCompare(b.address) : a.role === 'master' ? -1 : 1));
}

/**
 * INFO server of a node the cluster client holds no connection to (replicas: reads go to
 * masters), on a throwaway connection with the cluster's own credentials and TLS.
 */
async function probe(cluster: Cluster, address: string, timeoutMs: number): Promise<string> {
  const i = address.lastIndexOf(':');
  let error: unknown;
  const conn = new Redis({
    ...cluster.options.redisOptions,
    host: address.slice(0, i).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(i + 1)),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  conn.on('error', (err) => (error ??= err)); // the first is the cause; connect() may reject with a later one
  try {
    await within(conn.connect(), timeoutMs, address).catch((err: unknown) => {
      throw error ?? err;
    });
    return await within(conn.info('server'), timeoutMs, address);
  } finally {
    conn.disconnect();
  }
}

/** A Cluster's startup nodes, kept by createRedis (ioredis keeps them private). */
const startupNodes = new WeakMap<Cluster, { host: string; port: number }[]>();

export function rememberStartupNodes(cluster: Cluster, nodes: { host: string; port: number }[]): void {
  startupNodes.set(cluster, nodes);
}

/**
 * Why a Cluster cannot connect, when it only says "Connection is closed." (ioredis drops
 * the error of the connection it asks for the slot map: a TLS or protocol failure): one
 * connection to a startup node with the cluster's own options, and its error. undefined
 * when that connection works (the cause is elsewhere).
 */
export async function clusterConnectError(cluster: Cluster, timeoutMs: number): Promise<unknown> {
  const node = startupNodes.get(cluster)?.[0];
  if (!node) return undefined;
  try {
    await probe(cluster, `${node.host}:${node.port}`, timeoutMs);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...` */
function parseNodeLine(line: string): RedisNodeInfo {
  const [, addr = '', flagText = '', , , , , link = '', ...slots] = line.trim().split(/\s+/);
  const flags = flagText.split(',');
  const address = addr.split('@')[0];
  const failed = flags.find((f) => f === 'fail' || f === 'fail?' || f === 'noaddr' || f === 'handshake');
  const status = failed ?? (link === 'connected' ? 'ok' : link || 'unknown');
  const role = flags.includes('master') ? 'master' : 'replica';
  const ranges = slots.filter((s) => !s.startsWith('[')); // [slot->-node] are migrations in progress
  return { address, role, status, ...(role === 'master' && ranges.length ? { slots: ranges.join(',') } : {}) };
}

function addressOf(redis: Redis): string {
  // Behind sentinels, options.host is not the master: the socket's peer is.
  const peer = (redis as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
  if (peer?.remoteAddress && peer.remotePort) return `${peer.remoteAddress}:${peer.remotePort}`;
  return `${redis.options.host ?? '127.0.0.1'}:${redis.options.port ?? 6379}`;
}
