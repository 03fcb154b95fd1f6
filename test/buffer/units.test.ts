import { describe, expect, it } from 'vitest';
import { BreakerBoard } from '../../src/buffer/breaker.js';
import { LANES, LaneScheduler, laneOf } from '../../src/buffer/lanes.js';
import { computePressure } from '../../src/buffer/pressure.js';
import type { InstanceStats, ProcessorInfo } from '../../src/buffer/registry.js';
import { CameraAffinity, LeastLoaded, RoundRobin, Router, type Candidate, type RoutingView } from '../../src/buffer/router.js';

function view(procs: { id: string; caps: string[]; depth?: number; capacity?: number }[]): RoutingView {
  const offered = new Map<string, string[]>();
  const healthy = new Map<string, Candidate[]>();
  for (const p of procs) {
    const c: Candidate = { id: p.id, depth: p.depth ?? 0, capacity: p.capacity ?? 4 };
    for (const cap of p.caps) {
      offered.set(cap, [...(offered.get(cap) ?? []), p.id]);
      healthy.set(cap, [...(healthy.get(cap) ?? []), c]);
    }
  }
  return { offered, healthy };
}

function info(id: string, inst: Partial<InstanceStats> = {}, extra: Partial<ProcessorInfo> = {}): ProcessorInfo {
  const stats: InstanceStats = {
    capacity: 4,
    concurrency: 1,
    at: Date.now(),
    inFlight: 0,
    completed: 0,
    failed: 0,
    consecutiveFailures: 0,
    ...inst,
  };
  return {
    id,
    capabilities: ['x'],
    capacity: 4,
    registeredAt: 0,
    lastHeartbeat: stats.at,
    heartbeatMs: 100,
    source: 'process',
    instances: { a: stats },
    completed: stats.completed,
    failed: stats.failed,
    consecutiveFailures: stats.consecutiveFailures,
    inFlight: 0,
    ...extra,
  };
}

describe('priority lanes', () => {
  it('maps priorities 0-9 onto three lanes', () => {
    expect([0, 3, 4, 6, 7, 9].map(laneOf)).toEqual(['low', 'low', 'normal', 'normal', 'high', 'high']);
  });

  it('serves the highest ready lane, but a passed-over lane within limit + lanes - 1 dequeues', () => {
    for (const limit of [1, 3, 8]) {
      const s = new LaneScheduler(limit);
      const picks: number[] = [];
      for (let i = 0; i < 60; i++) picks.push(s.pick([true, true, true]));
      // Every lane, including low, is served, and never waits longer than the bound.
      for (let lane = 0; lane < LANES.length; lane++) {
        const at = picks.map((p, i) => (p === lane ? i : -1)).filter((i) => i >= 0);
        expect(at.length, `lane ${lane} limit ${limit}`).toBeGreaterThan(0);
        const gaps = [at[0] + 1, ...at.slice(1).map((v, i) => v - at[i])];
        expect(Math.max(...gaps), `lane ${lane} limit ${limit}: ${picks.join('')}`).toBeLessThanOrEqual(limit + LANES.length - 1 + 1);
      }
      // High still gets the lion's share (limit 1 is plain rotation).
      if (limit > 1) expect(picks.filter((p) => p === 0).length).toBeGreaterThan(2 * picks.filter((p) => p === 2).length);
    }
  });

  it('is strict priority when only one lane competes, and idle lanes are not counted as starving', () => {
    const s = new LaneScheduler(2);
    expect([1, 2, 3, 4].map(() => s.pick([false, true, false]))).toEqual([1, 1, 1, 1]);
    expect(s.pick([false, false, false])).toBe(-1);
  });
});

describe('routing strategies', () => {
  it('least-loaded picks the lowest depth/capacity with room, counting what it sends', () => {
    const router = new Router(new LeastLoaded());
    const v = view([
      { id: 'a', caps: ['m'], depth: 3, capacity: 4 },
      { id: 'b', caps: ['m'], depth: 0, capacity: 2 },
      { id: 'c', caps: ['m'], depth: 1, capacity: 8 },
    ]);
    const got: string[] = [];
    for (let i = 0; i < 11; i++) {
      const d = router.decide({ cameraId: 'k', capabilities: ['m'] }, v);
      got.push(d.kind === 'route' ? d.routes[0].processorId : d.kind);
    }
    // b (0/2) first, then c (1/8); the loads interleave until every queue is full; then the frame waits.
    expect(got).toEqual(['b', 'c', 'c', 'c', 'b', 'c', 'c', 'a', 'c', 'c', 'wait']);
  });

  it('round-robin takes turns by id and skips full processors', () => {
    const router = new Router(new RoundRobin());
    const v = view([
      { id: 'p1', caps: ['m'], capacity: 100 },
      { id: 'p2', caps: ['m'], capacity: 2 },
      { id: 'p3', caps: ['m'], capacity: 100 },
    ]);
    const got = Array.from({ length: 9 }, () => {
      const d = router.decide({ cameraId: 'k', capabilities: ['m'] }, v);
      return d.kind === 'route' ? d.routes[0].processorId : d.kind;
    });
    expect(got).toEqual(['p1', 'p2', 'p3', 'p1', 'p2', 'p3', 'p1', 'p3', 'p1']);
  });

  it('camera affinity is sticky, and moves only the cameras of a processor that leaves', () => {
    const cams = Array.from({ length: 200 }, (_, i) => `cam${i}`);
    const ids = ['p1', 'p2', 'p3', 'p4'];
    const before = new Map(cams.map((c) => [c, CameraAffinity.home(c, 'm', ids)!]));
    const counts = ids.map((id) => [...before.values()].filter((h) => h === id).length);
    expect(Math.min(...counts)).toBeGreaterThan(25); // spread over all four
    const after = new Map(cams.map((c) => [c, CameraAffinity.home(c, 'm', ['p1', 'p2', 'p4'])!]));
    for (const c of cams) {
      if (before.get(c) !== 'p3') expect(after.get(c), c).toBe(before.get(c));
      else expect(after.get(c)).not.toBe('p3');
    }
    // A joining processor takes over about a quarter, only from others (minimal movement).
    const joined = new Map(cams.map((c) => [c, CameraAffinity.home(c, 'm', [...ids, 'p5'])!]));
    const moved = cams.filter((c) => joined.get(c) !== before.get(c));
    expect(moved.every((c) => joined.get(c) === 'p5')).toBe(true);
    expect(moved.length).toBeGreaterThan(20);
    expect(moved.length).toBeLessThan(70);
    // Through the router: the same camera always lands on its home, and waits when the home is full.
    const router = new Router(new CameraAffinity());
    const v = view(ids.map((id) => ({ id, caps: ['m'], capacity: 2 })));
    const home = before.get('cam7');
    const d = [1, 2, 3].map(() => router.decide({ cameraId: 'cam7', capabilities: ['m'] }, v));
    expect(d.map((x) => (x.kind === 'route' ? x.routes[0].processorId : x.kind))).toEqual([home, home, 'wait']);
  });

  it('routes a multi-capability frame to one processor of each, all or nothing', () => {
    const router = new Router(new LeastLoaded());
    const v = view([
      { id: 'm1', caps: ['motion'] },
      { id: 'p1', caps: ['person'], capacity: 1 },
      { id: 's1', caps: ['sample'] },
    ]);
    const d1 = router.decide({ cameraId: 'k', capabilities: ['motion', 'person'] }, v);
    expect(d1).toEqual({
      kind: 'route',
      routes: [
        { capability: 'motion', processorId: 'm1' },
        { capability: 'person', processorId: 'p1' },
      ],
    });
    expect(router.decide({ cameraId: 'k', capabilities: ['motion', 'person'] }, v)).toEqual({ kind: 'wait', capability: 'person' });
    expect(v.healthy.get('motion')![0].depth).toBe(1); // the waiting frame took no room
    expect(router.decide({ cameraId: 'k', capabilities: [] }, v, false)).toEqual({ kind: 'wait', capability: 'person' });
    expect(router.decide({ cameraId: 'k', capabilities: ['lpr'] }, v)).toEqual({ kind: 'drop', missing: ['lpr'] });
  });
});

describe('circuit breaker', () => {
  it('opens on consecutive failures, half-opens after the cooldown, closes on a completed probe', () => {
    const b = new BreakerBoard({ failureThreshold: 3, cooldownMs: 1000 });
    const t0 = 1_000_000;
    expect(b.update([info('p', { at: t0, consecutiveFailures: 2, failed: 2 })], t0)).toEqual([]);
    expect(b.update([info('p', { at: t0, consecutiveFailures: 3, failed: 3 })], t0 + 10).map((x) => x.to)).toEqual(['open']);
    expect(b.allows('p', t0 + 10)).toBe(false);
    expect(b.update([info('p', { at: t0 + 900, consecutiveFailures: 3, failed: 3 })], t0 + 900)).toEqual([]);
    expect(b.update([info('p', { at: t0 + 1020, consecutiveFailures: 3, failed: 3 })], t0 + 1020).map((x) => x.to)).toEqual(['half-open']);
    expect(b.allows('p', t0 + 1020)).toBe(true);
    b.routed('p', t0 + 1020);
    expect(b.allows('p', t0 + 1030)).toBe(false); // one probe at a time
    expect(b.update([info('p', { at: t0 + 1100, consecutiveFailures: 0, failed: 3, completed: 1 })], t0 + 1100).map((x) => x.to)).toEqual([
      'closed',
    ]);
    expect(b.allows('p', t0 + 1100)).toBe(true);
  });

  it('re-opens on a failed probe with a longer cooldown, and opens on missed heartbeats', () => {
    const b = new BreakerBoard({ failureThreshold: 1, cooldownMs: 1000 });
    const t0 = 2_000_000;
    b.update([info('p', { at: t0, consecutiveFailures: 1, failed: 1 })], t0);
    b.update([info('p', { at: t0 + 1000, consecutiveFailures: 1, failed: 1 })], t0 + 1000);
    expect(b.state('p')).toBe('half-open');
    expect(b.update([info('p', { at: t0 + 1100, consecutiveFailures: 2, failed: 2 })], t0 + 1100).map((x) => x.to)).toEqual(['open']);
    expect(b.update([info('p', { at: t0 + 2200, consecutiveFailures: 2, failed: 2 })], t0 + 2200)).toEqual([]); // 2 s now
    expect(b.update([info('p', { at: t0 + 3150, consecutiveFailures: 2, failed: 2 })], t0 + 3150).map((x) => x.to)).toEqual(['half-open']);

    const h = new BreakerBoard({ failureThreshold: 5, cooldownMs: 1000 });
    h.update([info('q', { at: t0 })], t0);
    const tr = h.update([info('q', { at: t0 })], t0 + 600); // heartbeat every 100 ms, none for 600
    expect(tr.map((x) => [x.to, x.reason])).toEqual([['open', 'no heartbeat for 600 ms (every 100 ms expected)']]);
    expect(h.update([info('q', { at: t0 + 1700 })], t0 + 1700).map((x) => x.to)).toEqual(['half-open']);
  });
});

describe('backpressure levels', () => {
  it('normal below high x capacity, high below critical, critical above; shedding only with the upstream full too', () => {
    const o = { high: 2, critical: 4 };
    expect(computePressure(o, 7, 4, 0).level).toBe('normal');
    expect(computePressure(o, 8, 4, 0).level).toBe('high');
    expect(computePressure(o, 16, 4, 15)).toMatchObject({ level: 'critical', shedding: false, criticalBound: 16 });
    expect(computePressure(o, 16, 4, 16)).toMatchObject({ level: 'critical', shedding: true });
    expect(computePressure(o, 3, 0, 0)).toMatchObject({ level: 'high', capacity: 0, highBound: 2 }); // no capacity counts as 1
  });
});
