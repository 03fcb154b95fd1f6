import { hostname } from 'node:os';
import { trace, type Tracer } from '@opentelemetry/api';
import type { ChainableCommander, Redis } from 'ioredis';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { encodeEvent } from '../bus/event-codec.js';
import { ID_RE, MESSAGE_VERSION, toFieldList, toFieldMap } from '../bus/fields.js';
import { isFrameId } from '../domain/frame-id.js';
import { decodeReadyFrame } from '../bus/frame-codec.js';
import { ackAndAppend } from '../bus/handoff.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { addEvent } from '../bus/publish.js';
import { StreamConsumer, consumerName, type DeadLetterEntry, type Entry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import { describeError, PayloadExpiredError } from '../domain/errors.js';
import type { FrameMessage } from '../domain/frame.js';
import { ProcessorRegistry, type InstanceStats } from '../buffer/registry.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { GrayThumbnail, Processor, ProcessorOptions, ProcessorResult } from './processor.js';

export interface ProcessorRuntimeOptions {
  processor: Processor;
  /** Registry id; instances sharing an id share its stream (load sharing, failover by reclaim). */
  id: string;
  redis: Redis;
  blocking: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  /** Frames processed at once. */
  concurrency: number;
  /** Frames this instance holds (in its ready stream, not yet acked); default max(32, 8 x concurrency). */
  capacity?: number;
  frameTimeoutMs: number;
  heartbeatMs: number;
  processorTtlMs: number;
  streamMaxLen: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  /** Given to the processor's setup() and process() (`--opt key=value`). */
  options?: ProcessorOptions;
  /** Longest a stop waits for the frames in hand before handing them back (default min(frame timeout, 10 s)). */
  drainMs?: number;
}

class FrameTimeoutError extends Error {}

/**
 * Capture stores the thumbnail as bare gray bytes (`<payload key>:thumb`), its width set by
 * the capture config and its height keeping the frame's aspect ratio: find the width x
 * height that multiplies to the byte count with that aspect. Undefined when none fits.
 */
export function thumbnailOf(data: Buffer, frameWidth: number, frameHeight: number): GrayThumbnail | undefined {
  const aspect = frameHeight / frameWidth;
  const guess = Math.round(Math.sqrt(data.length / aspect));
  for (let d = 0; d <= 4; d++) {
    for (const w of d ? [guess - d, guess + d] : [guess]) {
      if (w < 1 || data.length % w !== 0) continue;
      const h = data.length / w;
      if (Math.abs(h - w * aspect) <= 2) return { data, width: w, height: h };
    }
  }
  return undefined;
}
class ShutdownError extends Error {}

const MAX_RESULT_BYTES = 60 * 1024;

/** The small scalar part of a result, kept on the processing.completed event (the store shows it). */
function summary(result: ProcessorResult): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(result)) {
    if (n >= 12) break;
    if (typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 80)) {
      out[k] = v;
      n++;
    } else if (Array.isArray(v)) {
      out[`${k}Count`] = v.length;
      n++;
    }
  }
  return n ? out : undefined;
}

interface InFlight {
  entry: Entry<FrameMessage>;
  /** When it was delivered here (its idle time is refreshed from then on). */
  startedAt: number;
  abort: AbortController;
}

/**
 * Runs one processor instance: registers it (heartbeats carry its load and failure counts,
 * which feed the buffer's circuit breaker), consumes its ready stream with `concurrency`
 * frames in flight, continues each frame's trace, enforces the per-frame timeout, and
 * commits each outcome with one Lua script: XACK (the guard: a frame another instance
 * already committed is not committed twice) + XDEL + result + lifecycle event. Frames held
 * by an instance that died are reclaimed by the other instances of its id after claimIdle
 * (the buffer re-routes them when none is left); a live instance keeps its long-running
 * frames from being reclaimed by refreshing their idle time.
 */
export class ProcessorRuntime {
  private readonly consumer: StreamConsumer<FrameMessage>;
  private readonly registry: ProcessorRegistry;
  readonly instance: string;
  private readonly capacity: number;
  private heartbeat?: NodeJS.Timeout;
  /** Frames delivered to this instance and not committed yet: running, or read ahead. */
  private readonly inFlight = new Map<string, InFlight>();
  /** Frames being processed (at most `concurrency`); the others in inFlight wait for a run slot. */
  private running = 0;
  private runWaiters: (() => void)[] = [];
  /**
   * Frames read ahead while `concurrency` run. 0: reading ahead made a frame that kills its
   * processor take the frames read ahead with it (their delivery counts grow with the
   * poison's, up to dead-letter), so a frame delivered here is a frame started here.
   */
  private readonly prefetch = 0;
  private readonly tasks = new Set<Promise<void>>();
  private slotWaiters: (() => void)[] = [];
  private readonly stop = new AbortController();
  private stopping = false;
  private closed?: Promise<void>;
  private stats = { completed: 0, failed: 0, consecutiveFailures: 0, lastError: undefined as string | undefined };
  private flushTimer?: NodeJS.Timeout;

  constructor(private readonly opts: ProcessorRuntimeOptions) {
    this.registry = new ProcessorRegistry(opts.redis, opts.keys, opts.processorTtlMs);
    this.instance = consumerName(opts.id);
    this.capacity = opts.capacity ?? Math.max(32, opts.concurrency * 8);
    if (opts.heartbeatMs > opts.claimIdleMs / 3) {
      opts.logger.warn(
        'the heartbeat interval is over a third of claimIdle: frames that run long may be reclaimed by other instances while still running',
        { heartbeat_ms: opts.heartbeatMs, claim_idle_ms: opts.claimIdleMs },
      );
    }
    this.consumer = new StreamConsumer<FrameMessage>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.ready(opts.id),
      group: GROUPS.processor,
      consumer: this.instance,
      decode: decodeReadyFrame,
      handle: (entries) => this.handle(entries),
      batchSize: () => this.holdLimit - this.inFlight.size,
      blockMs: opts.blockMs,
      claimIdleMs: opts.claimIdleMs,
      maxDeliveries: opts.maxDeliveries,
      metrics: opts.metrics,
      logger: opts.logger,
      canConsume: () => this.freeSlot(),
      deleteOnAck: true,
      onDeadLetter: (tx, bad) => this.failedOnDeadLetter(tx, bad),
    });
  }

  get stream(): string {
    return this.opts.keys.ready(this.opts.id);
  }

  async run(): Promise<void> {
    const { processor, id, logger } = this.opts;
    await processor.setup?.({ processorId: id, logger, options: this.opts.options ?? {} });
    await this.consumer.ensureGroup();
    await this.report();
    this.heartbeat = setInterval(() => {
      this.report().catch((err: unknown) => logger.warn('heartbeat failed', { error: err }));
      this.keepAlive().catch((err: unknown) => logger.warn('refreshing in-flight frames failed', { error: err }));
    }, this.opts.heartbeatMs);
    this.heartbeat.unref();
    logger.info('processor registered', {
      processor_id: id,
      instance: this.instance,
      capabilities: processor.capabilities,
      concurrency: this.opts.concurrency,
      capacity: this.capacity,
    });
    await this.consumer.run();
    await Promise.all(this.tasks);
  }

  /**
   * Unregister first (the buffer stops routing here), stop reading, finish the frames in
   * hand for up to drainMs, then hand back the rest (left pending: reclaimed elsewhere).
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      const { logger, id } = this.opts;
      clearInterval(this.heartbeat);
      clearTimeout(this.flushTimer);
      this.stopping = true;
      await this.registry.unregisterInstance(id, this.instance).catch(() => undefined);
      for (const w of this.slotWaiters.splice(0)) w();
      for (const w of this.runWaiters.splice(0)) w();
      await this.consumer.close();
      const drain = this.opts.drainMs ?? Math.min(this.opts.frameTimeoutMs, 10_000);
      const deadline = Date.now() + drain;
      while (this.tasks.size && Date.now() < deadline)
        await Promise.race([Promise.all(this.tasks), sleep(Math.max(0, deadline - Date.now()))]);
      if (this.tasks.size) {
        logger.warn('stopping with frames in hand: they stay pending and are reclaimed by another instance', { count: this.tasks.size });
        this.stop.abort();
        for (const w of this.runWaiters.splice(0)) w(); // frames read ahead: handed back unstarted
        await Promise.race([Promise.all(this.tasks), sleep(1000)]);
      }
      await this.opts.processor.teardown?.();
    })();
    return this.closed;
  }

  /** Published with each heartbeat: load and failure counts, for the buffer's routing and breaker. */
  private instanceStats(): InstanceStats {
    return {
      capacity: this.stopping ? 0 : this.capacity,
      concurrency: this.opts.concurrency,
      at: Date.now(),
      pid: process.pid,
      host: hostname(),
      inFlight: this.running,
      completed: this.stats.completed,
      failed: this.stats.failed,
      consecutiveFailures: this.stats.consecutiveFailures,
      lastError: this.stats.lastError?.slice(0, 300),
    };
  }

  private report(): Promise<void> {
    if (this.stopping) return Promise.resolve();
    const { id, processor, heartbeatMs } = this.opts;
    return this.registry.heartbeat({
      id,
      capabilities: processor.capabilities,
      heartbeatMs,
      instance: this.instance,
      stats: this.instanceStats(),
    });
  }

  /** A failure (or the first success after failures) is reported within ~100 ms, not at the next heartbeat. */
  private reportSoon(): void {
    if (this.flushTimer || this.stopping) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.report().catch((err: unknown) => this.opts.logger.warn('heartbeat failed', { error: err }));
    }, 100);
    this.flushTimer.unref();
  }

  /** Resets the idle time of frames in hand, so other instances do not reclaim frames of a live one. */
  private async keepAlive(): Promise<void> {
    const old = [...this.inFlight.values()].filter((f) => Date.now() - f.startedAt > this.opts.claimIdleMs / 3).map((f) => f.entry.id);
    if (!old.length) return;
    await this.opts.redis.xclaim(this.stream, GROUPS.processor, this.instance, 0, ...old, 'JUSTID');
  }

  private get holdLimit(): number {
    return this.opts.concurrency + this.prefetch;
  }

  private freeSlot(): Promise<boolean> | boolean {
    if (this.inFlight.size < this.holdLimit) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(), this.opts.blockMs);
      const done = () => {
        clearTimeout(timer);
        this.slotWaiters = this.slotWaiters.filter((w) => w !== done);
        resolve(this.inFlight.size < this.holdLimit && !this.stopping);
      };
      this.slotWaiters.push(done);
    });
  }

  /** Waits for one of the `concurrency` run slots; throws ShutdownError when the worker stops first. */
  private async acquireRun(): Promise<void> {
    while (this.running >= this.opts.concurrency) {
      if (this.stop.signal.aborted) throw new ShutdownError('the worker is stopping');
      await new Promise<void>((resolve) => this.runWaiters.push(resolve));
    }
    if (this.stop.signal.aborted) throw new ShutdownError('the worker is stopping');
    this.running++;
    this.opts.metrics.framesInFlight.set({ processor: this.opts.id }, this.running);
  }

  private releaseRun(): void {
    this.running--;
    this.opts.metrics.framesInFlight.set({ processor: this.opts.id }, this.running);
    this.runWaiters.shift()?.();
  }

  private handle(entries: Entry<FrameMessage>[]): Promise<void> {
    for (const entry of entries) {
      if (this.inFlight.has(entry.id)) continue; // our own frame, reclaimed back to us while still running
      const f: InFlight = { entry, startedAt: Date.now(), abort: new AbortController() };
      this.inFlight.set(entry.id, f);
      const task = this.runOne(f)
        .catch((err: unknown) =>
          this.opts.logger.error('frame handling failed; it stays pending and will be redelivered', {
            frame_id: entry.message.frameId,
            error: err,
          }),
        )
        .finally(() => {
          this.inFlight.delete(entry.id);
          this.tasks.delete(task);
          this.slotWaiters.shift()?.();
        });
      this.tasks.add(task);
    }
    return Promise.resolve();
  }

  private async runOne(f: InFlight): Promise<void> {
    try {
      await this.acquireRun();
    } catch (err) {
      if (err instanceof ShutdownError) return; // read ahead, never started: left pending, reclaimed elsewhere
      throw err;
    }
    try {
      await this.processOne(f);
    } finally {
      this.releaseRun();
    }
  }

  /** Retries a Redis write with backoff until it succeeds or the worker stops (then throws). */
  private async durably<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.stop.signal.aborted || (this.stopping && attempt >= 3)) throw err;
        this.opts.logger.warn(`${what} failed; retrying`, { error: err, attempt });
        await sleep(backoffDelay(attempt, 100, 5000), () => this.stop.signal.aborted);
      }
    }
  }

  private async processOne(f: InFlight): Promise<void> {
    const { redis, keys, tracer, metrics, logger, processor, id, streamMaxLen } = this.opts;
    const { entry } = f;
    const frame = entry.message;
    const stream = this.stream;
    const parent = extractContext(frame);
    const span = startMessagingSpan(tracer, 'process', stream, parent, {
      [ATTR.frameId]: frame.frameId,
      [ATTR.cameraId]: frame.cameraId,
      [ATTR.processorId]: id,
      [ATTR.capability]: frame.capability,
      [ATTR.messagingConsumerGroup]: GROUPS.processor,
      [ATTR.messagingMessageId]: entry.id,
      [ATTR.attempt]: entry.deliveries,
    });
    const base = {
      frameId: frame.frameId,
      cameraId: frame.cameraId,
      source: 'process',
      processorId: id,
      capability: frame.capability,
      attempt: entry.deliveries,
      ...spanIds(span),
    };
    try {
      await this.durably('publishing processing.started', () =>
        redis.xadd(keys.events, 'MAXLEN', '~', streamMaxLen, '*', ...encodeEvent(makeEvent({ ...base, type: 'processing.started' }))),
      );
      const started = performance.now();
      let result: ProcessorResult | undefined;
      let resultJson = '{}';
      let error: string | undefined;
      let dropReason: string | undefined;
      const run = tracer.startSpan(
        `run ${processor.name}`,
        { attributes: { [ATTR.frameId]: frame.frameId, [ATTR.processorId]: id } },
        trace.setSpan(parent, span),
      );
      try {
        result = await this.runProcessor(f);
        resultJson = JSON.stringify(result ?? {});
        if (resultJson.length > MAX_RESULT_BYTES)
          throw new Error(`result too large: ${resultJson.length} bytes (limit ${MAX_RESULT_BYTES})`);
        run.end();
      } catch (err) {
        endSpan(run, err);
        if (err instanceof ShutdownError) {
          // Not the frame's fault: leave it pending for another instance.
          span.setAttribute('detektr.outcome', 'handed_back');
          span.end();
          return;
        }
        if (err instanceof PayloadExpiredError) dropReason = err.message;
        else error = err instanceof FrameTimeoutError ? err.message : describeError(err);
      }
      const durationMs = performance.now() - started;
      const event =
        dropReason !== undefined
          ? makeEvent({ ...base, type: 'frame.dropped', reason: dropReason })
          : error === undefined
            ? makeEvent({ ...base, type: 'processing.completed', durationMs, data: result ? summary(result) : undefined })
            : makeEvent({ ...base, type: 'processing.failed', durationMs, error });
      const targets = [{ stream: keys.events, fields: encodeEvent(event) }];
      if (error === undefined && dropReason === undefined) {
        targets.unshift({
          stream: keys.results,
          fields: toFieldList({
            v: MESSAGE_VERSION,
            frame_id: frame.frameId,
            camera_id: frame.cameraId,
            processor_id: id,
            capability: frame.capability,
            attempt: entry.deliveries,
            duration_ms: Math.round(durationMs * 1000) / 1000,
            at: Date.now(),
            result: resultJson,
            ...injectContext(trace.setSpan(parent, span)),
          }),
        });
      }
      const [committed] = await this.durably('committing the outcome', () =>
        ackAndAppend(redis, keys.counters, [{ source: stream, group: GROUPS.processor, id: entry.id, del: true, targets }], streamMaxLen),
      );
      if (!committed) {
        metrics.duplicatesSuppressed.inc({ processor: id });
        logger.info('frame already committed by another instance: outcome discarded', {
          frame_id: frame.frameId,
          entry_id: entry.id,
          attempt: entry.deliveries,
        });
        span.setAttribute('detektr.outcome', 'duplicate');
        span.end();
        return;
      }
      if (dropReason !== undefined) {
        metrics.framesDropped.inc({ reason: 'payload_expired' });
        logger.warn('frame dropped', { frame_id: frame.frameId, trace_id: span.spanContext().traceId, reason: dropReason });
        endSpan(span, dropReason);
        return;
      }
      const outcome = error === undefined ? 'completed' : 'failed';
      metrics.framesProcessed.inc({ processor: id, outcome });
      metrics.processingSeconds.observe({ processor: id }, durationMs / 1000);
      if (error === undefined) {
        metrics.endToEndSeconds.observe({ processor: id }, (Date.now() - frame.capturedAt) / 1000);
        this.stats.completed++;
        if (this.stats.consecutiveFailures > 0) this.reportSoon();
        this.stats.consecutiveFailures = 0;
      } else {
        this.stats.failed++;
        this.stats.consecutiveFailures++;
        this.stats.lastError = error;
        this.reportSoon();
        logger.warn('processing failed', {
          frame_id: frame.frameId,
          trace_id: span.spanContext().traceId,
          error,
          attempt: entry.deliveries,
        });
      }
      endSpan(span, error);
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  private async runProcessor(f: InFlight): Promise<ProcessorResult> {
    const { processor, redis, id, logger, frameTimeoutMs } = this.opts;
    const frame = f.entry.message;
    const abort = f.abort;
    const onStop = () => abort.abort(new ShutdownError('the worker is stopping'));
    this.stop.signal.addEventListener('abort', onStop);
    let timer: NodeJS.Timeout | undefined;
    try {
      let image: Buffer | undefined;
      let thumbnail: GrayThumbnail | undefined;
      if (processor.usesThumbnail) {
        const data = await redis.getBuffer(`${frame.payloadKey}:thumb`);
        thumbnail = data ? thumbnailOf(data, frame.width, frame.height) : undefined;
      }
      if (processor.needsImage && !thumbnail) {
        image = (await redis.getBuffer(frame.payloadKey)) ?? undefined;
        if (!image) throw new PayloadExpiredError(`payload expired before processing (payload TTL): ${frame.payloadKey}`);
      }
      const stopped = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          abort.abort(new FrameTimeoutError(`timed out after ${frameTimeoutMs} ms`));
        }, frameTimeoutMs);
        abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
      });
      stopped.catch(() => undefined);
      return await Promise.race([
        Promise.resolve(
          processor.process(
            { ...frame, image, thumbnail },
            { processorId: id, logger, signal: abort.signal, attempt: f.entry.deliveries, options: this.opts.options ?? {} },
          ),
        ),
        stopped,
      ]);
    } finally {
      clearTimeout(timer);
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  /** A frame dead-lettered here (it kept killing its processor) ends its stage as processing.failed. */
  private failedOnDeadLetter(tx: ChainableCommander, bad: DeadLetterEntry[]): void {
    const { keys, id, streamMaxLen, metrics } = this.opts;
    for (const b of bad) {
      let map: Map<string, string>;
      try {
        map = toFieldMap(b.fields);
      } catch {
        continue;
      }
      const frameId = map.get('frame_id');
      const cameraId = map.get('camera_id');
      if (!frameId || !cameraId || !isFrameId(frameId) || !ID_RE.test(cameraId)) continue;
      const capability = map.get('capability');
      const error = b.reason.startsWith('malformed')
        ? `dead-lettered: ${b.reason}`
        : `dead-lettered after ${b.deliveries} deliveries (max ${this.opts.maxDeliveries}): the frame keeps killing its processor`;
      addEvent(
        tx,
        keys,
        makeEvent({
          type: 'processing.failed',
          frameId,
          cameraId,
          source: 'process',
          processorId: id,
          capability: capability && ID_RE.test(capability) ? capability : undefined,
          attempt: Math.max(1, b.deliveries),
          error,
        }),
        streamMaxLen,
      );
      metrics.framesProcessed.inc({ processor: id, outcome: 'dead_lettered' });
    }
  }
}
