import { afterEach, describe, expect, it } from 'vitest';
import { DispatchLoop } from '../../src/buffer/dispatch-loop.js';
import { Dispatcher } from '../../src/buffer/dispatcher.js';
import { Rerouter } from '../../src/buffer/rerouter.js';
import { Shedder } from '../../src/buffer/shedder.js';
import { waitFor } from '../helpers/redis.js';
import { byType, logger } from './harness.js';
import { parts, type Parts } from './parts.js';

describe('dispatch loop: when rounds run (real Redis)', () => {
  let p: Parts;
  let loop: DispatchLoop | undefined;
  afterEach(async () => {
    await loop?.close();
    loop = undefined;
    await p.close();
  });
  /** A loop whose pauses last a minute or more: only a kick (or close) can end one within a test. */
  const start = (q: Parts) => {
    const { settings, router, breakers, lanes, routed } = q;
    const l: DispatchLoop = new DispatchLoop({
      view: q.view,
      breakers,
      lanes,
      dispatcher: new Dispatcher({ settings, router, breakers, lanes, routed }),
      shedder: new Shedder({ settings, lanes }),
      rerouter: new Rerouter({ settings, router, breakers, routed, consumer: 'buffer-test', isClosing: () => l.isClosing }),
      logger,
      intervalMs: 60_000,
      claimIdleMs: settings.claimIdleMs,
    });
    loop = l;
    void l.run();
    return l;
  };

  it('a kick ends a pause at once: frames waiting for a full processor go as soon as it has room and intake says so', async () => {
    p = await parts('loop-kick');
    await p.register('a', ['x'], { capacity: 1 });
    const held = await p.toReady('a', p.frame(), 'x'); // a is full
    const waiting = p.frame();
    await p.toLane('normal', waiting);
    const l = start(p);
    await waitFor('a round measured the full queue', () => p.view.latest.at > 0 && p.view.latest.lanes[1] === 1);
    await p.t.redis.xdel(p.t.keys.ready('a'), held); // a acked its frame: room, but nothing tells the loop
    l.kick();
    await waitFor('the waiting frame handed to a', async () => byType(await p.events(), 'frame.queued').length === 1);
    expect(byType(await p.events(), 'frame.queued')[0]).toMatchObject({ frameId: waiting.frameId, processorId: 'a' });
  });

  it('sheds under sustained overload instead of dispatching, and close() ends a long pause', async () => {
    p = await parts('loop-shed', { pressureHigh: 1, pressureCritical: 1 });
    await p.register('a', ['x'], { capacity: 1 });
    await p.toReady('a', p.frame(), 'x');
    for (let i = 0; i < 3; i++) await p.toLane('low', p.frame({ priority: 1 }));
    // As much again upstream, not taken in: the overload is sustained.
    await p.t.redis.xgroup('CREATE', p.t.keys.captured, 'buffer', '0', 'MKSTREAM');
    for (let i = 0; i < 2; i++) await p.t.redis.xadd(p.t.keys.captured, '*', 'n', String(i));
    start(p);
    await waitFor('shed to the bound', async () => (await p.t.redis.xlen(p.t.keys.lane('low'))) === 1);
    const dropped = byType(await p.events(), 'frame.dropped');
    expect(dropped).toHaveLength(2);
    expect(dropped[0].reason).toMatch(/^backpressure: shed \(policy lowest-priority; 3 frames waiting >= critical 1 /);
    const t0 = Date.now();
    await loop!.close();
    expect(Date.now() - t0).toBeLessThan(30_000); // far under the 150 s pause it was in
  });
});
