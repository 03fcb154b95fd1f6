import type { RedisClient } from '../bus/redis.js';
import type { RedisKeys } from '../bus/keys.js';

/** What one running instance reports about itself with every heartbeat. */
export interface InstanceStats {
  /** Frames this instance holds at once (its share of the processor's capacity). */
  capacity: number;
  concurrency: number;
  /** Last heartbeat, ms since epoch. */
  at: number;
  pid?: number;
  host?: string;
  inFlight: number;
  completed: number;
  failed: number;
  /** Failed frames since the last completed one. */
  consecutiveFailures: number;
  lastError?: string;
}

/** A processor id as the buffer sees it: the sum of its live instances. */
export interface ProcessorInfo {
  id: string;
  capabilities: string[];
  /** Frames it can hold at once (sum over its live instances). */
  capacity: number;
  registeredAt: number;
  /** Latest heartbeat of any instance. */
  lastHeartbeat: number;
  /** The heartbeat period its instances announced (0: unknown). */
  heartbeatMs: number;
  /** Who registered it: a `detektr process` worker, or a client of the buffer's HTTP API. */
  source: string;
  instances: Record<string, InstanceStats>;
  completed: number;
  failed: number;
  /** The worst instance's run of failures. */
  consecutiveFailures: number;
  inFlight: number;
  lastError?: string;
  /** Convenience (first live instance): kept for callers of the first registry. */
  pid?: number;
  host?: string;
}

export interface Registration {
  id: string;
  capabilities: string[];
  heartbeatMs: number;
  source?: string;
  /** The instance's name (its consumer name); instances of one id share its stream. */
  instance: string;
  stats: InstanceStats;
}

const INSTANCE_PREFIX = 'inst:';

function parseInstance(raw: string): InstanceStats | undefined {
  try {
    const v = JSON.parse(raw) as Partial<InstanceStats>;
    if (!v || typeof v !== 'object' || !Number.isFinite(v.at) || !Number.isFinite(v.capacity)) return undefined;
    return {
      capacity: Math.max(0, Number(v.capacity)),
      concurrency: Number(v.concurrency) || 1,
      at: Number(v.at),
      pid: v.pid,
      host: v.host,
      inFlight: Number(v.inFlight) || 0,
      completed: Number(v.completed) || 0,
      failed: Number(v.failed) || 0,
      consecutiveFailures: Number(v.consecutiveFailures) || 0,
      lastError: typeof v.lastError === 'string' ? v.lastError : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * Processors announce themselves in Redis: a hash per processor id (expiring after the
 * TTL unless refreshed) with one field per running instance, and a sorted set of ids
 * scored by their last heartbeat. A processor that stops heart-beating (kill -9) drops out
 * of `live()` after `ttlMs`; an instance that stops while others of its id run drops out of
 * the sums as soon as its own report is older than the TTL.
 */
export class ProcessorRegistry {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly ttlMs: number,
  ) {}

  /** Registers or refreshes one instance (a heartbeat is a re-registration: an expired hash comes back whole). */
  async heartbeat(r: Registration, now = Date.now()): Promise<void> {
    const key = this.keys.processor(r.id);
    const tx = this.redis.multi();
    tx.hsetnx(key, 'registered_at', String(now));
    tx.hset(key, {
      id: r.id,
      capabilities: r.capabilities.join(','),
      heartbeat_ms: String(r.heartbeatMs),
      last_heartbeat: String(now),
      source: r.source ?? 'process',
      [`${INSTANCE_PREFIX}${r.instance}`]: JSON.stringify({ ...r.stats, at: now }),
    });
    tx.pexpire(key, this.ttlMs);
    tx.zadd(this.keys.processors, now, r.id);
    const res = await tx.exec();
    const failed = res?.find(([err]) => err);
    if (failed) throw failed[0];
  }

  register(r: Registration): Promise<void> {
    return this.heartbeat(r);
  }

  /**
   * One instance leaves; the id is removed when no other live instance remains. Returns the
   * live instances left. (Not atomic: an instance heart-beating in between re-registers
   * itself whole on its next heartbeat, as a heartbeat is a full registration.)
   */
  async unregisterInstance(id: string, instance: string, now = Date.now()): Promise<number> {
    const key = this.keys.processor(id);
    await this.redis.hdel(key, `${INSTANCE_PREFIX}${instance}`);
    const left = this.parse(await this.redis.hgetall(key), now);
    const n = left ? Object.keys(left.instances).length : 0;
    if (n === 0) await this.redis.multi().del(key).zrem(this.keys.processors, id).exec();
    return n;
  }

  /** Removes a processor id and all its instances (the API's DELETE). True when it existed. */
  async unregister(id: string): Promise<boolean> {
    const res = await this.redis.multi().del(this.keys.processor(id)).zrem(this.keys.processors, id).exec();
    return Number(res?.[0]?.[1] ?? 0) > 0;
  }

  async get(id: string, now = Date.now()): Promise<ProcessorInfo | undefined> {
    const row = await this.redis.hgetall(this.keys.processor(id));
    return this.parse(row, now);
  }

  async live(now = Date.now()): Promise<ProcessorInfo[]> {
    const ids = await this.redis.zrangebyscore(this.keys.processors, now - this.ttlMs, '+inf');
    if (!ids.length) return [];
    const tx = this.redis.pipeline();
    for (const id of ids) tx.hgetall(this.keys.processor(id));
    const rows = (await tx.exec()) ?? [];
    const out: ProcessorInfo[] = [];
    for (const [, h] of rows) {
      const p = this.parse(h as Record<string, string>, now);
      if (p) out.push(p);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Ids in the index whose heartbeats stopped (hash expired or stale): gone processors. */
  async gone(now = Date.now()): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.processors, '-inf', `(${now - this.ttlMs}`);
  }

  /** Removes index entries whose heartbeats stopped long ago (the hashes expired already). */
  async prune(now = Date.now()): Promise<number> {
    return this.redis.zremrangebyscore(this.keys.processors, '-inf', now - 10 * this.ttlMs);
  }

  private parse(row: Record<string, string> | null | undefined, now: number): ProcessorInfo | undefined {
    if (!row?.id) return undefined; // hash expired between the two calls
    const instances: Record<string, InstanceStats> = {};
    let capacity = 0;
    let completed = 0;
    let failed = 0;
    let consecutiveFailures = 0;
    let inFlight = 0;
    let lastHeartbeat = 0;
    let lastError: string | undefined;
    for (const [field, value] of Object.entries(row)) {
      if (!field.startsWith(INSTANCE_PREFIX)) continue;
      const st = parseInstance(value);
      if (!st || st.at <= now - this.ttlMs) continue; // an instance that died while its siblings run
      instances[field.slice(INSTANCE_PREFIX.length)] = st;
      capacity += st.capacity;
      completed += st.completed;
      failed += st.failed;
      inFlight += st.inFlight;
      consecutiveFailures = Math.max(consecutiveFailures, st.consecutiveFailures);
      if (st.at > lastHeartbeat) {
        lastHeartbeat = st.at;
        lastError = st.lastError ?? lastError;
      }
    }
    const names = Object.keys(instances);
    if (!names.length) return undefined;
    const first = instances[names[0]];
    return {
      id: row.id,
      capabilities: row.capabilities ? row.capabilities.split(',').filter(Boolean) : [],
      capacity,
      registeredAt: Number(row.registered_at) || lastHeartbeat,
      lastHeartbeat,
      heartbeatMs: Number(row.heartbeat_ms) || 0,
      source: row.source || 'process',
      instances,
      completed,
      failed,
      consecutiveFailures,
      inFlight,
      lastError,
      pid: first.pid,
      host: first.host,
    };
  }
}
