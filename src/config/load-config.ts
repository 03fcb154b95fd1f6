import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { InvalidInputError } from '../domain/errors.js';
import { CONFIG_KEYS, type ConfigKey, type KeySpec } from './schema.js';
import { parseValue } from './parse-value.js';
import { redactValue } from './redact-text.js';

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface Config {
  redisUrl: string;
  redisTlsCa?: string;
  redisTlsCert?: string;
  redisTlsKey?: string;
  databaseUrl: string;
  pgPoolSize: number;
  dbSchema: string;
  prefix: string;
  shards: number;
  cameraShards: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  metricsHost: string;
  metricsPort?: number;
  streamMaxLen: number;
  payloadTtl: number;
  maxDeliveries: number;
  claimIdle: number;
  blockTime: number;
  batchSize: number;
  heartbeatInterval: number;
  processorTtl: number;
  fps: number;
  jpegQuality: number;
  cameras: string[];
  traceUiUrl?: string;
  dataDir: string;
  strategy: 'least-loaded' | 'camera-affinity' | 'round-robin';
  apiPort?: number;
  apiToken?: string;
  shedPolicy: 'lowest-priority' | 'oldest';
  pressureHigh: number;
  pressureCritical: number;
  starvationLimit: number;
  breakerFailures: number;
  breakerCooldown: number;
  concurrency: number;
  frameTimeout: number;
  rtspTransport: 'tcp' | 'udp';
  cameraTimeout: number;
  stallTimeout: number;
  reconnectMax: number;
  offlineGrace: number;
  invalidFrames: string;
  frozenAfter: number;
  thumbnailWidth: number;
  jpegWidth: number;
  detectUrls: string[];
  jpegTables: 'standard' | 'optimal';
  hwaccel: 'none' | 'vaapi' | 'cuda' | 'qsv' | 'auto';
  /** Per-camera keys of the config file's `cameras` objects (beyond id and url), by camera id; only when the cameras come from the file. */
  cameraOptions?: Record<string, Record<string, unknown>>;
}

export interface LoadedConfig {
  config: Config;
  sources: Record<ConfigKey, Source>;
  file?: string;
}

export interface LoadConfigInput {
  /** Values given as command-line flags, keyed by config key (undefined: not given). */
  flags?: Partial<Record<ConfigKey, unknown>>;
  env?: NodeJS.ProcessEnv;
  /** Explicit --config path; else DETEKTR_CONFIG; else ./detektr.yml when present. */
  configPath?: string;
  cwd?: string;
}

const KEYS = Object.keys(CONFIG_KEYS) as ConfigKey[];
/** As assertSchemaName in src/store/pg.ts. */
const SCHEMA_NAME_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const BY_FILE_NAME = new Map<string, ConfigKey>(
  KEYS.flatMap(
    (k) =>
      [
        [k, k],
        [kebab(k), k],
      ] as [string, ConfigKey][],
  ),
);

function readConfigFile(path: string, explicit: boolean): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidInputError(`config file ${path}: cannot be read (${(err as Error).message})`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InvalidInputError(`config file ${path}: not valid YAML (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new InvalidInputError(`config file ${path}: must be a mapping of keys to values`);
  return doc as Record<string, unknown>;
}

/**
 * Cameras in a file may be "id=url" strings or { id, url, ...settings } objects; the
 * settings (validated by capture) are collected by camera id into `options`.
 */
function normaliseFileCameras(path: string, raw: unknown, options: Record<string, Record<string, unknown>>): unknown {
  if (!Array.isArray(raw)) return raw;
  return raw.map((c, i) => {
    if (typeof c === 'string') return c;
    if (c && typeof c === 'object' && typeof (c as { id?: unknown }).id === 'string' && typeof (c as { url?: unknown }).url === 'string') {
      const { id, url, ...rest } = c as { id: string; url: string } & Record<string, unknown>;
      if (Object.keys(rest).length) options[id] = rest;
      return `${id}=${url}`;
    }
    throw new InvalidInputError(`config file ${path}: cameras[${i}] must be "id=url" or { id, url }`);
  });
}

/** flags > environment > config file > defaults; every value validated, every bad key named. */
export function loadConfig(input: LoadConfigInput = {}): LoadedConfig {
  const env = input.env ?? process.env;
  const explicitPath = input.configPath ?? env.DETEKTR_CONFIG;
  const path = explicitPath ?? `${input.cwd ?? process.cwd()}/detektr.yml`;
  const fileValues = readConfigFile(path, explicitPath !== undefined);

  const fromFile = new Map<ConfigKey, unknown>();
  const cameraOptions: Record<string, Record<string, unknown>> = {};
  for (const [name, value] of Object.entries(fileValues ?? {})) {
    const key = BY_FILE_NAME.get(name);
    if (!key) {
      throw new InvalidInputError(`config file ${path}: unknown key "${name}" (known keys: ${KEYS.join(', ')})`);
    }
    fromFile.set(key, key === 'cameras' ? normaliseFileCameras(path, value, cameraOptions) : value);
  }

  const config: Record<string, unknown> = {};
  const sources = {} as Record<ConfigKey, Source>;
  for (const key of KEYS) {
    const spec: KeySpec = CONFIG_KEYS[key];
    const flag = input.flags?.[key];
    const envValue = spec.env ? env[spec.env] : undefined;
    if (flag !== undefined) {
      config[key] = parseValue(`--${kebab(key)}`, spec, flag);
      sources[key] = 'flag';
    } else if (envValue !== undefined && envValue !== '') {
      config[key] = parseValue(spec.env!, spec, envValue);
      sources[key] = 'env';
    } else if (fromFile.has(key)) {
      config[key] = parseValue(`${path}: ${key}`, spec, fromFile.get(key));
      sources[key] = 'file';
    } else {
      config[key] = spec.default;
      sources[key] = 'default';
    }
    const where = () => (sources[key] === 'flag' ? `--${kebab(key)}` : sources[key] === 'env' ? spec.env! : `${path}: ${key}`);
    if (spec.choices && config[key] !== undefined && !spec.choices.includes(config[key] as string)) {
      throw new InvalidInputError(`${where()}: "${redactValue(String(config[key]))}" must be one of ${spec.choices.join(', ')}`);
    }
    // The schema becomes an SQL identifier (search_path, CREATE SCHEMA): checked here so the error names the setting.
    if (key === 'dbSchema' && !SCHEMA_NAME_RE.test(String(config[key]))) {
      throw new InvalidInputError(
        `${where()}: schema name ${redactValue(JSON.stringify(config[key]))} is invalid: use lowercase letters, digits and _ (not first), at most 63 characters`,
      );
    }
  }
  if (sources.cameras === 'file' && Object.keys(cameraOptions).length) config.cameraOptions = cameraOptions;
  return { config: config as unknown as Config, sources, file: fileValues ? path : undefined };
}

/**
 * The effective configuration with every secret redacted: safe to log or print. Every
 * string goes through the redactor, not only the keys marked secret: any URL a user sets
 * (a trace UI URL with user:password@, a ?token=) may carry credentials.
 */
export function redactedConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of KEYS) {
    const value: unknown = (config as unknown as Record<string, unknown>)[key];
    const spec: KeySpec = CONFIG_KEYS[key];
    if (typeof value === 'string') out[key] = spec.secret && spec.type !== 'url' ? '***' : redactValue(value);
    else out[key] = Array.isArray(value) ? value.map((v) => redactValue(String(v))) : value;
  }
  return out;
}
