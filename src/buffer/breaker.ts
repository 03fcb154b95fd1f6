import type { ProcessorInfo } from './registry.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive failed frames (as the processor reports them) that open the breaker. */
  failureThreshold: number;
  /** Time open before a probe is let through (half-open); doubles on each failed probe, up to 8x. */
  cooldownMs: number;
  /** A processor whose last heartbeat is older than this many heartbeat periods is "missing". */
  missedHeartbeats?: number;
}

export interface BreakerSnapshot {
  state: BreakerState;
  since: number;
  reason?: string;
  /** Times it opened since the buffer started. */
  opened: number;
}

interface Breaker {
  state: BreakerState;
  since: number;
  reason?: string;
  opened: number;
  cooldownMs: number;
  /** Per-instance completed/failed counts when the breaker went half-open. */
  baseline?: Map<string, { completed: number; failed: number }>;
  /** Frames routed to it while half-open (the probe). */
  probes: number;
  probeAt: number;
}

export interface BreakerTransition {
  processorId: string;
  from: BreakerState;
  to: BreakerState;
  reason: string;
}

/**
 * One circuit breaker per processor id, fed by what processors publish in the registry
 * (their failure counts and heartbeats), so every buffer computes the same states from
 * the same shared facts without talking to each other.
 *
 * closed --(N consecutive failures | heartbeats missed)--> open --(cooldown)--> half-open
 * half-open --(the probe frame completed)--> closed;  half-open --(it failed | heartbeats missed)--> open
 */
export class BreakerBoard {
  private readonly breakers = new Map<string, Breaker>();

  constructor(private readonly opts: BreakerOptions) {}

  /** Re-evaluates every breaker from a fresh registry view; returns the transitions made. */
  update(processors: ProcessorInfo[], now = Date.now()): BreakerTransition[] {
    const out: BreakerTransition[] = [];
    const seen = new Set<string>();
    for (const p of processors) {
      seen.add(p.id);
      let b = this.breakers.get(p.id);
      if (!b) {
        b = { state: 'closed', since: now, opened: 0, cooldownMs: this.opts.cooldownMs, probes: 0, probeAt: 0 };
        this.breakers.set(p.id, b);
      }
      const move = (to: BreakerState, reason: string) => {
        out.push({ processorId: p.id, from: b!.state, to, reason });
        b!.state = to;
        b!.since = now;
        b!.reason = reason;
        if (to === 'open') b!.opened++;
        if (to === 'half-open') {
          b!.baseline = new Map(Object.entries(p.instances).map(([k, s]) => [k, { completed: s.completed, failed: s.failed }]));
          b!.probes = 0;
        }
        if (to === 'closed') b!.cooldownMs = this.opts.cooldownMs;
      };
      const missing = this.heartbeatMissing(p, now);
      if (b.state === 'closed') {
        if (missing) move('open', missing);
        else if (p.consecutiveFailures >= this.opts.failureThreshold)
          move('open', `${p.consecutiveFailures} consecutive failures${p.lastError ? ` (last: ${p.lastError.slice(0, 200)})` : ''}`);
      } else if (b.state === 'open') {
        if (!missing && now - b.since >= b.cooldownMs) move('half-open', 'cooldown over: letting a probe frame through');
      } else {
        const { completed, failed } = this.sinceBaseline(p, b);
        if (missing) {
          b.cooldownMs = Math.min(b.cooldownMs * 2, this.opts.cooldownMs * 8);
          move('open', missing);
        } else if (failed > 0) {
          b.cooldownMs = Math.min(b.cooldownMs * 2, this.opts.cooldownMs * 8);
          move('open', `probe failed${p.lastError ? ` (${p.lastError.slice(0, 200)})` : ''}`);
        } else if (completed > 0 && p.consecutiveFailures === 0) {
          move('closed', 'probe completed');
        }
      }
    }
    for (const id of this.breakers.keys()) if (!seen.has(id)) this.breakers.delete(id);
    return out;
  }

  state(id: string): BreakerState {
    return this.breakers.get(id)?.state ?? 'closed';
  }

  /** Whether a frame may be routed to the processor now. */
  allows(id: string, now = Date.now()): boolean {
    const b = this.breakers.get(id);
    if (!b || b.state === 'closed') return true;
    if (b.state === 'open') return false;
    // half-open: one probe at a time; another when the last one has had a cooldown to show its outcome.
    return b.probes === 0 || now - b.probeAt >= b.cooldownMs;
  }

  /** Records a frame routed to the processor (counts half-open probes). */
  routed(id: string, now = Date.now()): void {
    const b = this.breakers.get(id);
    if (b?.state === 'half-open') {
      b.probes++;
      b.probeAt = now;
    }
  }

  snapshot(id: string): BreakerSnapshot {
    const b = this.breakers.get(id);
    return b ? { state: b.state, since: b.since, reason: b.reason, opened: b.opened } : { state: 'closed', since: 0, opened: 0 };
  }

  private heartbeatMissing(p: ProcessorInfo, now: number): string | undefined {
    if (!p.heartbeatMs) return undefined;
    const limit = p.heartbeatMs * (this.opts.missedHeartbeats ?? 2.5) + 250;
    const age = now - p.lastHeartbeat;
    return age > limit ? `no heartbeat for ${age} ms (every ${p.heartbeatMs} ms expected)` : undefined;
  }

  private sinceBaseline(p: ProcessorInfo, b: Breaker): { completed: number; failed: number } {
    let completed = 0;
    let failed = 0;
    for (const [name, s] of Object.entries(p.instances)) {
      const base = b.baseline?.get(name);
      // An instance that restarted (counters lower) or appeared counts from zero.
      completed += base && s.completed >= base.completed ? s.completed - base.completed : s.completed;
      failed += base && s.failed >= base.failed ? s.failed - base.failed : s.failed;
    }
    return { completed, failed };
  }
}
