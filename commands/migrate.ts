import { Command } from 'commander';
import { createPool, ensureDatabase } from '../src/store/pg.js';
import { migrate } from '../src/store/migrate.js';
import { redactUrl } from '../src/config/redact.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function migrateCommand(): Command {
  const cmd = new Command('migrate')
    .description('apply the SQL migrations in migrations/ to $DATABASE_URL (creates the database and schema when missing)')
    .option('--dry-run', 'list what would be applied, change nothing')
    .option('--json', 'print the result as JSON');
  withConfigOptions(cmd, { only: ['databaseUrl', 'dbSchema', 'logLevel'] });
  return cmd.action(async (flags: { dryRun?: boolean; json?: boolean } & Record<string, unknown>) => {
    const { config } = resolveConfig(flags);
    if (!flags.dryRun) await ensureDatabase(config.databaseUrl);
    const pool = createPool(config.databaseUrl, { schema: config.dbSchema });
    try {
      const result = await migrate({ pool, schema: config.dbSchema, dryRun: flags.dryRun });
      if (flags.json) {
        process.stdout.write(JSON.stringify({ database: redactUrl(config.databaseUrl), schema: config.dbSchema, dryRun: Boolean(flags.dryRun), ...result }, null, 2) + '\n');
        return;
      }
      const list = flags.dryRun ? result.pending : result.applied;
      const verb = flags.dryRun ? 'would apply' : 'applied';
      for (const m of list) process.stdout.write(`${verb} ${String(m.version).padStart(3, '0')}_${m.name}\n`);
      process.stdout.write(list.length ? `schema ${config.dbSchema} at version ${result.current}\n` : `schema ${config.dbSchema} is up to date (version ${result.current})\n`);
    } finally {
      await pool.end();
    }
  });
}
