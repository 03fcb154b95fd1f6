import { trace, type Span } from '@opentelemetry/api';
import { sleep } from '../bus/backoff.js';
import { encodeEvent } from '../bus/event-codec.js';
import { decodeFrame, encodeFrame } from '../bus/frame-codec.js';
import { ackAndAppend, type AckAndAppend } from '../bus/handoff.js';
import { GROUPS } from '../bus/keys.js';
import { StreamConsumer, type Entry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { BufferSettings } from './buffer-options.js';
import type { BreakerBoard } from './breaker.js';
import { droppedOnDeadLetter } from './dead-letter.js';
import { laneOf } from './lanes.js';
import { readyMessages } from './ready-messages.js';
import type { RegistryView } from './registry-view.js';
import type { RoutedIds } from './routed-ids.js';
import type { Decision, Router } from './router.js';
import { capacities, routingView, waitingFrames } from './snapshot.js';
import { intakeDirect, type DirectCall } from './scripts.js';

export interface IntakeOptions {
  settings: BufferSettings;
  view: RegistryView;
  router: Router;
  breakers: BreakerBoard;
  routed: RoutedIds;
  /** This buffer's consumer name in the `buffer` group. */
  consumer: string;
  /** Told when frames went into a lane (the dispatcher should look now). */
  onLaned: () => void;
}

/** At high pressure intake reads at most every HIGH_PAUSE_MS, in batches of a quarter of the room left (at least HIGH_MIN_BATCH). */
const HIGH_PAUSE_MS = 20;
const HIGH_MIN_BATCH = 10;
/** A queue measure younger than this is good enough to decide whether to read on. */
const MEASURE_FRESH_MS = 20;
/** The fast path trusts a measure of empty lanes this long (the script re-checks room anyway). */
const FAST_PATH_MEASURE_MS = 1000;

/**
 * The intake loop: frames:captured (consumer group `buffer`, shared by every buffer) ->
 * a priority lane, XACK-guarded so a redelivered entry is taken in once, paced by
 * backpressure (slowed at high, paused at critical). While the lanes are empty it routes
 * at once and hands the frame off in the intake step itself: no extra hop when unloaded.
 */
export class Intake {
  private readonly consumer: StreamConsumer<FrameMessage>;
  private closing = false;
  private lastIntake = 0;

  constructor(private readonly opts: IntakeOptions) {
    const s = opts.settings;
    this.consumer = new StreamConsumer<FrameMessage>({
      redis: s.redis,
      blocking: s.blocking,
      keys: s.keys,
      stream: s.keys.captured,
      group: GROUPS.buffer,
      consumer: opts.consumer,
      decode: decodeFrame,
      handle: (entries) => this.take(entries),
      batchSize: () => this.batchSize(),
      blockMs: s.blockMs,
      claimIdleMs: s.claimIdleMs,
      maxDeliveries: s.maxDeliveries,
      metrics: s.metrics,
      logger: s.logger,
      canConsume: () => this.canTakeIn(),
      onDeadLetter: (tx, bad) => droppedOnDeadLetter(tx, bad, s),
    });
  }

  run(): Promise<void> {
    return this.consumer.run();
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.consumer.close();
  }

  private async canTakeIn(): Promise<boolean> {
    const registry = await this.opts.view.registry();
    // With no processor at all, frames wait in the stream rather than being dropped.
    if (!registry.processors.length) return false;
    let queues = this.opts.view.latest;
    if (Date.now() - queues.at > MEASURE_FRESH_MS) queues = (await this.opts.view.measure()).snapshot;
    const p = queues.pressure;
    if (p.level === 'critical') return p.shedding;
    // Slowed: a short pause between reads, so the processors drain the lanes between batches.
    if (p.level === 'high' && Date.now() - this.lastIntake < HIGH_PAUSE_MS) {
      await sleep(HIGH_PAUSE_MS - (Date.now() - this.lastIntake), () => this.closing);
    }
    return true;
  }

  private batchSize(): number {
    const p = this.opts.view.latest.pressure;
    const { batchSize } = this.opts.settings;
    if (p.shedding) return batchSize;
    // Never overshoot the critical bound by much in one read; at high, a quarter of the room left.
    const room = Math.max(1, p.criticalBound - p.backlog);
    return Math.min(batchSize, p.level === 'high' ? Math.max(HIGH_MIN_BATCH, Math.ceil(room / 4)) : room);
  }

  private async take(entries: Entry<FrameMessage>[]): Promise<void> {
    const { redis, keys, tracer, metrics, logger, streamMaxLen, strategy } = this.opts.settings;
    const { view, router, breakers } = this.opts;
    this.lastIntake = Date.now();
    let registry = await view.registry();
    // The registry may have emptied between canTakeIn and this read (a restart of Redis or of
    // the last processor): wait for one, as canTakeIn does, rather than drop the batch.
    while (!registry.processors.length) {
      if (this.closing) throw new Error('stopping with no processor registered: the batch stays pending');
      await sleep(250, () => this.closing);
      registry = await view.registry(true);
    }
    const { processors } = registry;
    const queues = view.latest;
    const offered = new Set(processors.flatMap((p) => p.capabilities));
    const calls: AckAndAppend[] = [];
    const spans: Span[] = [];
    const after: (() => void)[] = [];
    // Fast path while nothing waits in the lanes: route at once, hand off in the intake step
    // (a frame whose processors filled up meanwhile goes to its lane in the same script).
    const fast = !waitingFrames(queues) && Date.now() - queues.at < FAST_PATH_MEASURE_MS;
    const routing = fast ? routingView(processors, queues.depth, breakers) : undefined;
    const direct: DirectCall[] = [];
    const directInfo: { decision: Extract<Decision, { kind: 'route' }>; spans: Span[] }[] = [];
    const capacity = capacities(processors);
    for (const { id, message: frame, deliveries } of entries) {
      const parent = extractContext(frame);
      const span = startMessagingSpan(tracer, 'process', keys.captured, parent, {
        [ATTR.frameId]: frame.frameId,
        [ATTR.cameraId]: frame.cameraId,
        [ATTR.messagingConsumerGroup]: GROUPS.buffer,
        [ATTR.attempt]: deliveries,
      });
      spans.push(span);
      const wanted = frame.capabilities.length ? frame.capabilities : [...offered].sort();
      const present = wanted.filter((c) => offered.has(c));
      if (!present.length) {
        const reason = `no live processor for ${wanted.join(',') || 'any capability'}`;
        const event = makeEvent({
          type: 'frame.dropped',
          frameId: frame.frameId,
          cameraId: frame.cameraId,
          source: 'buffer',
          reason,
          ...spanIds(span),
        });
        calls.push({
          source: keys.captured,
          group: GROUPS.buffer,
          id,
          del: false,
          targets: [{ stream: keys.events, fields: encodeEvent(event) }],
        });
        after.push(() => {
          metrics.framesDropped.inc({ reason: 'no_processor' });
          logger.warn('frame dropped', { frame_id: frame.frameId, trace_id: span.spanContext().traceId, reason });
        });
        continue;
      }
      if (present.length < wanted.length) {
        const missing = wanted.filter((c) => !offered.has(c));
        for (const c of missing) metrics.capabilityUnserved.inc({ capability: c });
        logger.warn('no live processor for some capabilities: the frame goes to the others', { frame_id: frame.frameId, missing });
      }
      const lane = laneOf(frame.priority);
      const ctx = trace.setSpan(parent, span);
      const carrier = injectContext(ctx);
      const waiting: FrameMessage = { ...frame, capabilities: present, traceparent: carrier.traceparent, tracestate: carrier.tracestate };
      let decision: Decision | undefined;
      if (routing) {
        const t0 = performance.now();
        decision = router.decide(waiting, routing);
        metrics.routingSeconds.observe({ strategy }, (performance.now() - t0) / 1000);
      }
      if (decision?.kind === 'route') {
        const handoff = readyMessages({ keys, tracer, strategy }, waiting, ctx, decision, capacity, {
          'detektr.lane': lane,
          'detektr.wait_ms': 0,
        });
        direct.push({
          captured: keys.captured,
          group: GROUPS.buffer,
          entryId: id,
          lane: keys.lane(lane),
          laneEntry: encodeFrame(waiting),
          routes: handoff.routes,
        });
        directInfo.push({ decision, spans: handoff.spans });
        continue;
      }
      calls.push({
        source: keys.captured,
        group: GROUPS.buffer,
        id,
        del: false,
        targets: [{ stream: keys.lane(lane), fields: encodeFrame(waiting) }],
      });
    }
    let done: boolean[];
    let outcomes: Awaited<ReturnType<typeof intakeDirect>>;
    try {
      if (direct.length) await this.opts.routed.remember(directInfo.flatMap((d) => d.decision.routes.map((r) => r.processorId)));
      [done, outcomes] = await Promise.all([
        ackAndAppend(redis, keys.counters, calls, streamMaxLen),
        intakeDirect(redis, keys.events, direct, streamMaxLen),
      ]);
    } catch (err) {
      for (const s of [...spans, ...directInfo.flatMap((d) => d.spans)]) endSpan(s, err);
      throw err;
    }
    const dup = done.filter((d) => !d).length + outcomes.filter((o) => o === 'duplicate').length;
    if (dup) logger.info('entries already taken in (redelivery after a lost reply): skipped', { count: dup });
    outcomes.forEach((o, i) => {
      const { decision, spans: sendSpans } = directInfo[i];
      if (o === 'sent') {
        metrics.bufferWaitSeconds.observe({ lane: 'direct' }, 0);
        for (const r of decision.routes) {
          metrics.framesRouted.inc({ processor: r.processorId, capability: r.capability });
          breakers.routed(r.processorId);
        }
      }
      for (const sp of sendSpans) {
        if (o !== 'sent') sp.setAttribute('detektr.outcome', o);
        sp.end();
      }
    });
    for (const a of after) a();
    for (const s of spans) s.end();
    if (outcomes.some((o) => o === 'laned') || calls.length) this.opts.onLaned();
  }
}
