import { CommandError } from './resp.js';

/**
 * A stream entry id `<ms>-<seq>` (two unsigned 64-bit numbers) as one 128-bit bigint,
 * ms in the high half: ids then compare with < and sort as Redis sorts them.
 */
export type StreamId = bigint;

const U64 = (1n << 64n) - 1n;
export const MIN_ID: StreamId = 0n;
export const MAX_ID: StreamId = (U64 << 64n) | U64;

export const INVALID_ID = 'ERR Invalid stream ID specified as stream command argument';

export function makeId(ms: bigint, seq: bigint): StreamId {
  return (ms << 64n) | seq;
}

export function idMs(id: StreamId): bigint {
  return id >> 64n;
}

export function idSeq(id: StreamId): bigint {
  return id & U64;
}

export function formatId(id: StreamId): string {
  return `${id >> 64n}-${id & U64}`;
}

function u64(s: string): bigint | undefined {
  if (!/^\d{1,20}$/.test(s)) return undefined;
  const v = BigInt(s);
  return v > U64 ? undefined : v;
}

/**
 * `ms-seq`, or `ms` alone (seq taken as `missingSeq`); with `allowSpecial`, `-` and `+`
 * too. Throws the error Redis gives for a malformed id.
 */
export function parseId(s: string, opts: { missingSeq?: bigint; allowSpecial?: boolean } = {}): StreamId {
  if (opts.allowSpecial) {
    if (s === '-') return MIN_ID;
    if (s === '+') return MAX_ID;
  }
  const dash = s.indexOf('-');
  if (dash === -1) {
    const ms = u64(s);
    if (ms === undefined) throw new CommandError(INVALID_ID);
    return makeId(ms, opts.missingSeq ?? 0n);
  }
  const ms = u64(s.slice(0, dash));
  const seq = u64(s.slice(dash + 1));
  if (ms === undefined || seq === undefined) throw new CommandError(INVALID_ID);
  return makeId(ms, seq);
}

/** Strict: `ms-seq` or `ms` (XACK, XCLAIM, XGROUP ids); undefined instead of throwing when asked. */
export function tryParseStrictId(s: string): StreamId | undefined {
  try {
    return parseId(s);
  } catch {
    return undefined;
  }
}

/**
 * A range bound of XRANGE / XPENDING: `-`, `+`, `ms[-seq]`, or `(id` (exclusive, Redis
 * >= 6.2). `isStart` decides the default seq of a bare ms and which way `(` moves.
 */
export function parseRangeBound(s: string, isStart: boolean): StreamId {
  if (s.startsWith('(')) {
    const inner = s.slice(1);
    if (inner === '-' || inner === '+') throw new CommandError(INVALID_ID);
    const id = parseId(inner, { missingSeq: isStart ? 0n : U64 });
    if (isStart) {
      if (id === MAX_ID) throw new CommandError('ERR invalid start ID for the interval');
      return id + 1n;
    }
    if (id === MIN_ID) throw new CommandError('ERR invalid end ID for the interval');
    return id - 1n;
  }
  return parseId(s, { missingSeq: isStart ? 0n : U64, allowSpecial: true });
}
