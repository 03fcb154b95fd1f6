import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScripting } from '../../src/embedded/lua.js';
import { EmbeddedRedis } from '../../src/embedded/resp-server.js';
import { REDIS_URL, uniquePrefix } from '../helpers/redis.js';

/**
 * The embedded server against a real Redis, reply for reply: each scenario runs on both
 * (RESP2 on both sides) and every reply, error texts included, must be the same. Explicit
 * stream ids keep the replies deterministic; idle times are masked.
 */
type Cmd = (string | number)[];

const scenarios: Record<string, Cmd[]> = {
  groupCreate: [
    ['XADD', 's', '1-1', 'a', '1'],
    ['XADD', 's', '2-1', 'a', '2'],
    ['XADD', 's', '3-1', 'a', '3'],
    ['XGROUP', 'CREATE', 's', 'g0', '0'],
    ['XGROUP', 'CREATE', 's', 'gd', '$'],
    ['XGROUP', 'CREATE', 's', 'gm', '2-1'],
    ['XGROUP', 'CREATE', 's', 'ge', '0', 'ENTRIESREAD', '1'],
    ['XINFO', 'GROUPS', 's'],
    ['XREADGROUP', 'GROUP', 'g0', 'c1', 'COUNT', '1', 'STREAMS', 's', '>'],
    ['XREADGROUP', 'GROUP', 'gm', 'c1', 'STREAMS', 's', '>'],
    ['XINFO', 'GROUPS', 's'],
    ['XADD', 's', '4-1', 'a', '4'],
    ['XINFO', 'GROUPS', 's'],
    ['XGROUP', 'CREATE', 's', 'g0', '0'],
    ['XGROUP', 'CREATE', 'nokey', 'g0', '0'],
    ['XGROUP', 'CREATE', 'nokey2', 'g0', '$', 'MKSTREAM'],
    ['XINFO', 'GROUPS', 'nokey2'],
    ['XINFO', 'GROUPS', 'nokey3'],
    ['XINFO', 'STREAM', 's'],
  ],
  delAndLag: [
    ['XGROUP', 'CREATE', 's', 'g', '0', 'MKSTREAM'],
    ['XINFO', 'GROUPS', 's'],
    ['XADD', 's', '1-0', 'f', 'v'],
    ['XADD', 's', '2-0', 'f', 'v'],
    ['XADD', 's', '3-0', 'f', 'v'],
    ['XADD', 's', '4-0', 'f', 'v'],
    ['XINFO', 'GROUPS', 's'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '2', 'STREAMS', 's', '>'],
    ['XINFO', 'GROUPS', 's'],
    ['XACK', 's', 'g', '1-0'],
    ['XDEL', 's', '1-0'],
    ['XINFO', 'GROUPS', 's'],
    ['XDEL', 's', '3-0'],
    ['XINFO', 'GROUPS', 's'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '1', 'STREAMS', 's', '>'],
    ['XINFO', 'GROUPS', 's'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '0'],
    ['XPENDING', 's', 'g'],
    ['XACK', 's', 'g', '2-0', '4-0'],
    ['XDEL', 's', '2-0', '4-0'],
    ['XINFO', 'GROUPS', 's'],
    ['XLEN', 's'],
    ['XINFO', 'STREAM', 's'],
    ['XADD', 's', '5-0', 'f', 'v'],
    ['XINFO', 'GROUPS', 's'],
    ['XTRIM', 's', 'MAXLEN', '0'],
    ['XINFO', 'GROUPS', 's'],
    ['XINFO', 'STREAM', 's'],
  ],
  trimLag: [
    ['XADD', 's', '1-0', 'f', 'v'],
    ['XADD', 's', '2-0', 'f', 'v'],
    ['XADD', 's', '3-0', 'f', 'v'],
    ['XGROUP', 'CREATE', 's', 'g', '0'],
    ['XADD', 's', 'MAXLEN', '2', '4-0', 'f', 'v'],
    ['XINFO', 'GROUPS', 's'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '1', 'STREAMS', 's', '>'],
    ['XINFO', 'GROUPS', 's'],
    ['XRANGE', 's', '-', '+', 'COUNT', '0'],
    ['XRANGE', 's', '(3-0', '+'],
    ['XREVRANGE', 's', '+', '-', 'COUNT', '1'],
    ['XRANGE', 's', '3', '3'],
    ['XRANGE', 's', '(-', '+'],
    ['XRANGE', 's', 'x', '+'],
    ['XRANGE', 's', '-', '+', 'COUNT', '-3'],
  ],
  pendingAndClaim: [
    ['XGROUP', 'CREATE', 's', 'g', '0', 'MKSTREAM'],
    ['XADD', 's', '1-0', 'f', 'v1'],
    ['XADD', 's', '2-0', 'f', 'v2'],
    ['XADD', 's', '3-0', 'f', 'v3'],
    ['XREADGROUP', 'GROUP', 'g', 'zed', 'COUNT', '1', 'STREAMS', 's', '>'],
    ['XREADGROUP', 'GROUP', 'g', 'alice', 'COUNT', '2', 'STREAMS', 's', '>'],
    ['XREADGROUP', 'GROUP', 'g', 'bob', 'STREAMS', 's', '>'],
    ['XPENDING', 's', 'g'],
    ['XCLAIM', 's', 'g', 'bob', '0', '1-0'],
    ['XCLAIM', 's', 'g', 'carl', '0', '2-0', 'JUSTID'],
    ['XCLAIM', 's', 'g', 'carl', '100000', '3-0'],
    ['XDEL', 's', '3-0'],
    ['XCLAIM', 's', 'g', 'carl', '0', '3-0', '9-0'],
    ['XPENDING', 's', 'g'],
    ['XADD', 's', '4-0', 'f', 'v4'],
    ['XADD', 's', '5-0', 'f', 'v5'],
    ['XADD', 's', '6-0', 'f', 'v6'],
    ['XREADGROUP', 'GROUP', 'g', 'dave', 'STREAMS', 's', '>'],
    ['XDEL', 's', '5-0'],
    ['XAUTOCLAIM', 's', 'g', 'eve', '100000', '0-0', 'COUNT', '10'],
    ['XPENDING', 's', 'g'],
    ['XAUTOCLAIM', 's', 'g', 'eve', '0', '0-0', 'COUNT', '1'],
    ['XAUTOCLAIM', 's', 'g', 'eve', '0', '0-0', 'COUNT', '2'],
    ['XAUTOCLAIM', 's', 'g', 'eve', '0', '(1-0', 'COUNT', '10', 'JUSTID'],
    ['XPENDING', 's', 'g'],
    ['XINFO', 'CONSUMERS', 's', 'g'],
    ['XGROUP', 'DELCONSUMER', 's', 'g', 'eve'],
    ['XGROUP', 'CREATECONSUMER', 's', 'g', 'fred'],
    ['XGROUP', 'CREATECONSUMER', 's', 'g', 'fred'],
    ['XPENDING', 's', 'g'],
    ['XINFO', 'GROUPS', 's'],
    ['XPENDING', 's', 'nog'],
    ['XPENDING', 'nokey', 'g'],
    ['XPENDING', 's', 'g', '-', '+'],
    ['XAUTOCLAIM', 's', 'g', 'eve', '0', '0-0', 'COUNT', '0'],
    ['XACK', 's', 'nog', '1-0'],
    ['XACK', 'nokey', 'g', '1-0'],
    ['XACK', 's', 'g', 'bad'],
    ['XGROUP', 'DESTROY', 's', 'g'],
    ['XGROUP', 'DESTROY', 's', 'g'],
  ],
  xaddErrors: [
    ['XADD', 's', '0-0', 'f', 'v'],
    ['XADD', 's', '5-5', 'f', 'v'],
    ['XADD', 's', '5-5', 'f', 'v'],
    ['XADD', 's', '5-*', 'f', 'v'],
    ['XADD', 's', '4-*', 'f', 'v'],
    ['XADD', 's', '6', 'f', 'v'],
    ['XADD', 's', 'NOMKSTREAM', '*', 'f'],
    ['XADD', 'new', 'NOMKSTREAM', '*', 'f', 'v'],
    ['EXISTS', 'new'],
    ['XADD', 's', 'MAXLEN', '-1', '*', 'f', 'v'],
    ['XADD', 's', 'MAXLEN', '10', 'LIMIT', '5', '*', 'f', 'v'],
    ['XADD', 's', 'abc', 'f', 'v'],
    ['XLEN', 's'],
    ['XLEN', 'nokey'],
    ['XRANGE', 's', '-', '+'],
    ['SET', 'str', 'x'],
    ['XADD', 'str', '*', 'f', 'v'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'str', '>'],
    ['XLEN', 'str'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '>'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '$'],
    ['XREAD', 'STREAMS', 's', '>'],
    ['XREAD', 'COUNT', '1', 'STREAMS', 's', '0'],
    ['XREAD', 'STREAMS', 's', 'nokey', '0', '0'],
    ['XGROUP', 'FOO', 's', 'g'],
    ['XGROUP', 'CREATE', 's'],
    ['XINFO', 'GROUPS'],
  ],
  strings: [
    ['SET', 'a', 'v', 'PX', '100000'],
    ['PTTL', 'nokey'],
    ['TTL', 'a'],
    ['SET', 'a', 'v2', 'NX'],
    ['SET', 'a', 'v3', 'XX', 'GET'],
    ['GET', 'a'],
    ['TTL', 'a'],
    ['SET', 'b', 'v', 'PX', '0'],
    ['SET', 'b', 'v', 'EX', 'x'],
    ['SET', 'b', 'v', 'FOO'],
    ['PEXPIRE', 'a', '0'],
    ['EXISTS', 'a', 'a', 'b'],
    ['DEL', 'a', 'b'],
    ['INCR', 'n'],
    ['INCRBY', 'n', '5'],
    ['GET', 'n'],
    ['TYPE', 'n'],
    ['TYPE', 'nokey'],
    ['HSET', 'h', 'x', '1', 'y', '2'],
    ['HSET', 'h', 'x', '3'],
    ['HGETALL', 'h'],
    ['HGET', 'h', 'x'],
    ['HINCRBY', 'h', 'x', '10'],
    ['HINCRBY', 'h', 'z', '-1'],
    ['HSET', 'h', 's', 'abc'],
    ['HINCRBY', 'h', 's', '1'],
    ['HDEL', 'h', 'x', 'nope'],
    ['HSETNX', 'h', 'y', '9'],
    ['HSETNX', 'h', 'w', '9'],
    ['HGETALL', 'h'],
    ['HSET', 'h', 'odd'],
    ['GET', 'h'],
    ['HGET', 'n', 'x'],
    ['PEXPIRE', 'h', '100000'],
    ['PEXPIRE', 'nokey', '100'],
    ['PTTL', 'n'],
    ['HDEL', 'h', 'y', 'z', 's', 'w'],
    ['EXISTS', 'h'],
  ],
  zsets: [
    ['ZADD', 'z', '5', 'b', '5', 'a', '1', 'c', '1.5', 'd'],
    ['ZADD', 'z', '6', 'a'],
    ['ZADD', 'z', 'CH', '7', 'a', '1', 'e'],
    ['ZRANGE', 'z', '0', '-1', 'WITHSCORES'],
    ['ZRANGEBYSCORE', 'z', '(1', '+inf'],
    ['ZRANGEBYSCORE', 'z', '-inf', '5', 'WITHSCORES'],
    ['ZRANGEBYSCORE', 'z', 'x', '5'],
    ['ZRANGEBYSCORE', 'z', '1', '7', 'LIMIT', '1', '2'],
    ['ZREM', 'z', 'a', 'zz'],
    ['ZREMRANGEBYSCORE', 'z', '-inf', '(1.5'],
    ['ZRANGE', 'z', '0', '-1'],
    ['ZRANGE', 'z', '-2', '100'],
    ['ZRANGE', 'z', '0', '-1', 'REV'],
    ['ZCARD', 'z'],
    ['ZSCORE', 'z', 'd'],
    ['ZSCORE', 'z', 'nope'],
    ['ZADD', 'z', 'x', 'm'],
    ['ZADD', 'z', 'NX', 'XX', '1', 'm'],
    ['ZADD', 'z', '1'],
    ['ZRANGE', 'z', '(1', '+inf', 'BYSCORE', 'WITHSCORES'],
    ['ZRANGE', 'z', '+inf', '-inf', 'BYSCORE', 'REV'],
    ['ZADD', 'z', '0.1', 'f'],
    ['ZSCORE', 'z', 'f'],
    ['ZADD', 'z', 'INCR', '2', 'f'],
    ['ZREMRANGEBYSCORE', 'z', '-inf', '+inf'],
    ['EXISTS', 'z'],
  ],
  multi: [
    ['MULTI'],
    ['SET', 'a', '1'],
    ['HSET', 'a', 'f', 'v'],
    ['SET', 'b', '2'],
    ['EXEC'],
    ['GET', 'a'],
    ['GET', 'b'],
    ['EXEC'],
    ['DISCARD'],
    ['MULTI'],
    ['MULTI'],
    ['DISCARD'],
  ],
  lua: [
    ['EVAL', "return {1, 2.7, 'x', false, true, nil, 5}", '0'],
    ['EVAL', "return redis.call('SET', KEYS[1], ARGV[1])", '1', 'k', 'v'],
    ['EVAL', "return redis.call('GET', KEYS[1])", '1', 'k'],
    ['EVAL', "return redis.call('GET', 'nokey')", '0'],
    ['EVAL', "return redis.call('HSET', KEYS[1], 'a', 1)", '1', 'k'],
    ['EVAL', "return redis.pcall('HSET', KEYS[1], 'a', 1)", '1', 'k'],
    ['EVAL', "local r = redis.pcall('HSET', KEYS[1], 'a', 1); return r.err", '1', 'k'],
    ['EVAL', "return redis.status_reply('FINE')", '0'],
    ['EVAL', "return redis.error_reply('MYERR bad')", '0'],
    ['EVAL', 'return cjson.encode(cjson.decode(ARGV[1]))', '0', '{"a":[1,2,3]}'],
    [
      'EVAL',
      'local t = cjson.decode(ARGV[1]); return {t.at, type(t.x), t.s, tonumber(t.at) > 5}',
      '0',
      '{"at":1700000000000,"x":null,"s":"str"}',
    ],
    [
      'EVAL',
      "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack({'f', 'v', 'g', 'w'})); return redis.call('XLEN', KEYS[1])",
      '1',
      's',
      '100',
    ],
    ['EVAL', "return redis.call('XACK', KEYS[1], 'g', '1-0')", '1', 's'],
    ['EVAL', "return string.sub('inst:abc', 1, 5)", '0'],
    ['EVAL', "return tonumber('12') + 1", '0'],
    ['EVAL', 'return 3.99', '0'],
    ['EVAL', "return redis.sha1hex('abc')", '0'],
    ['EVALSHA', 'ffffffffffffffffffffffffffffffffffffffff', '0'],
    ['SCRIPT', 'LOAD', 'return 42'],
    ['EVALSHA', '1fa00e76656cc152ad327c13fe365858fd7be306', '0'],
    ['SCRIPT', 'EXISTS', '1fa00e76656cc152ad327c13fe365858fd7be306', 'ffffffffffffffffffffffffffffffffffffffff'],
    ['EVAL', "return redis.call('NOSUCH')", '0'],
    ['EVAL', 'return 1 +', '0'],
    ['EVAL', 'return bit.band(6, 3)', '0'],
    ['EVAL', "return {err='x'}", '0'],
  ],
  misc: [
    ['PING'],
    ['PING', 'x'],
    ['ECHO', 'hi'],
    ['SELECT', '0'],
    ['CLIENT', 'SETNAME', 'abc'],
    ['CLIENT', 'GETNAME'],
    ['CLIENT', 'SETNAME', 'a b'],
    ['FOOBAR', 'x', 'y'],
    ['GET'],
    ['SET', 'k', 'v'],
  ],
};

/** Deliberate differences: the embedded server has one database; its Lua is 5.3 (fengari), error texts carry no line. */
const KNOWN: RegExp[] = [/ on @user_script(:\d+)?\./, /near '?<eof>'?/];

function normalize(cmd: Cmd, v: unknown, P: string): unknown {
  const name = String(cmd[0]).toUpperCase();
  if (v instanceof Error) return `ERR: ${v.message}`;
  const strip = (x: unknown): unknown => (typeof x === 'string' ? x.split(P).join('') : Array.isArray(x) ? x.map(strip) : x);
  v = strip(v);
  if (name === 'XPENDING' && cmd.length > 3 && Array.isArray(v)) return (v as unknown[][]).map((r) => [r[0], r[1], 'idle', r[3]]);
  if (name === 'XINFO' && String(cmd[1]).toUpperCase() === 'CONSUMERS' && Array.isArray(v))
    return (v as unknown[][]).map((r) => r.map((x, i) => (r[i - 1] === 'idle' ? 'idle' : x)));
  if (name === 'XINFO' && String(cmd[1]).toUpperCase() === 'STREAM' && Array.isArray(v))
    return (v as unknown[]).map((x, i, arr) => (String(arr[i - 1]).startsWith('radix') ? 'n' : x));
  if ((name === 'TTL' || name === 'PTTL') && typeof v === 'number' && v > 0) return 'positive';
  if (name === 'CLIENT' || name === 'SCAN') return v;
  return v;
}

const keyPositions = (cmd: Cmd): number[] => {
  const n = String(cmd[0]).toUpperCase();
  if (['XREADGROUP', 'XREAD'].includes(n)) {
    const i = cmd.findIndex((x) => String(x).toUpperCase() === 'STREAMS');
    const k = Math.floor((cmd.length - i - 1) / 2);
    return Array.from({ length: Math.max(k, cmd.length - i - 1 === 1 ? 1 : 0) }, (_, j) => i + 1 + j);
  }
  if (['XGROUP', 'XINFO'].includes(n)) return cmd.length > 2 ? [2] : [];
  if (['DEL', 'EXISTS'].includes(n)) return cmd.slice(1).map((_, j) => j + 1);
  if (['PING', 'ECHO', 'SELECT', 'CLIENT', 'MULTI', 'EXEC', 'DISCARD', 'FOOBAR', 'SCAN', 'SCRIPT'].includes(n)) return [];
  if (n === 'EVAL' || n === 'EVALSHA') return Array.from({ length: Number(cmd[2]) }, (_, j) => 3 + j);
  return cmd.length > 1 ? [1] : [];
};

describe('embedded server = Redis 7, reply for reply', () => {
  let server: EmbeddedRedis;
  let emb: Redis;
  let real: Redis;
  const P = uniquePrefix('diff');

  beforeAll(async () => {
    server = new EmbeddedRedis({ scripting: createScripting() });
    emb = new Redis(await server.start());
    real = new Redis(REDIS_URL, { protocol: 2 });
  });
  afterAll(async () => {
    let cursor = '0';
    do {
      const [next, keys] = await real.scan(cursor, 'MATCH', `${P}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await real.del(...keys);
    } while (cursor !== '0');
    real?.disconnect();
    emb?.disconnect();
    await server?.close();
  });

  for (const [name, cmds] of Object.entries(scenarios)) {
    it(name, async () => {
      const pe = `${P}${name}:`;
      const diffs: string[] = [];
      for (const cmd of cmds) {
        const kp = keyPositions(cmd);
        const args = cmd.map((x, i) => String(kp.includes(i) ? pe + x : x));
        const call = (r: Redis) => (r.call as (...a: string[]) => Promise<unknown>)(...args).catch((e: Error) => e);
        const a = JSON.stringify(normalize(cmd, await call(real), P))
          .split(pe)
          .join('');
        const b = JSON.stringify(normalize(cmd, await call(emb), P))
          .split(pe)
          .join('');
        const strip = (s: string) => KNOWN.reduce((x, re) => x.replace(re, ''), s);
        if (strip(a) !== strip(b)) diffs.push(`${cmd.join(' ')}\n  redis:    ${a}\n  embedded: ${b}`);
      }
      expect(diffs.join('\n')).toBe('');
    });
  }
});
