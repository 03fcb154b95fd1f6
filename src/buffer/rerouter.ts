import { trace, type Span } from '@opentelemetry/api';
import { encodeEvent } from '../bus/event-codec.js';
import type { FieldList } from '../bus/fields.js';
import { decodeReadyFrame, encodeFrame } from '../bus/frame-codec.js';
import { ackAndAppend, type AckAndAppend } from '../bus/handoff.js';
import { COUNTER_FIELDS, GROUPS, readyProcessorOf } from '../bus/keys.js';
import { MalformedMessageError } from '../domain/errors.js';
import { makeEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { BufferSettings } from './buffer-options.js';
import type { BreakerBoard } from './breaker.js';
import { deadLetterAppend } from './dead-letter.js';
import type { RoutedIds } from './routed-ids.js';
import type { Router, RoutingView } from './router.js';
import { routingView, viewRoom, type RegistrySnapshot } from './snapshot.js';

export interface RerouterOptions {
  settings: BufferSettings;
  router: Router;
  breakers: BreakerBoard;
  routed: RoutedIds;
  /** This buffer's consumer name; its re-routing reads as `reroute-<name>` in the processor group. */
  consumer: string;
  isClosing: () => boolean;
}

/** Frames moved per stream per pass (more wait for the next pass). */
const PASS_LIMIT = 100;

interface Held {
  id: string;
  fields: FieldList | null;
  /** Reclaimed from a dead consumer (it had been delivered), rather than never delivered. */
  claimed: boolean;
}

/** One frame's re-routing step and what to count once it is committed. */
interface Step {
  call: AckAndAppend;
  note: () => void;
}

/**
 * Frames of a processor that is gone (no heartbeat for the TTL) or whose breaker is open go
 * to another processor of their capability: its undelivered frames at once, and (gone
 * only) the frames its dead consumers held, once idle for claimIdle. One Lua script per
 * frame: XACK on the old stream guards it (exactly once), then the new ready message, its
 * frame.queued, and a frame.dropped ending the old stage (reason "rerouted ...").
 */
export class Rerouter {
  constructor(private readonly opts: RerouterOptions) {}

  /** One pass over every processor routed to, with the registry and queue depths given. */
  async reroute(registry: RegistrySnapshot, depth: ReadonlyMap<string, number>): Promise<void> {
    const live = new Map(registry.processors.map((p) => [p.id, p]));
    const candidates = new Set([...(await this.opts.routed.list()), ...live.keys()]);
    for (const id of candidates) {
      if (this.opts.isClosing()) return;
      const gone = !live.has(id);
      if (!gone && this.opts.breakers.state(id) !== 'open') continue;
      await this.rerouteFrom(id, gone, registry, depth);
    }
  }

  private async rerouteFrom(from: string, gone: boolean, registry: RegistrySnapshot, depth: ReadonlyMap<string, number>): Promise<void> {
    const { redis, keys, streamMaxLen } = this.opts.settings;
    const stream = keys.ready(from);
    if ((await redis.xlen(stream)) === 0) {
      if (gone) await this.opts.routed.forget(from);
      return;
    }
    const view = routingView(registry.processors, depth, this.opts.breakers, from);
    const room = viewRoom(view);
    if (room === 0) return;
    const consumer = `reroute-${this.opts.consumer}`;
    const held = await this.hold(stream, consumer, Math.min(room, PASS_LIMIT), gone);
    if (!held?.length) return;
    const deliveries = await this.deliveries(stream, held);
    const why = gone
      ? `processor ${from} is gone (no heartbeat for ${this.opts.settings.processorTtlMs} ms)`
      : `processor ${from} circuit breaker open (${this.opts.breakers.snapshot(from).reason ?? ''})`;
    const steps: Step[] = [];
    const spans: Span[] = [];
    for (const h of held) {
      const step = this.step(stream, from, h, deliveries.get(h.id) ?? 1, view, why, gone, spans);
      if (step) steps.push(step);
    }
    if (steps.length) {
      const calls = steps.map((s) => s.call);
      // Remembered before the move: a crash right after it must not hide the new streams.
      await this.opts.routed.remember(
        calls.flatMap((c) => c.targets.map((t) => readyProcessorOf(keys, t.stream)).filter((id): id is string => id !== undefined)),
      );
      let done: boolean[];
      try {
        done = await ackAndAppend(redis, keys.counters, calls, streamMaxLen);
      } catch (err) {
        for (const s of spans) endSpan(s, err);
        throw err;
      }
      done.forEach((d, i) => d && steps[i].note());
      for (const s of spans) s.end();
    }
    // Leave no idle consumer behind in the processor's group.
    const mine = (await redis.xpending(stream, GROUPS.processor, '-', '+', 1, consumer)) as unknown[];
    if (!mine.length) await redis.xgroup('DELCONSUMER', stream, GROUPS.processor, consumer).catch(() => undefined);
  }

  /** Takes up to `count` entries of the stream into `consumer`: new ones, then (gone only) idle ones of dead consumers. */
  private async hold(stream: string, consumer: string, count: number, gone: boolean): Promise<Held[] | undefined> {
    const { redis, claimIdleMs } = this.opts.settings;
    const held: Held[] = [];
    try {
      const res = (await redis.xreadgroup('GROUP', GROUPS.processor, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as
        [string, [string, FieldList][]][] | null;
      for (const [id, fields] of res?.[0]?.[1] ?? []) held.push({ id, fields, claimed: false });
    } catch (err) {
      if (!String((err as Error).message).includes('NOGROUP')) throw err;
      await redis.xgroup('CREATE', stream, GROUPS.processor, '0').catch(() => undefined);
      return undefined;
    }
    if (gone && held.length < count) {
      const [, claimed] = (await redis.xautoclaim(
        stream,
        GROUPS.processor,
        consumer,
        claimIdleMs,
        '0-0',
        'COUNT',
        count - held.length,
      )) as [string, [string, FieldList | null][]];
      for (const [id, fields] of claimed) held.push({ id, fields, claimed: true });
    }
    return held;
  }

  /** How often each reclaimed entry has been delivered (a never-delivered one counts 1). */
  private async deliveries(stream: string, held: Held[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const ids = held.filter((h) => h.claimed).map((h) => h.id);
    if (!ids.length) return out;
    const p = this.opts.settings.redis.pipeline();
    for (const id of ids) p.xpending(stream, GROUPS.processor, id, id, 1);
    const res = (await p.exec()) ?? [];
    res.forEach(([, rows], i) => out.set(ids[i], Number((rows as [string, string, number, number][])[0]?.[3] ?? 1)));
    return out;
  }

  /** The script call for one held entry: moved, dead-lettered, or deleted (already gone); undefined: it stays (no room). */
  private step(
    stream: string,
    from: string,
    h: Held,
    n: number,
    view: RoutingView,
    why: string,
    gone: boolean,
    spans: Span[],
  ): Step | undefined {
    const { keys, tracer, metrics, logger, maxDeliveries } = this.opts.settings;
    const base = { source: stream, group: GROUPS.processor, id: h.id, del: true };
    if (h.fields === null) return { call: { ...base, targets: [] }, note: () => undefined };
    let frame: FrameMessage;
    try {
      frame = decodeReadyFrame(h.fields);
    } catch (e) {
      if (!(e instanceof MalformedMessageError)) throw e;
      metrics.entriesMalformed.inc({ stream });
      const dead = deadLetterAppend(keys.deadLetter, {
        stream,
        id: h.id,
        group: GROUPS.processor,
        reason: `malformed: ${e.message}`,
        deliveries: 1,
        fields: h.fields,
      });
      return {
        call: { ...base, counter: COUNTER_FIELDS.deadLetter(stream), targets: [dead] },
        note: () => metrics.entriesDeadLettered.inc({ stream, reason: 'malformed' }),
      };
    }
    if (h.claimed && n > maxDeliveries) {
      // It keeps killing its processors: no more hops.
      const error = `dead-lettered after ${n} deliveries (max ${maxDeliveries}): the frame keeps killing its processor`;
      const dead = deadLetterAppend(keys.deadLetter, {
        stream,
        id: h.id,
        group: GROUPS.processor,
        reason: `delivered ${n} times (max ${maxDeliveries})`,
        deliveries: n,
        fields: h.fields,
      });
      const failed = makeEvent({
        type: 'processing.failed',
        frameId: frame.frameId,
        cameraId: frame.cameraId,
        source: 'buffer',
        processorId: from,
        capability: frame.capability,
        attempt: n,
        error,
      });
      return {
        call: {
          ...base,
          counter: COUNTER_FIELDS.deadLetter(stream),
          targets: [dead, { stream: keys.events, fields: encodeEvent(failed) }],
        },
        note: () => {
          metrics.entriesDeadLettered.inc({ stream, reason: 'max_deliveries' });
          logger.warn('entry dead-lettered', { stream, entry_id: h.id, frame_id: frame.frameId, reason: error });
        },
      };
    }
    const { router } = this.opts;
    const cap = frame.capability ?? frame.capabilities[0];
    const target = cap ? router.strategy.pick(cap, frame, view.healthy.get(cap) ?? [], new Set([from])) : undefined;
    if (!target || !cap) return undefined; // stays pending to us: retried next pass (gone) or reclaimed by its own processor (open)
    target.depth++;
    router.strategy.chosen?.(cap, target);
    const newStream = keys.ready(target.id);
    const send = startMessagingSpan(tracer, 'send', newStream, extractContext(frame), {
      [ATTR.frameId]: frame.frameId,
      [ATTR.cameraId]: frame.cameraId,
      [ATTR.processorId]: target.id,
      [ATTR.capability]: cap,
      'detektr.rerouted_from': from,
    });
    spans.push(send);
    const carrier = injectContext(trace.setSpan(extractContext(frame), send));
    const at = Date.now();
    const ids = { frameId: frame.frameId, cameraId: frame.cameraId, source: 'buffer' as const, capability: cap, at, ...spanIds(send) };
    // queued (new stage) before dropped (old stage): the frame never looks all-dropped in between.
    const queued = makeEvent({ type: 'frame.queued', ...ids, processorId: target.id, attempt: 1 });
    const dropped = makeEvent({ type: 'frame.dropped', ...ids, processorId: from, reason: `rerouted to ${target.id}: ${why}` });
    return {
      call: {
        ...base,
        targets: [
          { stream: newStream, fields: encodeFrame({ ...frame, processorId: target.id, capability: cap, ...carrier }) },
          { stream: keys.events, fields: encodeEvent(queued) },
          { stream: keys.events, fields: encodeEvent(dropped) },
        ],
      },
      note: () => {
        metrics.framesRerouted.inc({ processor: from, reason: gone ? 'gone' : 'breaker_open' });
        metrics.framesRouted.inc({ processor: target.id, capability: cap });
        logger.info('frame rerouted', { frame_id: frame.frameId, from, to: target.id, reason: why, started_before: h.claimed });
      },
    };
  }
}
