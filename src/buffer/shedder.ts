import { encodeEvent } from '../bus/event-codec.js';
import { delAndAppend, type DelAndAppend } from '../bus/handoff.js';
import { makeEvent } from '../domain/events.js';
import type { BufferSettings } from './buffer-options.js';
import type { LaneReader, Waiting } from './lane-reader.js';
import { LANES } from './lanes.js';
import type { Pressure, ShedPolicy } from './pressure.js';

export interface ShedderOptions {
  settings: BufferSettings;
  lanes: LaneReader;
}

/** Most frames looked at in one pass (a larger excess takes several rounds). */
const SHED_WINDOW = 5000;

/** The frames to shed, `excess` of them, from the heads of the lanes (LANES order), by policy. */
export function victims(policy: ShedPolicy, windows: Waiting[][], excess: number): Waiting[] {
  if (policy === 'oldest') {
    // Oldest first across lanes: by capture time, then by intake order.
    return windows
      .flat()
      .sort((a, b) => a.frame.capturedAt - b.frame.capturedAt || (a.id < b.id ? -1 : 1))
      .slice(0, excess);
  }
  // Lowest priority first (the low lane, then normal, then high), oldest first within one.
  return [...windows].reverse().flat().slice(0, excess);
}

/**
 * Under sustained overload (lanes at the critical bound and as much again upstream) the
 * lanes are trimmed back to the critical bound by the shed policy. Every shed frame gets a
 * frame.dropped with the numbers that made it go, in the same script as its XDEL (which
 * is also the claim: a frame another buffer just handed off is not reported shed).
 */
export class Shedder {
  constructor(private readonly opts: ShedderOptions) {}

  /** Sheds down to the critical bound of `p`; returns the frames shed. */
  async shed(p: Pressure): Promise<number> {
    const { redis, keys, metrics, logger, streamMaxLen, shedPolicy, pressureCritical } = this.opts.settings;
    const { lanes } = this.opts;
    const excess = p.backlog - p.criticalBound;
    if (excess <= 0) return 0;
    const chosen = victims(shedPolicy, await lanes.read(Math.min(excess, SHED_WINDOW)), excess);
    const label = shedPolicy === 'oldest' ? 'shed_oldest' : 'shed_lowest_priority';
    const reason = `backpressure: shed (policy ${shedPolicy}; ${p.backlog} frames waiting >= critical ${p.criticalBound} = ${pressureCritical} x capacity ${p.capacity}, and ${p.upstream} more upstream)`;
    const calls: DelAndAppend[] = chosen.map((w) => ({
      source: lanes.laneKeys[w.lane],
      id: w.id,
      targets: [
        {
          stream: keys.events,
          fields: encodeEvent(
            makeEvent({
              type: 'frame.dropped',
              frameId: w.frame.frameId,
              cameraId: w.frame.cameraId,
              source: 'buffer',
              reason,
              data: { policy: shedPolicy, priority: w.frame.priority, lane: LANES[w.lane] },
            }),
          ),
        },
      ],
    }));
    const took = await delAndAppend(redis, keys.counters, calls, streamMaxLen);
    const n = took.filter(Boolean).length;
    if (n) {
      metrics.framesDropped.inc({ reason: label }, n);
      logger.warn('backpressure: frames shed', {
        count: n,
        policy: shedPolicy,
        backlog: p.backlog,
        critical_bound: p.criticalBound,
        upstream: p.upstream,
      });
    }
    return n;
  }
}
