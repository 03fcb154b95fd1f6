import { Command, CommanderError, Option, type OutputConfiguration } from 'commander';
import { loadConfig, type LoadedConfig } from '../src/config/load-config.js';
import { redactSecrets, registerSecretValue } from '../src/config/redact-text.js';
import { DetektrError, InvalidInputError, NotFoundError } from '../src/domain/errors.js';
import { CONFIG_KEYS, type ConfigKey, type KeySpec } from '../src/config/schema.js';

/** Flags shared by every command that talks to the infrastructure, mapped to config keys. */
const SHARED: [flag: string, key: ConfigKey, help: string][] = [
  [
    '--redis-url <url>',
    'redisUrl',
    'Redis URL: redis://, rediss:// (TLS), redis+cluster://h1:p1,h2:p2, redis+sentinel://h1:p1,h2:p2/<master> (env REDIS_URL; default redis://127.0.0.1:6379)',
  ],
  ['--redis-tls-ca <file>', 'redisTlsCa', 'PEM CA file for rediss:// forms (env REDIS_TLS_CA; default: the system CAs)'],
  ['--redis-tls-cert <file>', 'redisTlsCert', 'PEM client certificate for rediss:// forms (env REDIS_TLS_CERT)'],
  ['--redis-tls-key <file>', 'redisTlsKey', 'PEM private key of --redis-tls-cert (env REDIS_TLS_KEY)'],
  ['--database-url <url>', 'databaseUrl', 'PostgreSQL URL (env DATABASE_URL; default postgres://postgres@127.0.0.1:5432/detektr)'],
  ['--db-schema <name>', 'dbSchema', 'PostgreSQL schema (env DETEKTR_DB_SCHEMA; default detektr)'],
  ['--prefix <prefix>', 'prefix', 'prefix of every Redis key (env DETEKTR_PREFIX; default detektr:)'],
  ['--shards <n>', 'shards', "Redis shards of the pipeline's keys; the same for every worker (env DETEKTR_SHARDS; default 1)"],
  ['--log-level <level>', 'logLevel', 'debug | info | warn | error (env DETEKTR_LOG_LEVEL; default info)'],
];

/** Where `run` keeps its embedded backends, and where one-shot commands look for them. */
const DATA: [flag: string, key: ConfigKey, help: string][] = [
  [
    '--data-dir <dir>',
    'dataDir',
    'directory of the embedded backends used when no Redis / PostgreSQL URL is set (env DETEKTR_DATA_DIR; default .detektr)',
  ],
];

/** Commands that keep a PostgreSQL pool open (run, store, migrate). */
const PG_POOL: [flag: string, key: ConfigKey, help: string][] = [
  ['--pg-pool-size <n>', 'pgPoolSize', 'PostgreSQL connections the pool may open, 1-100 (env DETEKTR_PG_POOL_SIZE; default 10)'],
];

const WORKER: [flag: string, key: ConfigKey, help: string][] = [
  ['--metrics-port <port>', 'metricsPort', 'port of /metrics, /healthz, /readyz (on --metrics-host; 0: any free port)'],
  ['--metrics-host <host>', 'metricsHost', 'address the metrics server binds to (default 127.0.0.1)'],
];

const camel = (flag: string) =>
  flag
    .replace(/^--/, '')
    .split(' ')[0]
    .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function withConfigOptions(
  cmd: Command,
  opts: { worker?: boolean; only?: ConfigKey[]; dataDir?: boolean; pgPool?: boolean } = {},
): Command {
  cmd.option('-c, --config <file>', 'config file (YAML; env DETEKTR_CONFIG; default ./detektr.yml when present)');
  const data = opts.dataDir || opts.only?.includes('dataDir') ? DATA : [];
  const pool = opts.pgPool || opts.only?.includes('pgPoolSize') ? PG_POOL : [];
  for (const [flag, key, help] of [...SHARED, ...data, ...pool, ...(opts.worker ? WORKER : [])]) {
    if (!opts.only || opts.only.includes(key)) cmd.addOption(new Option(flag, help));
  }
  return cmd;
}

/** Builds the effective config: these flags > environment > config file > defaults. */
export function resolveConfig(flags: Record<string, unknown>, extra: Partial<Record<ConfigKey, unknown>> = {}): LoadedConfig {
  const mapped: Partial<Record<ConfigKey, unknown>> = { ...extra };
  for (const [flag, key] of [...SHARED, ...DATA, ...PG_POOL, ...WORKER]) {
    const v = flags[camel(flag)];
    if (v !== undefined) mapped[key] = v;
  }
  const loaded = loadConfig({ flags: mapped, configPath: flags.config as string | undefined });
  // Secrets that are not URLs (the API token) are masked by value wherever they could be printed.
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as [ConfigKey, KeySpec][]) {
    const value: unknown = loaded.config[key];
    if (spec.secret && spec.type !== 'url' && typeof value === 'string') registerSecretValue(value);
  }
  return loaded;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** What `--json` prints for an error (README, "Errors"). */
export interface CliError {
  message: string;
  /** usage: bad flags, arguments or input (exit 2); not_found (exit 1); failure: anything else (exit 1). */
  kind: 'usage' | 'not_found' | 'failure';
  /** commander's code (`commander.unknownOption`, ...) or the error's class (`ConnectionError`, ...). */
  code: string;
  exitCode: number;
}

/** `--json` anywhere before a `--`: the caller parses our stdout, so errors come as JSON too. */
export function jsonRequested(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** commander's own errors (unknown option, missing argument) get our prefix; with --json, main() reports them. */
export function commanderOutput(json: boolean): Partial<OutputConfiguration> {
  return json
    ? { outputError: () => undefined, writeErr: () => undefined }
    : { outputError: (str, write) => write(`detektr: ${str.replace(/^error: /, '')}`) };
}

/** null for commander's help and version exits, which are not errors. */
export function describeCliError(err: unknown): CliError | null {
  const withCause = (e: Error) => e.message + (e.cause instanceof Error ? ` (${e.cause.message})` : '');
  if (err instanceof CommanderError) {
    if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return null;
    // commander.help: a command with subcommands was given none (it printed its help).
    const message = err.code === 'commander.help' ? 'a command is required (see --help)' : err.message.replace(/^error: /, '');
    return { message, kind: 'usage', code: err.code, exitCode: EXIT.usage };
  }
  if (err instanceof InvalidInputError) return { message: err.message, kind: 'usage', code: err.name, exitCode: EXIT.usage };
  if (err instanceof NotFoundError) return { message: err.message, kind: 'not_found', code: err.name, exitCode: EXIT.failure };
  if (err instanceof DetektrError || err instanceof Error)
    return { message: withCause(err), kind: 'failure', code: err.name, exitCode: EXIT.failure };
  return { message: String(err), kind: 'failure', code: 'Error', exitCode: EXIT.failure };
}

/**
 * Prints a failed command's error, redacted: `detektr: <message>` on stderr and, with
 * --json, `{"error": {...}}` on stdout where the result would have been. Returns the exit code.
 */
export function reportCliError(err: unknown, json: boolean): number {
  const e = describeCliError(err);
  if (!e) return EXIT.ok;
  const message = redactSecrets(e.message);
  // commander has printed its own message already (see commanderOutput), unless --json.
  if (!(err instanceof CommanderError) || json) process.stderr.write(`detektr: ${message}\n`);
  if (json) process.stdout.write(JSON.stringify({ error: { ...e, message } }) + '\n');
  return e.exitCode;
}
