import { MalformedMessageError } from '../domain/errors.js';

/** A stream entry's fields as Redis returns them: [name, value, name, value, ...]. */
export type FieldList = string[];

export const MESSAGE_VERSION = '1';
const TRACEPARENT_RE = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
const MAX_FIELD_LENGTH = 65_536;

export function toFieldMap(fields: FieldList): Map<string, string> {
  if (!Array.isArray(fields) || fields.length % 2 !== 0) throw new MalformedMessageError('entry fields are not name/value pairs');
  const map = new Map<string, string>();
  for (let i = 0; i < fields.length; i += 2) map.set(String(fields[i]), String(fields[i + 1]));
  return map;
}

export function toFieldList(obj: Record<string, string | number | undefined>): FieldList {
  const out: FieldList = [];
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== '') out.push(k, String(v));
  return out;
}

/** Typed readers that name the offending field in their error. */
export class FieldReader {
  constructor(private readonly map: Map<string, string>) {
    const v = map.get('v');
    if (v !== MESSAGE_VERSION) throw new MalformedMessageError(`unsupported message version ${v === undefined ? '(missing)' : JSON.stringify(v.slice(0, 16))}`, 'v');
  }

  optional(name: string): string | undefined {
    const v = this.map.get(name);
    if (v === undefined || v === '') return undefined;
    if (v.length > MAX_FIELD_LENGTH) throw new MalformedMessageError(`field ${name} is too long (${v.length} characters)`, name);
    return v;
  }

  string(name: string, re?: RegExp): string {
    const v = this.optional(name);
    if (v === undefined) throw new MalformedMessageError(`missing field ${name}`, name);
    if (re && !re.test(v)) throw new MalformedMessageError(`field ${name} is malformed: ${JSON.stringify(v.slice(0, 64))}`, name);
    return v;
  }

  int(name: string, min: number, max: number): number {
    const raw = this.string(name);
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new MalformedMessageError(`field ${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw.slice(0, 32))}`, name);
    }
    return n;
  }

  optionalInt(name: string, min: number, max: number): number | undefined {
    return this.optional(name) === undefined ? undefined : this.int(name, min, max);
  }

  traceparent(): string | undefined {
    const v = this.optional('traceparent');
    if (v !== undefined && !TRACEPARENT_RE.test(v)) throw new MalformedMessageError(`field traceparent is not W3C trace context: ${JSON.stringify(v.slice(0, 64))}`, 'traceparent');
    return v;
  }

  json(name: string): Record<string, unknown> | undefined {
    const v = this.optional(name);
    if (v === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new MalformedMessageError(`field ${name} is not JSON`, name);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new MalformedMessageError(`field ${name} must be a JSON object`, name);
    return parsed as Record<string, unknown>;
  }
}

export const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const ULID_FIELD_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
