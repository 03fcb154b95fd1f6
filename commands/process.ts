import { Command, Option } from 'commander';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { validateName } from '../src/bus/keys.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { BUILTIN_PROCESSOR_NAMES, builtinProcessor } from '../src/process/builtin-processors.js';
import { loadProcessorModule } from '../src/process/load-module.js';
import { ProcessorRuntime } from '../src/process/processor-runtime.js';
import { parseDuration } from '../src/config/parse-value.js';
import { resolveConfig, withConfigOptions } from './common.js';

const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidInputError(`${flag} "${v}" must be an integer between 1 and 1024`);
  return n;
};

export function processCommand(): Command {
  const cmd = new Command('process')
    .description('run a processor: register, consume its stream, process frames, publish results and lifecycle events')
    .addOption(new Option('--processor <name>', `built-in processor: ${BUILTIN_PROCESSOR_NAMES.join(', ')}`).conflicts('module'))
    .option('--module <path>', 'your own processor: a JS module exporting { name, capabilities, process(frame, ctx) } (see docs/architecture.md)')
    .option('--id <id>', 'processor id in the registry (default: the processor name); instances with one id share its stream')
    .addOption(new Option('--concurrency <n>', 'frames processed at once').default(1).argParser(positiveInt('--concurrency')))
    .option('--frame-timeout <duration>', 'longest one frame may take before it fails', '30s');
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags);
    if (!flags.processor && !flags.module) throw new InvalidInputError(`give --processor <name> (${BUILTIN_PROCESSOR_NAMES.join(', ')}) or --module <path>`);
    const processor = flags.module
      ? await loadProcessorModule(pathToFileURL(resolve(String(flags.module))).href, String(flags.module))
      : builtinProcessor(String(flags.processor));
    const id = validateName('--id', String(flags.id ?? processor.name));
    const frameTimeoutMs = parseDuration(String(flags.frameTimeout), '--frame-timeout');
    process.exitCode = await hostWorker({
      component: 'process',
      config,
      defaultMetricsPort: 9103,
      create: (ctx) => {
        const runtime = new ProcessorRuntime({
          processor, id, redis: ctx.redis(), blocking: ctx.blockingRedis(), keys: ctx.keys, tracer: ctx.tracer, metrics: ctx.metrics,
          logger: ctx.logger.child({ processor_id: id }), concurrency: flags.concurrency as number, frameTimeoutMs,
          heartbeatMs: config.heartbeatInterval, processorTtlMs: config.processorTtl, streamMaxLen: config.streamMaxLen,
          blockMs: config.blockTime, claimIdleMs: config.claimIdle, maxDeliveries: config.maxDeliveries,
        });
        return { run: () => runtime.run(), close: () => runtime.close() };
      },
    });
  });
}
