import { monotonicFactory, decodeTime } from 'ulid';
import { InvalidInputError } from './errors.js';

/**
 * FrameId: a ULID. 48 bits of milliseconds + 80 random bits make ids from different
 * processes collide with negligible probability; the monotonic factory keeps ids from
 * one process strictly increasing even within one millisecond.
 */
export type FrameId = string;

/**
 * The one rule for every id (frame ids and event ids, in every message and on the command
 * line): a ULID whose time is at most MAX_TIME_MS. 26 base32 characters carry 130 bits: a
 * ULID (128) starts with 0-7, else its time overflows 48 bits.
 */
export const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

/**
 * The latest time an id may carry: 9999-12-31T23:59:59.999Z. Later ULID times (up to
 * year 10889) are beyond Date#toISOString's plain years and PostgreSQL's date input.
 */
export const MAX_TIME_MS = 253_402_300_799_999;

const nextUlid = monotonicFactory();

export function newFrameId(nowMs: number = Date.now()): FrameId {
  return nextUlid(nowMs);
}

/** Event ids are ULIDs too: sortable, unique, cheap. */
export const newEventId = newFrameId;

/** Why `value` is not an id under the rule above, or undefined when it is one. */
export function idProblem(value: string): 'not a ULID' | 'after the year 9999' | undefined {
  if (!ULID_RE.test(value)) return 'not a ULID';
  return decodeTime(value) > MAX_TIME_MS ? 'after the year 9999' : undefined;
}

/** A frame id or event id (see ULID_RE). */
export function isFrameId(value: string): boolean {
  return idProblem(value) === undefined;
}

/** The capture time (ms since epoch) that the id carries. */
export function frameIdTime(id: FrameId): number {
  return decodeTime(id);
}

export function parseFrameId(value: string, what = 'frame id'): FrameId {
  const id = value.trim().toUpperCase();
  const problem = idProblem(id);
  if (problem === 'after the year 9999') throw new InvalidInputError(`${what} "${value}" carries a time after the year 9999`);
  if (problem) {
    throw new InvalidInputError(`${what} "${value}" is not a ULID (26 characters of Crockford base32, e.g. 01JD8X3Q5R7ZC1V2W3X4Y5Z6A7)`);
  }
  return id;
}
