import { CommandError } from './resp.js';
import type { Stream } from './stream.js';
import { SortedSet } from './sorted-set.js';

interface TypeMap {
  string: Buffer;
  hash: Map<string, string>;
  zset: SortedSet;
  set: Set<string>;
  stream: Stream;
}

export type ValueType = keyof TypeMap;
export type Value = { [K in ValueType]: { type: K; v: TypeMap[K] } }[ValueType];

export const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';

interface Slot {
  value: Value;
  /** Creation order, the SCAN cursor. */
  seq: number;
}

/**
 * The one database: keys to values, and expiry times (ms) for the keys that have one.
 * Expired keys vanish on access (lazily) and in a periodic sweep, as in Redis.
 */
export class Keyspace {
  private readonly slots = new Map<string, Slot>();
  private readonly expires = new Map<string, number>();
  private seq = 0;
  /** Called with a key whose value was written or removed (wakes blocked readers). */
  onTouch: (key: string) => void = () => {};

  get size(): number {
    return this.slots.size;
  }

  /** The live value of a key (undefined when missing or expired). */
  lookup(key: string, now = Date.now()): Value | undefined {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    const at = this.expires.get(key);
    if (at !== undefined && at <= now) {
      this.remove(key);
      return undefined;
    }
    return slot.value;
  }

  /** The value if it has this type; undefined when missing; WRONGTYPE otherwise. */
  get<T extends ValueType>(key: string, type: T, now = Date.now()): TypeMap[T] | undefined {
    const v = this.lookup(key, now);
    if (!v) return undefined;
    if (v.type !== type) throw new CommandError(WRONGTYPE);
    return v.v as TypeMap[T];
  }

  /** The value of this type, created (empty) when missing. */
  getOrCreate<T extends ValueType>(key: string, type: T, create: () => TypeMap[T], now = Date.now()): TypeMap[T] {
    const existing = this.get(key, type, now);
    if (existing !== undefined) return existing;
    const v = create();
    this.slots.set(key, { value: { type, v } as Value, seq: ++this.seq });
    return v;
  }

  /** Sets a value, keeping an expiry only when asked (SET KEEPTTL). */
  set(key: string, value: Value, keepTtl = false): void {
    const slot = this.slots.get(key);
    if (slot && this.isLive(key)) slot.value = value;
    else {
      if (slot) this.slots.delete(key);
      this.slots.set(key, { value, seq: ++this.seq });
    }
    if (!keepTtl) this.expires.delete(key);
    this.onTouch(key);
  }

  /** Removes a key; true when it existed (and had not expired). */
  delete(key: string, now = Date.now()): boolean {
    if (!this.lookup(key, now)) return false;
    this.remove(key);
    return true;
  }

  private remove(key: string): void {
    this.slots.delete(key);
    this.expires.delete(key);
    this.onTouch(key);
  }

  private isLive(key: string, now = Date.now()): boolean {
    const at = this.expires.get(key);
    return at === undefined || at > now;
  }

  /** Deletes a container key once it is empty (Redis never keeps empty hashes, sets, zsets). */
  deleteIfEmpty(key: string, size: number): void {
    if (size === 0) this.remove(key);
  }

  /** Expiry (ms since epoch) of a live key, or undefined. */
  expiry(key: string): number | undefined {
    return this.expires.get(key);
  }

  setExpiry(key: string, at: number | undefined): void {
    if (at === undefined) this.expires.delete(key);
    else {
      // delete first: the map stays roughly in expiry order for the sweep
      this.expires.delete(key);
      this.expires.set(key, at);
    }
  }

  /** Drops every expired key; returns how many. */
  sweep(now = Date.now()): number {
    let n = 0;
    for (const [key, at] of this.expires) {
      if (at <= now) {
        this.remove(key);
        n++;
      }
    }
    return n;
  }

  flush(): void {
    const keys = [...this.slots.keys()];
    this.slots.clear();
    this.expires.clear();
    for (const k of keys) this.onTouch(k);
  }

  /** Live keys in creation order after cursor `after` (a seq); at most `count` examined. */
  scan(after: number, count: number, now = Date.now()): { keys: string[]; next: number } {
    const keys: string[] = [];
    let examined = 0;
    let last = after;
    for (const [key, slot] of this.slots) {
      if (slot.seq <= after) continue;
      if (examined >= count) return { keys, next: last };
      examined++;
      last = slot.seq;
      if (this.isLive(key, now)) keys.push(key);
    }
    return { keys, next: 0 };
  }

  *liveKeys(now = Date.now()): IterableIterator<string> {
    for (const key of [...this.slots.keys()]) if (this.lookup(key, now)) yield key;
  }
}

export { SortedSet };
