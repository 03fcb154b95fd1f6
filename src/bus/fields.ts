import { MalformedMessageError } from '../domain/errors.js';
import { idProblem, ULID_RE } from '../domain/frame-id.js';

/** A stream entry's fields as Redis returns them: [name, value, name, value, ...]. */
export type FieldList = string[];

export const MESSAGE_VERSION = '1';
const TRACEPARENT_RE = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
const MAX_FIELD_LENGTH = 65_536;
/** No message has more than ~20 fields; names are short identifiers. */
const MAX_FIELDS = 64;
const MAX_NAME_LENGTH = 64;
/** JSON fields nest this deep at most (JSON.stringify and PostgreSQL's jsonb overflow their stacks at a few thousand). */
const MAX_JSON_DEPTH = 32;

export function toFieldMap(fields: FieldList): Map<string, string> {
  if (!Array.isArray(fields) || fields.length % 2 !== 0) throw new MalformedMessageError('entry fields are not name/value pairs');
  const map = new Map<string, string>();
  for (let i = 0; i < fields.length; i += 2) map.set(String(fields[i]), String(fields[i + 1]));
  return map;
}

/**
 * toFieldMap for decoding: also rejects what a consumer must not take at face value:
 * duplicated names (which value counts?), too many fields, over-long names or values
 * (read or not), each naming the field.
 */
export function decodeFieldMap(fields: FieldList): Map<string, string> {
  if (!Array.isArray(fields) || fields.length % 2 !== 0) throw new MalformedMessageError('entry fields are not name/value pairs');
  if (fields.length / 2 > MAX_FIELDS) throw new MalformedMessageError(`entry has ${fields.length / 2} fields (at most ${MAX_FIELDS})`);
  const map = new Map<string, string>();
  for (let i = 0; i < fields.length; i += 2) {
    const name = String(fields[i]);
    const value = String(fields[i + 1]);
    if (name.length > MAX_NAME_LENGTH)
      throw new MalformedMessageError(
        `field name ${JSON.stringify(name.slice(0, 32))}... is too long (${name.length} characters)`,
        name.slice(0, 32),
      );
    if (value.length > MAX_FIELD_LENGTH) throw new MalformedMessageError(`field ${name} is too long (${value.length} characters)`, name);
    if (map.has(name)) throw new MalformedMessageError(`field ${name} appears more than once`, name);
    map.set(name, value);
  }
  return map;
}

/** How deep a JSON text nests (brackets outside strings), without parsing it. */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
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
    if (v !== MESSAGE_VERSION)
      throw new MalformedMessageError(`unsupported message version ${v === undefined ? '(missing)' : JSON.stringify(v.slice(0, 16))}`, 'v');
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

  /** A frame id or event id, by the one rule of src/domain/frame-id.ts. */
  id(name: string): string {
    const v = this.string(name, ULID_RE);
    if (idProblem(v)) throw new MalformedMessageError(`field ${name} carries a time after the year 9999`, name);
    return v;
  }

  int(name: string, min: number, max: number): number {
    const raw = this.string(name);
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new MalformedMessageError(
        `field ${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw.slice(0, 32))}`,
        name,
      );
    }
    return n;
  }

  optionalInt(name: string, min: number, max: number): number | undefined {
    return this.optional(name) === undefined ? undefined : this.int(name, min, max);
  }

  traceparent(): string | undefined {
    const v = this.optional('traceparent');
    if (v !== undefined && !TRACEPARENT_RE.test(v))
      throw new MalformedMessageError(`field traceparent is not W3C trace context: ${JSON.stringify(v.slice(0, 64))}`, 'traceparent');
    return v;
  }

  json(name: string): Record<string, unknown> | undefined {
    const v = this.optional(name);
    if (v === undefined) return undefined;
    if (jsonDepth(v) > MAX_JSON_DEPTH) throw new MalformedMessageError(`field ${name} nests deeper than ${MAX_JSON_DEPTH} levels`, name);
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      throw new MalformedMessageError(`field ${name} is not JSON`, name);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new MalformedMessageError(`field ${name} must be a JSON object`, name);
    return parsed as Record<string, unknown>;
  }
}

export const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
