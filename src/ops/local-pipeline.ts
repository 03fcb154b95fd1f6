import type pg from 'pg';
import { BufferService, type BufferOptions } from '../buffer/buffer-service.js';
import { LANES } from '../buffer/lanes.js';
import { bufferOptions, type BufferDeps } from '../buffer/options.js';
import { groupLag } from '../bus/group-lag.js';
import { sleep } from '../bus/backoff.js';
import { CaptureService, type CaptureOptions } from '../capture/capture-service.js';
import { routeFfmpegLogs } from '../capture/ffmpeg-log.js';
import { captureOptions, type CaptureDeps } from '../capture/options.js';
import type { Config } from '../config/load-config.js';
import { processorOptions, type ProcessorDeps } from '../process/options.js';
import type { Processor } from '../process/processor.js';
import { ProcessorRuntime, type ProcessorRuntimeOptions } from '../process/processor-runtime.js';
import { storeOptions, type StoreDeps } from '../store/options.js';
import { StoreService, type StoreOptions } from '../store/store-service.js';
import type { Worker, WorkerContext } from './worker-host.js';

/** The options of every service `run` composes, each built by its component's own xxxOptions. */
export interface PipelinePlan {
  capture: (deps: CaptureDeps) => CaptureOptions;
  buffer: (deps: BufferDeps) => BufferOptions;
  processors: { id: string; options: (deps: ProcessorDeps) => ProcessorRuntimeOptions }[];
  store: (deps: StoreDeps) => StoreOptions;
  /** Longest to wait, after capture stops, for frames in flight to finish. */
  drainTimeoutMs: number;
}

export interface PipelineExtras {
  processors: Processor[];
  /** Where config.cameras came from, for errors naming a bad camera. */
  camerasFrom: string;
  maxFrames?: number;
  drainTimeoutMs?: number;
}

/**
 * What `run` starts, from the same config translation the separate workers use (capture,
 * buffer, process, store): a key means the same under `run` as under its worker. Validates
 * at once, so bad input fails before anything starts.
 */
export function pipelineOptions(config: Config, extras: PipelineExtras): PipelinePlan {
  return {
    capture: captureOptions(config, { camerasFrom: extras.camerasFrom, maxFrames: extras.maxFrames }),
    buffer: bufferOptions(config),
    processors: extras.processors.map((processor) => ({
      id: processor.name,
      options: processorOptions(config, { processor, id: processor.name }),
    })),
    store: storeOptions(config),
    drainTimeoutMs: extras.drainTimeoutMs ?? 10_000,
  };
}

/**
 * The whole pipeline in one process: the same services the separate workers run, with
 * the same options, wired over the same streams. Stop order drains it: capture stops
 * first, the others finish what is already in the streams, then stop.
 */
export function localPipeline(ctx: WorkerContext, plan: PipelinePlan, db: { pool: pg.Pool }): Worker & { capture: CaptureService } {
  const { shards, tracer, metrics, logger } = ctx;
  const deps = (service: string, name = service, fields: Record<string, string> = { service }) => ({
    redis: ctx.redis(name),
    blocking: ctx.blockingPerShard(name),
    shards,
    tracer,
    metrics,
    logger: logger.child(fields),
  });
  routeFfmpegLogs(logger.child({ service: 'capture', source: 'ffmpeg' }));
  const captureDeps = { redis: ctx.redis('capture'), shards, tracer, metrics, logger: logger.child({ service: 'capture' }) };
  const capture = new CaptureService(plan.capture(captureDeps));
  const buffer = new BufferService(plan.buffer(deps('buffer')));
  const runtimes = plan.processors.map(
    (p) => new ProcessorRuntime(p.options(deps('process', `process:${p.id}`, { service: 'process', processor_id: p.id }))),
  );
  const store = new StoreService(plan.store({ ...deps('store'), pool: db.pool }));
  const consumers = [buffer, ...runtimes, store];
  const redis = ctx.redis('drain');
  const streams = shards.all.flatMap((keys) => [keys.captured, keys.events]);
  // Lanes and ready streams hold only frames not yet handed on / acked: empty means drained.
  const queues = shards.all.flatMap((keys) => LANES.map((l) => keys.lane(l))).concat(runtimes.flatMap((r) => r.streams));

  async function drained(): Promise<boolean> {
    const lags = (await Promise.all(streams.map((s) => groupLag(redis, s)))).flat();
    const lens = await Promise.all(queues.map((q) => redis.xlen(q)));
    return lags.every((l) => (l.lag ?? 0) === 0 && l.pending === 0) && lens.every((n) => n === 0);
  }

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await capture.close();
      const deadline = Date.now() + plan.drainTimeoutMs;
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
    readiness: () => capture.readiness(),
  };
}
