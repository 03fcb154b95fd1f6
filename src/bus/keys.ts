import { InvalidInputError } from '../domain/errors.js';

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export function validateName(what: string, value: string): string {
  if (!NAME_RE.test(value)) {
    throw new InvalidInputError(`${what} "${value}" must be 1-64 characters of letters, digits, _ . -`);
  }
  return value;
}

/** The one place that builds Redis keys: everything hangs off a configurable prefix. */
export function redisKeys(prefix: string) {
  return {
    prefix,
    captured: `${prefix}frames:captured`,
    ready: (processorId: string) => `${prefix}frames:ready:${processorId}`,
    events: `${prefix}events`,
    results: `${prefix}results`,
    deadLetter: `${prefix}dead-letter`,
    payload: (frameId: string) => `${prefix}frame:${frameId}`,
    processor: (processorId: string) => `${prefix}processor:${processorId}`,
    /** Sorted set of processor ids scored by last heartbeat (ms). */
    processors: `${prefix}processors`,
    /** Hash of counters (dead-lettered entries per stream), kept beside the streams. */
    counters: `${prefix}counters`,
    /** The buffer's priority lanes: frames taken in from captured, waiting for a processor. */
    lane: (lane: string) => `${prefix}frames:waiting:${lane}`,
    /** Set of processor ids the buffer has routed to (their ready streams), for re-routing. */
    routed: `${prefix}routed`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;

/** Consumer group names, one per role. */
export const GROUPS = {
  buffer: 'buffer',
  processor: 'processor',
  store: 'store',
} as const;
