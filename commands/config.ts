import Table from 'cli-table3';
import { Command } from 'commander';
import { redactedConfig } from '../src/config/load-config.js';
import { CONFIG_KEYS, type ConfigKey } from '../src/config/schema.js';
import { resolveConfig, withConfigOptions } from './common.js';

export function configCommand(): Command {
  const config = new Command('config').description('inspect the effective configuration');
  const show = new Command('show')
    .description('the effective configuration, where each value comes from (flag, env, file, default); secrets redacted')
    .option('--json', 'print as JSON: { file, values: { key: { value, source, env } } }');
  withConfigOptions(show, { worker: true, pgPool: true });
  show.action((flags: Record<string, unknown>) => {
    const loaded = resolveConfig(flags);
    const values = redactedConfig(loaded.config);
    const keys = Object.keys(CONFIG_KEYS) as ConfigKey[];
    if (flags.json) {
      const out = Object.fromEntries(
        keys.map((k) => [k, { value: values[k] ?? null, source: loaded.sources[k], env: CONFIG_KEYS[k].env ?? null }]),
      );
      process.stdout.write(JSON.stringify({ file: loaded.file ?? null, values: out }, null, 2) + '\n');
      return;
    }
    const table = new Table({ head: ['key', 'value', 'source', 'env'], style: { head: [], border: [] } });
    for (const k of keys) {
      const v = values[k];
      table.push([
        k,
        v === undefined ? '(unset)' : Array.isArray(v) ? v.join('\n') || '(none)' : String(v),
        loaded.sources[k],
        CONFIG_KEYS[k].env ?? '',
      ]);
    }
    process.stdout.write(
      `${loaded.file ? `config file: ${loaded.file}` : 'no config file (give --config or create ./detektr.yml)'}\n${table.toString()}\n`,
    );
  });
  return config.addCommand(show);
}
