import { Redis } from 'ioredis';
import type { RedisKeys } from '../../src/bus/keys.js';
import { singleShard, type ShardSet } from '../../src/bus/shards.js';
import { deleteKeysWithPrefix } from '../../src/bus/redis.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other test uses, so tests can share one Redis. */
export function uniquePrefix(label = 't'): string {
  return `test:${label}:${process.pid}:${Math.random().toString(36).slice(2, 8)}:`;
}

export interface TestRedis {
  redis: Redis;
  blocking: Redis;
  prefix: string;
  /** One shard, untagged keys (as on one plain Redis); `keys` is its key set. */
  shards: ShardSet;
  keys: RedisKeys;
  cleanup(): Promise<void>;
}

/** Two connections (one for blocking reads) and a unique prefix; `url` defaults to REDIS_URL. */
export async function testRedis(label?: string, url = REDIS_URL): Promise<TestRedis> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  const blocking = new Redis(url, { maxRetriesPerRequest: 1 });
  const prefix = uniquePrefix(label);
  const shards = singleShard(prefix);
  return {
    redis,
    blocking,
    prefix,
    shards,
    keys: shards.all[0],
    async cleanup() {
      await deleteKeysWithPrefix(redis, prefix);
      redis.disconnect();
      blocking.disconnect();
    },
  };
}

/**
 * No wait is shorter than this: a test's own deadline is what an idle machine needs, and a
 * loaded 2-core CI box may need several times that. A longer deadline costs nothing while
 * the condition comes true; how fast things happen is for benchmarks (bench/), not tests.
 */
export const MIN_WAIT_MS = 15_000;

/** Polls `fn` until it returns something truthy, for at least `timeoutMs` (and MIN_WAIT_MS). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = MIN_WAIT_MS,
  everyMs = 50,
): Promise<T> {
  timeoutMs = Math.max(timeoutMs, MIN_WAIT_MS);
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
