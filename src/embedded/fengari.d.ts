// The part of fengari (Lua 5.3 in JavaScript, no type definitions of its own) that lua.ts uses.
declare module 'fengari' {
  export interface LuaState {
    readonly __luaState: unique symbol;
  }
  type LuaString = Uint8Array;
  type CFunction = (L: LuaState) => number;

  export const lua: {
    LUA_OK: number;
    LUA_TNIL: number;
    LUA_TBOOLEAN: number;
    LUA_TLIGHTUSERDATA: number;
    LUA_TNUMBER: number;
    LUA_TSTRING: number;
    LUA_TTABLE: number;
    LUA_MASKCOUNT: number;
    LUA_REGISTRYINDEX: number;
    lua_pushnil(L: LuaState): void;
    lua_pushboolean(L: LuaState, b: boolean): void;
    lua_pushinteger(L: LuaState, n: number): void;
    lua_pushnumber(L: LuaState, n: number): void;
    lua_pushstring(L: LuaState, s: LuaString | string): LuaString;
    lua_pushcfunction(L: LuaState, f: CFunction): void;
    lua_pushlightuserdata(L: LuaState, p: object): void;
    lua_pushvalue(L: LuaState, idx: number): void;
    lua_createtable(L: LuaState, narr: number, nrec: number): void;
    lua_setfield(L: LuaState, idx: number, k: LuaString | string): void;
    lua_getfield(L: LuaState, idx: number, k: LuaString | string): number;
    lua_rawseti(L: LuaState, idx: number, n: number): void;
    lua_rawgeti(L: LuaState, idx: number, n: number): number;
    lua_rawequal(L: LuaState, a: number, b: number): boolean;
    lua_setglobal(L: LuaState, name: LuaString | string): void;
    lua_getglobal(L: LuaState, name: LuaString | string): number;
    lua_gettop(L: LuaState): number;
    lua_settop(L: LuaState, idx: number): void;
    lua_pop(L: LuaState, n: number): void;
    lua_type(L: LuaState, idx: number): number;
    lua_isinteger(L: LuaState, idx: number): boolean;
    lua_toboolean(L: LuaState, idx: number): boolean;
    lua_tointeger(L: LuaState, idx: number): number;
    lua_tonumber(L: LuaState, idx: number): number;
    lua_tolstring(L: LuaState, idx: number): LuaString | null;
    lua_next(L: LuaState, idx: number): number;
    lua_pcall(L: LuaState, nargs: number, nresults: number, errfunc: number): number;
    lua_error(L: LuaState): never;
    lua_sethook(L: LuaState, f: ((L: LuaState) => void) | null, mask: number, count: number): void;
  };
  export const lauxlib: {
    luaL_newstate(): LuaState;
    luaL_loadbuffer(L: LuaState, buf: LuaString, size: number, name: LuaString | string): number;
    luaL_ref(L: LuaState, t: number): number;
    luaL_error(L: LuaState, fmt: LuaString | string, ...args: unknown[]): never;
    luaL_traceback(L: LuaState, L1: LuaState, msg: LuaString | null, level: number): void;
  };
  export const lualib: {
    luaL_openlibs(L: LuaState): void;
  };
  export function to_luastring(s: string): LuaString;
  export function to_jsstring(s: LuaString): string;
}
