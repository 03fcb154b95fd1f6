import { Command, Option } from 'commander';
import { createPool, ensureDatabase } from '../src/store/pg.js';
import { migrate } from '../src/store/migrate.js';
import { redactUrl } from '../src/config/redact.js';
import { parseDuration } from '../src/config/parse-value.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function migrateCommand(): Command {
  const cmd = new Command('migrate')
    .description('apply the SQL migrations in migrations/ to $DATABASE_URL (creates the database and schema when missing)')
    .option('--dry-run', 'list what would be applied, change nothing')
    .option('--json', 'print the result as JSON')
    .addOption(
      new Option(
        '--storage <kind>',
        'auto: TimescaleDB hypertables when the extension is installed or preloaded, else native range partitions (read once, when migration 002 is applied)',
      )
        .choices(['auto', 'native', 'timescaledb'])
        .default('auto'),
    )
    .option(
      '--partition-interval <duration>',
      'partition / chunk width, 1h..31d, whole hours (read once, by migration 002); see docs/architecture.md for sizing',
      '1d',
    );
  withConfigOptions(cmd, { only: ['databaseUrl', 'dbSchema', 'logLevel', 'pgPoolSize'] });
  return cmd.action(
    async (
      flags: { dryRun?: boolean; json?: boolean; storage: 'auto' | 'native' | 'timescaledb'; partitionInterval: string } & Record<
        string,
        unknown
      >,
    ) => {
      const intervalMs = parseDuration(flags.partitionInterval, '--partition-interval');
      if (intervalMs < 3_600_000 || intervalMs > 31 * 86_400_000 || intervalMs % 3_600_000 !== 0) {
        throw new InvalidInputError(`--partition-interval "${flags.partitionInterval}" must be whole hours between 1h and 31d`);
      }
      const { config } = resolveConfig(flags);
      if (!flags.dryRun) await ensureDatabase(config.databaseUrl);
      const pool = createPool(config.databaseUrl, { schema: config.dbSchema, max: config.pgPoolSize });
      try {
        const result = await migrate({
          pool,
          schema: config.dbSchema,
          dryRun: flags.dryRun,
          storage: flags.storage,
          partitionInterval: intervalMs % 86_400_000 === 0 ? `${intervalMs / 86_400_000} days` : `${intervalMs / 3_600_000} hours`,
        });
        if (flags.json) {
          process.stdout.write(
            JSON.stringify(
              { database: redactUrl(config.databaseUrl), schema: config.dbSchema, dryRun: Boolean(flags.dryRun), ...result },
              null,
              2,
            ) + '\n',
          );
          return;
        }
        const list = flags.dryRun ? result.pending : result.applied;
        const verb = flags.dryRun ? 'would apply' : 'applied';
        for (const m of list) process.stdout.write(`${verb} ${String(m.version).padStart(3, '0')}_${m.name}\n`);
        process.stdout.write(
          list.length
            ? `schema ${config.dbSchema} at version ${result.current}\n`
            : `schema ${config.dbSchema} is up to date (version ${result.current})\n`,
        );
      } finally {
        await pool.end();
      }
    },
  );
}
