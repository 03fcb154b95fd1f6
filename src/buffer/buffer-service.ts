import { trace, type Span, type Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import { decodeFrame } from '../bus/frame-codec.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { addEvent, addFrame, execOrThrow } from '../bus/publish.js';
import { StreamConsumer, consumerName, type Entry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import { ProcessorRegistry, type ProcessorInfo } from './registry.js';
import { RoundRobinRouter } from './router.js';

export interface BufferOptions {
  redis: Redis;
  blocking: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  processorTtlMs: number;
  streamMaxLen: number;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
}

const REGISTRY_REFRESH_MS = 500;

/**
 * Consumes frames:captured in a consumer group (several buffers can share it) and hands
 * each frame to one live processor per capability. The hand-off (XADD to the processor's
 * stream + frame.queued event) and the XACK go in one MULTI: a frame is never both lost
 * and acked, nor queued twice by one delivery.
 */
export class BufferService {
  readonly registry: ProcessorRegistry;
  private readonly router = new RoundRobinRouter();
  private readonly consumer: StreamConsumer<FrameMessage>;
  private processors: ProcessorInfo[] = [];
  private refreshedAt = 0;

  constructor(private readonly opts: BufferOptions) {
    this.registry = new ProcessorRegistry(opts.redis, opts.keys, opts.processorTtlMs);
    this.consumer = new StreamConsumer<FrameMessage>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.captured,
      group: GROUPS.buffer,
      consumer: consumerName('buffer'),
      decode: decodeFrame,
      handle: (entries) => this.handle(entries),
      batchSize: opts.batchSize,
      blockMs: opts.blockMs,
      claimIdleMs: opts.claimIdleMs,
      maxDeliveries: opts.maxDeliveries,
      metrics: opts.metrics,
      logger: opts.logger,
      // With no processor at all, frames wait in the stream rather than being dropped.
      canConsume: async () => (await this.liveProcessors()).length > 0,
    });
  }

  run(): Promise<void> {
    return this.consumer.run();
  }

  close(): Promise<void> {
    return this.consumer.close();
  }

  async liveProcessors(): Promise<ProcessorInfo[]> {
    if (Date.now() - this.refreshedAt >= REGISTRY_REFRESH_MS) {
      this.processors = await this.registry.live();
      this.refreshedAt = Date.now();
      const byCap = new Map<string, number>();
      for (const p of this.processors) for (const c of p.capabilities) byCap.set(c, (byCap.get(c) ?? 0) + 1);
      this.opts.metrics.processorsRegistered.reset();
      for (const [c, n] of byCap) this.opts.metrics.processorsRegistered.set({ capability: c }, n);
    }
    return this.processors;
  }

  private async handle(entries: Entry<FrameMessage>[]): Promise<void> {
    const { redis, keys, tracer, metrics, logger, streamMaxLen } = this.opts;
    const processors = await this.liveProcessors();
    const tx = redis.multi();
    const spans: Span[] = [];
    const counted: (() => void)[] = [];
    for (const { message: frame, deliveries } of entries) {
      const parent = extractContext(frame);
      const span = startMessagingSpan(tracer, 'process', keys.captured, parent, {
        [ATTR.frameId]: frame.frameId,
        [ATTR.cameraId]: frame.cameraId,
        [ATTR.messagingConsumerGroup]: GROUPS.buffer,
        [ATTR.attempt]: deliveries,
      });
      spans.push(span);
      const ctx = trace.setSpan(parent, span);
      const { routes, missing } = this.router.route(frame, processors);
      if (routes.length === 0) {
        const reason = `no live processor for ${missing.join(',') || 'any capability'}`;
        addEvent(tx, keys, makeEvent({ type: 'frame.dropped', frameId: frame.frameId, cameraId: frame.cameraId, source: 'buffer', reason, ...spanIds(span) }), streamMaxLen);
        counted.push(() => metrics.framesDropped.inc({ reason: 'no_processor' }));
        logger.warn('frame dropped', { frame_id: frame.frameId, trace_id: span.spanContext().traceId, reason });
        continue;
      }
      if (missing.length) logger.warn('no live processor for some capabilities', { frame_id: frame.frameId, missing });
      for (const { processor, capability } of routes) {
        const stream = keys.ready(processor.id);
        const send = startMessagingSpan(tracer, 'send', stream, ctx, { [ATTR.frameId]: frame.frameId, [ATTR.processorId]: processor.id, [ATTR.capability]: capability });
        spans.push(send);
        const carrier = injectContext(trace.setSpan(ctx, send));
        addFrame(tx, stream, { ...frame, processorId: processor.id, capability, ...carrier }, streamMaxLen);
        addEvent(tx, keys, makeEvent({ type: 'frame.queued', frameId: frame.frameId, cameraId: frame.cameraId, source: 'buffer', processorId: processor.id, capability, attempt: deliveries, ...spanIds(send) }), streamMaxLen);
        counted.push(() => metrics.framesRouted.inc({ processor: processor.id, capability }));
      }
    }
    this.consumer.ackInto(tx, entries.map((e) => e.id));
    try {
      await execOrThrow(tx);
    } catch (err) {
      for (const s of spans) endSpan(s, err);
      throw err;
    }
    for (const c of counted) c();
    for (const s of spans) s.end();
  }
}
