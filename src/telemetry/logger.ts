import { redactSecrets } from '../config/redact-text.js';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function errorFields(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const cause = err.cause instanceof Error ? `; cause: ${err.cause.message}` : '';
  return `${err.name}: ${err.message}${cause}`;
}

/**
 * JSON lines on stderr (stdout is for results). Every line passes through the URL
 * redactor, so a password inside an error message never reaches the log.
 */
export function createLogger(opts: {
  component: string;
  level?: Level;
  write?: (line: string) => void;
  base?: Record<string, unknown>;
}): Logger {
  const min = RANK[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const base = { component: opts.component, ...opts.base };
  const log = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    const record: Record<string, unknown> = { ts: new Date().toISOString(), level, msg, ...base };
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = k === 'error' || v instanceof Error ? errorFields(v) : v;
    write(redactSecrets(JSON.stringify(record)) + '\n');
  };
  return {
    debug: (m, f) => log('debug', m, f),
    info: (m, f) => log('info', m, f),
    warn: (m, f) => log('warn', m, f),
    error: (m, f) => log('error', m, f),
    child: (fields) => createLogger({ ...opts, base: { ...opts.base, ...fields } }),
  };
}
