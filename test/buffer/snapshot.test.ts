import { describe, expect, it } from 'vitest';
import { BreakerBoard } from '../../src/buffer/breaker.js';
import { singleShard } from '../../src/bus/shards.js';
import { bufferSettings, type BufferOptions } from '../../src/buffer/buffer-options.js';
import type { ProcessorInfo } from '../../src/buffer/registry.js';
import { capacities, freeSlots, routingView, viewRoom } from '../../src/buffer/snapshot.js';
import { COUNTER_FIELDS, readyProcessorOf, redisKeys } from '../../src/bus/keys.js';
import { InvalidInputError } from '../../src/domain/errors.js';

const proc = (id: string, capabilities: string[], capacity: number, consecutiveFailures = 0) =>
  ({
    id,
    capabilities,
    capacity,
    consecutiveFailures,
    heartbeatMs: 0,
    lastHeartbeat: Date.now(),
    instances: {},
  }) as unknown as ProcessorInfo;

describe('snapshot helpers: what a round derives from a snapshot', () => {
  const procs = [proc('a', ['x', 'y'], 4), proc('b', ['x'], 2, 9), proc('c', ['y'], 3)];
  const depth = new Map([
    ['a', 1],
    ['c', 3],
  ]);
  const breakers = new BreakerBoard({ failureThreshold: 5, cooldownMs: 60_000 });
  breakers.update(procs); // b: 9 consecutive failures, open

  it('offers every live processor, routes only to those the breaker allows, each round with its own candidates', () => {
    const v = routingView(procs, depth, breakers);
    expect(v.offered).toEqual(
      new Map([
        ['x', ['a', 'b']],
        ['y', ['a', 'c']],
      ]),
    );
    expect(v.healthy.get('x')!.map((c) => c.id)).toEqual(['a']);
    expect(v.healthy.get('y')).toEqual([
      { id: 'a', depth: 1, capacity: 4 },
      { id: 'c', depth: 3, capacity: 3 },
    ]);
    // One candidate object per processor, shared by its capabilities; a second view shares nothing with it.
    expect(v.healthy.get('x')![0]).toBe(v.healthy.get('y')![0]);
    v.healthy.get('x')![0].depth = 4;
    expect(routingView(procs, depth, breakers).healthy.get('x')![0].depth).toBe(1);
    expect(routingView(procs, depth, breakers, 'a').offered.get('x')).toEqual(['b']);
  });

  it('counts free slots once per processor, open breakers excluded', () => {
    expect(viewRoom(routingView(procs, depth, breakers))).toBe(3);
    expect(freeSlots(procs, depth, breakers)).toBe(3);
    expect(freeSlots(procs, new Map(), breakers)).toBe(7);
    expect(capacities(procs)).toEqual(
      new Map([
        ['a', 4],
        ['b', 2],
        ['c', 3],
      ]),
    );
  });
});

describe('buffer settings and keys', () => {
  const base = {
    shards: singleShard('p:'),
    blocking: [{}],
    processorTtlMs: 1,
    streamMaxLen: 1,
    batchSize: 1,
    blockMs: 1,
    claimIdleMs: 1,
    maxDeliveries: 1,
  } as BufferOptions;

  it('fills in the defaults in one place and rejects a critical level under the high one, naming both', () => {
    expect(bufferSettings(base)).toMatchObject({
      strategy: 'least-loaded',
      shedPolicy: 'lowest-priority',
      pressureHigh: 4,
      pressureCritical: 16,
      starvationLimit: 8,
      breakerFailures: 5,
      breakerCooldownMs: 10_000,
      dispatchIntervalMs: 10,
    });
    expect(bufferSettings({ ...base, strategy: 'round-robin', pressureHigh: 2 })).toMatchObject({
      strategy: 'round-robin',
      pressureHigh: 2,
    });
    expect(() => bufferSettings({ ...base, pressureHigh: 8, pressureCritical: 4 })).toThrow(InvalidInputError);
    expect(() => bufferSettings({ ...base, pressureHigh: 8, pressureCritical: 4 })).toThrow(/pressureCritical \(4\).*pressureHigh \(8\)/);
  });

  it('parses ready streams and dead-letter counter fields with the builders of keys.ts', () => {
    const keys = redisKeys('p:');
    expect(readyProcessorOf(keys, keys.ready('motion-1'))).toBe('motion-1');
    for (const other of [keys.events, keys.lane('high'), keys.ready(''), redisKeys('q:').ready('motion-1')])
      expect(readyProcessorOf(keys, other)).toBeUndefined();
    expect(COUNTER_FIELDS.deadLetterStreamOf(COUNTER_FIELDS.deadLetter(keys.lane('low')))).toBe(keys.lane('low'));
    expect(COUNTER_FIELDS.deadLetterStreamOf(`trimmed:${keys.captured}`)).toBeUndefined();
  });
});
