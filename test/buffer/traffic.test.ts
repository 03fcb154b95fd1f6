import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CameraAffinity } from '../../src/buffer/router.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import type { Processor } from '../../src/process/processor.js';
import { testRedis, waitFor } from '../helpers/redis.js';
import { byType, harness, slowProcessor, type Harness } from './harness.js';

/**
 * Routing, strategies, priorities, breaker and backpressure, each driven by real frames
 * through real Redis (in-process buffer and processor runtimes), asserted by their effect:
 * where frames went (frame.queued / results), which were shed and why (frame.dropped).
 */
describe('buffer under real traffic (real Redis)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = harness(await testRedis('traffic'));
  });
  afterEach(async () => {
    await h.close();
    await h.t.cleanup();
  });

  const queuedTo = (events: LifecycleEvent[]) => {
    const m = new Map<string, string[]>();
    for (const e of byType(events, 'frame.queued')) m.set(e.frameId, [...(m.get(e.frameId) ?? []), e.processorId!].sort());
    return m;
  };
  const settled = async (n: number, timeoutMs = 20_000) =>
    waitFor(
      `${n} stages finished`,
      async () => {
        const ev = await h.events();
        return (
          ev.filter((e) => e.type === 'processing.completed' || e.type === 'processing.failed' || e.type === 'frame.dropped').length >= n &&
          ev
        );
      },
      timeoutMs,
    );

  it('routes by capability: one processor of each requested capability, all capabilities for none, a drop with its reason for an unknown one', async () => {
    h.runtime(slowProcessor('alpha', ['alpha'], 0));
    h.runtime(slowProcessor('beta', ['beta'], 0));
    h.buffer();
    const only = await Promise.all(Array.from({ length: 5 }, () => h.publish({ capabilities: ['alpha'] })));
    const both = await Promise.all(Array.from({ length: 5 }, () => h.publish({ capabilities: ['alpha', 'beta'] })));
    const any = await Promise.all(Array.from({ length: 5 }, () => h.publish({ capabilities: [] })));
    const unknown = await h.publish({ capabilities: ['lpr'] });
    const events = await settled(5 + 10 + 10 + 1);
    const to = queuedTo(events);
    for (const f of only) expect(to.get(f.frameId)).toEqual(['alpha']);
    for (const f of [...both, ...any]) expect(to.get(f.frameId)).toEqual(['alpha', 'beta']);
    expect(to.get(unknown.frameId)).toBeUndefined();
    const drop = byType(events, 'frame.dropped').find((e) => e.frameId === unknown.frameId);
    expect(drop?.reason).toBe('no live processor for lpr');
    expect(byType(events, 'processing.completed')).toHaveLength(25);
    expect(await h.t.redis.xlen(h.t.keys.results)).toBe(25);
  });

  it('least-loaded sends most frames to the faster of two processors', async () => {
    h.runtime(slowProcessor('fast', ['x'], 0), { capacity: 2 });
    h.runtime(slowProcessor('slow', ['x'], 150), { capacity: 2 });
    h.buffer({ strategy: 'least-loaded' });
    await waitFor('both registered', async () => (await h.buffers[0].liveProcessors()).length === 2);
    for (let i = 0; i < 40; i++) await h.publish({ capabilities: ['x'] });
    const events = await settled(40);
    const counts = Object.fromEntries(
      ['fast', 'slow'].map((id) => [id, byType(events, 'processing.completed').filter((e) => e.processorId === id).length]),
    );
    expect(counts.fast + counts.slow).toBe(40);
    expect(counts.fast, JSON.stringify(counts)).toBeGreaterThan(2 * counts.slow);
    expect(counts.slow).toBeGreaterThan(0);
  });

  it('round-robin spreads frames evenly', async () => {
    for (const id of ['r1', 'r2', 'r3']) h.runtime(slowProcessor(id, ['x'], 0));
    h.buffer({ strategy: 'round-robin' });
    await waitFor('three registered', async () => (await h.buffers[0].liveProcessors()).length === 3);
    for (let i = 0; i < 30; i++) await h.publish({ capabilities: ['x'] });
    const events = await settled(30);
    const counts = ['r1', 'r2', 'r3'].map((id) => byType(events, 'processing.completed').filter((e) => e.processorId === id).length);
    expect(counts.reduce((a, b) => a + b)).toBe(30);
    for (const c of counts) expect(c, counts.join(',')).toBeGreaterThanOrEqual(8);
  });

  it('camera affinity keeps each camera on one processor, and moves only the cameras of a processor that leaves', async () => {
    const ids = ['a1', 'a2', 'a3'];
    for (const id of ids) h.runtime(slowProcessor(id, ['m'], 0));
    h.buffer({ strategy: 'camera-affinity' });
    await waitFor('three registered', async () => (await h.buffers[0].liveProcessors()).length === 3);
    const cams = Array.from({ length: 9 }, (_, i) => `cam${i}`);
    const round = async () => {
      const sent = new Map<string, string>();
      for (let i = 0; i < 4; i++) for (const c of cams) sent.set((await h.publish({ cameraId: c, capabilities: ['m'] })).frameId, c);
      return sent;
    };
    const first = await round();
    let events = await settled(first.size);
    const homeOf = (sent: Map<string, string>, evs: LifecycleEvent[]) => {
      const homes = new Map<string, Set<string>>();
      for (const e of byType(evs, 'frame.queued'))
        if (sent.has(e.frameId)) homes.set(sent.get(e.frameId)!, (homes.get(sent.get(e.frameId)!) ?? new Set()).add(e.processorId!));
      return homes;
    };
    const before = homeOf(first, events);
    for (const c of cams) {
      expect([...before.get(c)!], c).toEqual([CameraAffinity.home(c, 'm', ids)]);
    }
    expect(new Set([...before.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    // a2 leaves (clean stop: it unregisters).
    const a2 = h.runtimes[1];
    h.runtimes.splice(1, 1);
    await a2.close();
    await waitFor('a2 gone', async () => (await h.buffers[0].liveProcessors()).length === 2);
    const second = await round();
    events = await settled(first.size + second.size);
    const after = homeOf(second, events);
    for (const c of cams) {
      const was = [...before.get(c)!][0];
      const now = [...after.get(c)!];
      expect(now, c).toHaveLength(1);
      if (was !== 'a2') expect(now[0], `${c} stays on ${was}`).toBe(was);
      else expect(now[0], `${c} moves`).toBe(CameraAffinity.home(c, 'm', ['a1', 'a3']));
    }
  });

  it('serves the high lane first, and an old low-priority frame within the starvation bound', async () => {
    const limit = 3;
    // A placeholder with no room holds the frames in the lanes until the real processor starts.
    await h.t.redis.xadd(h.t.keys.ready('hold'), '*', 'x', '1'); // (its stream exists, full)
    const buffer = h.buffer({ starvationLimit: limit, pressureCritical: 1000, pressureHigh: 1000 });
    await buffer.registry.register({
      id: 'hold',
      capabilities: ['p'],
      heartbeatMs: 60_000,
      instance: 'hold',
      stats: { capacity: 0, concurrency: 1, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 },
    });
    const low: string[] = [];
    const high: string[] = [];
    for (let i = 0; i < 20; i++) low.push((await h.publish({ priority: 1, capabilities: ['p'] })).frameId);
    for (let i = 0; i < 20; i++) high.push((await h.publish({ priority: 9, capabilities: ['p'] })).frameId);
    await waitFor(
      'all 40 in the lanes',
      async () => (await h.t.redis.xlen(h.t.keys.lane('low'))) === 20 && (await h.t.redis.xlen(h.t.keys.lane('high'))) === 20,
    );
    await buffer.registry.unregister('hold');
    h.runtime(slowProcessor('worker', ['p'], 5), { capacity: 1 });
    const events = await settled(40);
    const order = byType(events, 'frame.queued')
      .map((e) => (high.includes(e.frameId) ? 'H' : 'L'))
      .join('');
    // Strict priority would be 20 H then 20 L; the bound lets a waiting low frame in after at most `limit` highs.
    expect(order.slice(0, 16), order).toBe('HHHLHHHLHHHLHHHL');
    expect(order.replace(/L/g, '')).toHaveLength(20);
    // Within each lane, FIFO: the oldest low frame went first.
    const lowOrder = byType(events, 'frame.queued')
      .filter((e) => low.includes(e.frameId))
      .map((e) => e.frameId);
    expect(lowOrder).toEqual(low);
  });

  it('opens the breaker of a failing processor (frames go to the healthy one), probes it half-open, closes when it recovers', async () => {
    let broken = true;
    const flaky: Processor = {
      name: 'flaky',
      capabilities: ['x'],
      process() {
        if (broken) throw new Error('model not loaded');
        return { ok: true };
      },
    };
    h.runtime(flaky, { capacity: 2 });
    h.runtime(slowProcessor('steady', ['x'], 0));
    const buffer = h.buffer({ strategy: 'round-robin', breakerFailures: 3, breakerCooldownMs: 800 });
    await waitFor('both registered', async () => (await buffer.liveProcessors()).length === 2);
    const states: string[] = [];
    const watch = setInterval(() => {
      void buffer
        .processorList()
        .then((l) => {
          const s = l.find((p) => p.id === 'flaky')?.breaker.state;
          if (s && states.at(-1) !== s) states.push(s);
        })
        .catch(() => undefined);
    }, 50);
    try {
      for (let i = 0; i < 60; i++) {
        await h.publish({ capabilities: ['x'] });
        await new Promise((r) => setTimeout(r, 25));
      }
      let events = await settled(60);
      const failed = byType(events, 'processing.failed');
      expect(failed.every((e) => e.processorId === 'flaky' && e.error === 'Error: model not loaded')).toBe(true);
      // Without a breaker round-robin would send it half (30); it got the frames before it opened, plus probes.
      expect(failed.length, `${failed.length} failed`).toBeLessThan(12);
      expect(failed.length).toBeGreaterThanOrEqual(3);
      expect(byType(events, 'processing.completed').every((e) => e.processorId === 'steady')).toBe(true);
      expect(states.slice(0, 3)).toEqual(['closed', 'open', 'half-open']);
      // It recovers: with traffic, the next probe completes and the breaker closes; it gets frames again.
      broken = false;
      let more = 0;
      await waitFor(
        'breaker closed again',
        async () => {
          await h.publish({ capabilities: ['x'] });
          more++;
          return states.length > 3 && states.at(-1) === 'closed';
        },
        15_000,
        50,
      );
      for (let i = 0; i < 10; i++) await h.publish({ capabilities: ['x'] });
      events = await settled(70 + more);
      expect(byType(events, 'processing.completed').filter((e) => e.processorId === 'flaky').length).toBeGreaterThan(3);
      const transitions = (await h.metrics.breakerTransitions.get()).values
        .filter((v) => v.labels.processor === 'flaky')
        .map((v) => `${v.labels.to}:${v.value}`);
      expect(transitions).toEqual(
        expect.arrayContaining([expect.stringMatching(/^open:\d/), expect.stringMatching(/^half-open:\d/), 'closed:1']),
      );
    } finally {
      clearInterval(watch);
    }
  }, 40_000);

  it('under sustained overload slows, pauses, then sheds the lowest priority first, each with a frame.dropped and its reason', async () => {
    h.runtime(slowProcessor('worker', ['x'], 25), { capacity: 1 });
    const buffer = h.buffer({ pressureHigh: 2, pressureCritical: 4, batchSize: 10, shedPolicy: 'lowest-priority' });
    await waitFor('registered', async () => (await buffer.liveProcessors()).length === 1);
    const levels = new Set<string>();
    let pausedWithUpstream = false;
    const watch = setInterval(() => {
      void buffer
        .status()
        .then((s) => {
          levels.add(s.pressure.level);
          if (s.pressure.level === 'critical' && s.pressure.upstream > 0) pausedWithUpstream = true;
        })
        .catch(() => undefined);
    }, 20);
    const sent: { id: string; priority: number }[] = [];
    try {
      // ~100 fps in (a quarter of it high priority), ~40 fps out: a sustained overload the
      // processor could serve if only the high-priority frames came.
      for (let i = 0; i < 180; i++) {
        const priority = i % 4 === 0 ? 9 : 1;
        sent.push({ id: (await h.publish({ priority, capabilities: ['x'] })).frameId, priority });
        await new Promise((r) => setTimeout(r, 10));
      }
      const events = await settled(180, 30_000);
      const completed = new Set(byType(events, 'processing.completed').map((e) => e.frameId));
      const dropped = byType(events, 'frame.dropped');
      // Every frame accounted for: completed or dropped with a reason, never both, never silently.
      expect(completed.size + dropped.length).toBe(180);
      for (const f of sent) expect(completed.has(f.id) !== dropped.some((d) => d.frameId === f.id), f.id).toBe(true);
      expect(dropped.length).toBeGreaterThan(10);
      for (const d of dropped)
        expect(d.reason).toMatch(/^backpressure: shed \(policy lowest-priority; \d+ frames waiting >= critical 4 = 4 x capacity 1/);
      const droppedLow = dropped.filter((d) => sent.find((f) => f.id === d.frameId)!.priority === 1).length;
      expect(droppedLow, `${droppedLow} of ${dropped.length} dropped are low`).toBeGreaterThanOrEqual(0.85 * dropped.length);
      const completedHigh = sent.filter((f) => f.priority === 9 && completed.has(f.id)).length;
      expect(completedHigh, `${completedHigh} of 45 high completed`).toBeGreaterThanOrEqual(36);
      const shed = (await h.metrics.framesDropped.get()).values.find((v) => v.labels.reason === 'shed_lowest_priority');
      expect(shed?.value).toBe(dropped.length);
      expect([...levels]).toEqual(expect.arrayContaining(['high', 'critical']));
      expect(pausedWithUpstream).toBe(true);
    } finally {
      clearInterval(watch);
    }
  }, 45_000);

  it('the oldest-first policy sheds the oldest waiting frames and keeps the newest', async () => {
    h.runtime(slowProcessor('worker', ['x'], 40), { capacity: 1 });
    const buffer = h.buffer({ pressureHigh: 2, pressureCritical: 4, batchSize: 10, shedPolicy: 'oldest' });
    await waitFor('registered', async () => (await buffer.liveProcessors()).length === 1);
    const sent: string[] = [];
    for (let i = 0; i < 80; i++) sent.push((await h.publish({ capabilities: ['x'] })).frameId);
    const events = await settled(80, 30_000);
    const dropped = byType(events, 'frame.dropped').map((e) => e.frameId);
    const completed = byType(events, 'processing.completed').map((e) => e.frameId);
    expect(dropped.length + completed.length).toBe(80);
    expect(dropped.length).toBeGreaterThan(20);
    for (const e of byType(events, 'frame.dropped')) expect(e.reason).toMatch(/policy oldest/);
    expect(completed).toContain(sent.at(-1)); // the newest frame survives
    const rank = (id: string) => sent.indexOf(id);
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    expect(median(dropped.map(rank))).toBeLessThan(median(completed.map(rank).filter((r) => r > 10)));
  }, 45_000);
});
