import { MULTI_HOST_REDIS_URL, parseRedisUrl } from '../bus/redis-url.js';
import { InvalidInputError } from '../domain/errors.js';
import { redactValue } from './redact-text.js';
import type { KeySpec } from './schema.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PREFIX_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const LEVELS = ['debug', 'info', 'warn', 'error'];

/** "500ms", "30s", "5m", "1h", "7d", or a bare number of milliseconds. */
export function parseDuration(raw: string | number, name = 'duration'): number {
  if (typeof raw === 'number' && Number.isFinite(raw) && raw >= 0) return raw;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(String(raw));
  if (!m) throw new InvalidInputError(`${name}: "${raw}" is not a duration (examples: 500ms, 30s, 5m, 1h, 7d)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']);
}

/** The raw value for an error message; redacted whatever the key (any URL may hold credentials). */
function show(raw: unknown): string {
  return redactValue(typeof raw === 'string' ? raw : String(JSON.stringify(raw)));
}

function checkRange(name: string, spec: KeySpec, n: number, raw: unknown): number {
  if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    const range = spec.max === undefined ? `at least ${spec.min}` : `between ${spec.min ?? 0} and ${spec.max}`;
    throw new InvalidInputError(`${name}: "${show(raw)}" is out of range (${range})`);
  }
  return n;
}

/** Turn a raw value (a string from a flag or the environment, or a YAML value) into the key's type. */
export function parseValue(name: string, spec: KeySpec, raw: unknown): unknown {
  const bad = (why: string) => new InvalidInputError(`${name}: "${show(raw)}" ${why}`);
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string' || raw === '') throw bad('must be a non-empty string');
      return raw;
    case 'url': {
      if (typeof raw !== 'string') throw bad('must be a URL');
      // Redis Cluster / Sentinel URLs list several hosts, which the WHATWG parser rejects.
      if (MULTI_HOST_REDIS_URL.test(raw)) {
        parseRedisUrl(raw, name);
        return raw;
      }
      try {
        new URL(raw);
      } catch {
        throw bad('is not a valid URL');
      }
      return raw;
    }
    case 'int':
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n) || (spec.type === 'int' && !Number.isInteger(n))) {
        throw bad(spec.type === 'int' ? 'is not an integer' : 'is not a number');
      }
      return checkRange(name, spec, n, raw);
    }
    case 'duration': {
      if (typeof raw !== 'string' && typeof raw !== 'number') throw bad('is not a duration (examples: 500ms, 30s, 5m)');
      return checkRange(name, spec, parseDuration(raw, name), raw);
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (/^(1|true|yes|on)$/i.test(String(raw))) return true;
      if (/^(0|false|no|off)$/i.test(String(raw))) return false;
      throw bad('is not a boolean (true/false)');
    case 'list':
      if (Array.isArray(raw)) return raw.map((v) => String(v));
      if (typeof raw === 'string')
        return raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      throw bad('must be a list');
    case 'prefix':
      if (typeof raw !== 'string' || !PREFIX_RE.test(raw)) throw bad('must be 1-64 characters of letters, digits, _ . : -');
      return raw;
    case 'level':
      if (typeof raw !== 'string' || !LEVELS.includes(raw)) throw bad(`must be one of ${LEVELS.join(', ')}`);
      return raw;
  }
}
