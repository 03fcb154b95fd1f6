/**
 * Stream time for the reader: one increasing timeline across reopened inputs, sampling to
 * a target fps on that timeline, and pacing of non-live sources (files, lavfi) to real time.
 */

/** Pacing restarts instead of bursting (or sleeping long) when off by more than this. */
const MAX_PACING_DRIFT_MS = 1000;

/** Puts the frames of successive sessions (a looping file) on one increasing timeline, in ms. */
export class Timeline {
  private last = Number.NEGATIVE_INFINITY;
  private offset?: number;

  constructor(private stepMs: number) {}

  /** The next frames come from a reopened input, whose clock starts over. */
  restart(): void {
    this.offset = undefined;
  }

  place(rawMs: number): number {
    const continuing = this.last > Number.NEGATIVE_INFINITY;
    let ms: number;
    if (Number.isNaN(rawMs)) {
      // No timestamp (e.g. RTSP's first frame, before RTP timing settles): one step on.
      ms = continuing ? this.last + this.stepMs : 0;
    } else {
      this.offset ??= continuing ? this.last + this.stepMs - rawMs : 0;
      ms = rawMs + this.offset;
    }
    const step = ms - this.last;
    if (step > 0 && step < 1000) this.stepMs = step;
    this.last = ms;
    return ms;
  }
}

/** Keeps frames on a `intervalMs` grid of stream time; frames in between are skipped, not dropped. */
export class Sampler {
  private due = Number.NEGATIVE_INFINITY;
  private last = Number.NEGATIVE_INFINITY;

  constructor(private readonly intervalMs: number) {}

  keep(ptsMs: number): boolean {
    // The clock went far back (a camera restart): a new grid. A small step back (RTSP
    // re-basing its timestamps on the first RTCP report) keeps the grid.
    if (ptsMs < this.last - MAX_PACING_DRIFT_MS) this.due = ptsMs;
    this.last = ptsMs;
    // 1 ms of slack absorbs rounding in time-base conversions (e.g. 1/30 s ticks).
    if (ptsMs + 1 < this.due) return false;
    this.due += this.intervalMs;
    if (this.due <= ptsMs) this.due = ptsMs + this.intervalMs; // after a gap, restart the grid
    return true;
  }
}

/** Holds each frame until its stream time has elapsed in real time, like ffmpeg `-re`. */
export class Pacer {
  private originWall = 0;
  private originPts = Number.NaN;

  constructor(private readonly sleep: (ms: number) => void) {}

  wait(ptsMs: number): void {
    const now = performance.now();
    const delay = this.originWall + (ptsMs - this.originPts) - now;
    // A slow consumer or a timestamp jump restarts the clock: no burst, no long sleep.
    if (!(Math.abs(delay) <= MAX_PACING_DRIFT_MS)) {
      this.originWall = now;
      this.originPts = ptsMs;
      return;
    }
    if (delay >= 1) this.sleep(delay);
  }
}
