import { afterEach, describe, expect, it } from 'vitest';
import { GROUPS } from '../../src/bus/keys.js';
import { parts, type Parts } from './parts.js';

describe('registry view: frozen snapshots of the registry and the queues (real Redis)', () => {
  let p: Parts;
  afterEach(async () => {
    await p.close();
  });

  it('serves one frozen registry snapshot until it is stale; a forced or invalidated read sees changes, old snapshots keep theirs', async () => {
    p = await parts('view-registry', { refreshMs: 60_000 });
    await p.register('a', ['x']);
    const first = await p.view.registry();
    expect(first.processors.map((x) => x.id)).toEqual(['a']);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.processors)).toBe(true);
    expect(() => (first.processors as unknown[]).push({})).toThrow(TypeError);

    await p.register('b', ['x']);
    expect(await p.view.registry()).toBe(first); // fresh enough: no read
    p.view.invalidate();
    const second = await p.view.registry();
    expect(second.processors.map((x) => x.id)).toEqual(['a', 'b']);
    expect(p.view.current).toBe(second);

    await p.register('c', ['y']);
    const third = await p.view.registry(true);
    expect(third.processors.map((x) => x.id)).toEqual(['a', 'b', 'c']);
    // What a loop holds does not change under it.
    expect(first.processors.map((x) => x.id)).toEqual(['a']);
    expect(second.processors.map((x) => x.id)).toEqual(['a', 'b']);
  });

  it('feeds the breakers on each read: a processor reporting its failures has its breaker opened', async () => {
    p = await parts('view-breaker', { breakerFailures: 3 });
    await p.register('a', ['x'], { consecutiveFailures: 3 });
    await p.register('b', ['x']);
    await p.view.registry(true);
    expect(p.breakers.state('a')).toBe('open');
    expect(p.breakers.state('b')).toBe('closed');
    const text = await p.metrics.registry.getSingleMetricAsString('detektr_breaker_transitions_total');
    expect(text).toMatch(/detektr_breaker_transitions_total\{processor="a",to="open"[^}]*\} 1/);
  });

  it('measures ready and lane lengths in one snapshot with the pressure they make, and the lane heads when asked', async () => {
    p = await parts('view-measure', { pressureHigh: 1, pressureCritical: 4 });
    await p.register('a', ['x'], { capacity: 2 });
    const high = await p.toLane('high', p.frame({ priority: 9 }));
    const normal = [];
    for (let i = 0; i < 3; i++) normal.push(await p.toLane('normal', p.frame()));
    await p.toReady('a', p.frame(), 'x');
    await p.view.registry(true);

    const { snapshot, heads } = await p.view.measure(2);
    expect(snapshot.depth.get('a')).toBe(1);
    expect(snapshot.lanes).toEqual([1, 3, 0]);
    // 4 waiting, capacity 2: at the high bound (1 x 2), below critical (4 x 2).
    expect(snapshot.pressure).toMatchObject({ level: 'high', backlog: 4, capacity: 2, highBound: 2, criticalBound: 8 });
    expect(heads?.map((rows) => rows.map(([id]) => id))).toEqual([[high], normal.slice(0, 2), []]);
    expect(Object.isFrozen(snapshot) && Object.isFrozen(snapshot.lanes) && Object.isFrozen(snapshot.pressure)).toBe(true);
    expect(p.view.latest).toBe(snapshot);
    expect(snapshot.registry).toBe(p.view.current);

    const { snapshot: later, heads: none } = await p.view.measure();
    expect(none).toBeUndefined();
    expect(later).not.toBe(snapshot);
    const backlog = await p.metrics.registry.getSingleMetricAsString('detektr_buffer_backlog');
    expect(backlog).toMatch(/detektr_buffer_backlog\{lane="normal"[^}]*\} 3$/m);
  });

  it('counts the captured frames not yet taken in, by hand when Redis cannot tell the lag (entries deleted)', async () => {
    p = await parts('view-upstream');
    const { redis, keys } = p.t;
    await redis.xgroup('CREATE', keys.captured, GROUPS.buffer, '0', 'MKSTREAM');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await redis.xadd(keys.captured, '*', 'n', String(i))) as string);
    await redis.xreadgroup('GROUP', GROUPS.buffer, 'c1', 'COUNT', 2, 'STREAMS', keys.captured, '>');
    let s = await p.view.registry(true);
    expect(s.upstream).toBe(3);
    expect(s.input).toEqual({ lag: 3, pending: 2 });

    await redis.xdel(keys.captured, ids[3]); // a deletion past the group's position: Redis reports no lag
    s = await p.view.registry(true);
    expect(s.input).toEqual({ lag: null, pending: 2 });
    expect(s.upstream).toBe(2);
  });
});
