import { hostname } from 'node:os';
import { trace, type Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { encodeEvent } from '../bus/event-codec.js';
import { decodeReadyFrame } from '../bus/frame-codec.js';
import { ackAndAppend } from '../bus/handoff.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { onePerShard, type ShardSet } from '../bus/shards.js';
import { StreamConsumer, consumerName, type Entry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import { describeError, PayloadExpiredError } from '../domain/errors.js';
import type { FrameMessage } from '../domain/frame.js';
import { ProcessorRegistry, type InstanceStats } from '../buffer/registry.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import { addDeadLetterFailures } from './dead-letter-events.js';
import { outcomeTargets, resultJsonOf, type FrameOutcome } from './outcome.js';
import type { Processor, ProcessorOptions } from './processor.js';
import { FrameTimeoutError, runFrame, ShutdownError } from './run-frame.js';
import { RunSlots } from './run-slots.js';

export interface ProcessorRuntimeOptions {
  processor: Processor;
  /** Registry id; instances sharing an id share its stream (load sharing, failover by reclaim). */
  id: string;
  redis: RedisClient;
  /** One dedicated connection per shard for its blocking reads (same order as shards.all). */
  blocking: RedisClient[];
  /** The instance reads its ready stream in every shard; a frame's outcome goes to the frame's shard. */
  shards: ShardSet;
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

interface InFlight {
  entry: Entry<FrameMessage>;
  /** The shard the frame came from: its outcome is committed there. */
  keys: RedisKeys;
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
  /** One consumer per shard, on that shard's ready stream of this processor id. */
  private readonly consumers: StreamConsumer<FrameMessage>[];
  private readonly registry: ProcessorRegistry;
  readonly instance: string;
  private readonly capacity: number;
  private heartbeat?: NodeJS.Timeout;
  /** Frames delivered to this instance and not committed yet: running, or read ahead (by `<shard>/<entry id>`). */
  private readonly inFlight = new Map<string, InFlight>();
  /** Frames being processed (at most `concurrency`); the others in inFlight wait for a run slot. */
  private readonly slots: RunSlots;
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
    onePerShard('processor', opts.shards, opts.blocking);
    this.registry = new ProcessorRegistry(opts.redis, opts.shards.global, opts.processorTtlMs);
    this.instance = consumerName(opts.id);
    this.capacity = opts.capacity ?? Math.max(32, opts.concurrency * 8);
    opts.metrics.seedProcessor(opts.id);
    this.slots = new RunSlots(opts.concurrency, this.stop.signal, (n) => opts.metrics.framesInFlight.set({ processor: opts.id }, n));
    if (opts.heartbeatMs > opts.claimIdleMs / 3) {
      opts.logger.warn(
        'the heartbeat interval is over a third of claimIdle: frames that run long may be reclaimed by other instances while still running',
        { heartbeat_ms: opts.heartbeatMs, claim_idle_ms: opts.claimIdleMs },
      );
    }
    this.consumers = opts.shards.all.map(
      (keys, shard) =>
        new StreamConsumer<FrameMessage>({
          redis: opts.redis,
          blocking: opts.blocking[shard],
          keys,
          stream: keys.ready(opts.id),
          group: GROUPS.processor,
          consumer: this.instance,
          decode: decodeReadyFrame,
          handle: (entries) => this.handle(entries, keys),
          batchSize: () => this.holdLimit - this.inFlight.size,
          blockMs: opts.blockMs,
          claimIdleMs: opts.claimIdleMs,
          maxDeliveries: opts.maxDeliveries,
          metrics: opts.metrics,
          logger: opts.logger,
          canConsume: () => this.freeSlot(),
          deleteOnAck: true,
          onDeadLetter: (tx, bad) => addDeadLetterFailures(tx, bad, { ...opts, keys }),
        }),
    );
  }

  /** This processor's ready stream in every shard. */
  get streams(): string[] {
    return this.opts.shards.all.map((k) => k.ready(this.opts.id));
  }

  async run(): Promise<void> {
    const { processor, id, logger } = this.opts;
    await processor.setup?.({ processorId: id, logger, options: this.opts.options ?? {} });
    await Promise.all(this.consumers.map((c) => c.ensureGroup()));
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
    await Promise.all(this.consumers.map((c) => c.run()));
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
      this.slots.wakeAll();
      await Promise.all(this.consumers.map((c) => c.close()));
      const drain = this.opts.drainMs ?? Math.min(this.opts.frameTimeoutMs, 10_000);
      const deadline = Date.now() + drain;
      while (this.tasks.size && Date.now() < deadline)
        await Promise.race([Promise.all(this.tasks), sleep(Math.max(0, deadline - Date.now()))]);
      if (this.tasks.size) {
        logger.warn('stopping with frames in hand: they stay pending and are reclaimed by another instance', { count: this.tasks.size });
        this.stop.abort();
        this.slots.wakeAll(); // frames read ahead: handed back unstarted
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
      inFlight: this.slots.running,
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
    const old = new Map<RedisKeys, string[]>();
    for (const f of this.inFlight.values()) {
      if (Date.now() - f.startedAt > this.opts.claimIdleMs / 3) old.set(f.keys, [...(old.get(f.keys) ?? []), f.entry.id]);
    }
    // call(), not xclaim(): the typed overloads do not resolve on a Redis | Cluster union.
    for (const [keys, ids] of old)
      await this.opts.redis.call('XCLAIM', keys.ready(this.opts.id), GROUPS.processor, this.instance, 0, ...ids, 'JUSTID');
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

  private handle(entries: Entry<FrameMessage>[], keys: RedisKeys): Promise<void> {
    for (const entry of entries) {
      const key = `${keys.shard}/${entry.id}`;
      if (this.inFlight.has(key)) continue; // our own frame, reclaimed back to us while still running
      const f: InFlight = { entry, keys, startedAt: Date.now(), abort: new AbortController() };
      this.inFlight.set(key, f);
      const task = this.runOne(f)
        .catch((err: unknown) =>
          this.opts.logger.error('frame handling failed; it stays pending and will be redelivered', {
            frame_id: entry.message.frameId,
            error: err,
          }),
        )
        .finally(() => {
          this.inFlight.delete(key);
          this.tasks.delete(task);
          this.slotWaiters.shift()?.();
        });
      this.tasks.add(task);
    }
    return Promise.resolve();
  }

  private async runOne(f: InFlight): Promise<void> {
    try {
      await this.slots.acquire();
    } catch (err) {
      if (err instanceof ShutdownError) return; // read ahead, never started: left pending, reclaimed elsewhere
      throw err;
    }
    try {
      await this.processOne(f);
    } finally {
      this.slots.release();
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
    const { redis, tracer, metrics, logger, processor, id, streamMaxLen } = this.opts;
    const { entry, keys } = f;
    const frame = entry.message;
    const stream = keys.ready(id);
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
      let outcome: FrameOutcome;
      const run = tracer.startSpan(
        `run ${processor.name}`,
        { attributes: { [ATTR.frameId]: frame.frameId, [ATTR.processorId]: id } },
        trace.setSpan(parent, span),
      );
      try {
        const result = await runFrame(this.opts, frame, entry.deliveries, f.abort, this.stop.signal);
        outcome = { kind: 'completed', result, resultJson: resultJsonOf(result) };
        run.end();
      } catch (err) {
        endSpan(run, err);
        if (err instanceof ShutdownError) {
          // Not the frame's fault: leave it pending for another instance.
          span.setAttribute('detektr.outcome', 'handed_back');
          span.end();
          return;
        }
        outcome =
          err instanceof PayloadExpiredError
            ? { kind: 'dropped', reason: err.message }
            : { kind: 'failed', error: err instanceof FrameTimeoutError ? err.message : describeError(err) };
      }
      const durationMs = performance.now() - started;
      const targets = outcomeTargets({
        keys,
        processorId: id,
        frame,
        attempt: entry.deliveries,
        base,
        durationMs,
        outcome,
        traceContext: injectContext(trace.setSpan(parent, span)),
      });
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
      if (outcome.kind === 'dropped') {
        metrics.framesDropped.inc({ reason: 'payload_expired' });
        logger.warn('frame dropped', { frame_id: frame.frameId, trace_id: span.spanContext().traceId, reason: outcome.reason });
        endSpan(span, outcome.reason);
        return;
      }
      const error = outcome.kind === 'failed' ? outcome.error : undefined;
      metrics.framesProcessed.inc({ processor: id, outcome: outcome.kind });
      metrics.processingSeconds.observe({ processor: id }, durationMs / 1000, span.spanContext());
      if (error === undefined) {
        metrics.endToEndSeconds.observe({ processor: id }, (Date.now() - frame.capturedAt) / 1000, span.spanContext());
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
}
