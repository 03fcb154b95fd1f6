import type { Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import type { RedisKeys } from '../bus/keys.js';
import { onePerShard, type ShardSet } from '../bus/shards.js';
import { InvalidInputError } from '../domain/errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ShedPolicy } from './pressure.js';
import type { StrategyName } from './router.js';

export interface BufferOptions {
  redis: RedisClient;
  /** One dedicated connection per shard for its blocking reads (same order as shards.all). */
  blocking: RedisClient[];
  shards: ShardSet;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  processorTtlMs: number;
  streamMaxLen: number;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  /** How a processor is chosen among those of a capability (default least-loaded). */
  strategy?: StrategyName;
  /** Which waiting frames go first when shedding (default lowest-priority). */
  shedPolicy?: ShedPolicy;
  /** Backlog, in multiples of capacity, at which intake slows (default 4) / pauses then sheds (default 16). */
  pressureHigh?: number;
  pressureCritical?: number;
  /** Dequeues a ready lower lane may be passed over (default 8). */
  starvationLimit?: number;
  /** Consecutive failures that open a processor's breaker (default 5), and its cooldown (default 10 s). */
  breakerFailures?: number;
  breakerCooldownMs?: number;
  /** Longest pause between dispatch rounds while frames wait (default 10 ms). */
  dispatchIntervalMs?: number;
}

/** BufferOptions with every default filled in: the one place the defaults live. */
/** ... for one shard: its keys and its blocking connection. */
export type BufferSettings = Required<Omit<BufferOptions, 'shards' | 'blocking'>> & { keys: RedisKeys; blocking: RedisClient };

/**
 * Fills in the defaults for shard `shard` (default 0) and rejects settings that
 * contradict each other (before anything starts).
 */
export function bufferSettings(opts: BufferOptions, shard = 0): BufferSettings {
  const { shards, blocking, ...rest } = opts;
  onePerShard('buffer', shards, blocking);
  const s: BufferSettings = {
    ...rest,
    keys: shards.all[shard],
    blocking: blocking[shard],
    strategy: opts.strategy ?? 'least-loaded',
    shedPolicy: opts.shedPolicy ?? 'lowest-priority',
    pressureHigh: opts.pressureHigh ?? 4,
    pressureCritical: opts.pressureCritical ?? 16,
    starvationLimit: opts.starvationLimit ?? 8,
    breakerFailures: opts.breakerFailures ?? 5,
    breakerCooldownMs: opts.breakerCooldownMs ?? 10_000,
    dispatchIntervalMs: opts.dispatchIntervalMs ?? 10,
  };
  if (!(s.pressureCritical >= s.pressureHigh))
    throw new InvalidInputError(`pressureCritical (${s.pressureCritical}) must be at least pressureHigh (${s.pressureHigh})`);
  return s;
}
