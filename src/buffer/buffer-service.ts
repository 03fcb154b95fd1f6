import { trace, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { ChainableCommander, Redis } from 'ioredis';
import { sleep, backoffDelay } from '../bus/backoff.js';
import { encodeEvent } from '../bus/event-codec.js';
import { ID_RE, toFieldMap, type FieldList } from '../bus/fields.js';
import { isFrameId } from '../domain/frame-id.js';
import { decodeFrame, decodeReadyFrame, encodeFrame } from '../bus/frame-codec.js';
import { groupLag } from '../bus/group-lag.js';
import { ackAndAppend, delAndAppend, type AckAndAppend, type Append, type DelAndAppend } from '../bus/handoff.js';
import { GROUPS, type RedisKeys } from '../bus/keys.js';
import { addEvent } from '../bus/publish.js';
import { StreamConsumer, consumerName, type DeadLetterEntry, type Entry } from '../bus/stream-consumer.js';
import { InvalidInputError, MalformedMessageError } from '../domain/errors.js';
import { makeEvent, type LifecycleEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, extractContext, injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import { BreakerBoard, type BreakerSnapshot } from './breaker.js';
import { LANES, LaneScheduler, laneOf, type Lane } from './lanes.js';
import { computePressure, LEVEL_VALUE, type Pressure, type ShedPolicy } from './pressure.js';
import { ProcessorRegistry, type ProcessorInfo } from './registry.js';
import { createStrategy, Router, type Candidate, type Decision, type RoutingView, type StrategyName } from './router.js';
import { dispatchFrames, intakeDirect, type DirectCall, type DispatchCall } from './scripts.js';

export interface BufferOptions {
  redis: Redis;
  blocking: Redis;
  keys: RedisKeys;
  tracer: Tracer;
  metrics: Metrics;
  logger: Logger;
  processorTtlMs: number;
  streamMaxLen: number;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  /** How a processor is chosen among those of a capability (default least-loaded). */
  strategy?: StrategyName;
  /** Which waiting frames go first when shedding (default lowest-priority). */
  shedPolicy?: ShedPolicy;
  /** Backlog, in multiples of capacity, at which intake slows (default 4) / pauses then sheds (default 16). */
  pressureHigh?: number;
  pressureCritical?: number;
  /** Dequeues a ready lower lane may be passed over (default 8). */
  starvationLimit?: number;
  /** Consecutive failures that open a processor's breaker (default 5), and its cooldown (default 10 s). */
  breakerFailures?: number;
  breakerCooldownMs?: number;
  /** Longest pause between dispatch rounds while frames wait (default 10 ms). */
  dispatchIntervalMs?: number;
}

/** One processor as the status API shows it. */
export interface ProcessorStatus extends ProcessorInfo {
  depth: number;
  load: number;
  breaker: BreakerSnapshot;
  ageMs: number;
}

export interface BufferStatus {
  strategy: StrategyName;
  shedPolicy: ShedPolicy;
  pressure: Pressure;
  lanes: Record<Lane, number>;
  input: { stream: string; lag: number | null; pending: number };
  processors: ProcessorStatus[];
  capabilities: Record<string, string[]>;
  deadLetter: Record<string, number>;
}

type RawLanes = [id: string, fields: FieldList][][];

interface Waiting {
  id: string;
  lane: number;
  frame: FrameMessage;
}

const REGISTRY_REFRESH_MS = 250;
/** At high pressure intake reads at most every HIGH_PAUSE_MS, in batches of a quarter of the room left (at least HIGH_MIN_BATCH). */
const HIGH_PAUSE_MS = 20;
const HIGH_MIN_BATCH = 10;

function fieldOf(fields: FieldList, name: string): string | undefined {
  try {
    return toFieldMap(fields).get(name);
  } catch {
    return undefined;
  }
}

/**
 * The orchestrator. Two loops over Redis:
 *
 * intake   frames:captured (consumer group `buffer`, shared by every buffer) -> a priority
 *          lane (frames:waiting:high|normal|low), XACK-guarded so a redelivered entry is
 *          taken in once; paced by backpressure (slow at high, paused at critical).
 * dispatch lanes -> frames:ready:<processor>, one processor per capability, chosen by the
 *          strategy among processors with room whose breaker allows; served by priority
 *          with a starvation bound; each hand-off one Lua script (room check, XDEL of the
 *          lane entry as the claim, ready messages + frame.queued events). Also sheds the
 *          lanes under sustained overload, and re-routes the frames of processors that died
 *          or whose breaker is open to another processor of the capability.
 */
export class BufferService {
  readonly registry: ProcessorRegistry;
  private readonly consumer: StreamConsumer<FrameMessage>;
  private readonly router: Router;
  private readonly breakers: BreakerBoard;
  private readonly scheduler: LaneScheduler;
  private readonly laneKeys: string[];
  private readonly strategyName: StrategyName;
  private readonly shedPolicy: ShedPolicy;
  private readonly name = consumerName('buffer');
  private processors: ProcessorInfo[] = [];
  private refreshedAt = 0;
  private depth = new Map<string, number>();
  private measuredAt = 0;
  private decoded = new Map<string, FrameMessage>();
  private laneLen: number[] = LANES.map(() => 0);
  private upstream = 0;
  private upstreamInfo: { lag: number | null; pending: number } = { lag: 0, pending: 0 };
  private pressureNow: Pressure;
  private closing = false;
  private dispatching?: Promise<void>;
  private wake?: () => void;
  private kicked = false;
  private lastIntake = 0;
  private lastReroute = 0;
  private routed = new Set<string>();
  private routedLoadedAt = 0;

  constructor(private readonly opts: BufferOptions) {
    this.strategyName = opts.strategy ?? 'least-loaded';
    this.shedPolicy = opts.shedPolicy ?? 'lowest-priority';
    const high = opts.pressureHigh ?? 4;
    const critical = opts.pressureCritical ?? 16;
    if (!(critical >= high)) throw new InvalidInputError(`pressureCritical (${critical}) must be at least pressureHigh (${high})`);
    this.router = new Router(createStrategy(this.strategyName));
    this.breakers = new BreakerBoard({ failureThreshold: opts.breakerFailures ?? 5, cooldownMs: opts.breakerCooldownMs ?? 10_000 });
    this.scheduler = new LaneScheduler(opts.starvationLimit ?? 8);
    this.laneKeys = LANES.map((l) => opts.keys.lane(l));
    this.registry = new ProcessorRegistry(opts.redis, opts.keys, opts.processorTtlMs);
    this.pressureNow = computePressure({ high, critical }, 0, 0, 0);
    this.consumer = new StreamConsumer<FrameMessage>({
      redis: opts.redis,
      blocking: opts.blocking,
      keys: opts.keys,
      stream: opts.keys.captured,
      group: GROUPS.buffer,
      consumer: this.name,
      decode: decodeFrame,
      handle: (entries) => this.intake(entries),
      batchSize: () => this.intakeBatch(),
      blockMs: opts.blockMs,
      claimIdleMs: opts.claimIdleMs,
      maxDeliveries: opts.maxDeliveries,
      metrics: opts.metrics,
      logger: opts.logger,
      canConsume: () => this.canTakeIn(),
      onDeadLetter: (tx, bad) => this.droppedOnDeadLetter(tx, bad),
    });
  }

  run(): Promise<void> {
    this.dispatching ??= this.dispatchLoop();
    return Promise.all([this.consumer.run(), this.dispatching]).then(() => undefined);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    await Promise.all([this.consumer.close(), this.dispatching]);
  }

  async liveProcessors(): Promise<ProcessorInfo[]> {
    await this.refreshIfStale();
    return this.processors;
  }

  get pressure(): Pressure {
    return this.pressureNow;
  }

  // ---------------------------------------------------------------- view of the world

  private async refreshIfStale(force = false): Promise<void> {
    if (!force && Date.now() - this.refreshedAt < REGISTRY_REFRESH_MS) return;
    const { metrics, logger } = this.opts;
    const now = Date.now();
    this.processors = await this.registry.live(now);
    this.refreshedAt = now;
    for (const t of this.breakers.update(this.processors, now)) {
      metrics.breakerTransitions.inc({ processor: t.processorId, to: t.to });
      (t.to === 'open' ? logger.warn : logger.info)('circuit breaker ' + t.to, {
        processor_id: t.processorId,
        from: t.from,
        reason: t.reason,
      });
    }
    const byCap = new Map<string, number>();
    for (const p of this.processors) for (const c of p.capabilities) byCap.set(c, (byCap.get(c) ?? 0) + 1);
    metrics.processorsRegistered.reset();
    for (const [c, n] of byCap) metrics.processorsRegistered.set({ capability: c }, n);
    metrics.breakerState.reset();
    metrics.queueCapacity.reset();
    for (const p of this.processors) {
      const s = this.breakers.state(p.id);
      metrics.breakerState.set({ processor: p.id }, s === 'closed' ? 0 : s === 'half-open' ? 1 : 2);
      metrics.queueCapacity.set({ processor: p.id }, p.capacity);
    }
    await this.measureUpstream();
    if (now - this.routedLoadedAt > 5000) {
      for (const id of await this.opts.redis.smembers(this.opts.keys.routed)) this.routed.add(id);
      this.routedLoadedAt = now;
    }
  }

  /** Captured frames not yet taken in by any buffer. */
  private async measureUpstream(): Promise<void> {
    const { redis, keys } = this.opts;
    const g = (await groupLag(redis, keys.captured)).find((l) => l.group === GROUPS.buffer);
    this.upstreamInfo = { lag: g?.lag ?? null, pending: g?.pending ?? 0 };
    if (!g) {
      this.upstream = 0;
    } else if (g.lag !== null) {
      this.upstream = g.lag;
    } else {
      // Redis cannot tell (entries deleted): count what follows the group's last delivery, up to a bound.
      const info = (await redis.xinfo('GROUPS', keys.captured)) as unknown[][];
      const row = info.find((r) => r[r.indexOf('name') + 1] === GROUPS.buffer) ?? [];
      const last = String(row[row.indexOf('last-delivered-id') + 1] ?? '0-0');
      const bound = this.pressureNow.criticalBound + 1;
      this.upstream = (await redis.xrange(keys.captured, `(${last}`, '+', 'COUNT', bound)).length;
    }
  }

  /**
   * Ready stream lengths (= frames each processor holds) and lane lengths, in one round
   * trip; with `window`, the head of each lane too (the dispatch round's input).
   */
  private async measureQueues(window = 0): Promise<RawLanes | undefined> {
    const { redis, keys, metrics } = this.opts;
    const p = redis.pipeline();
    for (const proc of this.processors) p.xlen(keys.ready(proc.id));
    for (const k of this.laneKeys) p.xlen(k);
    if (window) for (const k of this.laneKeys) p.xrange(k, '-', '+', 'COUNT', window);
    const res = (await p.exec()) ?? [];
    this.measuredAt = Date.now();
    const n = this.processors.length;
    this.depth = new Map(this.processors.map((proc, i) => [proc.id, Number(res[i]?.[1] ?? 0)]));
    this.laneLen = this.laneKeys.map((_, i) => Number(res[n + i]?.[1] ?? 0));
    const healthyCap = this.processors.filter((x) => this.breakers.state(x.id) !== 'open').reduce((s, x) => s + x.capacity, 0);
    const capacity = healthyCap || this.processors.reduce((s, x) => s + x.capacity, 0);
    const backlog = this.laneLen.reduce((a, b) => a + b, 0);
    this.pressureNow = computePressure(
      { high: this.opts.pressureHigh ?? 4, critical: this.opts.pressureCritical ?? 16 },
      backlog,
      capacity,
      this.upstream,
    );
    metrics.pressureLevel.set(LEVEL_VALUE[this.pressureNow.level]);
    LANES.forEach((l, i) => metrics.backlog.set({ lane: l }, this.laneLen[i]));
    metrics.queueDepth.reset();
    for (const [id, d] of this.depth) metrics.queueDepth.set({ processor: id }, d);
    if (!window) return undefined;
    return this.laneKeys.map((_, i) => {
      const [err, rows] = res[n + this.laneKeys.length + i] ?? [];
      if (err) throw err;
      return (rows as [string, FieldList][]) ?? [];
    });
  }

  private view(exclude?: string): RoutingView {
    const offered = new Map<string, string[]>();
    const healthy = new Map<string, Candidate[]>();
    const now = Date.now();
    for (const p of this.processors) {
      if (p.id === exclude) continue;
      const allowed = this.breakers.allows(p.id, now);
      const c: Candidate = { id: p.id, depth: this.depth.get(p.id) ?? 0, capacity: p.capacity };
      for (const cap of p.capabilities) {
        offered.set(cap, [...(offered.get(cap) ?? []), p.id]);
        if (allowed) healthy.set(cap, [...(healthy.get(cap) ?? []), c]);
      }
    }
    return { offered, healthy };
  }

  // ---------------------------------------------------------------- intake

  private async canTakeIn(): Promise<boolean> {
    await this.refreshIfStale();
    // With no processor at all, frames wait in the stream rather than being dropped.
    if (!this.processors.length) return false;
    if (Date.now() - this.measuredAt > 20) await this.measureQueues();
    const p = this.pressureNow;
    if (p.level === 'critical') return p.shedding;
    // Slowed: a short pause between reads, so the processors drain the lanes between batches.
    if (p.level === 'high' && Date.now() - this.lastIntake < HIGH_PAUSE_MS) {
      await sleep(HIGH_PAUSE_MS - (Date.now() - this.lastIntake), () => this.closing);
    }
    return true;
  }

  private intakeBatch(): number {
    const p = this.pressureNow;
    if (p.shedding) return this.opts.batchSize;
    // Never overshoot the critical bound by much in one read; at high, a quarter of the room left.
    const room = Math.max(1, p.criticalBound - p.backlog);
    return Math.min(this.opts.batchSize, p.level === 'high' ? Math.max(HIGH_MIN_BATCH, Math.ceil(room / 4)) : room);
  }

  private async intake(entries: Entry<FrameMessage>[]): Promise<void> {
    const { redis, keys, tracer, metrics, logger, streamMaxLen } = this.opts;
    this.lastIntake = Date.now();
    await this.refreshIfStale();
    // The registry may have emptied between canTakeIn and this read (a restart of Redis or of
    // the last processor): wait for one, as canTakeIn does, rather than drop the batch.
    while (!this.processors.length) {
      if (this.closing) throw new Error('stopping with no processor registered: the batch stays pending');
      await sleep(250, () => this.closing);
      await this.refreshIfStale(true);
    }
    const offered = new Set(this.processors.flatMap((p) => p.capabilities));
    const calls: AckAndAppend[] = [];
    const spans: Span[] = [];
    const after: (() => void)[] = [];
    // Fast path while nothing waits in the lanes: route at once, hand off in the intake step
    // (a frame whose processors filled up meanwhile goes to its lane in the same script).
    const view =
      this.processors.length && this.laneLen.every((n) => n === 0) && Date.now() - this.measuredAt < 1000 ? this.view() : undefined;
    const direct: DirectCall[] = [];
    const directInfo: { frameId: string; decision: Extract<Decision, { kind: 'route' }>; spans: Span[] }[] = [];
    const capacity = new Map(this.processors.map((p) => [p.id, p.capacity]));
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
      if (view) {
        const t0 = performance.now();
        decision = this.router.decide(waiting, view);
        metrics.routingSeconds.observe({ strategy: this.strategyName }, (performance.now() - t0) / 1000);
      }
      if (decision?.kind === 'route') {
        const handoff = this.handoff(waiting, ctx, decision, capacity, { 'detektr.lane': lane, 'detektr.wait_ms': 0 });
        direct.push({
          captured: keys.captured,
          group: GROUPS.buffer,
          entryId: id,
          lane: keys.lane(lane),
          laneEntry: encodeFrame(waiting),
          routes: handoff.routes,
        });
        directInfo.push({ frameId: frame.frameId, decision, spans: handoff.spans });
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
      if (direct.length) await this.rememberRouted(directInfo.flatMap((d) => d.decision.routes.map((r) => r.processorId)));
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
          this.breakers.routed(r.processorId);
        }
      }
      for (const sp of sendSpans) {
        if (o !== 'sent') sp.setAttribute('detektr.outcome', o);
        sp.end();
      }
    });
    for (const a of after) a();
    for (const s of spans) s.end();
    if (outcomes.some((o) => o === 'laned') || calls.length) {
      this.kicked = true;
      this.wake?.();
    }
  }

  /** The ready messages and frame.queued events of a routed frame, each with its `send` span. */
  private handoff(
    frame: FrameMessage,
    parent: Context,
    decision: Extract<Decision, { kind: 'route' }>,
    capacity: Map<string, number>,
    attrs: Record<string, string | number>,
  ) {
    const { keys, tracer } = this.opts;
    const spans: Span[] = [];
    const routes = decision.routes.map(({ processorId, capability }) => {
      const stream = keys.ready(processorId);
      const send = startMessagingSpan(tracer, 'send', stream, parent, {
        [ATTR.frameId]: frame.frameId,
        [ATTR.cameraId]: frame.cameraId,
        [ATTR.processorId]: processorId,
        [ATTR.capability]: capability,
        'detektr.strategy': this.strategyName,
        ...attrs,
      });
      spans.push(send);
      const carrier = injectContext(trace.setSpan(parent, send));
      const message = encodeFrame({ ...frame, processorId, capability, ...carrier });
      const event = encodeEvent(
        makeEvent({
          type: 'frame.queued',
          frameId: frame.frameId,
          cameraId: frame.cameraId,
          source: 'buffer',
          processorId,
          capability,
          attempt: 1,
          ...spanIds(send),
        }),
      );
      return { stream, capacity: capacity.get(processorId) ?? 0, message, event };
    });
    return { routes, spans };
  }

  /** A captured entry dead-lettered (poison or malformed) still ends as a frame.dropped when its ids are readable. */
  private droppedOnDeadLetter(tx: ChainableCommander, bad: DeadLetterEntry[]): void {
    for (const b of bad) {
      const frameId = fieldOf(b.fields, 'frame_id');
      const cameraId = fieldOf(b.fields, 'camera_id');
      if (!frameId || !cameraId || !isFrameId(frameId) || !ID_RE.test(cameraId)) continue;
      addEvent(
        tx,
        this.opts.keys,
        makeEvent({ type: 'frame.dropped', frameId, cameraId, source: 'buffer', reason: `dead-lettered: ${b.reason}` }),
        this.opts.streamMaxLen,
      );
      this.opts.metrics.framesDropped.inc({ reason: 'dead_letter' });
    }
  }

  // ---------------------------------------------------------------- dispatch

  private async dispatchLoop(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      let sent = 0;
      this.kicked = false;
      try {
        await this.refreshIfStale();
        // Look ahead twice the room the processors have (frames for full or open processors
        // are skipped), at least 16. The heads come in the same round trip as the lengths when
        // the last look saw room; with every queue full, only the lengths are read (polling
        // the heads of a long backlog would cost more than the dispatching).
        const window = (room: number) => Math.min(500, Math.max(16, 2 * room));
        const before = this.room();
        let heads = await this.measureQueues(before > 0 ? window(before) : 0);
        if (this.processors.length) {
          if (this.pressureNow.shedding) {
            await this.shed();
          } else if (this.laneLen.some((n) => n > 0) && this.room() > 0) {
            heads ??= await this.readHeads(window(this.room()));
            sent = await this.dispatchRound(heads);
          }
        }
        if (Date.now() - this.lastReroute >= Math.min(Math.max(250, this.opts.claimIdleMs / 2), 5000)) {
          this.lastReroute = Date.now();
          await this.reroute();
        }
        failures = 0;
      } catch (err) {
        failures++;
        this.opts.logger.warn('dispatch round failed; retrying', { error: err, attempt: failures });
        await sleep(backoffDelay(failures, 100, 5000), () => this.closing);
        continue;
      }
      // A wake-up that came during the round (frames taken in after the lanes were read) is not lost.
      if (sent > 0 || this.kicked) continue;
      // Frames waiting: look again soon (less often when every queue is full: each holds
      // `capacity` frames of work); none waiting: intake's wake-up comes first.
      const waiting = this.laneLen.some((n) => n > 0);
      const interval = this.opts.dispatchIntervalMs ?? 10;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waiting ? (this.room() > 0 ? interval : 2.5 * interval) : 200);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Reads the head of each lane, picks frames in priority order while processors have room, hands them off. */
  private async dispatchRound(heads: RawLanes): Promise<number> {
    const { redis, keys, metrics, logger, streamMaxLen } = this.opts;
    if (!this.laneLen.some((n) => n > 0)) return 0;
    const view = this.view();
    const room = [...new Set([...view.healthy.values()].flat())].reduce((s, c) => s + Math.max(0, c.capacity - c.depth), 0);
    if (room === 0) return 0;
    const windows = await this.decodeLanes(heads);
    const cursor = LANES.map(() => 0);
    const drops: DelAndAppend[] = [];
    const dropNotes: (() => void)[] = [];
    const chosen: { w: Waiting; decision: Extract<Decision, { kind: 'route' }>; ready: boolean[] }[] = [];
    const schedulerBefore = this.scheduler.save();
    const decideStarted = performance.now();
    let decisions = 0;
    const nextIn = (lane: number): Decision | undefined => {
      const list = windows[lane];
      while (cursor[lane] < list.length) {
        const w = list[cursor[lane]];
        decisions++;
        const d = this.router.decide(w.frame, view, false);
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
          drops.push({ source: this.laneKeys[lane], id: w.id, targets: [{ stream: keys.events, fields: encodeEvent(event) }] });
          dropNotes.push(() => {
            metrics.framesDropped.inc({ reason: 'no_processor' });
            logger.warn('frame dropped', { frame_id: w.frame.frameId, reason });
          });
        }
        // 'wait': its processors are full or their breakers open; room only shrinks in a round, so skip it.
      }
      return undefined;
    };
    for (let guard = 0; guard < 2000; guard++) {
      const pending = LANES.map((_, i) => nextIn(i));
      const ready = pending.map((d) => d !== undefined);
      const lane = this.scheduler.pick(ready);
      if (lane < 0) break;
      const decision = pending[lane] as Extract<Decision, { kind: 'route' }>;
      this.router.commit(decision, view);
      chosen.push({ w: windows[lane][cursor[lane]], decision, ready });
      cursor[lane]++;
    }
    if (decisions) metrics.routingSeconds.observe({ strategy: this.strategyName }, (performance.now() - decideStarted) / 1000 / decisions);
    if (drops.length) {
      const took = await delAndAppend(redis, keys.counters, drops, streamMaxLen);
      took.forEach((t, i) => t && dropNotes[i]());
    }
    if (!chosen.length) return 0;

    const calls: DispatchCall[] = [];
    const spans: Span[][] = [];
    const capacity = new Map(this.processors.map((p) => [p.id, p.capacity]));
    const now = Date.now();
    for (const { w, decision } of chosen) {
      const { routes, spans: frameSpans } = this.handoff(w.frame, extractContext(w.frame), decision, capacity, {
        'detektr.lane': LANES[w.lane],
        'detektr.wait_ms': now - Number(w.id.split('-')[0]),
      });
      spans.push(frameSpans);
      calls.push({ lane: this.laneKeys[w.lane], entryId: w.id, routes });
    }
    await this.rememberRouted(chosen.flatMap((c) => c.decision.routes.map((r) => r.processorId)));
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
        metrics.bufferWaitSeconds.observe({ lane: LANES[w.lane] }, Math.max(0, now - Number(w.id.split('-')[0])) / 1000);
        for (const r of decision.routes) {
          metrics.framesRouted.inc({ processor: r.processorId, capability: r.capability });
          this.breakers.routed(r.processorId);
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

  /** Free slots of the processors a frame may go to now, as of the last measure. */
  private room(): number {
    let room = 0;
    const now = Date.now();
    for (const p of this.processors) if (this.breakers.allows(p.id, now)) room += Math.max(0, p.capacity - (this.depth.get(p.id) ?? 0));
    return room;
  }

  private async readHeads(count: number): Promise<RawLanes> {
    const p = this.opts.redis.pipeline();
    for (const k of this.laneKeys) p.xrange(k, '-', '+', 'COUNT', count);
    const res = (await p.exec()) ?? [];
    return res.map(([err, rows]) => {
      if (err) throw err;
      return (rows as [string, FieldList][]) ?? [];
    });
  }

  private async readLanes(count: number): Promise<Waiting[][]> {
    const p = this.opts.redis.pipeline();
    for (const k of this.laneKeys) p.xrange(k, '-', '+', 'COUNT', count);
    const res = (await p.exec()) ?? [];
    return this.decodeLanes(
      res.map(([err, rows]) => {
        if (err) throw err;
        return (rows as [string, FieldList][]) ?? [];
      }),
    );
  }

  /**
   * Decodes lane entries (the heads are read again every round: decoded frames are cached by
   * entry id); a malformed one is dead-lettered (and counted) on the spot.
   */
  private async decodeLanes(raw: RawLanes): Promise<Waiting[][]> {
    const { redis, keys, metrics, logger, streamMaxLen } = this.opts;
    const out: Waiting[][] = LANES.map(() => []);
    const bad: DelAndAppend[] = [];
    const cache = new Map<string, FrameMessage>();
    raw.forEach((rows, lane) => {
      for (const [id, fields] of rows) {
        try {
          // Entry ids are per stream: two lanes can hold the same id.
          const key = `${lane}/${id}`;
          const frame = this.decoded.get(key) ?? decodeFrame(fields);
          cache.set(key, frame);
          out[lane].push({ id, lane, frame });
        } catch (e) {
          if (!(e instanceof MalformedMessageError)) throw e;
          metrics.entriesMalformed.inc({ stream: this.laneKeys[lane] });
          metrics.entriesDeadLettered.inc({ stream: this.laneKeys[lane], reason: 'malformed' });
          logger.warn('entry dead-lettered', { stream: this.laneKeys[lane], entry_id: id, reason: `malformed: ${e.message}` });
          bad.push({
            source: this.laneKeys[lane],
            id,
            counter: `dead_letter:${this.laneKeys[lane]}`,
            targets: [
              {
                stream: keys.deadLetter,
                fields: [
                  'stream',
                  this.laneKeys[lane],
                  'entry_id',
                  id,
                  'reason',
                  `malformed: ${e.message}`,
                  'deliveries',
                  '1',
                  'at',
                  String(Date.now()),
                  'fields',
                  JSON.stringify(fields).slice(0, 65_536),
                ],
              },
            ],
          });
        }
      }
    });
    this.decoded = cache; // only what is still at the heads of the lanes
    if (bad.length) await delAndAppend(redis, keys.counters, bad, streamMaxLen);
    return out;
  }

  private async rememberRouted(ids: string[]): Promise<void> {
    const fresh = [...new Set(ids)].filter((id) => !this.routed.has(id));
    if (!fresh.length) return;
    await this.opts.redis.sadd(this.opts.keys.routed, ...fresh);
    for (const id of fresh) this.routed.add(id);
  }

  // ---------------------------------------------------------------- shedding

  /** Trims the lanes back to the critical bound, by policy; every shed frame gets a frame.dropped. */
  private async shed(): Promise<void> {
    const { redis, keys, metrics, logger, streamMaxLen } = this.opts;
    const p = this.pressureNow;
    const excess = p.backlog - p.criticalBound;
    if (excess <= 0) return;
    const windows = await this.readLanes(Math.min(excess, 5000));
    let victims: Waiting[];
    if (this.shedPolicy === 'oldest') {
      // Oldest first across lanes: by capture time, then by intake order.
      victims = windows
        .flat()
        .sort((a, b) => a.frame.capturedAt - b.frame.capturedAt || (a.id < b.id ? -1 : 1))
        .slice(0, excess);
    } else {
      // Lowest priority first (the low lane, then normal, then high), oldest first within one.
      victims = [...windows].reverse().flat().slice(0, excess);
    }
    const label = this.shedPolicy === 'oldest' ? 'shed_oldest' : 'shed_lowest_priority';
    const reason = `backpressure: shed (policy ${this.shedPolicy}; ${p.backlog} frames waiting >= critical ${p.criticalBound} = ${this.opts.pressureCritical ?? 16} x capacity ${p.capacity}, and ${p.upstream} more upstream)`;
    const calls: DelAndAppend[] = victims.map((w) => ({
      source: this.laneKeys[w.lane],
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
              data: { policy: this.shedPolicy, priority: w.frame.priority, lane: LANES[w.lane] },
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
        policy: this.shedPolicy,
        backlog: p.backlog,
        critical_bound: p.criticalBound,
        upstream: p.upstream,
      });
    }
  }

  // ---------------------------------------------------------------- re-routing

  /**
   * Frames of a processor that is gone (no heartbeat for the TTL) or whose breaker is open
   * go to another processor of their capability: its undelivered frames at once, and (gone
   * only) the frames its dead consumers held, once idle for claimIdle. One Lua script per
   * frame: XACK on the old stream guards it (exactly once), then the new ready message, its
   * frame.queued, and a frame.dropped ending the old stage (reason "rerouted ...").
   */
  private async reroute(): Promise<void> {
    const live = new Map(this.processors.map((p) => [p.id, p]));
    const candidates = new Set([...this.routed, ...live.keys()]);
    for (const id of candidates) {
      if (this.closing) return;
      const p = live.get(id);
      const gone = !p;
      if (p && this.breakers.state(id) !== 'open') continue;
      await this.rerouteFrom(id, gone);
    }
  }

  private async rerouteFrom(from: string, gone: boolean): Promise<void> {
    const { redis, keys, tracer, metrics, logger, streamMaxLen, claimIdleMs, maxDeliveries } = this.opts;
    const stream = keys.ready(from);
    if ((await redis.xlen(stream)) === 0) {
      if (gone) {
        await redis.srem(keys.routed, from);
        this.routed.delete(from);
      }
      return;
    }
    const view = this.view(from);
    const room = [...new Set([...view.healthy.values()].flat())].reduce((s, c) => s + Math.max(0, c.capacity - c.depth), 0);
    if (room === 0) return;
    const consumer = `reroute-${this.name}`;
    const count = Math.min(room, 100);
    const raw: { id: string; fields: FieldList | null; claimed: boolean }[] = [];
    try {
      const res = (await redis.xreadgroup('GROUP', GROUPS.processor, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as
        [string, [string, FieldList][]][] | null;
      for (const [id, fields] of res?.[0]?.[1] ?? []) raw.push({ id, fields, claimed: false });
    } catch (err) {
      if (!String((err as Error).message).includes('NOGROUP')) throw err;
      await redis.xgroup('CREATE', stream, GROUPS.processor, '0').catch(() => undefined);
      return;
    }
    if (gone && raw.length < count) {
      const [, claimed] = (await redis.xautoclaim(stream, GROUPS.processor, consumer, claimIdleMs, '0-0', 'COUNT', count - raw.length)) as [
        string,
        [string, FieldList | null][],
      ];
      for (const [id, fields] of claimed) raw.push({ id, fields, claimed: true });
    }
    if (!raw.length) return;
    const deliveries = new Map<string, number>();
    const claimedIds = raw.filter((r) => r.claimed).map((r) => r.id);
    if (claimedIds.length) {
      const p = redis.pipeline();
      for (const id of claimedIds) p.xpending(stream, GROUPS.processor, id, id, 1);
      const res = (await p.exec()) ?? [];
      res.forEach(([, rows], i) => deliveries.set(claimedIds[i], Number((rows as [string, string, number, number][])[0]?.[3] ?? 1)));
    }
    const why = gone
      ? `processor ${from} is gone (no heartbeat for ${this.opts.processorTtlMs} ms)`
      : `processor ${from} circuit breaker open (${this.breakers.snapshot(from).reason ?? ''})`;
    const calls: AckAndAppend[] = [];
    const notes: (() => void)[] = [];
    const spans: Span[] = [];
    for (const r of raw) {
      if (r.fields === null) {
        calls.push({ source: stream, group: GROUPS.processor, id: r.id, del: true, targets: [] });
        notes.push(() => undefined);
        continue;
      }
      let frame: FrameMessage;
      try {
        frame = decodeReadyFrame(r.fields);
      } catch (e) {
        if (!(e instanceof MalformedMessageError)) throw e;
        metrics.entriesMalformed.inc({ stream });
        calls.push({
          source: stream,
          group: GROUPS.processor,
          id: r.id,
          del: true,
          counter: `dead_letter:${stream}`,
          targets: [deadLetterAppend(keys.deadLetter, stream, r.id, `malformed: ${e.message}`, 1, r.fields)],
        });
        notes.push(() => metrics.entriesDeadLettered.inc({ stream, reason: 'malformed' }));
        continue;
      }
      const n = deliveries.get(r.id) ?? 1;
      if (r.claimed && n > maxDeliveries) {
        // It keeps killing its processors: no more hops.
        const error = `dead-lettered after ${n} deliveries (max ${maxDeliveries}): the frame keeps killing its processor`;
        calls.push({
          source: stream,
          group: GROUPS.processor,
          id: r.id,
          del: true,
          counter: `dead_letter:${stream}`,
          targets: [
            deadLetterAppend(keys.deadLetter, stream, r.id, `delivered ${n} times (max ${maxDeliveries})`, n, r.fields),
            {
              stream: keys.events,
              fields: encodeEvent(
                makeEvent({
                  type: 'processing.failed',
                  frameId: frame.frameId,
                  cameraId: frame.cameraId,
                  source: 'buffer',
                  processorId: from,
                  capability: frame.capability,
                  attempt: n,
                  error,
                }),
              ),
            },
          ],
        });
        notes.push(() => {
          metrics.entriesDeadLettered.inc({ stream, reason: 'max_deliveries' });
          logger.warn('entry dead-lettered', { stream, entry_id: r.id, frame_id: frame.frameId, reason: error });
        });
        continue;
      }
      const cap = frame.capability ?? frame.capabilities[0];
      const target = cap ? this.router.strategy.pick(cap, frame, view.healthy.get(cap) ?? [], new Set([from])) : undefined;
      if (!target || !cap) continue; // stays pending to us: retried next pass (gone) or reclaimed by its own processor (open)
      target.depth++;
      this.router.strategy.chosen?.(cap, target);
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
      // queued (new stage) before dropped (old stage): the frame never looks all-dropped in between.
      const queued: LifecycleEvent = makeEvent({
        type: 'frame.queued',
        frameId: frame.frameId,
        cameraId: frame.cameraId,
        source: 'buffer',
        processorId: target.id,
        capability: cap,
        attempt: 1,
        at,
        ...spanIds(send),
      });
      const dropped: LifecycleEvent = makeEvent({
        type: 'frame.dropped',
        frameId: frame.frameId,
        cameraId: frame.cameraId,
        source: 'buffer',
        processorId: from,
        capability: cap,
        at,
        reason: `rerouted to ${target.id}: ${why}`,
        ...spanIds(send),
      });
      calls.push({
        source: stream,
        group: GROUPS.processor,
        id: r.id,
        del: true,
        targets: [
          { stream: newStream, fields: encodeFrame({ ...frame, processorId: target.id, capability: cap, ...carrier }) },
          { stream: keys.events, fields: encodeEvent(queued) },
          { stream: keys.events, fields: encodeEvent(dropped) },
        ],
      });
      notes.push(() => {
        metrics.framesRerouted.inc({ processor: from, reason: gone ? 'gone' : 'breaker_open' });
        metrics.framesRouted.inc({ processor: target.id, capability: cap });
        logger.info('frame rerouted', { frame_id: frame.frameId, from, to: target.id, reason: why, started_before: r.claimed });
      });
    }
    if (calls.length) {
      await this.rememberRouted(
        calls.flatMap((c) =>
          c.targets
            .filter((t) => t.stream.startsWith(`${keys.prefix}frames:ready:`))
            .map((t) => t.stream.slice(`${keys.prefix}frames:ready:`.length)),
        ),
      );
      let done: boolean[];
      try {
        done = await ackAndAppend(redis, keys.counters, calls, streamMaxLen);
      } catch (err) {
        for (const s of spans) endSpan(s, err);
        throw err;
      }
      done.forEach((d, i) => d && notes[i]());
      for (const s of spans) s.end();
    }
    // Leave no idle consumer behind in the processor's group.
    const mine = (await redis.xpending(stream, GROUPS.processor, '-', '+', 1, consumer)) as unknown[];
    if (!mine.length) await redis.xgroup('DELCONSUMER', stream, GROUPS.processor, consumer).catch(() => undefined);
  }

  // ---------------------------------------------------------------- status (HTTP API)

  async status(): Promise<BufferStatus> {
    await this.refreshIfStale(true);
    await this.measureQueues();
    const now = Date.now();
    const counters = await this.opts.redis.hgetall(this.opts.keys.counters);
    const capabilities: Record<string, string[]> = {};
    for (const p of this.processors) for (const c of p.capabilities) (capabilities[c] ??= []).push(p.id);
    return {
      strategy: this.strategyName,
      shedPolicy: this.shedPolicy,
      pressure: this.pressureNow,
      lanes: Object.fromEntries(LANES.map((l, i) => [l, this.laneLen[i]])) as Record<Lane, number>,
      input: { stream: this.opts.keys.captured, ...this.upstreamInfo },
      processors: this.processors.map((p) => this.processorStatus(p, now)),
      capabilities,
      deadLetter: Object.fromEntries(
        Object.entries(counters)
          .filter(([k]) => k.startsWith('dead_letter:'))
          .map(([k, v]) => [k.slice('dead_letter:'.length), Number(v)]),
      ),
    };
  }

  async processorList(): Promise<ProcessorStatus[]> {
    await this.refreshIfStale(true);
    await this.measureQueues();
    const now = Date.now();
    return this.processors.map((p) => this.processorStatus(p, now));
  }

  private processorStatus(p: ProcessorInfo, now: number): ProcessorStatus {
    const depth = this.depth.get(p.id) ?? 0;
    return { ...p, depth, load: p.capacity ? depth / p.capacity : 0, breaker: this.breakers.snapshot(p.id), ageMs: now - p.lastHeartbeat };
  }

  /** Makes the next status call see registry changes at once (after an API register/unregister). */
  invalidate(): void {
    this.refreshedAt = 0;
  }
}

function deadLetterAppend(deadLetter: string, stream: string, id: string, reason: string, deliveries: number, fields: FieldList): Append {
  return {
    stream: deadLetter,
    fields: [
      'stream',
      stream,
      'entry_id',
      id,
      'group',
      GROUPS.processor,
      'reason',
      reason,
      'deliveries',
      String(deliveries),
      'at',
      String(Date.now()),
      'fields',
      JSON.stringify(fields).slice(0, 65_536),
    ],
  };
}
