import type { Tracer } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { decodeEvent } from '../bus/event-codec.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { StreamConsumer, consumerName, type Entry } from '../bus/stream-consumer.js';
import type { LifecycleEvent } from '../domain/events.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, startMessagingSpan } from '../telemetry/tracing.js';
import { writeEvents } from './event-writer.js';

export interface StoreOptions {
  redis: Redis;
  blocking: Redis;
  keys: RedisKeys;
  pool: pg.Pool;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
}

function traceparentOf(e: LifecycleEvent): string | undefined {
  return e.traceId && e.spanId ? `00-${e.traceId}-${e.spanId}-${e.sampled === false ? '00' : '01'}` : undefined;
}

/**
 * Projects detektr:events into PostgreSQL: one transaction per batch, acked only after
 * COMMIT. While the database is away the same batch is retried with backoff (the stream
 * holds the rest), so nothing is lost and the store catches up when it returns.
 */
export class StoreService {
  private readonly consumer: StreamConsumer<LifecycleEvent>;
  lastCommitAt?: number;

  constructor(private readonly opts: StoreOptions) {
    this.consumer = new StreamConsumer<LifecycleEvent>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.events,
      group: GROUPS.store,
      consumer: consumerName('store'),
      decode: decodeEvent,
      handle: (entries) => this.handle(entries),
      batchSize: opts.batchSize,
      blockMs: opts.blockMs,
      claimIdleMs: opts.claimIdleMs,
      maxDeliveries: opts.maxDeliveries,
      metrics: opts.metrics,
      logger: opts.logger,
    });
  }

  run(): Promise<void> {
    return this.consumer.run();
  }

  close(): Promise<void> {
    return this.consumer.close();
  }

  private async handle(entries: Entry<LifecycleEvent>[]): Promise<void> {
    const { pool, tracer, metrics, keys } = this.opts;
    // One CONSUMER span per event, child of the span that emitted it: the frame's trace
    // then reaches into the store.
    const spans = entries.map(({ message: e }) =>
      startMessagingSpan(tracer, 'process', keys.events, extractContext({ traceparent: traceparentOf(e) }), {
        [ATTR.frameId]: e.frameId,
        [ATTR.cameraId]: e.cameraId,
        [ATTR.eventType]: e.type,
        [ATTR.messagingConsumerGroup]: GROUPS.store,
        [ATTR.messagingBatchCount]: entries.length,
      }),
    );
    const started = performance.now();
    let client: pg.PoolClient | undefined;
    let failed = false;
    try {
      client = await pool.connect();
      await client.query('BEGIN');
      const { inserted } = await writeEvents(client, entries.map((e) => e.message));
      await client.query('COMMIT');
      metrics.eventsStored.inc(inserted);
      metrics.storeBatchSeconds.observe((performance.now() - started) / 1000);
      this.lastCommitAt = Date.now();
    } catch (err) {
      failed = true;
      await client?.query('ROLLBACK').catch(() => undefined);
      metrics.storeErrors.inc();
      for (const s of spans) endSpan(s, err);
      throw err;
    } finally {
      // A client that failed may hold a broken connection: destroy it rather than reuse it.
      client?.release(failed);
    }
    await this.consumer.ack(entries.map((e) => e.id));
    for (const s of spans) s.end();
  }
}
