import type pg from 'pg';
import { BufferService } from '../buffer/buffer-service.js';
import { LANES } from '../buffer/lanes.js';
import { groupLag } from '../bus/group-lag.js';
import { sleep } from '../bus/backoff.js';
import { CaptureService } from '../capture/capture-service.js';
import type { CameraSpec } from '../capture/camera-spec.js';
import type { Processor } from '../process/processor.js';
import { ProcessorRuntime } from '../process/processor-runtime.js';
import { StoreService } from '../store/store-service.js';
import type { Worker, WorkerContext } from './worker-host.js';

export interface LocalPipelineOptions {
  cameras: CameraSpec[];
  processors: Processor[];
  pool: pg.Pool;
  maxFrames?: number;
  /** Longest to wait, after capture stops, for frames in flight to finish. */
  drainTimeoutMs?: number;
}

/**
 * The whole pipeline in one process: the same services the separate workers run, wired
 * over the same streams. Stop order drains it: capture stops first, the others finish
 * what is already in the streams, then stop.
 */
export function localPipeline(ctx: WorkerContext, opts: LocalPipelineOptions): Worker & { capture: CaptureService } {
  const { config, keys, tracer, metrics, logger } = ctx;
  const common = { keys, tracer, metrics, blockMs: config.blockTime, claimIdleMs: config.claimIdle, maxDeliveries: config.maxDeliveries };
  const capture = new CaptureService({
    redis: ctx.redis('capture'),
    keys,
    tracer,
    metrics,
    logger: logger.child({ service: 'capture' }),
    cameras: opts.cameras,
    fps: config.fps,
    jpegQuality: config.jpegQuality,
    payloadTtlMs: config.payloadTtl,
    streamMaxLen: config.streamMaxLen,
    maxFrames: opts.maxFrames,
  });
  const buffer = new BufferService({
    ...common,
    redis: ctx.redis('buffer'),
    blocking: ctx.blockingRedis('buffer'),
    logger: logger.child({ service: 'buffer' }),
    processorTtlMs: config.processorTtl,
    streamMaxLen: config.streamMaxLen,
    batchSize: config.batchSize,
    strategy: config.strategy,
    shedPolicy: config.shedPolicy,
    pressureHigh: config.pressureHigh,
    pressureCritical: config.pressureCritical,
    starvationLimit: config.starvationLimit,
    breakerFailures: config.breakerFailures,
    breakerCooldownMs: config.breakerCooldown,
  });
  const runtimes = opts.processors.map(
    (processor) =>
      new ProcessorRuntime({
        ...common,
        processor,
        id: processor.name,
        redis: ctx.redis(`process:${processor.name}`),
        blocking: ctx.blockingRedis(`process:${processor.name}`),
        logger: logger.child({ service: 'process', processor_id: processor.name }),
        concurrency: 2,
        frameTimeoutMs: 30_000,
        heartbeatMs: config.heartbeatInterval,
        processorTtlMs: config.processorTtl,
        streamMaxLen: config.streamMaxLen,
      }),
  );
  const store = new StoreService({
    ...common,
    redis: ctx.redis('store'),
    blocking: ctx.blockingRedis('store'),
    pool: opts.pool,
    logger: logger.child({ service: 'store' }),
    batchSize: Math.max(config.batchSize, 500),
  });
  const consumers = [buffer, ...runtimes, store];
  const redis = ctx.redis('drain');
  const streams = [keys.captured, keys.events];
  // Lanes and ready streams hold only frames not yet handed on / acked: empty means drained.
  const queues = [...LANES.map((l) => keys.lane(l)), ...opts.processors.map((p) => keys.ready(p.name))];

  async function drained(): Promise<boolean> {
    const lags = (await Promise.all(streams.map((s) => groupLag(redis, s)))).flat();
    const lens = await Promise.all(queues.map((q) => redis.xlen(q)));
    return lags.every((l) => (l.lag ?? 0) === 0 && l.pending === 0) && lens.every((n) => n === 0);
  }

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await capture.close();
      const deadline = Date.now() + (opts.drainTimeoutMs ?? 10_000);
      while (Date.now() < deadline && !(await drained().catch(() => false))) await sleep(100);
      await Promise.all(consumers.map((c) => c.close()));
    })();
    return closing;
  };

  return {
    capture,
    async run() {
      const running = consumers.map((c) => c.run());
      await capture.run();
      // Capture ends by itself only with maxFrames: then drain and stop like on a signal.
      await close();
      await Promise.all(running);
    },
    close,
    readiness: () => ({
      ready: [...capture.status.values()].some((s) => s.online),
      checks: Object.fromEntries([...capture.status.values()].map((s) => [`camera:${s.id}`, s.online ? 'online' : 'offline'])),
    }),
  };
}
