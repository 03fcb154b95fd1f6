import { propagation } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { decodeBusEvent, isCameraEvent, type BusEvent } from '../../src/bus/event-codec.js';
import type { FieldList } from '../../src/bus/fields.js';
import { decodeFrame } from '../../src/bus/frame-codec.js';
import type { CameraConfig } from '../../src/capture/camera-config.js';
import { CaptureService, type CaptureOptions } from '../../src/capture/capture-service.js';
import type { CameraEvent } from '../../src/domain/camera-events.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { testRedis, type TestRedis } from './redis.js';

export interface CaptureHarness {
  t: TestRedis;
  service: CaptureService;
  metrics: Metrics;
  /** JSON log lines, as the CLI would write them to stderr. */
  logs: string[];
  spans: InMemorySpanExporter;
  running: Promise<void>;
  events(): Promise<BusEvent[]>;
  cameraEvents(cameraId?: string): Promise<CameraEvent[]>;
  frameEvents(cameraId?: string): Promise<LifecycleEvent[]>;
  frames(cameraId?: string): Promise<FrameMessage[]>;
  /** A metric's value from the registry (sum over the series matching `labels`). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

propagation.setGlobalPropagator(new W3CTraceContextPropagator());

/** Runs a CaptureService in this process against the real Redis, with a unique prefix. */
export async function startCapture(
  opts: Partial<Omit<CaptureOptions, 'cameras'>> & { cameras: CameraConfig[]; label?: string },
): Promise<CaptureHarness> {
  const t = await testRedis(opts.label ?? 'capture');
  const metrics = createMetrics('capture');
  const logs: string[] = [];
  const spans = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const service = new CaptureService({
    redis: t.redis,
    shards: t.shards,
    tracer: provider.getTracer('test'),
    metrics,
    logger: createLogger({ component: 'capture', level: 'debug', write: (l) => logs.push(l) }),
    fps: 5,
    jpegQuality: 80,
    payloadTtlMs: 60_000,
    streamMaxLen: 100_000,
    ...opts,
  });
  const running = service.run();
  running.catch(() => undefined);
  const read = async (stream: string) => (await t.redis.xrange(stream, '-', '+')) as [string, FieldList][];
  const events = async () => (await read(t.keys.events)).map(([, f]) => decodeBusEvent(f));
  return {
    t,
    service,
    metrics,
    logs,
    spans,
    running,
    events,
    cameraEvents: async (id) => (await events()).filter((e): e is CameraEvent => isCameraEvent(e) && (!id || e.cameraId === id)),
    frameEvents: async (id) => (await events()).filter((e): e is LifecycleEvent => !isCameraEvent(e) && (!id || e.cameraId === id)),
    frames: async (id) => (await read(t.keys.captured)).map(([, f]) => decodeFrame(f)).filter((f) => !id || f.cameraId === id),
    metric: async (name, labels = {}) => {
      // A histogram's series are <name>_count, _sum and _bucket.
      const base = name.replace(/_(count|sum|bucket)$/, '');
      const m = await (metrics.registry.getSingleMetric(name) ?? metrics.registry.getSingleMetric(base))?.get();
      if (!m) throw new Error(`no metric ${name}`);
      return m.values
        .filter((v) => ((v as { metricName?: string }).metricName ?? m.name) === name)
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .reduce((sum, v) => sum + v.value, 0);
    },
    async close() {
      await service.close();
      await provider.shutdown();
      await t.cleanup();
    },
  };
}
