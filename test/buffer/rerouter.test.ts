import { afterEach, describe, expect, it } from 'vitest';
import { Rerouter } from '../../src/buffer/rerouter.js';
import { RoutedIds } from '../../src/buffer/routed-ids.js';
import { decodeReadyFrame } from '../../src/bus/frame-codec.js';
import { COUNTER_FIELDS, GROUPS } from '../../src/bus/keys.js';
import { byType } from './harness.js';
import { parts, type Parts } from './parts.js';

describe('re-router: frames of gone or open processors move to another of the capability (real Redis)', () => {
  let p: Parts;
  afterEach(async () => {
    await p.close();
  });
  const rerouter = (q: Parts) =>
    new Rerouter({
      settings: q.settings,
      router: q.router,
      breakers: q.breakers,
      routed: q.routed,
      consumer: 'buffer-test',
      isClosing: () => false,
    });
  const pass = async (q: Parts) => {
    const registry = await q.view.registry(true);
    const { snapshot } = await q.view.measure();
    await rerouter(q).reroute(registry, snapshot.depth);
  };
  const ready = async (id: string) => (await p.t.redis.xrange(p.t.keys.ready(id), '-', '+')).map(([, f]) => decodeReadyFrame(f));

  it('moves the undelivered frames of a gone processor once: frame.queued (new stage), then frame.dropped (old stage)', async () => {
    p = await parts('reroute-gone');
    const frames = [p.frame(), p.frame()];
    for (const f of frames) await p.toReady('gone', f, 'x');
    await p.routed.remember(['gone']); // it was routed to, then stopped heart-beating
    await p.register('b', ['x']);
    await pass(p);
    expect(await p.t.redis.xlen(p.t.keys.ready('gone'))).toBe(0);
    expect((await ready('b')).map((f) => [f.frameId, f.processorId, f.capability])).toEqual(frames.map((f) => [f.frameId, 'b', 'x']));
    const events = await p.events();
    for (const f of frames) {
      const mine = events.filter((e) => e.frameId === f.frameId).map((e) => [e.type, e.processorId]);
      expect(mine).toEqual([
        ['frame.queued', 'b'],
        ['frame.dropped', 'gone'],
      ]);
    }
    expect(byType(events, 'frame.dropped')[0].reason).toBe(
      `rerouted to b: processor gone is gone (no heartbeat for ${p.settings.processorTtlMs} ms)`,
    );
    // Nothing left behind: no consumer of ours in its group; the next pass forgets the empty stream.
    const consumers = (await p.t.redis.xinfo('CONSUMERS', p.t.keys.ready('gone'), GROUPS.processor)) as unknown[];
    expect(consumers).toEqual([]);
    await pass(p);
    expect(await p.events()).toHaveLength(events.length);
    expect(await p.t.redis.smembers(p.t.keys.routed)).toEqual(['b']);
  });

  it("moves an open breaker's undelivered frames; keeps them where no other processor has room", async () => {
    p = await parts('reroute-open', { breakerFailures: 2 });
    await p.register('a', ['x'], { consecutiveFailures: 2 });
    await p.register('b', ['x'], { capacity: 1 });
    const frames = [p.frame(), p.frame()];
    for (const f of frames) await p.toReady('a', f, 'x');
    await pass(p);
    expect(p.breakers.state('a')).toBe('open');
    expect((await ready('b')).map((f) => f.frameId)).toEqual([frames[0].frameId]);
    expect((await ready('a')).map((f) => f.frameId)).toEqual([frames[1].frameId]);
    const dropped = byType(await p.events(), 'frame.dropped');
    expect(dropped.map((e) => e.reason)).toEqual(['rerouted to b: processor a circuit breaker open (2 consecutive failures)']);
  });

  it('dead-letters a frame delivered more than maxDeliveries times (processing.failed, counted) and a malformed one', async () => {
    p = await parts('reroute-poison', { maxDeliveries: 2, claimIdleMs: 0 });
    await p.register('b', ['x']);
    const stream = p.t.keys.ready('gone');
    const poison = p.frame();
    const id = await p.toReady('gone', poison, 'x');
    // Delivered to consumers of the gone processor that died, three times.
    await p.t.redis.xreadgroup('GROUP', GROUPS.processor, 'dead-1', 'COUNT', 1, 'STREAMS', stream, '>');
    for (const c of ['dead-2', 'dead-3']) await p.t.redis.xclaim(stream, GROUPS.processor, c, 0, id);
    const bad = (await p.t.redis.xadd(stream, '*', 'v', '1', 'frame_id', 'nope')) as string;
    await p.routed.remember(['gone']);
    await pass(p);
    expect(await p.t.redis.xlen(stream)).toBe(0);
    expect(await p.t.redis.xlen(p.t.keys.ready('b'))).toBe(0);
    const dead = await p.t.redis.xrange(p.t.keys.deadLetter, '-', '+');
    const rows = dead.map(([, f]) => Object.fromEntries(f.reduce<string[][]>((a, v, i) => (i % 2 ? a : [...a, [v, f[i + 1]]]), [])));
    expect(rows.map((r) => [r.entry_id, r.group, r.stream])).toEqual(
      expect.arrayContaining([
        [id, GROUPS.processor, stream],
        [bad, GROUPS.processor, stream],
      ]),
    );
    expect(rows.find((r) => r.entry_id === id)).toMatchObject({ reason: 'delivered 4 times (max 2)', deliveries: '4' });
    expect(rows.find((r) => r.entry_id === bad)?.reason).toMatch(/^malformed: /);
    expect(await p.t.redis.hget(p.t.keys.counters, COUNTER_FIELDS.deadLetter(stream))).toBe('2');
    const failed = byType(await p.events(), 'processing.failed');
    expect(failed).toMatchObject([{ frameId: poison.frameId, processorId: 'gone', attempt: 4 }]);
    expect(failed[0].error).toBe('dead-lettered after 4 deliveries (max 2): the frame keeps killing its processor');
  });

  it('keeps the routed ids every buffer shares: remembered once, another buffer’s read back, an empty gone stream forgotten', async () => {
    p = await parts('routed-ids');
    const mine = new RoutedIds(p.t.redis, p.t.keys.routed);
    const other = new RoutedIds(p.t.redis, p.t.keys.routed);
    await mine.remember(['a', 'a', 'b']);
    await other.remember(['c']);
    expect((await mine.list()).sort()).toEqual(['a', 'b', 'c']);
    await mine.forget('a');
    expect((await p.t.redis.smembers(p.t.keys.routed)).sort()).toEqual(['b', 'c']);
    expect((await mine.list()).sort()).toEqual(['b', 'c']);
  });
});
