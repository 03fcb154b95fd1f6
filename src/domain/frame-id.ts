import { monotonicFactory, decodeTime, isValid } from 'ulid';
import { InvalidInputError } from './errors.js';

/**
 * FrameId: a ULID. 48 bits of milliseconds + 80 random bits make ids from different
 * processes collide with negligible probability; the monotonic factory keeps ids from
 * one process strictly increasing even within one millisecond.
 */
export type FrameId = string;

// 26 base32 characters carry 130 bits: a ULID (128) starts with 0-7, else the time overflows.
const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;
const nextUlid = monotonicFactory();

export function newFrameId(nowMs: number = Date.now()): FrameId {
  return nextUlid(nowMs);
}

/** Event ids are ULIDs too: sortable, unique, cheap. */
export const newEventId = newFrameId;

export function isFrameId(value: string): boolean {
  return ULID_RE.test(value) && isValid(value);
}

/** The capture time (ms since epoch) that the id carries. */
export function frameIdTime(id: FrameId): number {
  return decodeTime(id);
}

export function parseFrameId(value: string, what = 'frame id'): FrameId {
  const id = value.trim().toUpperCase();
  if (!isFrameId(id)) {
    throw new InvalidInputError(`${what} "${value}" is not a ULID (26 characters of Crockford base32, e.g. 01JD8X3Q5R7ZC1V2W3X4Y5Z6A7)`);
  }
  return id;
}
