import type { Keyspace } from './keyspace.js';
import { CommandError, type Reply } from './resp.js';

/** What a command sees: the database, the time it runs at, and who calls it. */
export interface CommandContext {
  db: Keyspace;
  /** ms since epoch, one value for the whole command (as Redis' command time snapshot). */
  now: number;
  client: ClientInfo;
  /** False inside MULTI/EXEC and scripts: blocking commands answer at once. */
  canBlock: boolean;
  server: ServerInfo;
}

export interface ClientInfo {
  id: number;
  name: string;
  libName?: string;
  libVer?: string;
  addr: string;
  connectedAt: number;
}

export interface ServerInfo {
  port: number;
  startedAt: number;
  version: string;
  clients(): ClientInfo[];
  /** Runs a script (EVAL); undefined when scripting is not available. */
  scripting?: Scripting;
  /** Runs a command from a script (redis.call): no blocking, no MULTI. */
  call(raw: Buffer[], client: ClientInfo): Reply;
}

export interface Scripting {
  eval(ctx: CommandContext, source: string, keys: string[], args: string[]): Reply;
  evalsha(ctx: CommandContext, sha: string, keys: string[], args: string[]): Reply;
  load(source: string): string;
  exists(sha: string): boolean;
  flush(): void;
}

/** A read that found nothing and may wait: retried when one of `keys` changes, until `timeoutMs` (0: forever). */
export class Block {
  constructor(
    readonly keys: string[],
    readonly timeoutMs: number,
    /** Tries again; undefined while there is still nothing to return. */
    readonly retry: (ctx: CommandContext) => Reply | undefined,
    /** The reply on timeout. */
    readonly onTimeout: Reply,
  ) {}
}

export type Handler = (ctx: CommandContext, args: string[], raw: Buffer[]) => Reply | Block;

export interface CommandSpec {
  /** Redis arity: N exactly N words (with the name); -N at least N. */
  arity: number;
  handler: Handler;
  /** Not allowed from a script (MULTI, blocking-only and connection commands). */
  noScript?: boolean;
}

export const SYNTAX = 'ERR syntax error';
export const NOT_INTEGER = 'ERR value is not an integer or out of range';

export function fail(message: string): never {
  throw new CommandError(message);
}

/** A signed 64-bit integer argument (as a JS number: exact up to 2^53). */
export function parseInteger(s: string, message = NOT_INTEGER): number {
  if (!/^-?\d{1,19}$/.test(s)) fail(message);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) fail(message);
  return n;
}

export function parseFloatArg(s: string, message = 'ERR value is not a valid float'): number {
  const t = s.toLowerCase();
  if (t === 'inf' || t === '+inf' || t === 'infinity' || t === '+infinity') return Infinity;
  if (t === '-inf' || t === '-infinity') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) fail(message);
  const n = Number(s);
  if (Number.isNaN(n)) fail(message);
  return n;
}

export function wrongArity(name: string): string {
  return `ERR wrong number of arguments for '${name}' command`;
}

export function upper(s: string | undefined): string {
  return (s ?? '').toUpperCase();
}
