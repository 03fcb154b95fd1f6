import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../src/bus/frame-codec.js';
import { groupLag } from '../../src/bus/group-lag.js';
import { StreamConsumer, type Entry, type StreamConsumerOptions } from '../../src/bus/stream-consumer.js';
import { ProcessorRegistry } from '../../src/buffer/registry.js';
import { newFrameId, frameIdTime } from '../../src/domain/frame-id.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { testRedis, waitFor, type TestRedis } from '../helpers/redis.js';

/** A Redis-protocol server for the suite: its URL, and how to stop it afterwards. */
export interface StreamBackend {
  url: string;
  close(): Promise<void>;
}

function frame(): FrameMessage {
  const frameId = newFrameId();
  return {
    frameId,
    cameraId: 'cam',
    capturedAt: frameIdTime(frameId),
    width: 4,
    height: 4,
    format: 'jpeg',
    sizeBytes: 10,
    priority: 5,
    payloadKey: 'x',
    capabilities: [],
  };
}

const fieldsOf = (list: string[]) => Object.fromEntries(Array.from({ length: list.length / 2 }, (_, i) => [list[2 * i], list[2 * i + 1]]));

/**
 * The stream semantics detektr relies on, as one suite run against every backend: real
 * Redis (stream-contract.redis.test.ts) and the embedded server
 * (stream-contract.embedded.test.ts). A behaviour the pipeline needs belongs here, so both
 * keep it.
 */
export function streamContract(name: string, start: () => Promise<StreamBackend>): void {
  describe(`stream contract: ${name}`, () => {
    let backend: StreamBackend;
    let t: TestRedis;
    const consumers: StreamConsumer<FrameMessage>[] = [];

    beforeAll(async () => {
      backend = await start();
    });
    afterAll(async () => {
      await backend?.close();
    });
    beforeEach(async () => {
      t = await testRedis('contract', backend.url);
    });
    afterEach(async () => {
      await Promise.all(consumers.splice(0).map((c) => c.close()));
      await t.cleanup();
    });

    function startConsumer(
      consumer: string,
      handle: (e: Entry<FrameMessage>[], c: StreamConsumer<FrameMessage>) => Promise<void>,
      extra: Partial<StreamConsumerOptions<FrameMessage>> = {},
    ) {
      const c = new StreamConsumer<FrameMessage>({
        redis: t.redis,
        blocking: t.blocking,
        keys: t.keys,
        stream: t.keys.captured,
        group: 'g',
        consumer,
        decode: decodeFrame,
        handle,
        batchSize: 10,
        blockMs: 100,
        claimIdleMs: 300,
        maxDeliveries: 3,
        ...extra,
      });
      consumers.push(c);
      void c.run();
      return c;
    }

    const pendingCount = async (stream = t.keys.captured, group = 'g') => ((await t.redis.xpending(stream, group)) as [number])[0];

    describe('StreamConsumer', () => {
      it('consumes entries added before the group existed, and acks them', async () => {
        const sent = [frame(), frame(), frame()];
        for (const f of sent) await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
        const got: string[] = [];
        startConsumer('c1', async (entries, c) => {
          got.push(...entries.map((e) => e.message.frameId));
          await c.ack(entries.map((e) => e.id));
        });
        await waitFor('3 frames', () => got.length === 3);
        expect(got).toEqual(sent.map((f) => f.frameId));
        expect(await pendingCount()).toBe(0);
      });

      it('dead-letters a malformed entry, counts it, and keeps going', async () => {
        const metrics = createMetrics('test');
        await t.redis.xadd(t.keys.captured, '*', 'v', '1', 'frame_id', 'garbage');
        const good = frame();
        await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(good));
        const got: string[] = [];
        startConsumer(
          'c1',
          async (entries, c) => {
            got.push(...entries.map((e) => e.message.frameId));
            await c.ack(entries.map((e) => e.id));
          },
          { metrics },
        );
        await waitFor('the good frame', () => got.length === 1);
        expect(got).toEqual([good.frameId]);
        const dead = await t.redis.xrange(t.keys.deadLetter, '-', '+');
        expect(dead).toHaveLength(1);
        const fields = fieldsOf(dead[0][1]);
        expect(fields.stream).toBe(t.keys.captured);
        expect(fields.reason).toMatch(/malformed: field frame_id is malformed/);
        expect(await t.redis.hget(t.keys.counters, `dead_letter:${t.keys.captured}`)).toBe('1');
        expect((await metrics.entriesMalformed.get()).values[0].value).toBe(1);
        expect(await pendingCount()).toBe(0);
      });

      it('reclaims the entries of a consumer that died, counting the delivery', async () => {
        const f = frame();
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
        await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
        // A consumer that read the entry and died before acking it.
        await t.redis.xreadgroup('GROUP', 'g', 'dead', 'COUNT', 10, 'STREAMS', t.keys.captured, '>');
        const got: Entry<FrameMessage>[] = [];
        startConsumer(
          'survivor',
          async (entries, c) => {
            got.push(...entries);
            await c.ack(entries.map((e) => e.id));
          },
          { claimIdleMs: 200 },
        );
        await waitFor('the reclaimed frame', () => got.length === 1);
        expect(got[0].message.frameId).toBe(f.frameId);
        expect(got[0].deliveries).toBe(2);
        expect(await pendingCount()).toBe(0);
      });

      it('dead-letters an entry that has been delivered more than maxDeliveries times (it keeps killing its consumers)', async () => {
        const f = frame();
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
        const id = (await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f)))!;
        await t.redis.xreadgroup('GROUP', 'g', 'dead1', 'COUNT', 10, 'STREAMS', t.keys.captured, '>');
        await t.redis.xclaim(t.keys.captured, 'g', 'dead2', 0, id);
        await t.redis.xclaim(t.keys.captured, 'g', 'dead3', 0, id);
        const handled: string[] = [];
        startConsumer(
          'survivor',
          async (entries, c) => {
            handled.push(...entries.map((e) => e.id));
            await c.ack(entries.map((e) => e.id));
          },
          { claimIdleMs: 100 },
        );
        await waitFor('dead-lettered', async () => (await t.redis.xlen(t.keys.deadLetter)) === 1, 10_000);
        expect(handled).toEqual([]);
        const [[, fields]] = await t.redis.xrange(t.keys.deadLetter, '-', '+');
        expect(fields[fields.indexOf('reason') + 1]).toBe('delivered 4 times (max 3)');
        expect(fields[fields.indexOf('entry_id') + 1]).toBe(id);
        expect(await pendingCount()).toBe(0);
      });

      it('retries a batch whose handler failed instead of skipping it', async () => {
        const f = frame();
        await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(f));
        let calls = 0;
        startConsumer('c1', async (entries, c) => {
          calls++;
          if (calls < 3) throw new Error('database away');
          await c.ack(entries.map((e) => e.id));
        });
        await waitFor('third attempt', () => calls === 3);
        await waitFor('ack', async () => (await pendingCount()) === 0);
      });

      it('counts pending entries trimmed away before they were handled (XAUTOCLAIM deleted ids)', async () => {
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
        for (let i = 0; i < 3; i++) await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(frame()));
        await t.redis.xreadgroup('GROUP', 'g', 'dead', 'COUNT', 10, 'STREAMS', t.keys.captured, '>');
        await t.redis.xtrim(t.keys.captured, 'MAXLEN', 0);
        startConsumer(
          'survivor',
          async (entries, c) => {
            await c.ack(entries.map((e) => e.id));
          },
          { claimIdleMs: 100 },
        );
        await waitFor('trimmed counted', async () => (await t.redis.hget(t.keys.counters, `trimmed:${t.keys.captured}`)) === '3');
        expect(await pendingCount()).toBe(0);
      });

      it('counts entries trimmed before the group read them, once, whether the group existed before or not', async () => {
        const trimmed = async () => Number((await t.redis.hget(t.keys.counters, `trimmed:${t.keys.captured}`)) ?? 0);
        const handled: string[] = [];
        const add = async (n: number, maxlen?: number) => {
          for (let i = 0; i < n; i++)
            await t.redis.xadd(t.keys.captured, ...(maxlen ? ['MAXLEN', String(maxlen)] : []), '*', ...encodeFrame(frame()));
        };
        // No group yet: 20 published, 15 trimmed away before any consumer came.
        await add(20, 5);
        const c = startConsumer(
          'late',
          async (entries, self) => {
            handled.push(...entries.map((e) => e.id));
            await self.ack(entries.map((e) => e.id));
          },
          { claimIdleMs: 200 },
        );
        await waitFor('15 trimmed counted, 5 handled', async () => (await trimmed()) === 15 && handled.length === 5);
        // The group has read: 10 more of which 5 are trimmed unread while the consumer is stopped.
        await c.close();
        await add(10, 5);
        startConsumer(
          'back',
          async (entries, self) => {
            handled.push(...entries.map((e) => e.id));
            await self.ack(entries.map((e) => e.id));
          },
          { claimIdleMs: 200 },
        );
        await waitFor('5 more trimmed counted, 5 more handled', async () => (await trimmed()) === 20 && handled.length === 10);
        // No trimming: nothing more counted, and the group's lag is true again.
        await add(3);
        await waitFor('3 more handled', () => handled.length === 13);
        await new Promise((r) => setTimeout(r, 400)); // another reclaim pass
        expect(await trimmed()).toBe(20);
        expect((await groupLag(t.redis, t.keys.captured))[0].lag).toBe(0);
      });

      it('deleteOnAck: acked entries leave the stream, so its length is the queue depth; lag stays exact', async () => {
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
        for (let i = 0; i < 5; i++) await t.redis.xadd(t.keys.captured, '*', ...encodeFrame(frame()));
        let seen = 0;
        startConsumer(
          'c1',
          async (entries, c) => {
            seen += entries.length;
            await c.ack(entries.map((e) => e.id));
          },
          { deleteOnAck: true, batchSize: () => 2 },
        );
        await waitFor('5 handled', () => seen === 5);
        await waitFor('stream empty', async () => (await t.redis.xlen(t.keys.captured)) === 0);
        expect(await groupLag(t.redis, t.keys.captured)).toEqual([{ stream: t.keys.captured, group: 'g', lag: 0, pending: 0 }]);
      });
    });

    describe('streams', () => {
      it('MAXLEN ~ bounds a stream (never below the threshold), MAXLEN = exactly', async () => {
        const p = t.redis.pipeline();
        for (let i = 0; i < 1000; i++) p.xadd(t.keys.events, 'MAXLEN', '~', 100, '*', 'i', String(i));
        await p.exec();
        const len = await t.redis.xlen(t.keys.events);
        expect(len).toBeGreaterThanOrEqual(100);
        expect(len).toBeLessThan(300);
        const [[, last]] = await t.redis.xrevrange(t.keys.events, '+', '-', 'COUNT', 1);
        expect(last).toEqual(['i', '999']);
        await t.redis.xadd(t.keys.events, 'MAXLEN', '=', 10, '*', 'i', 'x');
        expect(await t.redis.xlen(t.keys.events)).toBe(10);
        const first = await t.redis.xrange(t.keys.events, '-', '+', 'COUNT', 1);
        expect(first[0][1]).toEqual(['i', '991']);
      });

      it('XREADGROUP BLOCK times out with null, and wakes up at once on XADD', async () => {
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '$', 'MKSTREAM');
        let started = Date.now();
        const none = await t.blocking.xreadgroup('GROUP', 'g', 'c', 'COUNT', 10, 'BLOCK', 300, 'STREAMS', t.keys.captured, '>');
        const waited = Date.now() - started;
        expect(none).toBeNull();
        expect(waited).toBeGreaterThanOrEqual(250);
        // (Upper bounds only tell a timeout or a wake-up from blocking on: far off, for loaded machines.)
        expect(waited).toBeLessThan(10_000);

        started = Date.now();
        const read = t.blocking.xreadgroup('GROUP', 'g', 'c', 'COUNT', 10, 'BLOCK', 30_000, 'STREAMS', t.keys.captured, '>');
        await new Promise((r) => setTimeout(r, 100));
        const id = await t.redis.xadd(t.keys.captured, '*', 'k', 'v');
        const res = (await read) as [string, [string, string[]][]][];
        expect(Date.now() - started).toBeLessThan(15_000);
        expect(res).toEqual([[t.keys.captured, [[id, ['k', 'v']]]]]);
        expect(await pendingCount()).toBe(1);
      });

      it('a blocked reader on a stream gets an entry only once when two readers wait', async () => {
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '$', 'MKSTREAM');
        const other = await testRedis('contract2', backend.url);
        try {
          const a = t.blocking.xreadgroup('GROUP', 'g', 'a', 'COUNT', 1, 'BLOCK', 1500, 'STREAMS', t.keys.captured, '>');
          const b = other.blocking.xreadgroup('GROUP', 'g', 'b', 'COUNT', 1, 'BLOCK', 1500, 'STREAMS', t.keys.captured, '>');
          await new Promise((r) => setTimeout(r, 100));
          await t.redis.xadd(t.keys.captured, '*', 'k', '1');
          const results = await Promise.all([a, b]);
          expect(results.filter((r) => r !== null)).toHaveLength(1);
        } finally {
          other.redis.disconnect();
          other.blocking.disconnect();
        }
      });

      it('XINFO GROUPS lag and pending (groupLag)', async () => {
        expect(await groupLag(t.redis, t.keys.events)).toEqual([]);
        await t.redis.xgroup('CREATE', t.keys.events, 'g', '0', 'MKSTREAM');
        expect(await groupLag(t.redis, t.keys.events)).toEqual([{ stream: t.keys.events, group: 'g', lag: 0, pending: 0 }]);
        for (let i = 0; i < 5; i++) await t.redis.xadd(t.keys.events, '*', 'i', String(i));
        expect(await groupLag(t.redis, t.keys.events)).toEqual([{ stream: t.keys.events, group: 'g', lag: 5, pending: 0 }]);
        const [[, read]] = (await t.redis.xreadgroup('GROUP', 'g', 'c', 'COUNT', 2, 'STREAMS', t.keys.events, '>')) as [
          string,
          [string, string[]][],
        ][];
        expect(await groupLag(t.redis, t.keys.events)).toEqual([{ stream: t.keys.events, group: 'g', lag: 3, pending: 2 }]);
        await t.redis.xack(t.keys.events, 'g', read[0][0]);
        expect(await groupLag(t.redis, t.keys.events)).toEqual([{ stream: t.keys.events, group: 'g', lag: 3, pending: 1 }]);
        await t.redis.xgroup('CREATE', t.keys.events, 'late', '$');
        const lags = await groupLag(t.redis, t.keys.events);
        expect(lags.map((l) => [l.group, l.lag, l.pending])).toEqual([
          ['g', 3, 1],
          ['late', 0, 0],
        ]);
      });

      it('XPENDING extended form with a consumer filter, and XINFO CONSUMERS', async () => {
        await t.redis.xgroup('CREATE', t.keys.events, 'g', '0', 'MKSTREAM');
        for (let i = 0; i < 3; i++) await t.redis.xadd(t.keys.events, '*', 'i', String(i));
        await t.redis.xreadgroup('GROUP', 'g', 'a', 'COUNT', 1, 'STREAMS', t.keys.events, '>');
        await t.redis.xreadgroup('GROUP', 'g', 'b', 'COUNT', 2, 'STREAMS', t.keys.events, '>');
        const summary = (await t.redis.xpending(t.keys.events, 'g')) as [number, string, string, [string, string][]];
        expect(summary[0]).toBe(3);
        expect(summary[3]).toEqual([
          ['a', '1'],
          ['b', '2'],
        ]);
        const ofB = (await t.redis.xpending(t.keys.events, 'g', '-', '+', 10, 'b')) as [string, string, number, number][];
        expect(ofB.map((r) => [r[1], r[3]])).toEqual([
          ['b', 1],
          ['b', 1],
        ]);
        expect(await t.redis.xpending(t.keys.events, 'g', '-', '+', 10, 'nobody')).toEqual([]);
        const consumers = (await t.redis.xinfo('CONSUMERS', t.keys.events, 'g')) as unknown[][];
        expect(consumers.map((c) => [c[1], c[3]])).toEqual([
          ['a', 1],
          ['b', 2],
        ]);
        await expect(t.redis.xpending(t.keys.events, 'nogroup')).rejects.toThrow(/NOGROUP/);
      });
    });

    describe('keys, transactions, scripts', () => {
      it('MULTI/EXEC: a command failing at run time replies its error, the others still run', async () => {
        const res = await t.redis.multi().set(`${t.prefix}a`, '1').hset(`${t.prefix}a`, 'f', 'v').set(`${t.prefix}b`, '2').exec();
        expect(res![0]).toEqual([null, 'OK']);
        expect(String(res![1][0])).toMatch(/WRONGTYPE/);
        expect(res![2]).toEqual([null, 'OK']);
        expect(await t.redis.mget(`${t.prefix}a`, `${t.prefix}b`)).toEqual(['1', '2']);
      });

      it('MULTI/EXEC: a command rejected when queued discards the whole transaction', async () => {
        const tx = t.redis.multi();
        tx.set(`${t.prefix}a`, '1');
        (tx as unknown as { call(...a: string[]): unknown }).call('NOSUCHCOMMAND', 'x');
        await expect(tx.exec()).rejects.toThrow(/EXECABORT/);
        expect(await t.redis.exists(`${t.prefix}a`)).toBe(0);
      });

      it('MULTI/EXEC: the queued commands run together (each sees the ones before it)', async () => {
        const res = await t.redis
          .multi()
          .xadd(t.keys.events, '*', 'a', '1')
          .xadd(t.keys.events, '*', 'a', '2')
          .xlen(t.keys.events)
          .hincrby(t.keys.counters, 'n', 1)
          .hincrby(t.keys.counters, 'n', 1)
          .exec();
        expect(res!.map(([, v]) => v).slice(2)).toEqual([2, 1, 2]);
      });

      it('a frame payload stored with SET PX is binary-exact and expires', async () => {
        const key = t.keys.payload(newFrameId());
        const jpeg = Buffer.alloc(100_000, 0);
        for (let i = 0; i < jpeg.length; i++) jpeg[i] = (i * 31) & 0xff;
        expect(await t.redis.set(key, jpeg, 'PX', 1000)).toBe('OK');
        expect((await t.redis.getBuffer(key))!.equals(jpeg)).toBe(true);
        const ttl = await t.redis.pttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(1000);
        await waitFor('payload expired', async () => (await t.redis.getBuffer(key)) === null, 5000);
        expect(await t.redis.exists(key)).toBe(0);
        expect(await t.redis.pttl(key)).toBe(-2);
      });

      it('processor registry: heartbeats keep a processor live; without them it expires', async () => {
        const registry = new ProcessorRegistry(t.redis, t.keys, 1000);
        const stats = { capacity: 4, concurrency: 2, at: 0, inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 };
        const reg = (instance: string) => ({ id: 'p1', capabilities: ['motion'], heartbeatMs: 100, instance, stats });
        await registry.register(reg('i1'));
        await registry.register(reg('i2'));
        const live = await registry.live();
        expect(live.map((p) => [p.id, p.capacity, p.capabilities])).toEqual([['p1', 8, ['motion']]]);
        // One instance leaves (a Lua script: HDEL, then DEL/ZREM when none is left).
        expect(await registry.unregisterInstance('p1', 'i1')).toBe(1);
        expect((await registry.live())[0].capacity).toBe(4);
        const beat = Date.now();
        await registry.heartbeat(reg('i2'), beat);
        expect((await registry.live(beat + 900)).map((p) => p.id)).toEqual(['p1']); // within the TTL of its heartbeat
        expect(await registry.live(beat + 1100)).toEqual([]); // past it
        const ttl = await t.redis.pttl(t.keys.processor('p1'));
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(1000);
        await waitFor('hash expired', async () => (await t.redis.exists(t.keys.processor('p1'))) === 0, 5000);
        expect(await registry.live()).toEqual([]);
        expect(await registry.gone()).toEqual(['p1']);
        expect(await registry.prune(Date.now() + 20_000)).toBe(1);
      });

      it('EVAL / EVALSHA: atomic scripts with redis.call, cjson and NOSCRIPT', async () => {
        const lua = `
          if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
          local st = cjson.decode(ARGV[3])
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', unpack({'at', tostring(st.at), 'n', st.n}))
          return {1, redis.call('XLEN', KEYS[2]), st.at}`;
        await t.redis.xgroup('CREATE', t.keys.captured, 'g', '0', 'MKSTREAM');
        await t.redis.xadd(t.keys.captured, '*', 'k', 'v');
        const [[, [[id]]]] = (await t.redis.xreadgroup('GROUP', 'g', 'c', 'STREAMS', t.keys.captured, '>')) as [
          string,
          [string, string[]][],
        ][];
        const args: [number, ...string[]] = [
          2,
          t.keys.captured,
          t.keys.results,
          'g',
          id,
          JSON.stringify({ at: 1_700_000_000_123, n: 'x' }),
        ];
        const sha = (await t.redis.script('LOAD', lua)) as string;
        await t.redis.script('FLUSH');
        await expect(t.redis.evalsha(sha, ...args)).rejects.toThrow(/NOSCRIPT/);
        expect(await t.redis.eval(lua, ...args)).toEqual([1, 1, 1_700_000_000_123]);
        expect(await t.redis.evalsha(sha, ...args)).toBe(0); // acked already: nothing appended
        const [[, fields]] = await t.redis.xrange(t.keys.results, '-', '+');
        expect(fieldsOf(fields).n).toBe('x');
        expect(Number(fieldsOf(fields).at)).toBe(1_700_000_000_123);
        await expect(t.redis.eval("return redis.call('HSET', KEYS[1], 'f')", 1, t.keys.results)).rejects.toThrow(
          /^ERR Wrong number of args calling Redis command from script/,
        );
      });

      it('SCAN with MATCH and COUNT visits every key once the cursor returns to 0', async () => {
        const keys = Array.from({ length: 50 }, (_, i) => `${t.prefix}scan:${i}`);
        await t.redis.mset(...keys.flatMap((k) => [k, 'v']));
        const found = new Set<string>();
        let cursor = '0';
        do {
          const [next, batch] = await t.redis.scan(cursor, 'MATCH', `${t.prefix}scan:*`, 'COUNT', 7);
          batch.forEach((k) => found.add(k));
          cursor = next;
        } while (cursor !== '0');
        expect([...found].sort()).toEqual([...keys].sort());
      });

      it('answers an unknown command with ERR unknown command', async () => {
        await expect((t.redis as unknown as { call(...a: string[]): Promise<unknown> }).call('NOSUCHCOMMAND', 'x')).rejects.toThrow(
          /^ERR unknown command 'NOSUCHCOMMAND'/,
        );
      });
    });
  });
}
