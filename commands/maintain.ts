import { Command } from 'commander';
import { parseDuration } from '../src/config/parse-value.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { maintain, type MaintainReport } from '../src/store/maintain.js';
import { createPool } from '../src/store/pg.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function maintainCommand(): Command {
  const cmd = new Command('maintain')
    .description('storage upkeep, from cron: partitions ahead, retention behind (whole partitions), frame_stats_hourly refresh')
    .option('--retention <duration>', 'drop frames, events and camera events older than this (30d, 12h); default: keep everything')
    .option('--ahead <duration>', 'create partitions this far ahead', '7d')
    .option('--no-stats', 'do not refresh frame_stats_hourly')
    .option('--dry-run', 'say what would be created and dropped, change nothing')
    .option('--json', 'print the report as JSON (MaintainReport in src/store/maintain.ts)');
  withConfigOptions(cmd, { only: ['databaseUrl', 'dbSchema', 'logLevel'] });
  return cmd.action(
    async (flags: { retention?: string; ahead: string; stats: boolean; dryRun?: boolean; json?: boolean } & Record<string, unknown>) => {
      const retentionMs = flags.retention === undefined ? undefined : parseDuration(flags.retention, '--retention');
      if (retentionMs !== undefined && retentionMs < 3_600_000)
        throw new InvalidInputError(`--retention "${flags.retention}" must be at least 1h`);
      const aheadMs = parseDuration(flags.ahead, '--ahead');
      if (aheadMs > 366 * 86_400_000) throw new InvalidInputError(`--ahead "${flags.ahead}" must be at most 366d`);
      const { config } = resolveConfig(flags);
      const pool = createPool(config.databaseUrl, { schema: config.dbSchema, max: 1 });
      try {
        const report = await maintain({ pool, retentionMs, aheadMs, refreshStats: flags.stats, dryRun: flags.dryRun });
        process.stdout.write(
          flags.json ? `${JSON.stringify({ schema: config.dbSchema, ...report }, null, 2)}\n` : render(config.dbSchema, report),
        );
      } finally {
        await pool.end();
      }
    },
  );
}

function render(schema: string, r: MaintainReport): string {
  const would = r.dryRun ? 'would ' : '';
  const lines = [
    `schema ${schema}: ${r.storage} storage, partition interval ${r.partitionInterval}${r.dryRun ? ' (dry run: nothing changed)' : ''}`,
  ];
  const group = (list: MaintainReport['created']) => {
    const byStart = new Map<string, string[]>();
    for (const p of list) byStart.set(`${p.from} .. ${p.to}`, [...(byStart.get(`${p.from} .. ${p.to}`) ?? []), p.table]);
    return [...byStart].map(([range, tables]) => `  ${range}  ${tables.join(', ')}`);
  };
  if (r.storage === 'native') {
    lines.push(r.created.length ? `${would}create ${r.created.length} partition(s):` : 'partitions ahead: all there', ...group(r.created));
  }
  if (r.retention) {
    lines.push(`retention: ${would}drop what ended before ${r.retention.cutoff}`);
    lines.push(
      r.dropped.length ? `${would}drop ${r.dropped.length} ${r.storage === 'native' ? 'partition(s)' : 'chunk(s)'}:` : '  nothing that old',
      ...group(r.dropped),
    );
    lines.push(`  camera events ${r.dryRun ? 'to delete' : 'deleted'}: ${r.retention.cameraEventsDeleted}`);
  } else {
    lines.push('retention: none (keeping everything; pass --retention 30d to drop older data)');
  }
  if (r.stats)
    lines.push(`frame_stats_hourly: ${would}refresh ${r.stats.from} .. ${r.stats.to}${r.dryRun ? '' : ` (${r.stats.rows} rows)`}`);
  if (r.sizing) {
    const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;
    lines.push(
      `sizing: partition from ${r.sizing.partitionStart}: ~${r.sizing.frames} frames, indexes ${mb(r.sizing.indexBytes)}, shared_buffers ${mb(r.sizing.sharedBuffersBytes)}`,
    );
    if (r.sizing.advice) lines.push(`  advice: ${r.sizing.advice}`);
  }
  return `${lines.join('\n')}\n`;
}
