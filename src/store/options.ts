import type { Config } from '../config/load-config.js';
import type { StoreOptions } from './store-service.js';

/** What the host provides: connections and telemetry. */
export type StoreDeps = Pick<StoreOptions, 'redis' | 'blocking' | 'shards' | 'pool' | 'tracer' | 'metrics' | 'logger'>;

/** The StoreService options for a loaded config, shared by `detektr store` and `detektr run`. */
export function storeOptions(config: Config): (deps: StoreDeps) => StoreOptions {
  return (deps) => ({
    ...deps,
    batchSize: Math.max(config.batchSize, 500),
    blockMs: config.blockTime,
    claimIdleMs: config.claimIdle,
    maxDeliveries: config.maxDeliveries,
  });
}
