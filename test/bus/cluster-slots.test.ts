import { trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dispatchFrames, intakeDirect } from '../../src/buffer/scripts.js';
import { ProcessorRegistry } from '../../src/buffer/registry.js';
import { encodeEvent } from '../../src/bus/event-codec.js';
import { decodeFrame, encodeFrame } from '../../src/bus/frame-codec.js';
import { ackAndAppend, delAndAppend } from '../../src/bus/handoff.js';
import { COUNTER_FIELDS, type RedisKeys } from '../../src/bus/keys.js';
import { publishFrame } from '../../src/bus/publish-frame.js';
import { closeRedis, createBlockingRedis, createRedis, deleteKeysWithPrefix, type RedisClient } from '../../src/bus/redis.js';
import { shardSetOf, type ShardSet } from '../../src/bus/shards.js';
import { StreamConsumer } from '../../src/bus/stream-consumer.js';
import { countTrimmedUnread } from '../../src/bus/trim-loss.js';
import type { CameraSettings } from '../../src/capture/camera-config.js';
import { CapturePublisher } from '../../src/capture/capture-publisher.js';
import type { CapturedImage } from '../../src/capture/video-source.js';
import { makeEvent } from '../../src/domain/events.js';
import { newFrameId } from '../../src/domain/frame-id.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startRedisCluster, type TestCluster } from '../helpers/redis-cluster.js';
import { uniquePrefix, waitFor } from '../helpers/redis.js';

const MAXLEN = 10_000;
const tracer = trace.getTracer('cluster-slots');
const logger = createLogger({ component: 'test', level: 'error' });

function frameOf(cameraId: string, keys: RedisKeys): FrameMessage {
  const frameId = newFrameId();
  return {
    frameId,
    cameraId,
    capturedAt: Date.now(),
    width: 16,
    height: 16,
    format: 'jpeg',
    sizeBytes: 3,
    priority: 5,
    payloadKey: keys.payload(frameId),
    capabilities: [],
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  };
}
const queued = (f: FrameMessage) =>
  encodeEvent(makeEvent({ type: 'frame.queued', frameId: f.frameId, cameraId: f.cameraId, source: 'buffer' }));

/**
 * Every MULTI and every Lua script detektr sends, run against each shard of a 3-shard
 * pipeline on a real Redis Cluster: a key of another slot in any of them would make the
 * cluster answer CROSSSLOT. The last test shows the cluster does refuse a call that
 * mixes shards, so these tests can fail.
 */
describe('every transaction and script stays in one hash slot on a real Redis Cluster', () => {
  let cluster: TestCluster;
  let redis: RedisClient;
  let shards: ShardSet;
  const prefix = uniquePrefix('slots');

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    redis = createRedis({ url: cluster.url, name: 'test:slots', logger });
    shards = shardSetOf({ prefix, redisUrl: cluster.url, shards: 3, cameraShards: ['cam0=0', 'cam1=1', 'cam2=2'] });
  }, 90_000);

  afterAll(async () => {
    if (redis) {
      await deleteKeysWithPrefix(redis, prefix);
      await closeRedis(redis);
    }
    await cluster?.stop();
  });

  it("capture's MULTIs: a frame (payload, thumbnail, event, message), a dropped frame's events, a camera event", async () => {
    const publisher = new CapturePublisher({
      redis,
      shards,
      tracer,
      metrics: createMetrics('test'),
      logger,
      payloadTtlMs: 60_000,
      streamMaxLen: MAXLEN,
    });
    for (const keys of shards.all) {
      const cameraId = `cam${keys.shard}`;
      const image: CapturedImage = {
        jpeg: Buffer.from([0xff, 0xd8, 0xff]),
        width: 16,
        height: 16,
        capturedAt: Date.now(),
        ptsMs: 0,
        encodeMs: 1,
        decodeMs: 1,
        flags: [],
        frozenForMs: 0,
        luma: 128,
        skipped: 0,
        backlogDropped: 0,
        thumbnail: { data: Buffer.alloc(16), width: 4, height: 4 },
      };
      const settings = { priority: 5 } as CameraSettings; // the publisher reads priority and capabilities only
      expect(await publisher.frame(cameraId, settings, image)).toBe(true);
      await publisher.dropped(cameraId, settings, { ...image, flags: ['corrupt'], drop: 'corrupt' });
      await publisher.cameraEvent(cameraId, 'camera.online');
      const events = await redis.xlen(keys.events);
      expect(events, `events of shard ${keys.shard}`).toBe(4); // frame.captured x2, frame.dropped, camera.online
      expect(await redis.xlen(keys.captured)).toBe(1);
      const [[, fields]] = await redis.xrange(keys.captured, '-', '+');
      const frame = decodeFrame(fields);
      expect(await redis.exists(frame.payloadKey, keys.thumbnail(frame.payloadKey))).toBe(2);
    }
  });

  it("loadtest's and validate's publishFrame into a chosen shard", async () => {
    for (const keys of shards.all) {
      await publishFrame(
        { redis, keys, tracer, payloadTtlMs: 60_000, streamMaxLen: MAXLEN },
        { cameraId: 'probe', jpeg: Buffer.from([1]), width: 1, height: 1 },
      );
      expect(await redis.xlen(keys.captured)).toBe(2);
    }
  });

  it("the buffer's scripts: intake's direct hand-off, a lane dispatch, re-routing (ack + append), shedding (del + append)", async () => {
    for (const keys of shards.all) {
      const cam = `cam${keys.shard}`;
      await redis.xgroup('CREATE', keys.captured, 'buffer', '0', 'MKSTREAM').catch(() => undefined);
      const read = (await redis.xreadgroup('GROUP', 'buffer', 'c1', 'COUNT', 10, 'STREAMS', keys.captured, '>')) as [
        string,
        [string, string[]][],
      ][];
      const [[, entries]] = read;
      const f = frameOf(cam, keys);
      const route = {
        stream: keys.ready('p1'),
        capacity: 100,
        message: encodeFrame({ ...f, processorId: 'p1', capability: 'sample' }),
        event: queued(f),
      };
      expect(
        await intakeDirect(
          redis,
          keys.events,
          [
            {
              captured: keys.captured,
              group: 'buffer',
              entryId: entries[0][0],
              lane: keys.lane('normal'),
              laneEntry: encodeFrame(f),
              routes: [route],
            },
          ],
          MAXLEN,
        ),
      ).toEqual(['sent']);
      const laneId = await redis.xadd(keys.lane('high'), '*', ...encodeFrame(f));
      expect(await dispatchFrames(redis, keys.events, [{ lane: keys.lane('high'), entryId: laneId!, routes: [route] }], MAXLEN)).toEqual([
        'sent',
      ]);
      await redis.xgroup('CREATE', keys.ready('p1'), 'processor', '0').catch(() => undefined);
      const held = (await redis.xreadgroup('GROUP', 'processor', 'p1-a', 'COUNT', 1, 'STREAMS', keys.ready('p1'), '>')) as [
        string,
        [string, string[]][],
      ][];
      const moved = await ackAndAppend(
        redis,
        keys.counters,
        [
          {
            source: keys.ready('p1'),
            group: 'processor',
            id: held[0][1][0][0],
            del: true,
            targets: [
              { stream: keys.ready('p2'), fields: route.message },
              { stream: keys.results, fields: ['v', '1'] },
              { stream: keys.events, fields: queued(f) },
            ],
            counter: COUNTER_FIELDS.deadLetter(keys.ready('p1')),
          },
        ],
        MAXLEN,
      );
      expect(moved).toEqual([true]);
      const shedId = await redis.xadd(keys.lane('low'), '*', ...encodeFrame(f));
      expect(
        await delAndAppend(
          redis,
          keys.counters,
          [{ source: keys.lane('low'), id: shedId!, targets: [{ stream: keys.events, fields: queued(f) }], counter: 'shed' }],
          MAXLEN,
        ),
      ).toEqual([true]);
      expect(await redis.hget(keys.counters, COUNTER_FIELDS.deadLetter(keys.ready('p1')))).toBe('1');
    }
  });

  it("the stream consumer's trim-loss script and its dead-letter MULTI (malformed entry: dead-letter + counter + ack)", async () => {
    for (const keys of shards.all) {
      expect(await countTrimmedUnread(redis, keys.captured, 'buffer', keys.counters)).toBe(0);
      await redis.xadd(keys.captured, '*', 'v', '1', 'frame_id', 'not-a-ulid');
      const blocking = createBlockingRedis({ url: cluster.url, name: 'test:slots', logger, blockMs: 200 });
      const consumer = new StreamConsumer<FrameMessage>({
        redis,
        blocking,
        keys,
        stream: keys.captured,
        group: 'buffer',
        consumer: 'c2',
        decode: decodeFrame,
        handle: async (entries, c) => void (await c.ack(entries.map((e) => e.id))),
        batchSize: 10,
        blockMs: 200,
        claimIdleMs: 60_000,
        maxDeliveries: 3,
        logger,
      });
      const running = consumer.run();
      try {
        await waitFor(`the malformed entry of shard ${keys.shard} dead-lettered`, async () => (await redis.xlen(keys.deadLetter)) === 1);
        expect(await redis.hget(keys.counters, COUNTER_FIELDS.deadLetter(keys.captured))).toBe('1');
      } finally {
        await consumer.close();
        await running;
        await closeRedis(blocking);
      }
    }
  });

  it("the registry's MULTIs and pipelines (heartbeat, live, unregister) in the {g} slot", async () => {
    const registry = new ProcessorRegistry(redis, shards.global, 10_000);
    const stats = { capacity: 8, concurrency: 1, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 };
    await registry.heartbeat({ id: 'p1', capabilities: ['sample'], heartbeatMs: 1000, instance: 'a', stats });
    await registry.heartbeat({ id: 'p2', capabilities: ['sample'], heartbeatMs: 1000, instance: 'b', stats });
    expect((await registry.live()).map((p) => p.id).sort()).toEqual(['p1', 'p2']);
    await registry.unregisterInstance('p2', 'b');
    expect((await registry.live()).map((p) => p.id)).toEqual(['p1']);
  });

  it('a hand-off whose keys span two shards is refused (the client or the cluster), so the tests above would catch one', async () => {
    const [a, b] = shards.all;
    await redis.xgroup('CREATE', a.captured, 'x', '0').catch(() => undefined);
    // Shards on different masters: ioredis itself refuses the pipeline.
    await expect(
      ackAndAppend(
        redis,
        a.counters,
        [{ source: a.captured, group: 'x', id: '0-1', del: false, targets: [{ stream: b.events, fields: ['v', '1'] }] }],
        MAXLEN,
      ),
    ).rejects.toThrow(/should belong to the same slot|CROSSSLOT/);
    // Sent to one node anyway, the cluster answers CROSSSLOT.
    await expect(redis.eval("return redis.call('XLEN', KEYS[2])", 2, a.events, b.events)).rejects.toThrow(/CROSSSLOT/);
  });
});
