import { Command } from 'commander';
import { BufferService } from '../src/buffer/buffer-service.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function bufferCommand(): Command {
  const cmd = new Command('buffer').description('route captured frames to registered processors, one per capability (consumer group: several buffers can run side by side)');
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags);
    process.exitCode = await hostWorker({
      component: 'buffer',
      config,
      defaultMetricsPort: 9102,
      create: (ctx) => {
        const service = new BufferService({
          redis: ctx.redis(), blocking: ctx.blockingRedis(), keys: ctx.keys, tracer: ctx.tracer, metrics: ctx.metrics, logger: ctx.logger,
          processorTtlMs: config.processorTtl, streamMaxLen: config.streamMaxLen, batchSize: config.batchSize,
          blockMs: config.blockTime, claimIdleMs: config.claimIdle, maxDeliveries: config.maxDeliveries,
        });
        return {
          run: () => service.run(),
          close: () => service.close(),
          readiness: async () => {
            const n = (await service.liveProcessors()).length;
            return { ready: true, checks: { processors: n ? `${n} live` : 'none registered: frames wait in the stream' } };
          },
        };
      },
    });
  });
}
