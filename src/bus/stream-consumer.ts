import { hostname } from 'node:os';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './redis.js';
import { describeError, MalformedMessageError } from '../domain/errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { deadLetterFields } from './dead-letter-entry.js';
import type { FieldList } from './fields.js';
import { COUNTER_FIELDS, type RedisKeys } from './keys.js';
import { backoffDelay, sleep } from './backoff.js';
import { countTrimmedUnread } from './trim-loss.js';

export interface Entry<T> {
  id: string;
  message: T;
  /** 1 for a first delivery; more when reclaimed from a consumer that died. */
  deliveries: number;
}

/** An entry on its way to the dead-letter stream. */
export interface DeadLetterEntry {
  id: string;
  fields: FieldList;
  reason: string;
  deliveries: number;
}

export interface StreamConsumerOptions<T> {
  redis: RedisClient;
  /** Dedicated connection for XREADGROUP BLOCK, so a blocked read never delays other calls. */
  blocking: RedisClient;
  keys: RedisKeys;
  stream: string;
  group: string;
  consumer: string;
  decode: (fields: FieldList) => T;
  /**
   * Handles a batch. It must ack what it handled (ack/ackInto), ideally in the same
   * MULTI as its output so hand-off and ack are one atomic step. A throw means "could not
   * make the work durable": the same batch is retried with backoff, never skipped.
   */
  handle: (entries: Entry<T>[], consumer: StreamConsumer<T>) => Promise<void>;
  /** Entries per read; a function is asked before each read (e.g. the free slots of a worker). */
  batchSize: number | (() => number);
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  metrics?: Metrics;
  logger?: Logger;
  /** Called before each read; returning false pauses consumption (e.g. no processors yet). */
  canConsume?: () => boolean | Promise<boolean>;
  /**
   * Adds to the MULTI that dead-letters entries (e.g. a lifecycle event that ends the
   * frame's stage), so the entry's end is recorded in the same atomic step as its move.
   */
  onDeadLetter?: (tx: ChainableCommander, entries: DeadLetterEntry[]) => void;
  /**
   * XDEL entries when acking them: the stream then holds only entries not yet handled, so
   * its XLEN is the consumer's queue depth (the processors' ready streams work this way).
   */
  deleteOnAck?: boolean;
}

export function consumerName(role: string): string {
  return `${role}-${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
}

type RawEntry = [id: string, fields: FieldList | null];

/**
 * A consumer-group worker over one stream: blocking reads on a dedicated connection,
 * reclaim of stuck entries (XAUTOCLAIM), dead-letter after maxDeliveries, malformed
 * entries dead-lettered and counted, never a crash on bad input. `run()` resolves after
 * `close()` once the batch in hand is finished.
 */
export class StreamConsumer<T> {
  private closing = false;
  private running?: Promise<void>;
  private lastClaim = 0;
  private claimCursor = '0-0';
  private groupReady = false;

  constructor(readonly opts: StreamConsumerOptions<T>) {
    opts.metrics?.seedStream(opts.stream);
  }

  get stream(): string {
    return this.opts.stream;
  }

  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.running;
  }

  async ensureGroup(): Promise<void> {
    try {
      // '0', not '$': entries published before the group existed must still be consumed.
      await this.opts.redis.xgroup('CREATE', this.opts.stream, this.opts.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.groupReady = true;
  }

  async ack(ids: string[]): Promise<number> {
    if (!ids.length) return 0;
    if (!this.opts.deleteOnAck) return this.opts.redis.xack(this.opts.stream, this.opts.group, ...ids);
    const res = await this.ackInto(this.opts.redis.multi(), ids).exec();
    return Number(res?.[0]?.[1] ?? 0);
  }

  ackInto(tx: ChainableCommander, ids: string[]): ChainableCommander {
    if (!ids.length) return tx;
    tx.xack(this.opts.stream, this.opts.group, ...ids);
    return this.opts.deleteOnAck ? tx.xdel(this.opts.stream, ...ids) : tx;
  }

  private currentBatchSize(): number {
    const b = this.opts.batchSize;
    return Math.max(1, Math.floor(typeof b === 'function' ? b() : b));
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      try {
        if (!this.groupReady) await this.ensureGroup();
        if (this.opts.canConsume && !(await this.opts.canConsume())) {
          await sleep(Math.min(this.opts.blockMs, 250), () => this.closing);
          continue;
        }
        const claimed = await this.maybeReclaim();
        const raw = claimed ?? (await this.readNew());
        failures = 0;
        if (raw.length) await this.dispatch(raw, claimed !== undefined);
      } catch (err) {
        failures++;
        const msg = (err as Error).message ?? String(err);
        if (msg.includes('NOGROUP')) this.groupReady = false; // stream or group vanished (Redis restart)
        this.opts.metrics?.readErrors.inc({ stream: this.opts.stream });
        this.opts.logger?.warn('stream read failed; retrying', { stream: this.opts.stream, error: err, attempt: failures });
        await sleep(backoffDelay(failures, 100, 5000), () => this.closing);
      }
    }
    await this.forgetSelfIfIdle();
  }

  private async readNew(): Promise<RawEntry[]> {
    const res = (await this.opts.blocking.xreadgroup(
      'GROUP',
      this.opts.group,
      this.opts.consumer,
      'COUNT',
      this.currentBatchSize(),
      'BLOCK',
      this.opts.blockMs,
      'STREAMS',
      this.opts.stream,
      '>',
    )) as [string, RawEntry[]][] | null;
    return res?.[0]?.[1] ?? [];
  }

  /** Reclaims entries idle longer than claimIdleMs, at most every claimIdleMs / 2. */
  private async maybeReclaim(): Promise<RawEntry[] | undefined> {
    const now = Date.now();
    if (now - this.lastClaim < Math.max(100, this.opts.claimIdleMs / 2)) return undefined;
    const [next, entries, deleted] = (await this.opts.redis.xautoclaim(
      this.opts.stream,
      this.opts.group,
      this.opts.consumer,
      this.opts.claimIdleMs,
      this.claimCursor,
      'COUNT',
      this.currentBatchSize(),
    )) as [string, RawEntry[], string[]?];
    this.claimCursor = next;
    if (next === '0-0') {
      this.lastClaim = now; // a full pass done; else continue the scan next turn
      await this.countTrimmedUnread();
    }
    if (deleted?.length) {
      // Trimmed by MAXLEN while pending: the entry is gone, so say so loudly and count it.
      this.opts.metrics?.entriesDeadLettered.inc({ stream: this.opts.stream, reason: 'trimmed_while_pending' }, deleted.length);
      this.opts.logger?.error('pending entries were trimmed before being handled', {
        stream: this.opts.stream,
        ids: deleted.slice(0, 20),
        count: deleted.length,
      });
      await this.opts.redis.hincrby(this.opts.keys.counters, COUNTER_FIELDS.trimmed(this.opts.stream), deleted.length);
    }
    if (!entries.length) return undefined;
    this.opts.metrics?.entriesReclaimed.inc({ stream: this.opts.stream }, entries.length);
    this.opts.logger?.info('reclaimed pending entries from an idle consumer', { stream: this.opts.stream, count: entries.length });
    return entries;
  }

  /** Entries MAXLEN trimmed before this group read them: gone, so say so loudly and count them. */
  private async countTrimmedUnread(): Promise<void> {
    if (this.opts.deleteOnAck) return; // XDEL on the stream: RedisClient cannot tell (and the writers check room instead)
    const lost = await countTrimmedUnread(this.opts.redis, this.opts.stream, this.opts.group, this.opts.keys.counters);
    if (lost <= 0) return;
    this.opts.metrics?.entriesDeadLettered.inc({ stream: this.opts.stream, reason: 'trimmed_unread' }, lost);
    this.opts.logger?.error('entries were trimmed (stream MAXLEN) before this group read them: they are lost', {
      stream: this.opts.stream,
      group: this.opts.group,
      count: lost,
    });
  }

  private async deliveryCounts(ids: string[]): Promise<Map<string, number>> {
    const tx = this.opts.redis.pipeline();
    for (const id of ids) tx.xpending(this.opts.stream, this.opts.group, id, id, 1);
    const res = (await tx.exec()) ?? [];
    const counts = new Map<string, number>();
    res.forEach(([, rows], i) => {
      const row = (rows as [string, string, number, number][])[0];
      counts.set(ids[i], row ? Number(row[3]) : 1);
    });
    return counts;
  }

  private async dispatch(raw: RawEntry[], reclaimed: boolean): Promise<void> {
    const counts = reclaimed ? await this.deliveryCounts(raw.map(([id]) => id)) : undefined;
    const good: Entry<T>[] = [];
    const bad: DeadLetterEntry[] = [];
    for (const [id, fields] of raw) {
      const deliveries = counts?.get(id) ?? 1;
      if (fields === null) continue; // deleted entry still in the PEL: nothing to hand over
      if (deliveries > this.opts.maxDeliveries) {
        bad.push({ id, fields, reason: `delivered ${deliveries} times (max ${this.opts.maxDeliveries})`, deliveries });
        continue;
      }
      try {
        good.push({ id, message: this.opts.decode(fields), deliveries });
      } catch (err) {
        // Any decode error is the entry's: retrying the batch would not change it, and would
        // at last dead-letter the good entries beside it.
        const why = err instanceof MalformedMessageError ? err.message : describeError(err);
        this.opts.metrics?.entriesMalformed.inc({ stream: this.opts.stream });
        bad.push({ id, fields, reason: `malformed: ${why}`, deliveries });
      }
    }
    const nullIds = raw.filter(([, f]) => f === null).map(([id]) => id);
    if (bad.length || nullIds.length) await this.deadLetter(bad, nullIds);
    let attempt = 0;
    while (good.length) {
      try {
        await this.opts.handle(good, this);
        return;
      } catch (err) {
        attempt++;
        this.opts.logger?.warn('batch handling failed; retrying the same batch', {
          stream: this.opts.stream,
          entries: good.length,
          attempt,
          error: err,
        });
        if (this.closing) return; // left pending: another consumer reclaims it after claimIdle
        await sleep(backoffDelay(attempt, 100, 10_000), () => this.closing);
      }
    }
  }

  private async deadLetter(bad: DeadLetterEntry[], nullIds: string[]): Promise<void> {
    const { redis, keys, stream, group } = this.opts;
    const tx = redis.multi();
    for (const b of bad) {
      tx.xadd(
        keys.deadLetter,
        'MAXLEN',
        '~',
        100_000,
        '*',
        ...deadLetterFields({ stream, id: b.id, group, reason: b.reason, deliveries: b.deliveries, fields: b.fields }),
      );
      tx.hincrby(keys.counters, COUNTER_FIELDS.deadLetter(stream), 1);
      this.opts.metrics?.entriesDeadLettered.inc({ stream, reason: b.reason.startsWith('malformed') ? 'malformed' : 'max_deliveries' });
      this.opts.logger?.warn('entry dead-lettered', { stream, entry_id: b.id, reason: b.reason });
    }
    if (bad.length) this.opts.onDeadLetter?.(tx, bad);
    this.ackInto(tx, [...bad.map((b) => b.id), ...nullIds]);
    await tx.exec();
  }

  /** A consumer that leaves nothing pending removes itself, so XINFO shows live consumers only. */
  private async forgetSelfIfIdle(): Promise<void> {
    try {
      const pending = (await this.opts.redis.xpending(this.opts.stream, this.opts.group, '-', '+', 1, this.opts.consumer)) as unknown[];
      if (pending.length === 0) await this.opts.redis.xgroup('DELCONSUMER', this.opts.stream, this.opts.group, this.opts.consumer);
    } catch {
      // best effort: RedisClient may be gone at shutdown
    }
  }
}
