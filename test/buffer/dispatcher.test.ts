import { afterEach, describe, expect, it } from 'vitest';
import { Dispatcher } from '../../src/buffer/dispatcher.js';
import { decodeReadyFrame } from '../../src/bus/frame-codec.js';
import { byType } from './harness.js';
import { parts, type Parts } from './parts.js';

describe('dispatcher: one round from the lanes to the ready streams (real Redis)', () => {
  let p: Parts;
  afterEach(async () => {
    await p.close();
  });
  const dispatcher = (q: Parts) =>
    new Dispatcher({ settings: q.settings, router: q.router, breakers: q.breakers, lanes: q.lanes, routed: q.routed });
  /** A registry read and a measure with the lane heads: what the dispatch loop hands a round. */
  const measured = async (q: Parts) => {
    await q.view.registry(true);
    const { snapshot, heads } = await q.view.measure(16);
    return { snapshot, heads: heads! };
  };
  const ready = async (id: string) => (await p.t.redis.xrange(p.t.keys.ready(id), '-', '+')).map(([, f]) => decodeReadyFrame(f));

  it('hands off by priority what the processors have room for: ready message, frame.queued, lane entry gone', async () => {
    p = await parts('dispatch-round');
    await p.register('a', ['x'], { capacity: 2 });
    const low = p.frame({ priority: 1 });
    const highs = [p.frame({ priority: 9 }), p.frame({ priority: 8 })];
    await p.toLane('low', low);
    for (const f of highs) await p.toLane('high', f);
    const { snapshot, heads } = await measured(p);
    expect(await dispatcher(p).round(snapshot, heads)).toBe(2);
    expect((await ready('a')).map((f) => [f.frameId, f.processorId, f.capability])).toEqual(highs.map((f) => [f.frameId, 'a', 'x']));
    expect(await p.t.redis.xlen(p.t.keys.lane('high'))).toBe(0);
    expect(await p.t.redis.xlen(p.t.keys.lane('low'))).toBe(1); // no room left for it this round
    const queued = byType(await p.events(), 'frame.queued');
    expect(queued.map((e) => [e.frameId, e.processorId, e.attempt])).toEqual(highs.map((f) => [f.frameId, 'a', 1]));
    expect(await p.t.redis.smembers(p.t.keys.routed)).toEqual(['a']);
  });

  it('drops a waiting frame whose capability no live processor offers, with its reason, and routes the rest', async () => {
    p = await parts('dispatch-drop');
    await p.register('a', ['x']);
    const lost = p.frame({ capabilities: ['lpr'] });
    const kept = p.frame();
    await p.toLane('normal', lost);
    await p.toLane('normal', kept);
    const { snapshot, heads } = await measured(p);
    expect(await dispatcher(p).round(snapshot, heads)).toBe(1);
    const events = await p.events();
    expect(byType(events, 'frame.dropped')).toMatchObject([{ frameId: lost.frameId, reason: 'no live processor for lpr' }]);
    expect(byType(events, 'frame.queued')).toMatchObject([{ frameId: kept.frameId, processorId: 'a' }]);
    expect(await p.t.redis.xlen(p.t.keys.lane('normal'))).toBe(0);
  });

  it('sends nothing for a frame another buffer took meanwhile, and keeps a frame whose processor filled up meanwhile', async () => {
    p = await parts('dispatch-race');
    await p.register('a', ['x'], { capacity: 1 });
    await p.register('b', ['y'], { capacity: 1 });
    const taken = await p.toLane('high', p.frame());
    const full = p.frame({ capabilities: ['y'] });
    await p.toLane('normal', full);
    const { snapshot, heads } = await measured(p);
    await p.t.redis.xdel(p.t.keys.lane('high'), taken); // another buffer's claim won
    await p.toReady('b', p.frame({ capabilities: ['y'] }), 'y'); // another buffer filled b
    expect(await dispatcher(p).round(snapshot, heads)).toBe(0);
    expect(await p.t.redis.xlen(p.t.keys.ready('a'))).toBe(0);
    expect((await ready('b')).map((f) => f.frameId)).not.toContain(full.frameId);
    expect(await p.t.redis.xlen(p.t.keys.lane('normal'))).toBe(1);
    expect(byType(await p.events(), 'frame.queued')).toEqual([]);
  });

  it('leaves frames for a processor whose breaker is open in their lane', async () => {
    p = await parts('dispatch-open', { breakerFailures: 2 });
    await p.register('a', ['x'], { consecutiveFailures: 2 });
    await p.toLane('normal', p.frame());
    const { snapshot, heads } = await measured(p);
    expect(p.breakers.state('a')).toBe('open');
    expect(await dispatcher(p).round(snapshot, heads)).toBe(0);
    expect(await p.t.redis.xlen(p.t.keys.lane('normal'))).toBe(1);
  });
});
