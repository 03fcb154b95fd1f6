import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../src/bus/frame-codec.js';
import { StreamConsumer, type Entry } from '../../src/bus/stream-consumer.js';
import { newFrameId, frameIdTime } from '../../src/domain/frame-id.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { testRedis, waitFor, type TestRedis } from '../helpers/redis.js';

function frame(): FrameMessage {
  const frameId = newFrameId();
  return { frameId, cameraId: 'cam', capturedAt: frameIdTime(frameId), width: 4, height: 4, format: 'jpeg', sizeBytes: 10, priority: 5, payloadKey: 'x', capabilities: [] };
}

describe('StreamConsumer (real Redis)', () => {
  let t: TestRedis;
  const consumers: StreamConsumer<FrameMessage>[] = [];
  beforeEach(async () => {
    t = await testRedis('consumer');
  });
  afterEach(async () => {
    await Promise.all(consumers.splice(0).map((c) => c.close()));
    await t.cleanup();
  });

  function start(name: string, handle: (e: Entry<FrameMessage>[], c: StreamConsumer<FrameMessage>) => Promise<void>, extra: Partial<ConstructorParameters<typeof StreamConsumer<FrameMessage>>[0]> = {}) {
    const c = new StreamConsumer<FrameMessage>({
      redis: t.redis, blocking: t.blocking, keys: t.keys, stream: t.keys.captured, group: 'g', consumer: name,
      decode: decodeFrame, handle, batchSize: 10, blockMs: 100, claimIdleMs: 300, maxDeliveries: 3, ...extra,
    });
    consumers.push(c);
    void c.run();
    return c;
  }

  it('consumes entries added before the group existed, and acks them', async () => {
    const sent = [frame(), frame(), frame()];
    for (const f of sent) await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
    const got: string[] = [];
    start('c1', async (entries, c) => {
      got.push(...entries.map((e) => e.message.frameId));
      await c.ack(entries.map((e) => e.id));
    });
    await waitFor('3 frames', () => got.length === 3);
    expect(got).toEqual(sent.map((f) => f.frameId));
    const pending = (await t.redis.xpending(t.keys.captured, 'g')) as [number];
    expect(pending[0]).toBe(0);
  });

  it('dead-letters a malformed entry, counts it, and keeps going', async () => {
    const metrics = createMetrics('test');
    await t.redis.xadd(t.keys.captured, '*', 'v', '1', 'frame_id', 'garbage');
    const good = frame();
    await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(good));
    const got: string[] = [];
    start('c1', async (entries, c) => {
      got.push(...entries.map((e) => e.message.frameId));
      await c.ack(entries.map((e) => e.id));
    }, { metrics });
    await waitFor('the good frame', () => got.length === 1);
    expect(got).toEqual([good.frameId]);
    const dead = await t.redis.xrange(t.keys.deadLetter, '-', '+');
    expect(dead).toHaveLength(1);
    const fields = Object.fromEntries(Array.from({ length: dead[0][1].length / 2 }, (_, i) => [dead[0][1][2 * i], dead[0][1][2 * i + 1]]));
    expect(fields.stream).toBe(t.keys.captured);
    expect(fields.reason).toMatch(/malformed: field frame_id is malformed/);
    expect(await t.redis.hget(t.keys.counters, `dead_letter:${t.keys.captured}`)).toBe('1');
    expect((await metrics.entriesMalformed.get()).values[0].value).toBe(1);
    const pending = (await t.redis.xpending(t.keys.captured, 'g')) as [number];
    expect(pending[0]).toBe(0);
  });

  it('reclaims the entries of a consumer that died, counting the delivery', async () => {
    const f = frame();
    await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
    await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
    // A consumer that read the entry and died before acking it.
    await t.redis.xreadgroup('GROUP', 'g', 'dead', 'COUNT', 10, 'STREAMS', t.keys.captured, '>');
    const got: Entry<FrameMessage>[] = [];
    start('survivor', async (entries, c) => {
      got.push(...entries);
      await c.ack(entries.map((e) => e.id));
    }, { claimIdleMs: 200 });
    await waitFor('the reclaimed frame', () => got.length === 1);
    expect(got[0].message.frameId).toBe(f.frameId);
    expect(got[0].deliveries).toBe(2);
    expect(((await t.redis.xpending(t.keys.captured, 'g')) as [number])[0]).toBe(0);
  });

  it('dead-letters an entry that has been delivered more than maxDeliveries times (it keeps killing its consumers)', async () => {
    const f = frame();
    await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
    const [id] = [await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f))];
    await t.redis.xreadgroup('GROUP', 'g', 'dead1', 'COUNT', 10, 'STREAMS', t.keys.captured, '>');
    await t.redis.xclaim(t.keys.captured, 'g', 'dead2', 0, id!);
    await t.redis.xclaim(t.keys.captured, 'g', 'dead3', 0, id!);
    const handled: string[] = [];
    start('survivor', async (entries, c) => {
      handled.push(...entries.map((e) => e.id));
      await c.ack(entries.map((e) => e.id));
    }, { claimIdleMs: 100 });
    await waitFor('dead-lettered', async () => (await t.redis.xlen(t.keys.deadLetter)) === 1, 10_000);
    expect(handled).toEqual([]);
    const [[, fields]] = await t.redis.xrange(t.keys.deadLetter, '-', '+');
    expect(fields[fields.indexOf('reason') + 1]).toBe('delivered 4 times (max 3)');
    expect(fields[fields.indexOf('entry_id') + 1]).toBe(id);
    expect(((await t.redis.xpending(t.keys.captured, 'g')) as [number])[0]).toBe(0);
  });

  it('retries a batch whose handler failed instead of skipping it', async () => {
    const f = frame();
    await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
    let calls = 0;
    start('c1', async (entries, c) => {
      calls++;
      if (calls < 3) throw new Error('database away');
      await c.ack(entries.map((e) => e.id));
    });
    await waitFor('third attempt', () => calls === 3);
    await waitFor('ack', async () => ((await t.redis.xpending(t.keys.captured, 'g')) as [number])[0] === 0);
  });
});
