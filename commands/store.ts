import { Command } from 'commander';
import { hostWorker } from '../src/ops/worker-host.js';
import { createPool } from '../src/store/pg.js';
import { storeOptions } from '../src/store/options.js';
import { StoreService } from '../src/store/store-service.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function storeCommand(): Command {
  const cmd = new Command('store').description(
    'project lifecycle events from the events stream into PostgreSQL (run `detektr migrate` first)',
  );
  withConfigOptions(cmd, { worker: true, pgPool: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags);
    const pool = createPool(config.databaseUrl, { schema: config.dbSchema, max: config.pgPoolSize });
    const options = storeOptions(config);
    try {
      process.exitCode = await hostWorker({
        component: 'store',
        config,
        defaultMetricsPort: 9104,
        create: (ctx) => {
          pool.on('error', (err) => ctx.logger.warn('idle PostgreSQL connection failed', { error: err }));
          const service = new StoreService(
            options({
              redis: ctx.redis(),
              blocking: ctx.blockingPerShard(),
              shards: ctx.shards,
              pool,
              tracer: ctx.tracer,
              metrics: ctx.metrics,
              logger: ctx.logger,
            }),
          );
          return {
            run: () => service.run(),
            close: () => service.close(),
            readiness: async () => {
              try {
                await pool.query('SELECT 1');
                return { ready: true, checks: { postgres: 'ok' } };
              } catch (err) {
                return { ready: false, checks: { postgres: (err as Error).message } };
              }
            },
          };
        },
      });
    } finally {
      await pool.end();
    }
  });
}
