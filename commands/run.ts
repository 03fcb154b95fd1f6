import { Command, Option } from 'commander';
import { shardSetOf } from '../src/bus/shards.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { localPipeline, pipelineOptions } from '../src/ops/local-pipeline.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { builtinProcessor, BUILTIN_PROCESSOR_NAMES } from '../src/process/builtin-processors.js';
import type pg from 'pg';
import { startRunBackends } from '../src/embedded/resolve-backends.js';
import { createPool, ensureDatabase } from '../src/store/pg.js';
import { createLogger } from '../src/telemetry/logger.js';
import { migrate } from '../src/store/migrate.js';
import { collect, resolveConfig, withConfigOptions } from './common.js';

export function runCommand(): Command {
  const cmd = new Command('run')
    .description(
      'the whole pipeline in one process (capture, buffer, processors, store); migrates first. Uses $REDIS_URL and $DATABASE_URL when set, else embedded backends: an in-process Redis-protocol server and PostgreSQL (PGlite) in --data-dir',
    )
    .option('--camera <id=url>', 'a camera (repeatable; default demo=testsrc, a synthetic camera)', collect)
    .option('--processor <name>', `built-in processors to run (repeatable; default: ${BUILTIN_PROCESSOR_NAMES.join(', ')})`, collect)
    .option('--fps <n>', 'frames per second sampled from each camera (default 5)')
    .option('--camera-shard <id=shard>', 'pin camera id to a shard (repeatable; default: by a hash of the id)', collect)
    .addOption(
      new Option('--max-frames <n>', 'stop each camera after n frames, drain, print a summary and exit').argParser((v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1) throw new InvalidInputError(`--max-frames "${v}" must be a positive integer`);
        return n;
      }),
    );
  withConfigOptions(cmd, { worker: true, dataDir: true, pgPool: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const loaded = resolveConfig(flags, { cameras: flags.camera, fps: flags.fps, cameraShards: flags.cameraShard });
    const { config, file } = loaded;
    if (!config.cameras.length) config.cameras = ['demo=testsrc'];
    const where = file ? `config file ${file}: ` : '';
    const processors = ((flags.processor as string[] | undefined) ?? BUILTIN_PROCESSOR_NAMES).map(builtinProcessor);
    // The same options the separate workers build: validated here, before any backend starts.
    const plan = pipelineOptions(config, {
      processors,
      camerasFrom: flags.camera ? '--camera' : `${where}cameras`,
      maxFrames: flags.maxFrames as number | undefined,
    });
    const logger = createLogger({ component: 'run', level: config.logLevel });
    // No URL set: embedded backends (an in-process Redis-protocol server, PGlite in the data dir).
    const backends = await startRunBackends(loaded, { onError: (err) => logger.error('embedded redis internal error', { error: err }) });
    config.redisUrl = backends.redisUrl;
    config.databaseUrl = backends.databaseUrl;
    logger.info('backends', backends.describe());
    let pool: pg.Pool | undefined;
    try {
      await ensureDatabase(config.databaseUrl);
      const db = (pool = createPool(config.databaseUrl, { schema: config.dbSchema, max: config.pgPoolSize }));
      await migrate({ pool: db, schema: config.dbSchema });
      let pipeline: ReturnType<typeof localPipeline> | undefined;
      process.exitCode = await hostWorker({
        component: 'run',
        config,
        defaultMetricsPort: 9100,
        create: (ctx) => (pipeline = localPipeline(ctx, plan, { pool: db })),
      });
      const status = [...(pipeline?.capture.status.values() ?? [])];
      const published = status.reduce((n, s) => n + s.published, 0);
      process.stdout.write(
        `published ${published} frames from ${status.length} camera(s) into ${shardSetOf(config)
          .all.map((k) => k.captured)
          .join(', ')}\n`,
      );
      const last = await db.query<{ frame_id: string; state: string }>(
        'SELECT frame_id, state FROM frame_metadata ORDER BY captured_at DESC LIMIT 1',
      );
      if (last.rows[0])
        process.stdout.write(
          `last frame ${last.rows[0].frame_id} is ${last.rows[0].state}; see its journey: detektr trace find ${last.rows[0].frame_id}\n`,
        );
    } finally {
      await pool?.end();
      await backends.close();
    }
  });
}
