import type { Redis } from 'ioredis';
import { BufferService, type BufferOptions } from '../../src/buffer/buffer-service.js';
import { decodeBusEvent, isCameraEvent } from '../../src/bus/event-codec.js';
import { publishFrame, type FrameToPublish, type PublishedFrame } from '../../src/bus/publish-frame.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { SYNTHETIC_JPEG_SIZE, syntheticJpeg } from '../../src/ops/synthetic-jpeg.js';
import type { Processor, ProcessorResult } from '../../src/process/processor.js';
import { ProcessorRuntime, type ProcessorRuntimeOptions } from '../../src/process/processor-runtime.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { initTracing } from '../../src/telemetry/tracing.js';
import type { TestRedis } from '../helpers/redis.js';

export const tracing = initTracing('detektr-test');
export const logger = createLogger({ component: 'test', level: (process.env.TEST_LOG_LEVEL as 'debug' | undefined) ?? 'error' });
const JPEG = syntheticJpeg(600);

/** Fast timings for tests: short blocks, idle times and heartbeats. */
export const FAST = { blockMs: 100, claimIdleMs: 1000, maxDeliveries: 3, processorTtlMs: 1500, heartbeatMs: 200, streamMaxLen: 10_000 };

export interface Harness {
  t: TestRedis;
  metrics: Metrics;
  buffers: BufferService[];
  runtimes: ProcessorRuntime[];
  conns: Redis[];
  buffer(opts?: Partial<BufferOptions>): BufferService;
  runtime(processor: Processor, opts?: Partial<ProcessorRuntimeOptions>): ProcessorRuntime;
  publish(f?: Partial<FrameToPublish>): Promise<PublishedFrame>;
  events(): Promise<LifecycleEvent[]>;
  close(): Promise<void>;
}

export function harness(t: TestRedis): Harness {
  const metrics = createMetrics('test');
  const h: Harness = {
    t,
    metrics,
    buffers: [],
    runtimes: [],
    conns: [],
    buffer(opts = {}) {
      const blocking = t.blocking.duplicate();
      h.conns.push(blocking);
      const b = new BufferService({
        redis: t.redis,
        blocking: [blocking],
        shards: t.shards,
        tracer: tracing.tracer,
        metrics,
        logger,
        batchSize: 100,
        ...FAST,
        dispatchIntervalMs: 5,
        breakerCooldownMs: 1000,
        ...opts,
      });
      h.buffers.push(b);
      void b.run();
      return b;
    },
    runtime(processor, opts = {}) {
      const blocking = t.blocking.duplicate();
      h.conns.push(blocking);
      const r = new ProcessorRuntime({
        redis: t.redis,
        blocking: [blocking],
        shards: t.shards,
        tracer: tracing.tracer,
        metrics,
        logger,
        processor,
        id: processor.name,
        concurrency: 1,
        frameTimeoutMs: 5000,
        ...FAST,
        ...opts,
      });
      h.runtimes.push(r);
      void r.run();
      return r;
    },
    publish(f = {}) {
      return publishFrame(
        { redis: t.redis, keys: t.keys, tracer: tracing.tracer, payloadTtlMs: 60_000, streamMaxLen: 10_000 },
        { cameraId: 'cam', jpeg: JPEG, ...SYNTHETIC_JPEG_SIZE, ...f },
      );
    },
    async events() {
      const rows = await t.redis.xrange(t.keys.events, '-', '+');
      const out: LifecycleEvent[] = [];
      for (const [, fields] of rows) {
        const e = decodeBusEvent(fields);
        if (!isCameraEvent(e)) out.push(e);
      }
      return out;
    },
    async close() {
      await Promise.all([...h.buffers.splice(0).map((b) => b.close()), ...h.runtimes.splice(0).map((r) => r.close())]);
      for (const c of h.conns.splice(0)) c.disconnect();
    },
  };
  return h;
}

/** A processor that takes `ms` per frame (and records the order it saw frames in). */
export function slowProcessor(name: string, capabilities: string[], ms: number, seen: string[] = []): Processor & { seen: string[] } {
  return {
    name,
    capabilities,
    seen,
    async process(frame): Promise<ProcessorResult> {
      seen.push(frame.frameId);
      if (ms) await new Promise((r) => setTimeout(r, ms));
      return { by: name };
    },
  };
}

export const byType = (events: LifecycleEvent[], type: LifecycleEvent['type']) => events.filter((e) => e.type === type);
