import { backoffDelay, sleep } from '../bus/backoff.js';
import type { Logger } from '../telemetry/logger.js';
import type { BreakerBoard } from './breaker.js';
import type { Dispatcher } from './dispatcher.js';
import type { LaneReader } from './lane-reader.js';
import type { RegistryView } from './registry-view.js';
import type { Rerouter } from './rerouter.js';
import type { Shedder } from './shedder.js';
import { freeSlots, waitingFrames } from './snapshot.js';

export interface DispatchLoopOptions {
  view: RegistryView;
  breakers: BreakerBoard;
  dispatcher: Dispatcher;
  lanes: LaneReader;
  shedder: Shedder;
  rerouter: Rerouter;
  logger: Logger;
  /** Pause between rounds while frames wait and a processor has room (every queue full: 2.5x). */
  intervalMs: number;
  claimIdleMs: number;
}

/** Pause between rounds when the lanes are empty: intake's wake-up comes first anyway. */
const IDLE_MS = 200;
/** Lane heads looked at per round: twice the room the processors have (frames for full or open ones are skipped). */
const window = (room: number) => Math.min(500, Math.max(16, 2 * room));

/**
 * The dispatch loop: measure, then shed (sustained overload) or dispatch, and every so often
 * re-route. Rounds run back to back while they hand frames off, on intake's wake-up, and
 * otherwise after a pause that grows with how little there is to do.
 */
export class DispatchLoop {
  private closing = false;
  private running?: Promise<void>;
  private wake?: () => void;
  private kicked = false;
  private lastReroute = 0;

  constructor(private readonly opts: DispatchLoopOptions) {}

  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    await this.running;
  }

  /** Frames went into a lane: run a round now (or right after the one in progress). */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  get isClosing(): boolean {
    return this.closing;
  }

  private async loop(): Promise<void> {
    const { view, breakers, logger } = this.opts;
    let failures = 0;
    while (!this.closing) {
      let sent = 0;
      this.kicked = false;
      try {
        await view.registry();
        // The heads come in the same round trip as the lengths when the last look saw room;
        // with every queue full, only the lengths are read (polling the heads of a long
        // backlog would cost more than the dispatching).
        const before = freeSlots(view.current.processors, view.latest.depth, breakers);
        const measured = await view.measure(before > 0 ? window(before) : 0);
        const queues = measured.snapshot;
        if (queues.registry.processors.length) {
          const room = freeSlots(queues.registry.processors, queues.depth, breakers);
          if (queues.pressure.shedding) {
            await this.opts.shedder.shed(queues.pressure);
          } else if (waitingFrames(queues) && room > 0) {
            const heads = measured.heads ?? (await this.opts.lanes.heads(window(room)));
            sent = await this.opts.dispatcher.round(queues, heads);
          }
        }
        if (Date.now() - this.lastReroute >= Math.min(Math.max(250, this.opts.claimIdleMs / 2), 5000)) {
          this.lastReroute = Date.now();
          await this.opts.rerouter.reroute(view.current, view.latest.depth);
        }
        failures = 0;
      } catch (err) {
        failures++;
        logger.warn('dispatch round failed; retrying', { error: err, attempt: failures });
        await sleep(backoffDelay(failures, 100, 5000), () => this.closing);
        continue;
      }
      // A wake-up that came during the round (frames taken in after the lanes were read) is not lost.
      if (sent > 0 || this.kicked) continue;
      await this.pause();
    }
  }

  private pause(): Promise<void> {
    // close() during a round found no pause to cut short: do not start one.
    if (this.closing) return Promise.resolve();
    const { view, breakers, intervalMs } = this.opts;
    const queues = view.latest;
    // Frames waiting: look again soon (less often when every queue is full: each holds
    // `capacity` frames of work); none waiting: intake's wake-up comes first.
    const room = freeSlots(view.current.processors, queues.depth, breakers);
    const ms = waitingFrames(queues) ? (room > 0 ? intervalMs : 2.5 * intervalMs) : IDLE_MS;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        this.wake = undefined;
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
