import { SortedIdMap } from './sorted-id-map.js';
import { idMs, idSeq, makeId, MAX_ID, type StreamId } from './stream-id.js';

export interface StreamEntry {
  id: StreamId;
  /** name, value, name, value... as byte strings. */
  fields: string[];
  deleted?: boolean;
}

export interface Consumer {
  name: string;
  /** Last time it read or claimed (XINFO CONSUMERS idle). */
  seenTime: number;
  pel: SortedIdMap<Nack>;
}

export interface Nack {
  consumer: Consumer;
  deliveryTime: number;
  deliveryCount: number;
}

/** Redis' SCG_INVALID_ENTRIES_READ: the group's read counter is unknown. */
export const INVALID_ENTRIES_READ = -1;

export interface Group {
  name: string;
  lastId: StreamId;
  entriesRead: number;
  pel: SortedIdMap<Nack>;
  consumers: Map<string, Consumer>;
}

/**
 * A stream as Redis 7 keeps it: entries in id order, the last id ever generated, the count
 * of entries ever added, the highest deleted id (XDEL) and consumer groups with their
 * pending entries lists. Entries live in an array with a moving head (trimming from the
 * front is O(1)) and tombstones for XDEL, compacted as they pile up.
 */
export class Stream {
  private log: StreamEntry[] = [];
  private head = 0;
  private tombstones = 0;
  length = 0;
  lastId: StreamId = 0n;
  entriesAdded = 0;
  maxDeletedId: StreamId = 0n;
  readonly groups = new Map<string, Group>();

  /** The id of the first entry; 0-0 when empty (as Redis 7 records it). */
  get firstId(): StreamId {
    const e = this.firstEntry();
    return e ? e.id : 0n;
  }

  firstEntry(): StreamEntry | undefined {
    return this.length ? this.log[this.head] : undefined;
  }

  lastEntry(): StreamEntry | undefined {
    for (let i = this.log.length - 1; i >= this.head; i--) if (!this.log[i].deleted) return this.log[i];
    return undefined;
  }

  /** The id `*` generates now. */
  nextId(nowMs: number): StreamId {
    const ms = BigInt(nowMs);
    const lastMs = idMs(this.lastId);
    return ms > lastMs ? makeId(ms, 0n) : makeId(lastMs, idSeq(this.lastId) + 1n);
  }

  append(id: StreamId, fields: string[]): void {
    this.log.push({ id, fields });
    this.length++;
    this.entriesAdded++;
    this.lastId = id;
  }

  /** Removes the oldest entries until at most maxLen remain; returns how many went. */
  trimMaxLen(maxLen: number, limit = Infinity): number {
    let removed = 0;
    while (this.length > maxLen && removed < limit) {
      this.dropHead();
      removed++;
    }
    this.afterRemoval();
    return removed;
  }

  /** Removes entries with ids below minId; returns how many went. */
  trimMinId(minId: StreamId, limit = Infinity): number {
    let removed = 0;
    while (this.length > 0 && this.log[this.head].id < minId && removed < limit) {
      this.dropHead();
      removed++;
    }
    this.afterRemoval();
    return removed;
  }

  private dropHead(): void {
    // head always points at a live entry while length > 0 (see skipDeadHead)
    this.log[this.head] = undefined as unknown as StreamEntry;
    this.head++;
    this.length--;
    this.skipDeadHead();
  }

  private skipDeadHead(): void {
    while (this.head < this.log.length && this.log[this.head].deleted) {
      this.log[this.head] = undefined as unknown as StreamEntry;
      this.head++;
      this.tombstones--;
    }
  }

  private afterRemoval(): void {
    if (this.head > 1024 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.head = 0;
    }
    if (this.tombstones > 1024 && this.tombstones > this.length) {
      this.log = this.log.slice(this.head).filter((e) => !e.deleted);
      this.head = 0;
      this.tombstones = 0;
    }
  }

  /** XDEL of one id: true when it was there. */
  delete(id: StreamId): boolean {
    const i = this.indexOf(id);
    if (i === -1) return false;
    const e = this.log[i];
    e.deleted = true;
    e.fields = [];
    this.length--;
    this.tombstones++;
    if (id > this.maxDeletedId) this.maxDeletedId = id;
    this.skipDeadHead();
    this.afterRemoval();
    return true;
  }

  get(id: StreamId): StreamEntry | undefined {
    const i = this.indexOf(id);
    return i === -1 ? undefined : this.log[i];
  }

  has(id: StreamId): boolean {
    return this.indexOf(id) !== -1;
  }

  /** Live entries with start <= id <= end, at most count (0: all), oldest first or newest first. */
  range(start: StreamId, end: StreamId, count = 0, reverse = false): StreamEntry[] {
    const out: StreamEntry[] = [];
    if (start > end || this.length === 0) return out;
    const limit = count > 0 ? count : Infinity;
    if (!reverse) {
      for (let i = this.lowerBound(start); i < this.log.length && out.length < limit; i++) {
        const e = this.log[i];
        if (e.id > end) break;
        if (!e.deleted) out.push(e);
      }
    } else {
      for (let i = this.lowerBound(end + 1n) - 1; i >= this.head && out.length < limit; i--) {
        const e = this.log[i];
        if (e.id < start) break;
        if (!e.deleted) out.push(e);
      }
    }
    return out;
  }

  private indexOf(id: StreamId): number {
    const i = this.lowerBound(id);
    return i < this.log.length && this.log[i].id === id && !this.log[i].deleted ? i : -1;
  }

  /** First index in [head, log.length) whose id >= id. */
  private lowerBound(id: StreamId): number {
    let lo = this.head;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid].id < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // --- consumer groups (Redis 7.0 t_stream.c semantics) ----------------------------------

  createGroup(name: string, lastId: StreamId, entriesRead: number): Group {
    const g: Group = { name, lastId, entriesRead, pel: new SortedIdMap(), consumers: new Map() };
    this.groups.set(name, g);
    return g;
  }

  /** streamRangeHasTombstones: is there an XDEL'd id within [start, end]? */
  rangeHasTombstones(start: StreamId, end: StreamId = MAX_ID): boolean {
    if (!this.length || this.maxDeletedId === 0n) return false;
    if (this.firstId > this.maxDeletedId) return false;
    return start <= this.maxDeletedId && this.maxDeletedId <= end;
  }

  /** streamEstimateDistanceFromFirstEverEntry: the logical read counter of an id, or INVALID. */
  estimateDistance(id: StreamId): number {
    if (!this.entriesAdded) return 0;
    if (!this.length && id <= this.lastId) return this.entriesAdded;
    if (id === this.lastId) return this.entriesAdded;
    if (id > this.lastId) return INVALID_ENTRIES_READ;
    if (this.maxDeletedId === 0n || this.maxDeletedId < this.firstId) {
      if (id < this.firstId) return this.entriesAdded - this.length;
      if (id === this.firstId) return this.entriesAdded - this.length + 1;
    }
    return INVALID_ENTRIES_READ;
  }

  /** XINFO GROUPS lag: entries not yet delivered to the group, or null when it cannot tell. */
  lag(g: Group): number | null {
    if (!this.entriesAdded) return 0;
    if (g.entriesRead !== INVALID_ENTRIES_READ && !this.rangeHasTombstones(g.lastId)) return this.entriesAdded - g.entriesRead;
    const read = this.estimateDistance(g.lastId);
    return read === INVALID_ENTRIES_READ ? null : this.entriesAdded - read;
  }

  /** The group read `id` (a new delivery past its last id): advance last id and read counter. */
  advanceGroup(g: Group, id: StreamId): void {
    if (id <= g.lastId) return;
    if (g.entriesRead !== INVALID_ENTRIES_READ && !this.rangeHasTombstones(id)) g.entriesRead++;
    else if (this.entriesAdded) g.entriesRead = this.estimateDistance(id);
    g.lastId = id;
  }
}

export function lookupConsumer(g: Group, name: string, now: number, refresh = true): Consumer | undefined {
  const c = g.consumers.get(name);
  if (c && refresh) c.seenTime = now;
  return c;
}

export function lookupOrCreateConsumer(g: Group, name: string, now: number): Consumer {
  let c = g.consumers.get(name);
  if (!c) {
    c = { name, seenTime: now, pel: new SortedIdMap() };
    g.consumers.set(name, c);
  } else c.seenTime = now;
  return c;
}

/** Removes a pending entry from the group and its consumer. */
export function dropNack(g: Group, id: StreamId): boolean {
  const n = g.pel.get(id);
  if (!n) return false;
  g.pel.delete(id);
  n.consumer.pel.delete(id);
  return true;
}
