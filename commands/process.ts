import { Command, Option } from 'commander';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { validateName } from '../src/bus/keys.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { BUILTIN_PROCESSOR_NAMES, createBuiltinProcessor } from '../src/process/builtin-processors.js';
import { loadProcessorModule } from '../src/process/load-module.js';
import type { ProcessorOptions } from '../src/process/processor.js';
import { processorOptions } from '../src/process/options.js';
import { ProcessorRuntime } from '../src/process/processor-runtime.js';
import { collect, resolveConfig, withConfigOptions } from './common.js';

const positiveInt = (flag: string, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidInputError(`${flag} "${v}" must be an integer between 1 and ${max}`);
  return n;
};

function parseOptions(pairs: string[] = []): ProcessorOptions {
  const out: ProcessorOptions = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i < 1) throw new InvalidInputError(`--opt "${p}" must be key=value`);
    const key = p.slice(0, i).trim();
    if (!/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(key))
      throw new InvalidInputError(`--opt "${p}": the key must be a name (letters, digits, _ . -)`);
    out[key] = p.slice(i + 1);
  }
  return out;
}

export function processCommand(): Command {
  const cmd = new Command('process')
    .description('run a processor: register, consume its stream, process frames, publish results and lifecycle events')
    .addOption(new Option('--processor <name>', `built-in processor: ${BUILTIN_PROCESSOR_NAMES.join(', ')}`).conflicts('module'))
    .option('--module <path>', 'your own processor: a JS module exporting process(frame, ctx) and capabilities (see docs/architecture.md)')
    .option('--capability <name>', "capability this processor serves (repeatable; declares or overrides the module's own)", collect)
    .option(
      '--id <id>',
      "processor id in the registry (default: the processor name); instances with one id share its stream and take over each other's frames",
    )
    .addOption(
      new Option('--concurrency <n>', 'frames processed at once (env DETEKTR_CONCURRENCY; default 1)').argParser(
        positiveInt('--concurrency', 1024),
      ),
    )
    .addOption(
      new Option('--capacity <n>', 'frames this instance holds queued + in flight (default max(32, 8 x concurrency))').argParser(
        positiveInt('--capacity', 100_000),
      ),
    )
    .option('--frame-timeout <duration>', 'longest one frame may take before it fails (env DETEKTR_FRAME_TIMEOUT; default 30s)')
    .option('--opt <key=value>', 'an option for the processor (repeatable), e.g. motion: threshold=0.01, mask="0,0,1,0.1"', collect);
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags, { concurrency: flags.concurrency, frameTimeout: flags.frameTimeout });
    if (!flags.processor && !flags.module)
      throw new InvalidInputError(`give --processor <name> (${BUILTIN_PROCESSOR_NAMES.join(', ')}) or --module <path>`);
    const capabilities = ((flags.capability as string[] | undefined) ?? []).map((c) => validateName('--capability', c));
    const options = parseOptions(flags.opt as string[] | undefined);
    const processor = flags.module
      ? await loadProcessorModule(pathToFileURL(resolve(String(flags.module))).href, String(flags.module), capabilities)
      : createBuiltinProcessor(String(flags.processor), options);
    if (!flags.module && capabilities.length) processor.capabilities = capabilities;
    const id = validateName('--id', String(flags.id ?? processor.name));
    const build = processorOptions(config, { processor, id, capacity: flags.capacity as number | undefined, options });
    process.exitCode = await hostWorker({
      component: 'process',
      config,
      defaultMetricsPort: 9103,
      create: (ctx) => {
        const runtime = new ProcessorRuntime(
          build({
            redis: ctx.redis(),
            blocking: ctx.blockingPerShard(),
            shards: ctx.shards,
            tracer: ctx.tracer,
            metrics: ctx.metrics,
            logger: ctx.logger.child({ processor_id: id }),
          }),
        );
        return { run: () => runtime.run(), close: () => runtime.close() };
      },
    });
  });
}
