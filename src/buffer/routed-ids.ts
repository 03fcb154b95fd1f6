import type { RedisClient } from '../bus/redis.js';

/** How often the shared set is read again: other buffers add the ids they route to. */
const RELOAD_MS = 5000;

/**
 * The processor ids whose ready streams the buffers have routed to (`<p>routed`, shared by
 * every buffer), so the re-router still finds the stream of a processor that vanished
 * long ago. A local copy keeps each hand-off from paying a SADD for ids already known.
 */
export class RoutedIds {
  private readonly known = new Set<string>();
  private loadedAt = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
  ) {}

  /** Records ids about to be routed to; call before the hand-off, so a crash after it cannot hide the stream. */
  async remember(ids: readonly string[]): Promise<void> {
    const fresh = [...new Set(ids)].filter((id) => !this.known.has(id));
    if (!fresh.length) return;
    await this.redis.sadd(this.key, ...fresh);
    for (const id of fresh) this.known.add(id);
  }

  /** Every id known here or to another buffer (read again every RELOAD_MS). */
  async list(now = Date.now()): Promise<string[]> {
    if (now - this.loadedAt > RELOAD_MS) {
      for (const id of await this.redis.smembers(this.key)) this.known.add(id);
      this.loadedAt = now;
    }
    return [...this.known];
  }

  /** A gone processor whose stream is empty needs no more visits. */
  async forget(id: string): Promise<void> {
    await this.redis.srem(this.key, id);
    this.known.delete(id);
  }
}
