import type { Config } from '../config/load-config.js';
import type { BufferOptions } from './buffer-service.js';

/** What the host provides: connections and telemetry. */
export type BufferDeps = Pick<BufferOptions, 'redis' | 'blocking' | 'shards' | 'tracer' | 'metrics' | 'logger'>;

/** The BufferService options for a loaded config, shared by `detektr buffer` and `detektr run`. */
export function bufferOptions(config: Config): (deps: BufferDeps) => BufferOptions {
  return (deps) => ({
    ...deps,
    processorTtlMs: config.processorTtl,
    streamMaxLen: config.streamMaxLen,
    batchSize: config.batchSize,
    blockMs: config.blockTime,
    claimIdleMs: config.claimIdle,
    maxDeliveries: config.maxDeliveries,
    strategy: config.strategy,
    shedPolicy: config.shedPolicy,
    pressureHigh: config.pressureHigh,
    pressureCritical: config.pressureCritical,
    starvationLimit: config.starvationLimit,
    breakerFailures: config.breakerFailures,
    breakerCooldownMs: config.breakerCooldown,
  });
}
