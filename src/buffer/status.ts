import type { RedisClient } from '../bus/redis.js';
import { COUNTER_FIELDS, type RedisKeys } from '../bus/keys.js';
import type { BreakerBoard, BreakerSnapshot } from './breaker.js';
import { LANES, type Lane } from './lanes.js';
import { PRESSURE_LEVELS, type Pressure, type ShedPolicy } from './pressure.js';
import type { ProcessorInfo } from './registry.js';
import type { RegistryView } from './registry-view.js';
import type { StrategyName } from './router.js';
import type { QueueSnapshot } from './snapshot.js';

/** One processor as the status API shows it. */
export interface ProcessorStatus extends ProcessorInfo {
  depth: number;
  load: number;
  breaker: BreakerSnapshot;
  ageMs: number;
}

export interface BufferStatus {
  strategy: StrategyName;
  shedPolicy: ShedPolicy;
  pressure: Pressure;
  lanes: Record<Lane, number>;
  input: { stream: string; lag: number | null; pending: number };
  processors: ProcessorStatus[];
  capabilities: Record<string, string[]>;
  deadLetter: Record<string, number>;
  /** With more than one shard: each shard's input stream and lanes (the fields above are their sums). */
  shards?: { shard: number; input: BufferStatus['input']; lanes: Record<Lane, number>; pressure: Pressure }[];
}

export interface StatusOptions {
  redis: RedisClient;
  keys: RedisKeys;
  view: RegistryView;
  breakers: BreakerBoard;
  strategy: StrategyName;
  shedPolicy: ShedPolicy;
}

/**
 * What the HTTP API reports. Always read fresh (registry forced, queues measured): an
 * operator asking right after a change must see it, and status is rare next to dispatch.
 */
export class StatusReporter {
  constructor(private readonly opts: StatusOptions) {}

  async status(): Promise<BufferStatus> {
    const { redis, keys, strategy, shedPolicy } = this.opts;
    const queues = await this.fresh();
    const now = Date.now();
    const counters = await redis.hgetall(keys.counters);
    const capabilities: Record<string, string[]> = {};
    for (const p of queues.registry.processors) for (const c of p.capabilities) (capabilities[c] ??= []).push(p.id);
    const deadLetter: Record<string, number> = {};
    for (const [field, v] of Object.entries(counters)) {
      const stream = COUNTER_FIELDS.deadLetterStreamOf(field);
      if (stream !== undefined) deadLetter[stream] = Number(v);
    }
    return {
      strategy,
      shedPolicy,
      pressure: queues.pressure,
      lanes: Object.fromEntries(LANES.map((l, i) => [l, queues.lanes[i]])) as Record<Lane, number>,
      input: { stream: keys.captured, ...queues.registry.input },
      processors: queues.registry.processors.map((p) => this.processor(p, queues, now)),
      capabilities,
      deadLetter,
    };
  }

  async processors(): Promise<ProcessorStatus[]> {
    const queues = await this.fresh();
    const now = Date.now();
    return queues.registry.processors.map((p) => this.processor(p, queues, now));
  }

  private async fresh(): Promise<QueueSnapshot> {
    await this.opts.view.registry(true);
    return (await this.opts.view.measure()).snapshot;
  }

  private processor(p: ProcessorInfo, queues: QueueSnapshot, now: number): ProcessorStatus {
    const depth = queues.depth.get(p.id) ?? 0;
    return {
      ...p,
      depth,
      load: p.capacity ? depth / p.capacity : 0,
      breaker: this.opts.breakers.snapshot(p.id),
      ageMs: now - p.lastHeartbeat,
    };
  }
}

/** One processor over every shard: frames it holds in all its ready streams. */
export function mergeProcessorStatus(perShard: ProcessorStatus[][]): ProcessorStatus[] {
  if (perShard.length === 1) return perShard[0];
  const byId = new Map<string, ProcessorStatus>();
  for (const list of perShard) {
    for (const p of list) {
      const seen = byId.get(p.id);
      if (!seen) byId.set(p.id, { ...p });
      else seen.depth += p.depth;
    }
  }
  return [...byId.values()].map((p) => ({ ...p, load: p.capacity ? p.depth / p.capacity : 0 }));
}

/** The buffer's status over every shard: sums, the worst pressure, and each shard's own part. */
export function mergeStatus(perShard: BufferStatus[]): BufferStatus {
  if (perShard.length === 1) return perShard[0];
  const [first] = perShard;
  const worst = perShard.reduce((w, s) => (PRESSURE_LEVELS.indexOf(s.pressure.level) > PRESSURE_LEVELS.indexOf(w.pressure.level) ? s : w));
  const lanes = Object.fromEntries(LANES.map((l) => [l, perShard.reduce((n, s) => n + s.lanes[l], 0)])) as Record<Lane, number>;
  const lags = perShard.map((s) => s.input.lag);
  return {
    ...first,
    pressure: worst.pressure,
    lanes,
    input: {
      stream: perShard.map((s) => s.input.stream).join(','),
      lag: lags.some((l) => l === null) ? null : lags.reduce((a: number, b) => a + (b ?? 0), 0),
      pending: perShard.reduce((n, s) => n + s.input.pending, 0),
    },
    processors: mergeProcessorStatus(perShard.map((s) => s.processors)),
    deadLetter: Object.assign({}, ...perShard.map((s) => s.deadLetter)) as Record<string, number>,
    shards: perShard.map((s, shard) => ({ shard, input: s.input, lanes: s.lanes, pressure: s.pressure })),
  };
}
