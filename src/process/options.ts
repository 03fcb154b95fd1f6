import type { Config } from '../config/load-config.js';
import type { Processor, ProcessorOptions } from './processor.js';
import type { ProcessorRuntimeOptions } from './processor-runtime.js';

/** What the host provides: connections and telemetry. */
export type ProcessorDeps = Pick<ProcessorRuntimeOptions, 'redis' | 'blocking' | 'shards' | 'tracer' | 'metrics' | 'logger'>;

export interface ProcessorExtras {
  processor: Processor;
  /** Registry id (default: the processor's name). */
  id?: string;
  /** Frames held queued + in flight (`process --capacity`; default from concurrency). */
  capacity?: number;
  /** The processor's own options (`process --opt key=value`). */
  options?: ProcessorOptions;
}

/** The ProcessorRuntime options for a loaded config, shared by `detektr process` and `detektr run`. */
export function processorOptions(config: Config, extras: ProcessorExtras): (deps: ProcessorDeps) => ProcessorRuntimeOptions {
  return (deps) => ({
    ...deps,
    processor: extras.processor,
    id: extras.id ?? extras.processor.name,
    concurrency: config.concurrency,
    capacity: extras.capacity,
    frameTimeoutMs: config.frameTimeout,
    heartbeatMs: config.heartbeatInterval,
    processorTtlMs: config.processorTtl,
    streamMaxLen: config.streamMaxLen,
    blockMs: config.blockTime,
    claimIdleMs: config.claimIdle,
    maxDeliveries: config.maxDeliveries,
    options: extras.options ?? {},
  });
}
