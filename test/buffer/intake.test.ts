import { afterEach, describe, expect, it } from 'vitest';
import { Intake } from '../../src/buffer/intake.js';
import { decodeFrame } from '../../src/bus/frame-codec.js';
import { groupLag } from '../../src/bus/group-lag.js';
import { COUNTER_FIELDS, GROUPS } from '../../src/bus/keys.js';
import { newFrameId } from '../../src/domain/frame-id.js';
import { waitFor } from '../helpers/redis.js';
import { byType } from './harness.js';
import { parts, type Parts } from './parts.js';

describe('intake: frames:captured -> a lane, or straight to a processor (real Redis)', () => {
  let p: Parts;
  let intake: Intake | undefined;
  let laned = 0;
  const start = (q: Parts) => {
    intake = new Intake({
      settings: q.settings,
      view: q.view,
      router: q.router,
      breakers: q.breakers,
      routed: q.routed,
      consumer: 'buffer-test',
      onLaned: () => laned++,
    });
    void intake.run();
  };
  const upstream = async () => (await groupLag(p.t.redis, p.t.keys.captured)).find((g) => g.group === GROUPS.buffer);
  /** Waits until intake has asked the registry `n` more times (each time it decided whether to read). */
  const looked = async (n: number) => {
    let seen = p.view.current;
    for (let i = 0; i < n; i++) {
      await waitFor('intake to look again', () => p.view.current !== seen && p.view.current.at > 0);
      seen = p.view.current;
    }
  };
  afterEach(async () => {
    await intake?.close();
    intake = undefined;
    laned = 0;
    await p.close();
  });

  it('with the lanes empty hands a frame to its processor in the intake step: frame.queued, no lane entry, the captured entry acked', async () => {
    p = await parts('intake-direct');
    await p.register('a', ['x']);
    start(p);
    const f = await p.publish({ capabilities: ['x'] });
    await waitFor('the frame on a', async () => (await p.t.redis.xlen(p.t.keys.ready('a'))) === 1);
    const queued = byType(await p.events(), 'frame.queued');
    expect(queued.map((e) => [e.frameId, e.processorId, e.capability])).toEqual([[f.frameId, 'a', 'x']]);
    for (const lane of ['high', 'normal', 'low']) expect(await p.t.redis.xlen(p.t.keys.lane(lane))).toBe(0);
    expect(await upstream()).toMatchObject({ lag: 0, pending: 0 });
    expect(await p.t.redis.smembers(p.t.keys.routed)).toEqual(['a']);
    expect(laned).toBe(0);
  });

  it('with frames waiting puts a new frame behind them, in the lane of its priority, carrying the intake span, and tells the dispatcher', async () => {
    p = await parts('intake-lane');
    await p.register('a', ['x']);
    await p.toLane('normal', p.frame());
    start(p);
    const f = await p.publish({ capabilities: ['x'], priority: 8 });
    const [[, fields]] = await waitFor('the frame in the high lane', async () => {
      const rows = await p.t.redis.xrange(p.t.keys.lane('high'), '-', '+');
      return rows.length === 1 && rows;
    });
    const waiting = decodeFrame(fields);
    expect(waiting).toMatchObject({ frameId: f.frameId, capabilities: ['x'], priority: 8 });
    expect(waiting.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(waiting.traceparent!.split('-')[1]).toBe(f.traceId); // same trace as capture
    expect(await p.t.redis.xlen(p.t.keys.ready('a'))).toBe(0);
    await waitFor('the dispatcher told', () => laned > 0);
  });

  it('drops a frame no live processor can take, with its reason; a frame short of one capability goes to the others', async () => {
    p = await parts('intake-drop');
    await p.register('a', ['x']);
    start(p);
    const lost = await p.publish({ capabilities: ['lpr'] });
    const partial = await p.publish({ capabilities: ['x', 'lpr'] });
    const events = await waitFor('both handled', async () => {
      const ev = await p.events();
      return byType(ev, 'frame.dropped').length === 1 && byType(ev, 'frame.queued').length === 1 && ev;
    });
    const drop = byType(events, 'frame.dropped')[0];
    expect(drop).toMatchObject({ frameId: lost.frameId, source: 'buffer', reason: 'no live processor for lpr' });
    expect(drop.traceId).toBe(lost.traceId);
    expect(byType(events, 'frame.queued')[0]).toMatchObject({ frameId: partial.frameId, processorId: 'a', capability: 'x' });
    expect(await upstream()).toMatchObject({ lag: 0, pending: 0 });
  });

  it('reads nothing while no processor is registered: frames wait in the stream until one comes', async () => {
    p = await parts('intake-none');
    start(p);
    await p.publish({ capabilities: ['x'] });
    await waitFor('the group', async () => (await upstream()) !== undefined);
    await looked(2);
    expect(await upstream()).toMatchObject({ lag: 1, pending: 0 });
    await p.register('a', ['x']);
    await waitFor('the frame on a', async () => (await p.t.redis.xlen(p.t.keys.ready('a'))) === 1);
  });

  it('pauses at critical pressure while the upstream is short of the bound, and reads on once the overload is sustained', async () => {
    // capacity 2, critical 1 x capacity: 2 waiting frames make the lanes critical.
    p = await parts('intake-critical', { pressureHigh: 1, pressureCritical: 1 });
    await p.register('a', ['x'], { capacity: 2 });
    await p.toLane('normal', p.frame());
    await p.toLane('normal', p.frame());
    start(p);
    await p.publish({ capabilities: ['x'] });
    await waitFor('the group', async () => (await upstream()) !== undefined);
    await looked(2);
    expect(await upstream()).toMatchObject({ lag: 1, pending: 0 });
    expect(p.view.latest.pressure).toMatchObject({ level: 'critical', shedding: false });
    await p.publish({ capabilities: ['x'] }); // upstream 2 = the critical bound: sustained
    await waitFor('both taken in', async () => (await p.t.redis.xlen(p.t.keys.lane('normal'))) === 4);
    expect(await upstream()).toMatchObject({ lag: 0, pending: 0 });
  });

  it('dead-letters a captured entry it cannot read, counted, and ends it with a frame.dropped when its ids are readable', async () => {
    p = await parts('intake-malformed');
    await p.register('a', ['x']);
    start(p);
    const frameId = newFrameId();
    await p.t.redis.xadd(p.t.keys.captured, '*', 'v', '1', 'frame_id', frameId, 'camera_id', 'cam', 'width', 'wide');
    const drop = await waitFor('its frame.dropped', async () => byType(await p.events(), 'frame.dropped')[0]);
    expect(drop).toMatchObject({ frameId, cameraId: 'cam', source: 'buffer' });
    expect(drop.reason).toMatch(/^dead-lettered: malformed/);
    expect(await p.t.redis.xlen(p.t.keys.deadLetter)).toBe(1);
    expect(await p.t.redis.hget(p.t.keys.counters, COUNTER_FIELDS.deadLetter(p.t.keys.captured))).toBe('1');
    expect(await upstream()).toMatchObject({ lag: 0, pending: 0 });
  });
});
