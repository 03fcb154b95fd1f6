import type { RedisClient } from '../bus/redis.js';
import type { FieldList } from '../bus/fields.js';
import { groupLag } from '../bus/group-lag.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { BreakerBoard } from './breaker.js';
import { LANES } from './lanes.js';
import { computePressure, LEVEL_VALUE, type PressureOptions } from './pressure.js';
import type { ProcessorRegistry } from './registry.js';
import type { QueueSnapshot, RegistrySnapshot } from './snapshot.js';

/** Lane entries as XRANGE returns them, one list per lane (LANES order). */
export type RawLanes = [id: string, fields: FieldList][][];

export interface RegistryViewOptions {
  redis: RedisClient;
  keys: RedisKeys;
  metrics: Metrics;
  logger: Logger;
  registry: ProcessorRegistry;
  breakers: BreakerBoard;
  pressure: PressureOptions;
  /** How long a registry read serves (default REGISTRY_REFRESH_MS). */
  refreshMs?: number;
}

/** How long a registry read serves before the next one (heartbeats come every ~second). */
export const REGISTRY_REFRESH_MS = 250;

/**
 * The buffer's view of the world: the processor registry (and the breakers it feeds), the
 * upstream lag, and the lengths of the lanes and ready streams. Every read produces a new
 * frozen snapshot; the view only swaps its reference to the latest one, so a loop holding
 * a snapshot keeps a consistent picture while the other loop reads again.
 */
export class RegistryView {
  private registryNow: RegistrySnapshot = Object.freeze({ at: 0, processors: [], upstream: 0, input: { lag: 0, pending: 0 } });
  private queuesNow: QueueSnapshot;
  private readonly laneKeys: string[];

  constructor(private readonly opts: RegistryViewOptions) {
    this.laneKeys = LANES.map((l) => opts.keys.lane(l));
    for (const k of this.laneKeys) opts.metrics.seedStream(k);
    this.queuesNow = Object.freeze({
      at: 0,
      registry: this.registryNow,
      depth: new Map<string, number>(),
      lanes: Object.freeze(LANES.map(() => 0)),
      pressure: Object.freeze(computePressure(opts.pressure, 0, 0, 0)),
    });
  }

  /** The latest registry snapshot, whatever its age. */
  get current(): RegistrySnapshot {
    return this.registryNow;
  }

  /** The latest queue measure, whatever its age. */
  get latest(): QueueSnapshot {
    return this.queuesNow;
  }

  /** The registry, read again when the last read is older than REGISTRY_REFRESH_MS (or when forced). */
  async registry(force = false): Promise<RegistrySnapshot> {
    if (!force && Date.now() - this.registryNow.at < (this.opts.refreshMs ?? REGISTRY_REFRESH_MS)) return this.registryNow;
    const { metrics, logger, breakers } = this.opts;
    const now = Date.now();
    const processors = await this.opts.registry.live(now);
    for (const t of breakers.update(processors, now)) {
      metrics.breakerTransitions.inc({ processor: t.processorId, to: t.to });
      (t.to === 'open' ? logger.warn : logger.info)('circuit breaker ' + t.to, {
        processor_id: t.processorId,
        from: t.from,
        reason: t.reason,
      });
    }
    const byCap = new Map<string, number>();
    for (const p of processors) for (const c of p.capabilities) byCap.set(c, (byCap.get(c) ?? 0) + 1);
    metrics.processorsRegistered.reset();
    for (const [c, n] of byCap) metrics.processorsRegistered.set({ capability: c }, n);
    metrics.breakerState.reset();
    metrics.queueCapacity.reset();
    for (const p of processors) {
      const s = breakers.state(p.id);
      metrics.breakerState.set({ processor: p.id }, s === 'closed' ? 0 : s === 'half-open' ? 1 : 2);
      metrics.queueCapacity.set({ processor: p.id }, p.capacity);
      metrics.seedRoutedProcessor(p.id);
      metrics.seedStream(this.opts.keys.ready(p.id));
    }
    const { upstream, input } = await this.measureUpstream();
    this.registryNow = Object.freeze({ at: now, processors: Object.freeze(processors), upstream, input: Object.freeze(input) });
    return this.registryNow;
  }

  /** Makes the next registry() read Redis at once (after an API register/unregister). */
  invalidate(): void {
    this.registryNow = Object.freeze({ ...this.registryNow, at: 0 });
  }

  /**
   * Ready stream lengths (= frames each processor holds) and lane lengths, in one round
   * trip, against the latest registry snapshot; with `window`, the head of each lane too
   * (the dispatch round's input).
   */
  async measure(window = 0): Promise<{ snapshot: QueueSnapshot; heads?: RawLanes }> {
    const { redis, keys, metrics, breakers } = this.opts;
    const registry = this.registryNow;
    const { processors } = registry;
    const p = redis.pipeline();
    for (const proc of processors) p.xlen(keys.ready(proc.id));
    for (const k of this.laneKeys) p.xlen(k);
    if (window) for (const k of this.laneKeys) p.xrange(k, '-', '+', 'COUNT', window);
    const res = (await p.exec()) ?? [];
    const at = Date.now();
    const n = processors.length;
    const depth = new Map(processors.map((proc, i) => [proc.id, Number(res[i]?.[1] ?? 0)]));
    const lanes = this.laneKeys.map((_, i) => Number(res[n + i]?.[1] ?? 0));
    const healthyCap = processors.filter((x) => breakers.state(x.id) !== 'open').reduce((s, x) => s + x.capacity, 0);
    const capacity = healthyCap || processors.reduce((s, x) => s + x.capacity, 0);
    const backlog = lanes.reduce((a, b) => a + b, 0);
    const pressure = computePressure(this.opts.pressure, backlog, capacity, registry.upstream);
    metrics.pressureLevel.set(LEVEL_VALUE[pressure.level]);
    LANES.forEach((l, i) => metrics.backlog.set({ lane: l }, lanes[i]));
    metrics.queueDepth.reset();
    for (const [id, d] of depth) metrics.queueDepth.set({ processor: id }, d);
    const snapshot: QueueSnapshot = Object.freeze({
      at,
      registry,
      depth,
      lanes: Object.freeze(lanes),
      pressure: Object.freeze(pressure),
    });
    this.queuesNow = snapshot;
    if (!window) return { snapshot };
    const heads = this.laneKeys.map((_, i) => {
      const [err, rows] = res[n + this.laneKeys.length + i] ?? [];
      if (err) throw err;
      return (rows as [string, FieldList][]) ?? [];
    });
    return { snapshot, heads };
  }

  /** Captured frames not yet taken in by any buffer. */
  private async measureUpstream(): Promise<{ upstream: number; input: RegistrySnapshot['input'] }> {
    const { redis, keys } = this.opts;
    const g = (await groupLag(redis, keys.captured)).find((l) => l.group === GROUPS.buffer);
    const input = { lag: g?.lag ?? null, pending: g?.pending ?? 0 };
    if (!g) return { upstream: 0, input };
    if (g.lag !== null) return { upstream: g.lag, input };
    // Redis cannot tell (entries deleted): count what follows the group's last delivery, up to a bound.
    const info = (await redis.xinfo('GROUPS', keys.captured)) as unknown[][];
    const row = info.find((r) => r[r.indexOf('name') + 1] === GROUPS.buffer) ?? [];
    const last = String(row[row.indexOf('last-delivered-id') + 1] ?? '0-0');
    const bound = this.queuesNow.pressure.criticalBound + 1;
    return { upstream: (await redis.xrange(keys.captured, `(${last}`, '+', 'COUNT', bound)).length, input };
  }
}
