import type { FrameMessage } from '../domain/frame.js';

export const STRATEGIES = ['least-loaded', 'camera-affinity', 'round-robin'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** A processor as routing sees it at one moment. */
export interface Candidate {
  id: string;
  /** Frames handed to it and not yet acked (its ready stream's length, plus what this round sent). */
  depth: number;
  /** Frames it holds at once. */
  capacity: number;
}

export const hasRoom = (c: Candidate) => c.depth < c.capacity;

/**
 * Chooses one processor of a capability for a frame, among the healthy ones (breaker
 * closed, or half-open with its probe free). Returns undefined when the frame must wait.
 */
export interface Strategy {
  readonly name: StrategyName;
  pick(
    capability: string,
    frame: Pick<FrameMessage, 'cameraId'>,
    healthy: readonly Candidate[],
    exclude?: ReadonlySet<string>,
  ): Candidate | undefined;
  /** Told when a pick was acted on (a decision may be only a look-ahead). */
  chosen?(capability: string, c: Candidate): void;
}

/** The least (depth / capacity) with room; ties go to the shallower queue, then the id. */
export class LeastLoaded implements Strategy {
  readonly name = 'least-loaded' as const;

  pick(
    _cap: string,
    _frame: Pick<FrameMessage, 'cameraId'>,
    healthy: readonly Candidate[],
    exclude?: ReadonlySet<string>,
  ): Candidate | undefined {
    let best: Candidate | undefined;
    let bestLoad = Infinity;
    for (const c of healthy) {
      if (!hasRoom(c) || exclude?.has(c.id)) continue;
      const load = c.depth / c.capacity;
      if (load < bestLoad || (load === bestLoad && best && (c.depth < best.depth || (c.depth === best.depth && c.id < best.id)))) {
        best = c;
        bestLoad = load;
      }
    }
    return best;
  }
}

/** Each capability's processors in turn (by id), skipping those without room. */
export class RoundRobin implements Strategy {
  readonly name = 'round-robin' as const;
  private readonly last = new Map<string, string>();

  pick(
    cap: string,
    _frame: Pick<FrameMessage, 'cameraId'>,
    healthy: readonly Candidate[],
    exclude?: ReadonlySet<string>,
  ): Candidate | undefined {
    const prev = this.last.get(cap);
    let after: Candidate | undefined;
    let first: Candidate | undefined;
    for (const c of healthy) {
      if (!hasRoom(c) || exclude?.has(c.id)) continue;
      if (!first || c.id < first.id) first = c;
      if (prev !== undefined && c.id > prev && (!after || c.id < after.id)) after = c;
    }
    return after ?? first;
  }

  chosen(cap: string, c: Candidate): void {
    this.last.set(cap, c.id);
  }
}

/** murmur3's 32-bit finaliser: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a of a string, finalised; cached (camera and processor ids repeat), the cache bounded. */
const stringHashes = new Map<string, number>();
function hash32(s: string): number {
  let h = stringHashes.get(s);
  if (h !== undefined) return h;
  h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h = fmix32(h);
  if (stringHashes.size >= 100_000) stringHashes.clear();
  stringHashes.set(s, h);
  return h;
}

/** Rendezvous weight of a processor for a (camera, capability) key: two cached hashes and a mix. */
function weight(key: number, id: string): number {
  return fmix32(key ^ Math.imul(hash32(id), 0x9e3779b1));
}

/**
 * Camera affinity by rendezvous (highest-random-weight) hashing: a camera's frames go to
 * the healthy processor with the highest hash(camera, processor). Sticky: while that
 * processor is healthy the camera stays there, and waits when it is full (per-camera state,
 * like motion's previous frame, stays in one place). When it leaves or its breaker opens,
 * only its cameras move (to their next-highest), and when a processor joins it takes over
 * about 1/n of the cameras: rebalancing with minimal movement. Every buffer computes the
 * same assignment from the same registry, without coordination.
 */
export class CameraAffinity implements Strategy {
  readonly name = 'camera-affinity' as const;

  pick(
    cap: string,
    frame: Pick<FrameMessage, 'cameraId'>,
    healthy: readonly Candidate[],
    exclude?: ReadonlySet<string>,
  ): Candidate | undefined {
    let home: Candidate | undefined;
    let best = -1;
    const key = hash32(`${frame.cameraId}\u0000${cap}`);
    for (const c of healthy) {
      if (exclude?.has(c.id)) continue;
      const score = weight(key, c.id);
      if (score > best || (score === best && home && c.id < home.id)) {
        best = score;
        home = c;
      }
    }
    return home && hasRoom(home) ? home : undefined;
  }

  /** The processor a camera belongs to among `ids` (for status and tests). */
  static home(cameraId: string, cap: string, ids: readonly string[]): string | undefined {
    let home: string | undefined;
    let best = -1;
    const key = hash32(`${cameraId}\u0000${cap}`);
    for (const id of ids) {
      const score = weight(key, id);
      if (score > best || (score === best && home !== undefined && id < home)) {
        best = score;
        home = id;
      }
    }
    return home;
  }
}

export function createStrategy(name: StrategyName): Strategy {
  switch (name) {
    case 'least-loaded':
      return new LeastLoaded();
    case 'round-robin':
      return new RoundRobin();
    case 'camera-affinity':
      return new CameraAffinity();
  }
}

export interface Route {
  capability: string;
  processorId: string;
}

export type Decision =
  | { kind: 'route'; routes: Route[] }
  /** A capability has live processors but none can take the frame now (full, or breakers open). */
  | { kind: 'wait'; capability: string }
  /** Capabilities no live processor offers at all. */
  | { kind: 'drop'; missing: string[] };

/** The processors of each capability, as one dispatch round sees them. */
export interface RoutingView {
  /** Every live processor id offering the capability (breaker state aside). */
  offered: Map<string, string[]>;
  /** Those a frame may go to now (breaker allows), with their load. */
  healthy: Map<string, Candidate[]>;
}

/**
 * Routes a frame to one processor per capability it asks for (or, asking for none, per
 * capability on offer), all or nothing: the frame waits until every capability it needs
 * can take it. Distinct processors are preferred when one offers several capabilities.
 * `apply` is called with the chosen candidates so their depth counts the new frame.
 */
export class Router {
  constructor(readonly strategy: Strategy) {}

  decide(frame: Pick<FrameMessage, 'cameraId' | 'capabilities'>, view: RoutingView, apply = true): Decision {
    const wanted = frame.capabilities.length ? frame.capabilities : [...view.offered.keys()].sort();
    const missing = wanted.filter((c) => !view.offered.get(c)?.length);
    if (missing.length || !wanted.length) return { kind: 'drop', missing: missing.length ? missing : ['any capability'] };
    const routes: Route[] = [];
    const chosen: Candidate[] = [];
    const used = new Set<string>();
    for (const capability of wanted) {
      const healthy = view.healthy.get(capability) ?? [];
      const c = this.strategy.pick(capability, frame, healthy, used) ?? this.strategy.pick(capability, frame, healthy);
      if (!c) return { kind: 'wait', capability };
      routes.push({ capability, processorId: c.id });
      chosen.push(c);
      used.add(c.id);
    }
    if (apply) this.apply(routes, chosen);
    return { kind: 'route', routes };
  }

  /** Counts a routed frame in its processors' depth (and tells the strategy). */
  apply(routes: Route[], chosen: Candidate[]): void {
    routes.forEach((r, i) => {
      chosen[i].depth++;
      this.strategy.chosen?.(r.capability, chosen[i]);
    });
  }

  /** decide() then apply() when it routes, with the candidates looked up again. */
  commit(decision: Decision, view: RoutingView): void {
    if (decision.kind !== 'route') return;
    const chosen = decision.routes.map((r) => view.healthy.get(r.capability)!.find((c) => c.id === r.processorId)!);
    this.apply(decision.routes, chosen);
  }
}
