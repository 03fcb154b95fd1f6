/**
 * Priority lanes. A frame's priority (0..9) puts it in one of three lanes, each a Redis
 * stream (FIFO) the buffer serves in order high > normal > low, with starvation prevention.
 */
export const LANES = ['high', 'normal', 'low'] as const;
export type Lane = (typeof LANES)[number];

export function laneOf(priority: number): Lane {
  return priority >= 7 ? 'high' : priority >= 4 ? 'normal' : 'low';
}

/**
 * Strict priority with an anti-starvation bound: the highest lane that has a frame ready
 * to go is served, but a lane passed over `limit` times while it had a frame ready is
 * served next (the longest-waiting such lane first). So the head of any lane (its oldest
 * frame) is served within `limit + LANES.length - 1` dequeues of becoming ready, whatever
 * the traffic in the lanes above it.
 */
export class LaneScheduler {
  private readonly skipped = new Array<number>(LANES.length).fill(0);

  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 1)) throw new RangeError(`starvation limit must be a positive integer, got ${limit}`);
  }

  /** Picks a lane among those with a frame ready (by index into LANES); -1 when none. */
  pick(ready: readonly boolean[]): number {
    const choice = this.choose(ready);
    if (choice >= 0) this.apply(ready, choice);
    return choice;
  }

  /** The lane pick() would choose, without counting it. */
  choose(ready: readonly boolean[]): number {
    let choice = -1;
    let longest = -1;
    for (let i = 0; i < LANES.length; i++) {
      if (ready[i] && this.skipped[i] >= this.limit && this.skipped[i] > longest) {
        choice = i;
        longest = this.skipped[i];
      }
    }
    if (choice < 0) choice = ready.findIndex(Boolean);
    return choice;
  }

  /** Counts a dequeue from `choice` while the `ready` lanes were waiting. */
  apply(ready: readonly boolean[], choice: number): void {
    for (let i = 0; i < LANES.length; i++) if (i !== choice && ready[i]) this.skipped[i]++;
    this.skipped[choice] = 0;
  }

  /**
   * The counters, to restore when dequeues of a round did not happen after all (another
   * buffer took the frame, or the processor's queue was full at hand-off): the bound is
   * about frames actually handed off.
   */
  save(): number[] {
    return [...this.skipped];
  }

  restore(saved: readonly number[]): void {
    saved.forEach((v, i) => (this.skipped[i] = v));
  }

  /** A lane that ran empty or had nothing ready starts counting afresh next time. */
  reset(lane: number): void {
    this.skipped[lane] = 0;
  }

  get counters(): readonly number[] {
    return this.skipped;
  }
}
