import { bufferSettings, type BufferOptions, type BufferSettings } from '../../src/buffer/buffer-options.js';
import { BreakerBoard } from '../../src/buffer/breaker.js';
import { LaneReader } from '../../src/buffer/lane-reader.js';
import type { Lane } from '../../src/buffer/lanes.js';
import { ProcessorRegistry, type InstanceStats } from '../../src/buffer/registry.js';
import { RegistryView } from '../../src/buffer/registry-view.js';
import { RoutedIds } from '../../src/buffer/routed-ids.js';
import { createStrategy, Router } from '../../src/buffer/router.js';
import { encodeFrame } from '../../src/bus/frame-codec.js';
import { GROUPS } from '../../src/bus/keys.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { frameIdTime, newFrameId } from '../../src/domain/frame-id.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { testRedis, type TestRedis } from '../helpers/redis.js';
import { FAST, harness, logger, tracing } from './harness.js';

/**
 * The buffer's parts, built one by one over a real Redis (unique prefix per test) the way
 * BufferService wires them, so each part can be driven on its own: no loop runs unless
 * the test starts it.
 */
export interface Parts {
  t: TestRedis;
  settings: BufferSettings;
  metrics: ReturnType<typeof createMetrics>;
  breakers: BreakerBoard;
  registry: ProcessorRegistry;
  view: RegistryView;
  routed: RoutedIds;
  lanes: LaneReader;
  router: Router;
  /** Registers (heart-beats) one instance of a processor. */
  register(id: string, capabilities: string[], stats?: Partial<InstanceStats>): Promise<void>;
  frame(f?: Partial<FrameMessage>): FrameMessage;
  /** Puts a frame in a lane as intake would; returns its entry id. */
  toLane(lane: Lane, f: FrameMessage): Promise<string>;
  /** Puts a routed frame on a processor's ready stream (group `processor` created); returns its entry id. */
  toReady(processorId: string, f: FrameMessage, capability: string): Promise<string>;
  /** Publishes a frame on frames:captured as capture does. */
  publish: ReturnType<typeof harness>['publish'];
  events: ReturnType<typeof harness>['events'];
  close(): Promise<void>;
}

export async function parts(label: string, opts: Partial<BufferOptions> & { refreshMs?: number } = {}): Promise<Parts> {
  const t = await testRedis(label);
  const metrics = createMetrics('test');
  const settings = bufferSettings({
    redis: t.redis,
    blocking: [t.blocking],
    shards: t.shards,
    tracer: tracing.tracer,
    metrics,
    logger,
    batchSize: 100,
    ...FAST,
    ...opts,
  });
  const breakers = new BreakerBoard({ failureThreshold: settings.breakerFailures, cooldownMs: settings.breakerCooldownMs });
  const registry = new ProcessorRegistry(t.redis, t.keys, settings.processorTtlMs);
  const view = new RegistryView({
    redis: t.redis,
    keys: t.keys,
    metrics,
    logger,
    registry,
    breakers,
    pressure: { high: settings.pressureHigh, critical: settings.pressureCritical },
    refreshMs: opts.refreshMs,
  });
  const h = harness(t);
  let seq = 0;
  return {
    t,
    settings,
    metrics,
    breakers,
    registry,
    view,
    routed: new RoutedIds(t.redis, t.keys.routed),
    lanes: new LaneReader({ redis: t.redis, keys: t.keys, metrics, logger, streamMaxLen: settings.streamMaxLen }),
    router: new Router(createStrategy(settings.strategy)),
    async register(id, capabilities, stats = {}) {
      await registry.heartbeat({
        id,
        capabilities,
        heartbeatMs: 0,
        instance: `${id}-1`,
        stats: { capacity: 4, concurrency: 1, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0, ...stats },
      });
    },
    frame(f = {}) {
      // Distinct, increasing capture times, so order-by-age assertions do not depend on the clock.
      const frameId = newFrameId(Date.now() + seq++);
      return {
        frameId,
        cameraId: 'cam',
        capturedAt: frameIdTime(frameId),
        width: 64,
        height: 48,
        format: 'jpeg',
        sizeBytes: 600,
        priority: 5,
        payloadKey: t.keys.payload(frameId),
        capabilities: ['x'],
        ...f,
      };
    },
    async toLane(lane, f) {
      return (await t.redis.xadd(t.keys.lane(lane), '*', ...encodeFrame(f))) as string;
    },
    async toReady(processorId, f, capability) {
      const stream = t.keys.ready(processorId);
      await t.redis.xgroup('CREATE', stream, GROUPS.processor, '0', 'MKSTREAM').catch(() => undefined);
      return (await t.redis.xadd(stream, '*', ...encodeFrame({ ...f, processorId, capability }))) as string;
    },
    publish: (f) => h.publish(f),
    events: () => h.events(),
    async close() {
      await h.close();
      await t.cleanup();
    },
  };
}
