import { Command, Option } from 'commander';
import { bufferApi } from '../src/buffer/api.js';
import { BufferService } from '../src/buffer/buffer-service.js';
import { bufferOptions } from '../src/buffer/options.js';
import { STRATEGIES } from '../src/buffer/router.js';
import { SHED_POLICIES } from '../src/buffer/pressure.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { checkApiExposure } from '../src/telemetry/http-server.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function bufferCommand(): Command {
  const cmd = new Command('buffer')
    .description(
      'route captured frames to registered processors, one per capability, with priorities, backpressure and circuit breakers (several buffers can run side by side)',
    )
    .addOption(
      new Option('--strategy <name>', 'how a processor of a capability is chosen (env DETEKTR_STRATEGY; default least-loaded)').choices(
        STRATEGIES,
      ),
    )
    .option(
      '--api-port <port>',
      'port of the HTTP API (/processors, /status) with /metrics /healthz /readyz on --metrics-host (env DETEKTR_API_PORT; default the metrics port, 9102)',
    )
    .option(
      '--api-token <token>',
      'bearer token the HTTP API requires on POST/DELETE; required when --metrics-host is not loopback (env DETEKTR_API_TOKEN, preferred: a flag shows in ps)',
    )
    .addOption(
      new Option(
        '--shed-policy <policy>',
        'which waiting frames are dropped first under sustained overload (env DETEKTR_SHED_POLICY; default lowest-priority)',
      ).choices(SHED_POLICIES),
    )
    .option('--pressure-high <x>', 'waiting frames, in multiples of capacity, that slow intake (default 4)')
    .option('--pressure-critical <x>', 'waiting frames, in multiples of capacity, that pause intake, then shed (default 16)')
    .option('--starvation-limit <n>', 'dequeues a waiting lower-priority lane may be passed over (default 8)')
    .option('--breaker-failures <n>', "consecutive failures that open a processor's circuit breaker (default 5)")
    .option('--breaker-cooldown <duration>', 'time a breaker stays open before a probe frame (default 10s)');
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags, {
      strategy: flags.strategy,
      apiPort: flags.apiPort,
      apiToken: flags.apiToken,
      shedPolicy: flags.shedPolicy,
      pressureHigh: flags.pressureHigh,
      pressureCritical: flags.pressureCritical,
      starvationLimit: flags.starvationLimit,
      breakerFailures: flags.breakerFailures,
      breakerCooldown: flags.breakerCooldown,
    });
    // The API shares the worker's HTTP server: --api-port, when given, is its port.
    if (config.apiPort !== undefined) config.metricsPort = config.apiPort;
    // Off loopback the API must ask for a token (exit 2 before anything starts).
    checkApiExposure(config.metricsHost, config.apiToken);
    const options = bufferOptions(config);
    process.exitCode = await hostWorker({
      component: 'buffer',
      config,
      defaultMetricsPort: 9102,
      create: (ctx) => {
        const service = new BufferService(
          options({
            redis: ctx.redis(),
            blocking: ctx.blockingPerShard(),
            shards: ctx.shards,
            tracer: ctx.tracer,
            metrics: ctx.metrics,
            logger: ctx.logger,
          }),
        );
        return {
          run: () => service.run(),
          close: () => service.close(),
          routes: [bufferApi(service, { heartbeatMs: config.heartbeatInterval, token: config.apiToken })],
          readiness: async () => {
            const n = (await service.liveProcessors()).length;
            return {
              ready: true,
              checks: { processors: n ? `${n} live` : 'none registered: frames wait in the stream', pressure: service.pressure.level },
            };
          },
        };
      },
    });
  });
}
