import { InvalidInputError } from '../domain/errors.js';

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export function validateName(what: string, value: string): string {
  if (!NAME_RE.test(value)) {
    throw new InvalidInputError(`${what} "${value}" must be 1-64 characters of letters, digits, _ . -`);
  }
  return value;
}

/** The gray thumbnail stored beside a frame's payload (same TTL, same slot): from the payload key the frame message carries. */
export const thumbnailKey = (payloadKey: string): string => `${payloadKey}:thumb`;

/**
 * The one place that builds Redis keys: everything hangs off a configurable prefix.
 *
 * `shard` undefined: one plain Redis, one shard, keys as they always were (`<p>frames:captured`).
 * `shard` given: the keys of that shard carry its hash tag (`<p>{s1}:frames:captured`), so
 * everything one frame touches (payload, events, captured, lanes, ready streams, counters)
 * lives in one Redis Cluster slot and every MULTI and Lua script stays in it; the
 * pipeline-wide keys (processor registry, validate snapshot) share the tag `{g}`.
 * src/bus/shards.ts chooses the tags and which camera goes to which shard.
 */
export function redisKeys(prefix: string, shard?: { index: number; tag: string }) {
  const base = shard ? `${prefix}{${shard.tag}}:` : prefix;
  const global = shard ? `${prefix}{g}:` : prefix;
  return {
    prefix,
    /** This key set's shard (0 when the layout has no tags). */
    shard: shard?.index ?? 0,
    /** Its hash tag, e.g. `s1` (undefined when the layout has no tags). */
    tag: shard?.tag,
    captured: `${base}frames:captured`,
    ready: (processorId: string) => `${base}frames:ready:${processorId}`,
    events: `${base}events`,
    results: `${base}results`,
    deadLetter: `${base}dead-letter`,
    payload: (frameId: string) => `${base}frame:${frameId}`,
    thumbnail: thumbnailKey,
    /** Hash of counters (dead-lettered entries per stream), kept beside the streams. */
    counters: `${base}counters`,
    /** The buffer's priority lanes: frames taken in from captured, waiting for a processor. */
    lane: (lane: string) => `${base}frames:waiting:${lane}`,
    /** Set of processor ids the buffer has routed to (their ready streams), for re-routing. */
    routed: `${base}routed`,
    // Pipeline-wide, one slot:
    processor: (processorId: string) => `${global}processor:${processorId}`,
    /** Sorted set of processor ids scored by last heartbeat (ms). */
    processors: `${global}processors`,
    /** Hash: the counters as the last `validate` saw them, to report growth since. */
    validateSnapshot: `${global}validate:dead-letter`,
    /** Hash: the shard layout the pipeline's workers agreed on; untagged, so every layout finds it. */
    layout: `${prefix}layout`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;

/** Fields of the `counters` hash: entries of a stream that were dead-lettered, or trimmed before anyone read them. */
const DEAD_LETTER_FIELD = 'dead_letter:';
const TRIMMED_FIELD = 'trimmed:';
export const COUNTER_FIELDS = {
  deadLetterPrefix: DEAD_LETTER_FIELD,
  trimmedPrefix: TRIMMED_FIELD,
  deadLetter: (stream: string) => `${DEAD_LETTER_FIELD}${stream}`,
  /** The stream a `dead_letter:` field counts; undefined for another counter. */
  deadLetterStreamOf: (field: string): string | undefined =>
    field.startsWith(DEAD_LETTER_FIELD) ? field.slice(DEAD_LETTER_FIELD.length) : undefined,
  trimmed: (stream: string) => `${TRIMMED_FIELD}${stream}`,
} as const;

/** Consumer group names, one per role. */
export const GROUPS = {
  buffer: 'buffer',
  processor: 'processor',
  store: 'store',
} as const;

/** The processor id whose ready stream `stream` is (`<p>frames:ready:<id>`); undefined for any other key. */
export function readyProcessorOf(keys: RedisKeys, stream: string): string | undefined {
  // Built by keys.ready itself, so the parser cannot drift from the builder.
  const prefix = keys.ready('');
  return stream.startsWith(prefix) && stream.length > prefix.length ? stream.slice(prefix.length) : undefined;
}
