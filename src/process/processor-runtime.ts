import { hostname } from 'node:os';
import { trace, type Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import { decodeFrame } from '../bus/frame-codec.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { addEntry, addEvent, execOrThrow } from '../bus/publish.js';
import { StreamConsumer, consumerName, type Entry } from '../bus/stream-consumer.js';
import { toFieldList, MESSAGE_VERSION } from '../bus/fields.js';
import { makeEvent, type LifecycleEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ProcessorRegistry } from '../buffer/registry.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { Processor, ProcessorResult } from './processor.js';

export interface ProcessorRuntimeOptions {
  processor: Processor;
  /** Registry id; instances sharing an id share its stream (load sharing). */
  id: string;
  redis: Redis;
  blocking: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  concurrency: number;
  frameTimeoutMs: number;
  heartbeatMs: number;
  processorTtlMs: number;
  streamMaxLen: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
}

class FrameTimeoutError extends Error {}

/**
 * Runs one processor: registers it, heart-beats, consumes its stream, continues each
 * frame's trace, and publishes result + lifecycle event + ack in one MULTI.
 */
export class ProcessorRuntime {
  private readonly consumer: StreamConsumer<FrameMessage>;
  private readonly registry: ProcessorRegistry;
  private heartbeat?: NodeJS.Timeout;
  private readonly done = new WeakSet<Entry<FrameMessage>>();
  private readonly stop = new AbortController();
  private closed?: Promise<void>;

  constructor(private readonly opts: ProcessorRuntimeOptions) {
    this.registry = new ProcessorRegistry(opts.redis, opts.keys, opts.processorTtlMs);
    this.consumer = new StreamConsumer<FrameMessage>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.ready(opts.id),
      group: GROUPS.processor,
      consumer: consumerName(opts.id),
      decode: decodeFrame,
      handle: (entries) => this.handle(entries),
      batchSize: opts.concurrency,
      blockMs: opts.blockMs,
      claimIdleMs: opts.claimIdleMs,
      maxDeliveries: opts.maxDeliveries,
      metrics: opts.metrics,
      logger: opts.logger,
    });
  }

  async run(): Promise<void> {
    const { processor, id, logger } = this.opts;
    await processor.setup?.({ processorId: id, logger });
    await this.consumer.ensureGroup();
    await this.register();
    this.heartbeat = setInterval(() => {
      this.registry.heartbeat(id).catch((err: unknown) => logger.warn('heartbeat failed', { error: err }));
    }, this.opts.heartbeatMs);
    this.heartbeat.unref();
    logger.info('processor registered', { processor_id: id, capabilities: processor.capabilities });
    await this.consumer.run();
  }

  private register(): Promise<void> {
    const { processor, id, concurrency } = this.opts;
    return this.registry.register({ id, capabilities: processor.capabilities, capacity: concurrency * 4, pid: process.pid, host: hostname() });
  }

  /** Unregister first (the buffer stops routing here), then finish the frames in hand. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.heartbeat);
      await this.registry.unregister(this.opts.id).catch(() => undefined);
      await this.consumer.close();
      this.stop.abort();
      await this.opts.processor.teardown?.();
    })();
    return this.closed;
  }

  private async handle(entries: Entry<FrameMessage>[]): Promise<void> {
    // A retried batch (Redis failed mid-way) skips the frames already committed.
    const todo = entries.filter((e) => !this.done.has(e));
    await Promise.all(todo.map((e) => this.handleOne(e)));
  }

  private async handleOne(entry: Entry<FrameMessage>): Promise<void> {
    const { redis, keys, tracer, metrics, logger, processor, id, streamMaxLen } = this.opts;
    const frame = entry.message;
    const stream = keys.ready(id);
    const parent = extractContext(frame);
    const span = startMessagingSpan(tracer, 'process', stream, parent, {
      [ATTR.frameId]: frame.frameId,
      [ATTR.cameraId]: frame.cameraId,
      [ATTR.processorId]: id,
      [ATTR.capability]: frame.capability,
      [ATTR.messagingConsumerGroup]: GROUPS.processor,
      [ATTR.attempt]: entry.deliveries,
    });
    const base = { frameId: frame.frameId, cameraId: frame.cameraId, source: 'process', processorId: id, capability: frame.capability, attempt: entry.deliveries, ...spanIds(span) };
    try {
      await execOrThrow(addEvent(redis.multi(), keys, makeEvent({ ...base, type: 'processing.started' }), streamMaxLen));
      const started = performance.now();
      let result: ProcessorResult | undefined;
      let error: string | undefined;
      const run = tracer.startSpan(`run ${processor.name}`, {}, trace.setSpan(parent, span));
      try {
        result = await this.runProcessor(frame);
        run.end();
      } catch (err) {
        endSpan(run, err);
        error = err instanceof FrameTimeoutError ? err.message : `${(err as Error).name ?? 'Error'}: ${(err as Error).message ?? String(err)}`;
      }
      const durationMs = performance.now() - started;
      const tx = redis.multi();
      let event: LifecycleEvent;
      if (error === undefined) {
        event = makeEvent({ ...base, type: 'processing.completed', durationMs });
        addEntry(tx, keys.results, toFieldList({
          v: MESSAGE_VERSION, frame_id: frame.frameId, camera_id: frame.cameraId, processor_id: id,
          capability: frame.capability, result: JSON.stringify(result ?? {}), ...injectContext(trace.setSpan(parent, span)),
        }), streamMaxLen);
      } else {
        event = makeEvent({ ...base, type: 'processing.failed', durationMs, error });
      }
      addEvent(tx, keys, event, streamMaxLen);
      this.consumer.ackInto(tx, [entry.id]);
      await execOrThrow(tx);
      this.done.add(entry);
      const outcome = error === undefined ? 'completed' : 'failed';
      metrics.framesProcessed.inc({ processor: id, outcome });
      metrics.processingSeconds.observe({ processor: id }, durationMs / 1000);
      if (error === undefined) metrics.endToEndSeconds.observe({ processor: id }, (Date.now() - frame.capturedAt) / 1000);
      else logger.warn('processing failed', { frame_id: frame.frameId, trace_id: span.spanContext().traceId, error });
      endSpan(span, error);
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  private async runProcessor(frame: FrameMessage): Promise<ProcessorResult> {
    const { processor, redis, id, logger, frameTimeoutMs } = this.opts;
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.stop.signal.addEventListener('abort', onStop);
    let timer: NodeJS.Timeout | undefined;
    try {
      let image: Buffer | undefined;
      if (processor.needsImage) {
        image = (await redis.getBuffer(frame.payloadKey)) ?? undefined;
        if (!image) throw new Error(`payload ${frame.payloadKey} is gone (expired before processing)`);
      }
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          abort.abort();
          reject(new FrameTimeoutError(`timed out after ${frameTimeoutMs} ms`));
        }, frameTimeoutMs);
      });
      return await Promise.race([Promise.resolve(processor.process({ ...frame, image }, { processorId: id, logger, signal: abort.signal })), timeout]);
    } finally {
      clearTimeout(timer);
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }
}
