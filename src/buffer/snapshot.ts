import type { BreakerBoard } from './breaker.js';
import type { Pressure } from './pressure.js';
import type { ProcessorInfo } from './registry.js';
import type { Candidate, RoutingView } from './router.js';

/**
 * What the buffer knows of the registry at one moment. Frozen: intake and dispatch run
 * concurrently and each works on the snapshot it was handed, so neither sees the other's
 * refresh land half-way through a decision.
 */
export interface RegistrySnapshot {
  readonly at: number;
  /** Live processors, by id. */
  readonly processors: readonly ProcessorInfo[];
  /** Captured frames not yet taken in by any buffer. */
  readonly upstream: number;
  /** The `buffer` group on frames:captured as Redis reports it (lag null: Redis cannot tell). */
  readonly input: { readonly lag: number | null; readonly pending: number };
}

/** Queue lengths measured against one registry snapshot, and the pressure they make. */
export interface QueueSnapshot {
  readonly at: number;
  readonly registry: RegistrySnapshot;
  /** Ready stream length (= frames held) per processor id. */
  readonly depth: ReadonlyMap<string, number>;
  /** Frames waiting per lane, in LANES order. */
  readonly lanes: readonly number[];
  readonly pressure: Pressure;
}

export const waitingFrames = (s: QueueSnapshot): boolean => s.lanes.some((n) => n > 0);

/**
 * The processors of each capability with their load, for the router. The candidates are
 * fresh objects: the router counts what it sends in their depth, and that count belongs to
 * the one round (or intake batch) that asked for the view.
 */
export function routingView(
  processors: readonly ProcessorInfo[],
  depth: ReadonlyMap<string, number>,
  breakers: BreakerBoard,
  exclude?: string,
): RoutingView {
  const offered = new Map<string, string[]>();
  const healthy = new Map<string, Candidate[]>();
  const now = Date.now();
  for (const p of processors) {
    if (p.id === exclude) continue;
    const allowed = breakers.allows(p.id, now);
    const c: Candidate = { id: p.id, depth: depth.get(p.id) ?? 0, capacity: p.capacity };
    for (const cap of p.capabilities) {
      offered.set(cap, [...(offered.get(cap) ?? []), p.id]);
      if (allowed) healthy.set(cap, [...(healthy.get(cap) ?? []), c]);
    }
  }
  return { offered, healthy };
}

/** Free slots among the candidates a frame may go to (each processor counted once). */
export function viewRoom(view: RoutingView): number {
  return [...new Set([...view.healthy.values()].flat())].reduce((s, c) => s + Math.max(0, c.capacity - c.depth), 0);
}

/** Free slots of the processors a frame may go to now (breaker allows). */
export function freeSlots(processors: readonly ProcessorInfo[], depth: ReadonlyMap<string, number>, breakers: BreakerBoard): number {
  let room = 0;
  const now = Date.now();
  for (const p of processors) if (breakers.allows(p.id, now)) room += Math.max(0, p.capacity - (depth.get(p.id) ?? 0));
  return room;
}

/** Processor id -> capacity, what the hand-off scripts check each ready stream's length against. */
export function capacities(processors: readonly ProcessorInfo[]): Map<string, number> {
  return new Map(processors.map((p) => [p.id, p.capacity]));
}
