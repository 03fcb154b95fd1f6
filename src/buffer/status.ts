import type { RedisClient } from '../bus/redis.js';
import { COUNTER_FIELDS, type RedisKeys } from '../bus/keys.js';
import type { BreakerBoard, BreakerSnapshot } from './breaker.js';
import { LANES, type Lane } from './lanes.js';
import type { Pressure, ShedPolicy } from './pressure.js';
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
