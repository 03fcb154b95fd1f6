import type { Redis } from 'ioredis';
import type { RedisKeys } from '../bus/keys.js';

export interface ProcessorInfo {
  id: string;
  capabilities: string[];
  /** Frames it can hold at once (concurrency x a small queue). */
  capacity: number;
  registeredAt: number;
  lastHeartbeat: number;
  pid?: number;
  host?: string;
}

/**
 * Processors announce themselves in Redis: a hash per processor (expiring) and a sorted
 * set scored by last heartbeat. A processor that stops heart-beating drops out of
 * `live()` after `ttlMs` even if it never unregistered (kill -9).
 */
export class ProcessorRegistry {
  constructor(private readonly redis: Redis, private readonly keys: RedisKeys, private readonly ttlMs: number) {}

  async register(info: Omit<ProcessorInfo, 'registeredAt' | 'lastHeartbeat'>): Promise<void> {
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.keys.processor(info.id), {
        id: info.id,
        capabilities: info.capabilities.join(','),
        capacity: String(info.capacity),
        registered_at: String(now),
        last_heartbeat: String(now),
        pid: String(info.pid ?? ''),
        host: info.host ?? '',
      })
      .pexpire(this.keys.processor(info.id), this.ttlMs)
      .zadd(this.keys.processors, now, info.id)
      .exec();
  }

  async heartbeat(id: string): Promise<void> {
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.keys.processor(id), 'last_heartbeat', String(now))
      .pexpire(this.keys.processor(id), this.ttlMs)
      .zadd(this.keys.processors, now, id)
      .exec();
  }

  async unregister(id: string): Promise<void> {
    await this.redis.multi().del(this.keys.processor(id)).zrem(this.keys.processors, id).exec();
  }

  async live(now = Date.now()): Promise<ProcessorInfo[]> {
    const ids = await this.redis.zrangebyscore(this.keys.processors, now - this.ttlMs, '+inf');
    if (!ids.length) return [];
    const tx = this.redis.pipeline();
    for (const id of ids) tx.hgetall(this.keys.processor(id));
    const rows = (await tx.exec()) ?? [];
    const out: ProcessorInfo[] = [];
    for (const [, h] of rows) {
      const row = h as Record<string, string>;
      if (!row?.id) continue; // hash expired between the two calls
      out.push({
        id: row.id,
        capabilities: row.capabilities ? row.capabilities.split(',') : [],
        capacity: Number(row.capacity) || 1,
        registeredAt: Number(row.registered_at),
        lastHeartbeat: Number(row.last_heartbeat),
        pid: row.pid ? Number(row.pid) : undefined,
        host: row.host || undefined,
      });
    }
    return out;
  }

  /** Removes index entries whose heartbeats stopped long ago (the hashes expired already). */
  async prune(now = Date.now()): Promise<number> {
    return this.redis.zremrangebyscore(this.keys.processors, '-inf', now - 10 * this.ttlMs);
  }
}
