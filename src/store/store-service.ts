import type { Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import type pg from 'pg';
import { decodeBusEvent, eventTraceparent, isCameraEvent, type BusEvent } from '../bus/event-codec.js';
import type { FieldList } from '../bus/fields.js';
import type { CameraEvent } from '../domain/camera-events.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { onePerShard, type ShardSet } from '../bus/shards.js';
import { backoffDelay, sleep } from '../bus/backoff.js';
import { StreamConsumer, consumerName, type Entry } from '../bus/stream-consumer.js';
import type { LifecycleEvent } from '../domain/events.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, startMessagingSpan } from '../telemetry/tracing.js';
import { validateCameraEvent, validateEvent, writeBatch } from './event-writer.js';

export interface StoreOptions {
  redis: RedisClient;
  /** One dedicated connection per shard for its blocking reads (same order as shards.all). */
  blocking: RedisClient[];
  /** Every shard's events stream is projected, each by its own consumer, into the one pool. */
  shards: ShardSet;
  pool: pg.Pool;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  /** Sub-batches written concurrently (see writeBatch); default 2. */
  writers?: number;
}

/**
 * Decodes an entry of the events stream (frame or camera lifecycle) and checks it the way
 * the writer will, so an entry the schema would reject is dead-lettered at once instead of
 * failing its batch on every retry.
 */
export function decodeStoredEvent(fields: FieldList): BusEvent {
  const e = decodeBusEvent(fields);
  if (isCameraEvent(e)) validateCameraEvent(e);
  else validateEvent(e);
  return e;
}

/**
 * Projects detektr:events into PostgreSQL: frame lifecycle events into frame_events (and
 * their projections), camera lifecycle events into camera_events.
 *
 * Write-behind, one batch deep: handling batch N waits for batch N-1 to be committed and
 * acked, starts writing N, and returns, so the consumer reads and decodes N+1 from Redis
 * while PostgreSQL writes N. This is safe because the projection does not depend on the
 * order of arrival and every write is idempotent by event id. A batch is acked (XACK) only
 * after every transaction that wrote it committed. While the database is away the batch in
 * flight is retried with backoff (up to 10 s apart) and the consumer waits for it (the
 * stream holds the rest), so nothing is lost and the store catches up when the database
 * returns; a retry after a partial or unacknowledged commit writes nothing twice. On
 * close, a batch that cannot be written stays pending in the group, for this store's next
 * run or another consumer (XAUTOCLAIM) to take over.
 */
export class StoreService {
  private readonly parts: ShardStore[];

  constructor(opts: StoreOptions) {
    onePerShard('store', opts.shards, opts.blocking);
    this.parts = opts.shards.all.map((keys, i) => new ShardStore({ ...opts, keys, blocking: opts.blocking[i] }));
  }

  /** When a batch was last committed, by any shard's consumer. */
  get lastCommitAt(): number | undefined {
    const all = this.parts.map((p) => p.lastCommitAt ?? 0);
    return Math.max(...all) || undefined;
  }

  /** Consecutive failed batch writes of the shard failing longest (0 while the database answers). */
  get failures(): number {
    return Math.max(...this.parts.map((p) => p.failures));
  }

  async run(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.run()));
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close()));
  }
}

type ShardStoreOptions = Omit<StoreOptions, 'shards' | 'blocking'> & { keys: RedisKeys; blocking: RedisClient };

/** One shard's events stream into PostgreSQL (the store runs one per shard, writing side by side). */
class ShardStore {
  private readonly consumer: StreamConsumer<BusEvent>;
  private inflight?: Promise<void>;
  private closing = false;
  lastCommitAt?: number;
  /** Consecutive failed batch writes (0 while the database answers). */
  failures = 0;

  constructor(private readonly opts: ShardStoreOptions) {
    this.consumer = new StreamConsumer<BusEvent>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.events,
      group: GROUPS.store,
      consumer: consumerName('store'),
      decode: decodeStoredEvent,
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

  async close(): Promise<void> {
    this.closing = true;
    await this.consumer.close();
    await this.inflight;
  }

  private async handle(entries: Entry<BusEvent>[]): Promise<void> {
    await this.inflight;
    this.inflight = this.writeUntilDone(entries);
  }

  /** Writes and acks the batch, retrying with backoff until it succeeds or the store closes. */
  private async writeUntilDone(entries: Entry<BusEvent>[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.writeAndAck(entries);
        return;
      } catch (err) {
        this.failures++;
        this.opts.metrics.storeErrors.inc();
        const fields = { entries: entries.length, attempt, error: err };
        if (attempt === 1) this.opts.logger.warn('writing to PostgreSQL failed; retrying the batch until it succeeds', fields);
        else this.opts.logger.debug('batch write failed again', fields);
        if (this.closing) {
          this.opts.logger.warn('stopping with a batch not written: it stays pending in the consumer group', { entries: entries.length });
          return;
        }
        await sleep(backoffDelay(attempt, 100, 10_000), () => this.closing);
      }
    }
  }

  private async writeAndAck(entries: Entry<BusEvent>[]): Promise<void> {
    const { pool, tracer, metrics, keys, logger } = this.opts;
    const frames: LifecycleEvent[] = [];
    const cameras: CameraEvent[] = [];
    for (const { message } of entries) {
      if (isCameraEvent(message)) cameras.push(message);
      else frames.push(message);
    }
    // One CONSUMER span per frame event, child of the span that emitted it: the frame's
    // trace then reaches into the store.
    const spans = frames.map((e) =>
      startMessagingSpan(tracer, 'process', keys.events, extractContext({ traceparent: eventTraceparent(e) }), {
        [ATTR.frameId]: e.frameId,
        [ATTR.cameraId]: e.cameraId,
        [ATTR.eventType]: e.type,
        [ATTR.messagingConsumerGroup]: GROUPS.store,
        [ATTR.messagingBatchCount]: entries.length,
      }),
    );
    const started = performance.now();
    try {
      const { inserted, cameraInserted } = await writeBatch(pool, frames, cameras, { parallelism: this.opts.writers });
      metrics.eventsStored.inc(inserted + cameraInserted);
      metrics.storeBatchSeconds.observe((performance.now() - started) / 1000);
    } catch (err) {
      for (const s of spans) endSpan(s, err);
      throw err;
    }
    if (this.failures > 0) logger.info('PostgreSQL writes succeed again', { failedAttempts: this.failures });
    this.failures = 0;
    this.lastCommitAt = Date.now();
    for (const s of spans) s.end();
    // After COMMIT. If the ack fails the batch is written again (inserting nothing) and acked.
    await this.consumer.ack(entries.map((e) => e.id));
  }
}
