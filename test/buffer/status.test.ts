import { afterEach, describe, expect, it } from 'vitest';
import { StatusReporter } from '../../src/buffer/status.js';
import { COUNTER_FIELDS } from '../../src/bus/keys.js';
import { parts, type Parts } from './parts.js';

describe('status: what the HTTP API reports, read fresh (real Redis)', () => {
  let p: Parts;
  afterEach(async () => {
    await p.close();
  });

  it('reports strategy, pressure, lanes, input, processors with depth, load and breaker, capabilities and dead-letter counts', async () => {
    p = await parts('status', { strategy: 'round-robin', shedPolicy: 'oldest', breakerFailures: 2, refreshMs: 60_000 });
    const reporter = new StatusReporter({
      redis: p.t.redis,
      keys: p.t.keys,
      view: p.view,
      breakers: p.breakers,
      strategy: p.settings.strategy,
      shedPolicy: p.settings.shedPolicy,
    });
    await p.view.registry(); // a cached, empty view: status must not serve it
    await p.register('a', ['x', 'y'], { capacity: 4 });
    await p.register('b', ['x'], { consecutiveFailures: 2 });
    await p.toReady('a', p.frame(), 'x');
    await p.toLane('low', p.frame({ priority: 1 }));
    const lane = p.t.keys.lane('low');
    await p.t.redis.hset(p.t.keys.counters, COUNTER_FIELDS.deadLetter(lane), '2', `trimmed:${p.t.keys.captured}`, '5');

    const s = await reporter.status();
    expect(s).toMatchObject({
      strategy: 'round-robin',
      shedPolicy: 'oldest',
      lanes: { high: 0, normal: 0, low: 1 },
      input: { stream: p.t.keys.captured },
      capabilities: { x: ['a', 'b'], y: ['a'] },
      deadLetter: { [lane]: 2 },
    });
    // b's breaker is open: only a's capacity counts.
    expect(s.pressure).toMatchObject({ level: 'normal', backlog: 1, capacity: 4 });
    const [a, b] = s.processors;
    expect(a).toMatchObject({ id: 'a', depth: 1, load: 0.25, breaker: { state: 'closed' } });
    expect(b).toMatchObject({ id: 'b', depth: 0, load: 0, breaker: { state: 'open', opened: 1 } });
    expect(a.ageMs).toBeGreaterThanOrEqual(0);
    expect((await reporter.processors()).map((x) => [x.id, x.depth])).toEqual([
      ['a', 1],
      ['b', 0],
    ]);
  });
});
