import { createHash } from 'node:crypto';
import { lauxlib, lua, lualib, type LuaState } from 'fengari';
import type { CommandContext, Scripting } from './command.js';
import { CommandError, ErrorReply, NULL_ARRAY, SimpleString, type Reply } from './resp.js';

/**
 * EVAL / EVALSHA for the embedded server: scripts run in fengari (Lua 5.3 in JavaScript),
 * synchronously, so a script is atomic like in Redis. The environment is Redis' (Lua
 * 5.1 flavoured): KEYS, ARGV, redis.call / pcall / status_reply / error_reply / sha1hex /
 * log, cjson, bit, unpack; no io, os, require or file loading. Replies convert as in Redis
 * (integers, bulk strings, nil bulk -> false, {ok=...}, {err=...}, arrays up to the first nil).
 */

const MAX_SCRIPT_MS = 5000;
const CJSON_NULL = { cjsonNull: true };

const PRELUDE = `
unpack = unpack or table.unpack
loadstring = nil; dofile = nil; loadfile = nil; require = nil; module = nil
io = nil; os = nil; package = nil; debug = nil
bit = {
  band = function(a, ...) for _, b in ipairs({...}) do a = a & b end return a end,
  bor = function(a, ...) for _, b in ipairs({...}) do a = a | b end return a end,
  bxor = function(a, ...) for _, b in ipairs({...}) do a = a ~ b end return a end,
  bnot = function(a) return ~a end,
  lshift = function(a, n) return (a << n) & 0xffffffff end,
  rshift = function(a, n) return (a & 0xffffffff) >> n end,
  tobit = function(a) a = math.tointeger(a) & 0xffffffff; if a >= 0x80000000 then a = a - 0x100000000 end return a end,
}
`;

const bytes = (s: string) => Buffer.from(s, 'latin1');
const text = (u8: Uint8Array) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('latin1');

function sha1(source: string): string {
  return createHash('sha1').update(bytes(source)).digest('hex');
}

export function createScripting(): Scripting {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  const scripts = new Map<string, number>(); // sha -> registry ref of the compiled chunk
  let current: CommandContext | undefined;
  let deadline = 0;

  const run = (code: string, name: string) => {
    if (lauxlib.luaL_loadbuffer(L, bytes(code), code.length, name) !== lua.LUA_OK || lua.lua_pcall(L, 0, 0, 0) !== lua.LUA_OK) {
      throw new Error(`embedded Lua setup failed: ${text(lua.lua_tolstring(L, -1) ?? new Uint8Array())}`);
    }
  };
  run(PRELUDE, '=prelude');

  // --- redis.* ---
  const callCommand =
    (raise: boolean) =>
    (Ls: LuaState): number => {
      const n = lua.lua_gettop(Ls);
      if (n === 0) return raiseError(Ls, 'ERR Please specify at least one argument for this redis lib call');
      const args: Buffer[] = [];
      for (let i = 1; i <= n; i++) {
        const t = lua.lua_type(Ls, i);
        if (t === lua.LUA_TNUMBER) args.push(bytes(numberArg(Ls, i)));
        else if (t === lua.LUA_TSTRING) args.push(Buffer.from(lua.lua_tolstring(Ls, i)!));
        else return raiseError(Ls, 'ERR Lua redis lib command arguments must be strings or integers');
      }
      const ctx = current!;
      const reply = ctx.server.call(args, ctx.client);
      if (reply instanceof ErrorReply && raise) {
        pushReply(Ls, reply);
        return lua.lua_error(Ls);
      }
      pushReply(Ls, reply);
      return 1;
    };
  const raiseError = (Ls: LuaState, message: string): never => {
    lua.lua_createtable(Ls, 0, 1);
    lua.lua_pushstring(Ls, bytes(message));
    lua.lua_setfield(Ls, -2, 'err');
    return lua.lua_error(Ls);
  };
  const replyTable =
    (field: 'ok' | 'err') =>
    (Ls: LuaState): number => {
      const s = lua.lua_tolstring(Ls, 1);
      lua.lua_createtable(Ls, 0, 1);
      lua.lua_pushstring(Ls, s ?? bytes(''));
      lua.lua_setfield(Ls, -2, field);
      return 1;
    };
  lua.lua_createtable(L, 0, 16);
  const fn = (name: string, f: (Ls: LuaState) => number) => {
    lua.lua_pushcfunction(L, f);
    lua.lua_setfield(L, -2, name);
  };
  fn('call', callCommand(true));
  fn('pcall', callCommand(false));
  fn('status_reply', replyTable('ok'));
  fn('error_reply', replyTable('err'));
  fn('sha1hex', (Ls) => {
    lua.lua_pushstring(
      Ls,
      bytes(
        createHash('sha1')
          .update(Buffer.from(lua.lua_tolstring(Ls, 1) ?? new Uint8Array()))
          .digest('hex'),
      ),
    );
    return 1;
  });
  fn('log', () => 0);
  fn('setresp', (Ls) => (lua.lua_tointeger(Ls, 1) === 2 ? 0 : raiseError(Ls, 'ERR RESP version must be 2 in the embedded server')));
  fn('set_repl', () => 0);
  fn('replicate_commands', (Ls) => (lua.lua_pushboolean(Ls, true), 1));
  for (const [k, v] of Object.entries({
    LOG_DEBUG: 0,
    LOG_VERBOSE: 1,
    LOG_NOTICE: 2,
    LOG_WARNING: 3,
    REPL_NONE: 0,
    REPL_AOF: 1,
    REPL_SLAVE: 2,
    REPL_REPLICA: 2,
    REPL_ALL: 3,
  })) {
    lua.lua_pushinteger(L, v);
    lua.lua_setfield(L, -2, k);
  }
  lua.lua_setglobal(L, 'redis');

  // --- cjson ---
  lua.lua_pushlightuserdata(L, CJSON_NULL);
  const nullRef = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX); // cjson.null: a light userdata, as in Redis
  lua.lua_createtable(L, 0, 3);
  lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, nullRef);
  lua.lua_setfield(L, -2, 'null');
  lua.lua_pushcfunction(L, (Ls) => {
    const src = lua.lua_tolstring(Ls, 1);
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(src ?? new Uint8Array()).toString('utf8'));
    } catch (err) {
      return lauxlib.luaL_error(Ls, `cjson.decode: ${(err as Error).message}`);
    }
    pushJson(Ls, value, nullRef);
    return 1;
  });
  lua.lua_setfield(L, -2, 'decode');
  lua.lua_pushcfunction(L, (Ls) => {
    lua.lua_pushstring(Ls, Buffer.from(JSON.stringify(toJson(Ls, 1, 0)), 'utf8'));
    return 1;
  });
  lua.lua_setfield(L, -2, 'encode');
  lua.lua_setglobal(L, 'cjson');

  const compile = (source: string): string => {
    const sha = sha1(source);
    if (scripts.has(sha)) return sha;
    if (lauxlib.luaL_loadbuffer(L, bytes(source), source.length, '@user_script') !== lua.LUA_OK) {
      const msg = text(lua.lua_tolstring(L, -1) ?? new Uint8Array());
      lua.lua_pop(L, 1);
      throw new CommandError(`ERR Error compiling script (new function): ${msg}`);
    }
    scripts.set(sha, lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX));
    return sha;
  };

  const execute = (ctx: CommandContext, sha: string, keys: string[], args: string[]): Reply => {
    const ref = scripts.get(sha);
    if (ref === undefined) throw new CommandError('NOSCRIPT No matching script. Please use EVAL.');
    setArray(L, 'KEYS', keys);
    setArray(L, 'ARGV', args);
    current = ctx;
    deadline = Date.now() + MAX_SCRIPT_MS;
    lua.lua_sethook(
      L,
      (Ls) => {
        if (Date.now() > deadline) lauxlib.luaL_error(Ls, `script ran over ${MAX_SCRIPT_MS} ms in the embedded server`);
      },
      lua.LUA_MASKCOUNT,
      10_000,
    );
    const top = lua.lua_gettop(L);
    try {
      lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, ref);
      if (lua.lua_pcall(L, 0, 1, 0) !== lua.LUA_OK) {
        const msg = errorText(L, -1);
        return new ErrorReply(`${msg.startsWith('ERR ') || /^[A-Z]+ /.test(msg) ? msg : `ERR ${msg}`} script: ${sha}, on @user_script.`);
      }
      return toReply(L, -1, 0);
    } finally {
      lua.lua_sethook(L, null, 0, 0);
      lua.lua_settop(L, top);
      current = undefined;
    }
  };

  return {
    eval: (ctx, source, keys, args) => execute(ctx, compile(source), keys, args),
    evalsha: (ctx, sha, keys, args) => execute(ctx, sha, keys, args),
    load: (source) => compile(source),
    exists: (sha) => scripts.has(sha),
    flush: () => scripts.clear(),
  };
}

/** A Lua number as redis.call passes it on: an integer without a point. */
function numberArg(L: LuaState, i: number): string {
  if (lua.lua_isinteger(L, i)) return String(lua.lua_tointeger(L, i));
  const n = lua.lua_tonumber(L, i);
  return Number.isInteger(n) ? n.toFixed(0) : String(n);
}

/** fengari's integers are 32-bit: larger numbers (ms timestamps) go in as floats, exact to 2^53. */
function pushNumber(L: LuaState, n: number): void {
  if (Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff) lua.lua_pushinteger(L, n);
  else lua.lua_pushnumber(L, n);
}

function setArray(L: LuaState, name: string, values: string[]): void {
  lua.lua_createtable(L, values.length, 0);
  values.forEach((v, i) => {
    lua.lua_pushstring(L, bytes(v));
    lua.lua_rawseti(L, -2, i + 1);
  });
  lua.lua_setglobal(L, name);
}

function errorText(L: LuaState, idx: number): string {
  if (lua.lua_type(L, idx) === lua.LUA_TTABLE) {
    lua.lua_getfield(L, idx, 'err');
    const s = lua.lua_tolstring(L, -1);
    lua.lua_pop(L, 1);
    if (s) return text(s);
  }
  const s = lua.lua_tolstring(L, idx);
  return s ? text(s) : 'unknown error';
}

function pushReply(L: LuaState, r: Reply): void {
  if (typeof r === 'number') pushNumber(L, r);
  else if (typeof r === 'bigint') pushNumber(L, Number(r));
  else if (typeof r === 'string') lua.lua_pushstring(L, bytes(r));
  else if (Buffer.isBuffer(r)) lua.lua_pushstring(L, r);
  else if (r === null || r === NULL_ARRAY) lua.lua_pushboolean(L, false);
  else if (Array.isArray(r)) {
    lua.lua_createtable(L, r.length, 0);
    r.forEach((x, i) => {
      pushReply(L, x);
      lua.lua_rawseti(L, -2, i + 1);
    });
  } else if (r instanceof SimpleString || r instanceof ErrorReply) {
    lua.lua_createtable(L, 0, 1);
    lua.lua_pushstring(L, bytes(r instanceof SimpleString ? r.value : r.message));
    lua.lua_setfield(L, -2, r instanceof SimpleString ? 'ok' : 'err');
  } else lua.lua_pushnil(L);
}

/** A script's return value as a reply (Redis' Lua -> RESP conversion). */
function toReply(L: LuaState, idx: number, depth: number): Reply {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TNUMBER) return Math.trunc(lua.lua_tonumber(L, idx));
  if (t === lua.LUA_TSTRING) return text(lua.lua_tolstring(L, idx)!);
  if (t === lua.LUA_TBOOLEAN) return lua.lua_toboolean(L, idx) ? 1 : null;
  if (t !== lua.LUA_TTABLE || depth > 64) return null;
  const abs = idx < 0 ? lua.lua_gettop(L) + idx + 1 : idx;
  lua.lua_getfield(L, abs, 'err');
  if (lua.lua_type(L, -1) === lua.LUA_TSTRING) {
    const s = text(lua.lua_tolstring(L, -1)!);
    lua.lua_pop(L, 1);
    return new ErrorReply(s);
  }
  lua.lua_pop(L, 1);
  lua.lua_getfield(L, abs, 'ok');
  if (lua.lua_type(L, -1) === lua.LUA_TSTRING) {
    const s = text(lua.lua_tolstring(L, -1)!);
    lua.lua_pop(L, 1);
    return new SimpleString(s);
  }
  lua.lua_pop(L, 1);
  const out: Reply[] = [];
  for (let i = 1; ; i++) {
    lua.lua_rawgeti(L, abs, i);
    if (lua.lua_type(L, -1) === lua.LUA_TNIL) {
      lua.lua_pop(L, 1);
      break;
    }
    out.push(toReply(L, -1, depth + 1));
    lua.lua_pop(L, 1);
  }
  return out;
}

function pushJson(L: LuaState, v: unknown, nullRef: number): void {
  if (v === null) lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, nullRef);
  else if (typeof v === 'boolean') lua.lua_pushboolean(L, v);
  else if (typeof v === 'number') pushNumber(L, v);
  else if (typeof v === 'string') lua.lua_pushstring(L, Buffer.from(v, 'utf8'));
  else if (Array.isArray(v)) {
    lua.lua_createtable(L, v.length, 0);
    v.forEach((x, i) => {
      pushJson(L, x, nullRef);
      lua.lua_rawseti(L, -2, i + 1);
    });
  } else {
    const entries = Object.entries(v as Record<string, unknown>);
    lua.lua_createtable(L, 0, entries.length);
    for (const [k, x] of entries) {
      pushJson(L, x, nullRef);
      lua.lua_setfield(L, -2, Buffer.from(k, 'utf8'));
    }
  }
}

/** cjson.encode's view of a Lua value: tables with keys 1..n are arrays, others objects. */
function toJson(L: LuaState, idx: number, depth: number): unknown {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TNIL) return null;
  if (t === lua.LUA_TBOOLEAN) return lua.lua_toboolean(L, idx);
  if (t === lua.LUA_TLIGHTUSERDATA) return null;
  if (t === lua.LUA_TNUMBER) return lua.lua_tonumber(L, idx);
  if (t === lua.LUA_TSTRING) return Buffer.from(lua.lua_tolstring(L, idx)!).toString('utf8');
  if (t !== lua.LUA_TTABLE) throw new CommandError('ERR cjson.encode: cannot serialise this type');
  if (depth > 1000) throw new CommandError('ERR cjson.encode: excessive nesting');
  const abs = idx < 0 ? lua.lua_gettop(L) + idx + 1 : idx;
  const entries: [unknown, unknown][] = [];
  lua.lua_pushnil(L);
  while (lua.lua_next(L, abs) !== 0) {
    const kt = lua.lua_type(L, -2);
    const key =
      kt === lua.LUA_TNUMBER ? lua.lua_tonumber(L, -2) : Buffer.from(lua.lua_tolstring(L, -2) ?? new Uint8Array()).toString('utf8');
    entries.push([key, toJson(L, -1, depth + 1)]);
    lua.lua_pop(L, 1);
  }
  const isArray =
    entries.length > 0 && entries.every(([k]) => typeof k === 'number' && Number.isInteger(k) && k >= 1 && k <= entries.length);
  if (isArray) {
    const arr = new Array<unknown>(entries.length);
    for (const [k, v] of entries) arr[(k as number) - 1] = v;
    return arr;
  }
  return Object.fromEntries(entries.map(([k, v]) => [String(k), v]));
}
