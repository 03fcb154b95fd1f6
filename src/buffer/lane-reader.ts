import type { RedisClient } from '../bus/redis.js';
import type { FieldList } from '../bus/fields.js';
import { decodeFrame } from '../bus/frame-codec.js';
import { delAndAppend, type DelAndAppend } from '../bus/handoff.js';
import { COUNTER_FIELDS, type RedisKeys } from '../bus/keys.js';
import { MalformedMessageError } from '../domain/errors.js';
import type { FrameMessage } from '../domain/frame.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { deadLetterAppend } from './dead-letter.js';
import { LANES } from './lanes.js';
import type { RawLanes } from './registry-view.js';

/** A frame waiting in a lane: its entry id there, the lane (index into LANES), the frame. */
export interface Waiting {
  id: string;
  lane: number;
  frame: FrameMessage;
}

export interface LaneReaderOptions {
  redis: RedisClient;
  keys: RedisKeys;
  metrics: Metrics;
  logger: Logger;
  streamMaxLen: number;
}

/**
 * Reads and decodes the heads of the lanes, for the dispatcher and the shedder (both on the
 * dispatch loop, never concurrently). The heads are read again every round, so decoded
 * frames are cached by entry; a malformed entry is dead-lettered (and counted) on the spot.
 */
export class LaneReader {
  readonly laneKeys: readonly string[];
  private decoded = new Map<string, FrameMessage>();

  constructor(private readonly opts: LaneReaderOptions) {
    this.laneKeys = LANES.map((l) => opts.keys.lane(l));
  }

  /** Up to `count` entries from the head of each lane, undecoded. */
  async heads(count: number): Promise<RawLanes> {
    const p = this.opts.redis.pipeline();
    for (const k of this.laneKeys) p.xrange(k, '-', '+', 'COUNT', count);
    const res = (await p.exec()) ?? [];
    return res.map(([err, rows]) => {
      if (err) throw err;
      return (rows as [string, FieldList][]) ?? [];
    });
  }

  /** Up to `count` waiting frames from the head of each lane. */
  async read(count: number): Promise<Waiting[][]> {
    return this.decode(await this.heads(count));
  }

  async decode(raw: RawLanes): Promise<Waiting[][]> {
    const { redis, keys, metrics, logger, streamMaxLen } = this.opts;
    const out: Waiting[][] = LANES.map(() => []);
    const bad: DelAndAppend[] = [];
    const cache = new Map<string, FrameMessage>();
    raw.forEach((rows, lane) => {
      const stream = this.laneKeys[lane];
      for (const [id, fields] of rows) {
        try {
          // Entry ids are per stream: two lanes can hold the same id.
          const key = `${lane}/${id}`;
          const frame = this.decoded.get(key) ?? decodeFrame(fields);
          cache.set(key, frame);
          out[lane].push({ id, lane, frame });
        } catch (e) {
          if (!(e instanceof MalformedMessageError)) throw e;
          const reason = `malformed: ${e.message}`;
          metrics.entriesMalformed.inc({ stream });
          metrics.entriesDeadLettered.inc({ stream, reason: 'malformed' });
          logger.warn('entry dead-lettered', { stream, entry_id: id, reason });
          bad.push({
            source: stream,
            id,
            counter: COUNTER_FIELDS.deadLetter(stream),
            targets: [deadLetterAppend(keys.deadLetter, { stream, id, reason, deliveries: 1, fields })],
          });
        }
      }
    });
    this.decoded = cache; // only what is still at the heads of the lanes
    if (bad.length) await delAndAppend(redis, keys.counters, bad, streamMaxLen);
    return out;
  }
}
