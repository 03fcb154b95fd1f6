import { fail, parseFloatArg, parseInteger, SYNTAX, upper, type CommandContext, type CommandSpec } from './command.js';
import { globToRegExp } from './glob.js';
import { OK, SimpleString, type Reply } from './resp.js';
import { formatScore, inRange, SortedSet, type ScoreBound } from './sorted-set.js';

/**
 * Strings, expiry, keys, hashes, sorted sets and sets: the non-stream commands detektr
 * (and its tests) use, with Redis 7 replies and error texts.
 */
export const BASIC_COMMANDS: Record<string, CommandSpec> = {
  // --- strings ---------------------------------------------------------------------------
  set: { arity: -3, handler: set },
  get: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'string', ctx.now) ?? null },
  getdel: {
    arity: 2,
    handler: (ctx, a) => {
      const v = ctx.db.get(a[1], 'string', ctx.now);
      if (v !== undefined) ctx.db.delete(a[1], ctx.now);
      return v ?? null;
    },
  },
  mget: {
    arity: -2,
    handler: (ctx, a) =>
      a.slice(1).map((k) => {
        const v = ctx.db.lookup(k, ctx.now);
        return v?.type === 'string' ? v.v : null;
      }),
  },
  mset: {
    arity: -3,
    handler: (ctx, a, raw) => {
      if ((a.length - 1) % 2 !== 0) fail(`ERR wrong number of arguments for 'mset' command`);
      for (let i = 1; i < a.length; i += 2) ctx.db.set(a[i], { type: 'string', v: raw[i + 1] });
      return OK;
    },
  },
  strlen: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'string', ctx.now)?.length ?? 0 },
  incr: { arity: 2, handler: (ctx, a) => incrBy(ctx, a[1], 1) },
  decr: { arity: 2, handler: (ctx, a) => incrBy(ctx, a[1], -1) },
  incrby: { arity: 3, handler: (ctx, a) => incrBy(ctx, a[1], parseInteger(a[2])) },
  decrby: { arity: 3, handler: (ctx, a) => incrBy(ctx, a[1], -parseInteger(a[2])) },

  // --- keys and expiry -------------------------------------------------------------------
  del: { arity: -2, handler: (ctx, a) => a.slice(1).reduce((n, k) => n + (ctx.db.delete(k, ctx.now) ? 1 : 0), 0) },
  unlink: { arity: -2, handler: (ctx, a) => a.slice(1).reduce((n, k) => n + (ctx.db.delete(k, ctx.now) ? 1 : 0), 0) },
  exists: { arity: -2, handler: (ctx, a) => a.slice(1).reduce((n, k) => n + (ctx.db.lookup(k, ctx.now) ? 1 : 0), 0) },
  type: { arity: 2, handler: (ctx, a) => new SimpleString(ctx.db.lookup(a[1], ctx.now)?.type ?? 'none') },
  pexpire: { arity: -3, handler: (ctx, a) => expire(ctx, a, 1) },
  expire: { arity: -3, handler: (ctx, a) => expire(ctx, a, 1000) },
  pexpireat: { arity: -3, handler: (ctx, a) => expire(ctx, a, 1, true) },
  expireat: { arity: -3, handler: (ctx, a) => expire(ctx, a, 1000, true) },
  pttl: { arity: 2, handler: (ctx, a) => ttl(ctx, a[1], 1) },
  ttl: { arity: 2, handler: (ctx, a) => ttl(ctx, a[1], 1000) },
  persist: {
    arity: 2,
    handler: (ctx, a) => {
      if (!ctx.db.lookup(a[1], ctx.now) || ctx.db.expiry(a[1]) === undefined) return 0;
      ctx.db.setExpiry(a[1], undefined);
      return 1;
    },
  },
  keys: {
    arity: 2,
    handler: (ctx, a) => {
      const re = globToRegExp(a[1]);
      return [...ctx.db.liveKeys(ctx.now)].filter((k) => re.test(k));
    },
  },
  scan: { arity: -2, handler: scan },
  dbsize: { arity: 1, handler: (ctx) => [...ctx.db.liveKeys(ctx.now)].length },
  flushdb: { arity: -1, handler: (ctx) => (ctx.db.flush(), OK) },
  flushall: { arity: -1, handler: (ctx) => (ctx.db.flush(), OK) },

  // --- hashes ----------------------------------------------------------------------------
  hset: { arity: -4, handler: hset },
  hmset: { arity: -4, handler: (ctx, a) => (hset(ctx, a, [], 'hmset'), OK) },
  hsetnx: {
    arity: 4,
    handler: (ctx, a) => {
      const h = ctx.db.getOrCreate(a[1], 'hash', () => new Map(), ctx.now);
      if (h.has(a[2])) return 0;
      h.set(a[2], a[3]);
      ctx.db.onTouch(a[1]);
      return 1;
    },
  },
  hget: { arity: 3, handler: (ctx, a) => ctx.db.get(a[1], 'hash', ctx.now)?.get(a[2]) ?? null },
  hmget: {
    arity: -3,
    handler: (ctx, a) => {
      const h = ctx.db.get(a[1], 'hash', ctx.now);
      return a.slice(2).map((f) => h?.get(f) ?? null);
    },
  },
  hgetall: {
    arity: 2,
    handler: (ctx, a) => {
      const h = ctx.db.get(a[1], 'hash', ctx.now);
      return h ? [...h].flat() : [];
    },
  },
  hkeys: { arity: 2, handler: (ctx, a) => [...(ctx.db.get(a[1], 'hash', ctx.now)?.keys() ?? [])] },
  hvals: { arity: 2, handler: (ctx, a) => [...(ctx.db.get(a[1], 'hash', ctx.now)?.values() ?? [])] },
  hlen: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'hash', ctx.now)?.size ?? 0 },
  hexists: { arity: 3, handler: (ctx, a) => (ctx.db.get(a[1], 'hash', ctx.now)?.has(a[2]) ? 1 : 0) },
  hdel: {
    arity: -3,
    handler: (ctx, a) => {
      const h = ctx.db.get(a[1], 'hash', ctx.now);
      if (!h) return 0;
      let n = 0;
      for (const f of a.slice(2)) if (h.delete(f)) n++;
      ctx.db.deleteIfEmpty(a[1], h.size);
      if (n) ctx.db.onTouch(a[1]);
      return n;
    },
  },
  hincrby: {
    arity: 4,
    handler: (ctx, a) => {
      const by = parseInteger(a[3]);
      const h = ctx.db.getOrCreate(a[1], 'hash', () => new Map(), ctx.now);
      const cur = h.get(a[2]);
      const n = cur === undefined ? 0 : parseInteger(cur, 'ERR hash value is not an integer');
      const next = n + by;
      if (!Number.isSafeInteger(next)) fail('ERR increment or decrement would overflow');
      h.set(a[2], String(next));
      ctx.db.onTouch(a[1]);
      return next;
    },
  },

  // --- sorted sets -----------------------------------------------------------------------
  zadd: { arity: -4, handler: zadd },
  zincrby: {
    arity: 4,
    handler: (ctx, a) => {
      const by = parseFloatArg(a[2]);
      const z = ctx.db.getOrCreate(a[1], 'zset', () => new SortedSet(), ctx.now);
      const next = (z.scores.get(a[3]) ?? 0) + by;
      if (Number.isNaN(next)) fail('ERR resulting score is not a number (NaN)');
      z.set(a[3], next);
      ctx.db.onTouch(a[1]);
      return formatScore(next);
    },
  },
  zscore: {
    arity: 3,
    handler: (ctx, a) => {
      const s = ctx.db.get(a[1], 'zset', ctx.now)?.scores.get(a[2]);
      return s === undefined ? null : formatScore(s);
    },
  },
  zcard: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'zset', ctx.now)?.size ?? 0 },
  zcount: {
    arity: 4,
    handler: (ctx, a) => {
      const z = ctx.db.get(a[1], 'zset', ctx.now);
      const [min, max] = [scoreBound(a[2]), scoreBound(a[3])];
      return z ? z.ordered().filter(([, s]) => inRange(s, min, max)).length : 0;
    },
  },
  zrange: { arity: -4, handler: (ctx, a) => zrange(ctx, a, 'zrange') },
  zrevrange: { arity: -4, handler: (ctx, a) => zrange(ctx, a, 'zrevrange') },
  zrangebyscore: { arity: -4, handler: (ctx, a) => zrange(ctx, a, 'zrangebyscore') },
  zrevrangebyscore: { arity: -4, handler: (ctx, a) => zrange(ctx, a, 'zrevrangebyscore') },
  zrem: {
    arity: -3,
    handler: (ctx, a) => {
      const z = ctx.db.get(a[1], 'zset', ctx.now);
      if (!z) return 0;
      let n = 0;
      for (const m of a.slice(2)) if (z.delete(m)) n++;
      ctx.db.deleteIfEmpty(a[1], z.size);
      if (n) ctx.db.onTouch(a[1]);
      return n;
    },
  },
  zremrangebyscore: {
    arity: 4,
    handler: (ctx, a) => {
      const [min, max] = [scoreBound(a[2]), scoreBound(a[3])];
      const z = ctx.db.get(a[1], 'zset', ctx.now);
      if (!z) return 0;
      const gone = z
        .ordered()
        .filter(([, s]) => inRange(s, min, max))
        .map(([m]) => m);
      for (const m of gone) z.delete(m);
      ctx.db.deleteIfEmpty(a[1], z.size);
      if (gone.length) ctx.db.onTouch(a[1]);
      return gone.length;
    },
  },

  // --- sets ------------------------------------------------------------------------------
  sadd: {
    arity: -3,
    handler: (ctx, a) => {
      const s = ctx.db.getOrCreate(a[1], 'set', () => new Set(), ctx.now);
      let n = 0;
      for (const m of a.slice(2)) {
        if (s.has(m)) continue;
        s.add(m);
        n++;
      }
      ctx.db.onTouch(a[1]);
      return n;
    },
  },
  srem: {
    arity: -3,
    handler: (ctx, a) => {
      const s = ctx.db.get(a[1], 'set', ctx.now);
      if (!s) return 0;
      let n = 0;
      for (const m of a.slice(2)) if (s.delete(m)) n++;
      ctx.db.deleteIfEmpty(a[1], s.size);
      if (n) ctx.db.onTouch(a[1]);
      return n;
    },
  },
  smembers: { arity: 2, handler: (ctx, a) => [...(ctx.db.get(a[1], 'set', ctx.now) ?? [])] },
  sismember: { arity: 3, handler: (ctx, a) => (ctx.db.get(a[1], 'set', ctx.now)?.has(a[2]) ? 1 : 0) },
  scard: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'set', ctx.now)?.size ?? 0 },
};

function set(ctx: CommandContext, a: string[], raw: Buffer[]): Reply {
  const key = a[1];
  let nx = false;
  let xx = false;
  let get = false;
  let keepTtl = false;
  let expireAt: number | undefined;
  let expireGiven = false;
  for (let i = 3; i < a.length; i++) {
    const opt = upper(a[i]);
    if (opt === 'NX' && !xx) nx = true;
    else if (opt === 'XX' && !nx) xx = true;
    else if (opt === 'GET') get = true;
    else if (opt === 'KEEPTTL' && !expireGiven) keepTtl = true;
    else if ((opt === 'EX' || opt === 'PX' || opt === 'EXAT' || opt === 'PXAT') && !keepTtl && !expireGiven && i + 1 < a.length) {
      const n = parseInteger(a[++i]);
      if (n <= 0) fail(`ERR invalid expire time in 'set' command`);
      expireGiven = true;
      expireAt = opt === 'EX' ? ctx.now + n * 1000 : opt === 'PX' ? ctx.now + n : opt === 'EXAT' ? n * 1000 : n;
    } else fail(SYNTAX);
  }
  const old = ctx.db.lookup(key, ctx.now);
  if (get && old && old.type !== 'string') fail('WRONGTYPE Operation against a key holding the wrong kind of value');
  const oldValue = get ? (old?.type === 'string' ? old.v : null) : undefined;
  if ((nx && old) || (xx && !old)) return get ? (oldValue ?? null) : null;
  ctx.db.set(key, { type: 'string', v: raw[2] ?? Buffer.from(a[2], 'latin1') }, keepTtl);
  if (expireAt !== undefined) ctx.db.setExpiry(key, expireAt);
  return get ? (oldValue ?? null) : OK;
}

function incrBy(ctx: CommandContext, key: string, by: number): number {
  const cur = ctx.db.get(key, 'string', ctx.now);
  const n = cur === undefined ? 0 : parseInteger(cur.toString('latin1'));
  const next = n + by;
  if (!Number.isSafeInteger(next)) fail('ERR increment or decrement would overflow');
  const at = ctx.db.expiry(key);
  ctx.db.set(key, { type: 'string', v: Buffer.from(String(next), 'latin1') }, at !== undefined);
  return next;
}

function expire(ctx: CommandContext, a: string[], unitMs: number, absolute = false): number {
  const n = parseInteger(a[2]);
  let nx = false,
    xx = false,
    gt = false,
    lt = false;
  for (const o of a.slice(3).map(upper)) {
    if (o === 'NX') nx = true;
    else if (o === 'XX') xx = true;
    else if (o === 'GT') gt = true;
    else if (o === 'LT') lt = true;
    else fail(`ERR Unsupported option ${o}`);
  }
  if (nx && (xx || gt || lt)) fail('ERR NX and XX, GT or LT options at the same time are not compatible');
  if (gt && lt) fail('ERR GT and LT options at the same time are not compatible');
  if (!ctx.db.lookup(a[1], ctx.now)) return 0;
  const at = absolute ? n * unitMs : ctx.now + n * unitMs;
  const cur = ctx.db.expiry(a[1]);
  if (nx && cur !== undefined) return 0;
  if (xx && cur === undefined) return 0;
  if (gt && (cur === undefined || at <= cur)) return 0;
  if (lt && cur !== undefined && at >= cur) return 0;
  if (at <= ctx.now) {
    ctx.db.delete(a[1], ctx.now);
    return 1;
  }
  ctx.db.setExpiry(a[1], at);
  return 1;
}

function ttl(ctx: CommandContext, key: string, unitMs: number): number {
  if (!ctx.db.lookup(key, ctx.now)) return -2;
  const at = ctx.db.expiry(key);
  if (at === undefined) return -1;
  return unitMs === 1 ? at - ctx.now : Math.round((at - ctx.now) / 1000);
}

function scan(ctx: CommandContext, a: string[]): Reply {
  const cursor = parseInteger(a[1], 'ERR invalid cursor');
  let match: RegExp | undefined;
  let count = 10;
  let type: string | undefined;
  for (let i = 2; i < a.length; i += 2) {
    const opt = upper(a[i]);
    if (i + 1 >= a.length) fail(SYNTAX);
    if (opt === 'MATCH') match = a[i + 1] === '*' ? undefined : globToRegExp(a[i + 1]);
    else if (opt === 'COUNT') {
      count = parseInteger(a[i + 1]);
      if (count < 1) fail(SYNTAX);
    } else if (opt === 'TYPE') type = a[i + 1].toLowerCase();
    else fail(SYNTAX);
  }
  const { keys, next } = ctx.db.scan(cursor, count, ctx.now);
  const found = keys.filter((k) => (!match || match.test(k)) && (!type || ctx.db.lookup(k, ctx.now)?.type === type));
  return [String(next), found];
}

function hset(ctx: CommandContext, a: string[], _raw: Buffer[], name = 'hset'): number {
  if ((a.length - 2) % 2 !== 0) fail(`ERR wrong number of arguments for '${name}' command`);
  const h = ctx.db.getOrCreate(a[1], 'hash', () => new Map(), ctx.now);
  let added = 0;
  for (let i = 2; i < a.length; i += 2) {
    if (!h.has(a[i])) added++;
    h.set(a[i], a[i + 1]);
  }
  ctx.db.onTouch(a[1]);
  return added;
}

function zadd(ctx: CommandContext, a: string[]): Reply {
  let i = 2;
  let nx = false,
    xx = false,
    gt = false,
    lt = false,
    ch = false,
    incr = false;
  for (; i < a.length; i++) {
    const o = upper(a[i]);
    if (o === 'NX') nx = true;
    else if (o === 'XX') xx = true;
    else if (o === 'GT') gt = true;
    else if (o === 'LT') lt = true;
    else if (o === 'CH') ch = true;
    else if (o === 'INCR') incr = true;
    else break;
  }
  const pairs = a.length - i;
  if (pairs === 0 || pairs % 2 !== 0) fail(SYNTAX);
  if (nx && xx) fail('ERR XX and NX options at the same time are not compatible');
  if ((gt && nx) || (lt && nx) || (gt && lt)) fail('ERR GT, LT, and/or NX options at the same time are not compatible');
  if (incr && pairs > 2) fail('ERR INCR option supports a single increment-element pair');
  const items: [number, string][] = [];
  for (let j = i; j < a.length; j += 2) items.push([parseFloatArg(a[j]), a[j + 1]]);
  const z = ctx.db.getOrCreate(a[1], 'zset', () => new SortedSet(), ctx.now);
  let added = 0;
  let changed = 0;
  let result: number | null = null;
  for (const [score, member] of items) {
    const cur = z.scores.get(member);
    if ((nx && cur !== undefined) || (xx && cur === undefined)) continue;
    const next = incr ? (cur ?? 0) + score : score;
    if (Number.isNaN(next)) fail('ERR resulting score is not a number (NaN)');
    if (cur !== undefined && ((gt && next <= cur) || (lt && next >= cur))) continue;
    if (cur === undefined) added++;
    else if (cur !== next) changed++;
    z.set(member, next);
    result = next;
  }
  ctx.db.deleteIfEmpty(a[1], z.size);
  ctx.db.onTouch(a[1]);
  if (incr) return result === null ? null : formatScore(result);
  return ch ? added + changed : added;
}

function scoreBound(s: string): ScoreBound {
  const exclusive = s.startsWith('(');
  const v = parseFloatArg(exclusive ? s.slice(1) : s, 'ERR min or max is not a float');
  return { value: v, exclusive };
}

/** ZRANGE in all its forms: by index, BYSCORE, REV, LIMIT, WITHSCORES; and the older ZRANGEBYSCORE family. */
function zrange(ctx: CommandContext, a: string[], form: 'zrange' | 'zrevrange' | 'zrangebyscore' | 'zrevrangebyscore'): Reply {
  let byScore = form === 'zrangebyscore' || form === 'zrevrangebyscore';
  let rev = form === 'zrevrange' || form === 'zrevrangebyscore';
  let withScores = false;
  let offset = 0;
  let limit = -1;
  let limitGiven = false;
  for (let i = 4; i < a.length; i++) {
    const o = upper(a[i]);
    if (o === 'WITHSCORES') withScores = true;
    else if (o === 'LIMIT' && i + 2 < a.length) {
      offset = parseInteger(a[++i]);
      limit = parseInteger(a[++i]);
      limitGiven = true;
    } else if (form === 'zrange' && o === 'BYSCORE') byScore = true;
    else if (form === 'zrange' && o === 'REV') rev = true;
    else fail(SYNTAX);
  }
  if (limitGiven && !byScore) fail('ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX');
  const z = ctx.db.get(a[1], 'zset', ctx.now);
  if (!z) return [];
  let items = z.ordered();
  if (byScore) {
    // ZRANGE ... BYSCORE REV and ZREVRANGEBYSCORE take max first
    const [lo, hi] = rev ? [scoreBound(a[3]), scoreBound(a[2])] : [scoreBound(a[2]), scoreBound(a[3])];
    items = items.filter(([, s]) => inRange(s, lo, hi));
    if (rev) items = [...items].reverse();
    if (offset < 0) return [];
    items = items.slice(offset, limit < 0 ? undefined : offset + limit);
  } else {
    const n = items.length;
    let start = parseInteger(a[2]);
    let stop = parseInteger(a[3]);
    if (start < 0) start = Math.max(0, n + start);
    if (stop < 0) stop = n + stop;
    if (stop >= n) stop = n - 1;
    if (start > stop || start >= n) return [];
    const src = rev ? [...items].reverse() : items;
    items = src.slice(start, stop + 1);
  }
  return withScores ? items.flatMap(([m, s]) => [m, formatScore(s)]) : items.map(([m]) => m);
}
