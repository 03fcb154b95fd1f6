import type { Span } from '@opentelemetry/api';
import { encodeEvent } from '../bus/event-codec.js';
import { delAndAppend, type DelAndAppend } from '../bus/handoff.js';
import { makeEvent } from '../domain/events.js';
import { extractContext, endSpan } from '../telemetry/tracing.js';
import type { BufferSettings } from './buffer-options.js';
import type { BreakerBoard } from './breaker.js';
import type { LaneReader, Waiting } from './lane-reader.js';
import { LANES, LaneScheduler } from './lanes.js';
import { readyMessages } from './ready-messages.js';
import type { RawLanes } from './registry-view.js';
import type { RoutedIds } from './routed-ids.js';
import type { Decision, Router } from './router.js';
import { capacities, routingView, viewRoom, waitingFrames, type QueueSnapshot } from './snapshot.js';
import { dispatchFrames, type DispatchCall } from './scripts.js';

export interface DispatcherOptions {
  settings: BufferSettings;
  router: Router;
  breakers: BreakerBoard;
  lanes: LaneReader;
  routed: RoutedIds;
}

type Routed = Extract<Decision, { kind: 'route' }>;

/** Most frames one round hands off (a round is one script call per frame, pipelined). */
const ROUND_LIMIT = 2000;

/** The time a frame waited in its lane: a lane entry id starts with the ms it was added at. */
const waitedMs = (w: Waiting, now: number) => now - Number(w.id.split('-')[0]);

/**
 * One dispatch round: lanes -> frames:ready:<processor>, one processor per capability,
 * chosen by the strategy among processors with room whose breaker allows; frames served by
 * priority with a starvation bound. Each hand-off is one Lua script (room check, XDEL of
 * the lane entry as the claim, ready messages + frame.queued events), so several buffers
 * can serve the same lanes.
 */
export class Dispatcher {
  private readonly scheduler: LaneScheduler;

  constructor(private readonly opts: DispatcherOptions) {
    this.scheduler = new LaneScheduler(opts.settings.starvationLimit);
  }

  /** Hands off what the processors have room for among `heads` (the lane heads read with `queues`); returns frames sent. */
  async round(queues: QueueSnapshot, heads: RawLanes): Promise<number> {
    const { redis, keys, metrics, logger, streamMaxLen, strategy, tracer } = this.opts.settings;
    const { router, breakers, lanes } = this.opts;
    if (!waitingFrames(queues)) return 0;
    const { processors } = queues.registry;
    const view = routingView(processors, queues.depth, breakers);
    if (viewRoom(view) === 0) return 0;
    const windows = await lanes.decode(heads);
    const cursor = LANES.map(() => 0);
    const drops: DelAndAppend[] = [];
    const dropNotes: (() => void)[] = [];
    const chosen: { w: Waiting; decision: Routed; ready: boolean[] }[] = [];
    const schedulerBefore = this.scheduler.save();
    const decideStarted = performance.now();
    let decisions = 0;
    const nextIn = (lane: number): Decision | undefined => {
      const list = windows[lane];
      while (cursor[lane] < list.length) {
        const w = list[cursor[lane]];
        decisions++;
        const d = router.decide(w.frame, view, false);
        if (d.kind === 'route') return d;
        cursor[lane]++;
        if (d.kind === 'drop') {
          const reason = `no live processor for ${d.missing.join(',')}`;
          const event = makeEvent({
            type: 'frame.dropped',
            frameId: w.frame.frameId,
            cameraId: w.frame.cameraId,
            source: 'buffer',
            reason,
          });
          drops.push({ source: lanes.laneKeys[lane], id: w.id, targets: [{ stream: keys.events, fields: encodeEvent(event) }] });
          dropNotes.push(() => {
            metrics.framesDropped.inc({ reason: 'no_processor' });
            logger.warn('frame dropped', { frame_id: w.frame.frameId, reason });
          });
        }
        // 'wait': its processors are full or their breakers open; room only shrinks in a round, so skip it.
      }
      return undefined;
    };
    for (let guard = 0; guard < ROUND_LIMIT; guard++) {
      const pending = LANES.map((_, i) => nextIn(i));
      const ready = pending.map((d) => d !== undefined);
      const lane = this.scheduler.pick(ready);
      if (lane < 0) break;
      const decision = pending[lane] as Routed;
      router.commit(decision, view);
      chosen.push({ w: windows[lane][cursor[lane]], decision, ready });
      cursor[lane]++;
    }
    if (decisions) metrics.routingSeconds.observe({ strategy }, (performance.now() - decideStarted) / 1000 / decisions);
    if (drops.length) {
      const took = await delAndAppend(redis, keys.counters, drops, streamMaxLen);
      took.forEach((t, i) => t && dropNotes[i]());
    }
    if (!chosen.length) return 0;

    const calls: DispatchCall[] = [];
    const spans: Span[][] = [];
    const capacity = capacities(processors);
    const now = Date.now();
    for (const { w, decision } of chosen) {
      const { routes, spans: frameSpans } = readyMessages(
        { keys, tracer, strategy },
        w.frame,
        extractContext(w.frame),
        decision,
        capacity,
        {
          'detektr.lane': LANES[w.lane],
          'detektr.wait_ms': waitedMs(w, now),
        },
      );
      spans.push(frameSpans);
      calls.push({ lane: lanes.laneKeys[w.lane], entryId: w.id, routes });
    }
    await this.opts.routed.remember(chosen.flatMap((c) => c.decision.routes.map((r) => r.processorId)));
    let outcomes: Awaited<ReturnType<typeof dispatchFrames>>;
    try {
      outcomes = await dispatchFrames(redis, keys.events, calls, streamMaxLen);
    } catch (err) {
      for (const s of spans.flat()) endSpan(s, err);
      throw err;
    }
    // Starvation counters count hand-offs that happened: replay only those.
    if (outcomes.some((o) => o !== 'sent')) {
      this.scheduler.restore(schedulerBefore);
      outcomes.forEach((o, i) => o === 'sent' && this.scheduler.apply(chosen[i].ready, chosen[i].w.lane));
    }
    let sent = 0;
    outcomes.forEach((o, i) => {
      const { w, decision } = chosen[i];
      if (o === 'sent') {
        sent++;
        metrics.bufferWaitSeconds.observe({ lane: LANES[w.lane] }, Math.max(0, waitedMs(w, now)) / 1000);
        for (const r of decision.routes) {
          metrics.framesRouted.inc({ processor: r.processorId, capability: r.capability });
          breakers.routed(r.processorId);
        }
        for (const s of spans[i]) s.end();
      } else {
        // 'taken': another buffer handed it off; 'full': another buffer filled the queue first.
        for (const s of spans[i]) {
          s.setAttribute('detektr.outcome', o);
          s.end();
        }
      }
    });
    return sent;
  }
}
