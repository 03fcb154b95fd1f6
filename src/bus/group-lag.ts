import type { RedisClient } from './redis.js';

export interface GroupLag {
  stream: string;
  group: string;
  /** Entries not yet delivered to the group (XINFO GROUPS lag; null when Redis cannot tell). */
  lag: number | null;
  /** Delivered but not acked. */
  pending: number;
}

/** Lag and pending of every group on a stream; an absent stream has none. */
export async function groupLag(redis: RedisClient, stream: string): Promise<GroupLag[]> {
  let rows: unknown[][];
  try {
    rows = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  } catch (err) {
    if (String((err as Error).message).includes('no such key')) return [];
    throw err;
  }
  return rows.map((row) => {
    const h = new Map<string, unknown>();
    for (let i = 0; i < row.length; i += 2) h.set(String(row[i]), row[i + 1]);
    const lag = h.get('lag');
    return {
      stream,
      group: String(h.get('name')),
      lag: lag === null || lag === undefined ? null : Number(lag),
      pending: Number(h.get('pending')),
    };
  });
}
