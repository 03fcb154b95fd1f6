import type { StreamId } from './stream-id.js';

/**
 * A map keyed by stream id that iterates in id order (a pending entries list). Keys live
 * in a sorted array beside a Map; removal only drops the Map entry and the array is
 * compacted once dead keys outnumber live ones, so acking the oldest entry is O(1)
 * amortised. Ids almost always arrive in increasing order (an append).
 */
export class SortedIdMap<V> {
  private keys: StreamId[] = [];
  private readonly map = new Map<StreamId, V>();
  private dead = 0;

  get size(): number {
    return this.map.size;
  }

  get(id: StreamId): V | undefined {
    return this.map.get(id);
  }

  has(id: StreamId): boolean {
    return this.map.has(id);
  }

  set(id: StreamId, value: V): void {
    if (!this.map.has(id)) {
      const n = this.keys.length;
      if (n === 0 || this.keys[n - 1] < id) this.keys.push(id);
      else {
        const i = this.lowerBound(id);
        if (this.keys[i] === id)
          this.dead--; // a dead slot comes back to life
        else this.keys.splice(i, 0, id);
      }
    }
    this.map.set(id, value);
  }

  delete(id: StreamId): boolean {
    if (!this.map.delete(id)) return false;
    this.dead++;
    if (this.dead > 32 && this.dead > this.map.size) this.compact();
    return true;
  }

  clear(): void {
    this.keys = [];
    this.map.clear();
    this.dead = 0;
  }

  /** Live entries with start <= id <= end, in id order, at most `limit`, collected (safe to modify the map after). */
  range(start: StreamId, end: StreamId, limit = Infinity): [StreamId, V][] {
    const out: [StreamId, V][] = [];
    for (let i = this.lowerBound(start); i < this.keys.length && out.length < limit; i++) {
      const k = this.keys[i];
      if (k > end) break;
      const v = this.map.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  /** Lowest live id, or undefined. */
  first(): StreamId | undefined {
    for (const k of this.keys) if (this.map.has(k)) return k;
    return undefined;
  }

  /** Highest live id, or undefined. */
  last(): StreamId | undefined {
    for (let i = this.keys.length - 1; i >= 0; i--) if (this.map.has(this.keys[i])) return this.keys[i];
    return undefined;
  }

  /** The lowest live id >= `id`, or undefined. */
  ceiling(id: StreamId): StreamId | undefined {
    for (let i = this.lowerBound(id); i < this.keys.length; i++) if (this.map.has(this.keys[i])) return this.keys[i];
    return undefined;
  }

  /** The lowest live id strictly after `id`, or undefined. */
  next(id: StreamId): StreamId | undefined {
    for (let i = this.lowerBound(id); i < this.keys.length; i++) {
      const k = this.keys[i];
      if (k > id && this.map.has(k)) return k;
    }
    return undefined;
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  private lowerBound(id: StreamId): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private compact(): void {
    this.keys = this.keys.filter((k) => this.map.has(k));
    this.dead = 0;
  }
}
