import { Block, fail, parseInteger, SYNTAX, upper, wrongArity, type CommandContext, type CommandSpec } from './command.js';
import { NULL_ARRAY, OK, type Reply } from './resp.js';
import { dropNack, INVALID_ENTRIES_READ, lookupConsumer, lookupOrCreateConsumer, Stream, type Group, type StreamEntry } from './stream.js';
import {
  formatId,
  idMs,
  idSeq,
  INVALID_ID,
  makeId,
  MAX_ID,
  parseId,
  parseRangeBound,
  tryParseStrictId,
  type StreamId,
} from './stream-id.js';

/**
 * The stream commands with Redis 7.0 semantics (t_stream.c): ids, MAXLEN/MINID trimming,
 * consumer groups with pending entries lists, delivery counts and idle times, XAUTOCLAIM
 * reporting deleted entries, XINFO lag and entries-read.
 */
export const STREAM_COMMANDS: Record<string, CommandSpec> = {
  xadd: { arity: -5, handler: xadd },
  xtrim: { arity: -4, handler: xtrim },
  xdel: { arity: -3, handler: xdel },
  xlen: { arity: 2, handler: (ctx, a) => ctx.db.get(a[1], 'stream', ctx.now)?.length ?? 0 },
  xrange: { arity: -4, handler: (ctx, a) => xrange(ctx, a, false) },
  xrevrange: { arity: -4, handler: (ctx, a) => xrange(ctx, a, true) },
  xread: { arity: -4, handler: (ctx, a) => xread(ctx, a, false) },
  xreadgroup: { arity: -7, handler: (ctx, a) => xread(ctx, a, true) },
  xack: { arity: -4, handler: xack },
  xgroup: { arity: -2, handler: xgroup },
  xpending: { arity: -3, handler: xpending },
  xclaim: { arity: -6, handler: xclaim },
  xautoclaim: { arity: -6, handler: xautoclaim },
  xinfo: { arity: -2, handler: xinfo },
};

const REQUIRES_KEY =
  'ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.';

function entryReply(e: StreamEntry): Reply {
  return [formatId(e.id), e.fields];
}

function stream(ctx: CommandContext, key: string): Stream | undefined {
  return ctx.db.get(key, 'stream', ctx.now);
}

function noGroup(key: string, group: string): never {
  fail(`NOGROUP No such key '${key}' or consumer group '${group}'`);
}

function groupOf(ctx: CommandContext, key: string, group: string): { s: Stream; g: Group } {
  const s = stream(ctx, key);
  const g = s?.groups.get(group);
  if (!s || !g) noGroup(key, group);
  return { s, g };
}

interface TrimSpec {
  kind: 'MAXLEN' | 'MINID';
  approx: boolean;
  maxLen: number;
  minId: StreamId;
  limit: number;
}

/** MAXLEN|MINID [=|~] threshold [LIMIT count], from a[i]; returns the spec and the next index. */
function parseTrim(a: string[], i: number): { spec: TrimSpec; next: number } {
  const kind = upper(a[i]) as 'MAXLEN' | 'MINID';
  i++;
  let approx = false;
  if (a[i] === '~') {
    approx = true;
    i++;
  } else if (a[i] === '=') i++;
  if (i >= a.length) fail(SYNTAX);
  let maxLen = 0;
  let minId: StreamId = 0n;
  if (kind === 'MAXLEN') {
    maxLen = parseInteger(a[i]);
    if (maxLen < 0) fail('ERR The MAXLEN argument must be >= 0.');
  } else minId = parseId(a[i]);
  i++;
  let limit = Infinity;
  if (upper(a[i]) === 'LIMIT' && i + 1 < a.length) {
    const n = parseInteger(a[i + 1]);
    if (n < 0) fail('ERR The LIMIT argument must be >= 0.');
    if (!approx) fail('ERR syntax error, LIMIT cannot be used without the special ~ option');
    limit = n === 0 ? Infinity : n;
    i += 2;
  }
  return { spec: { kind, approx, maxLen, minId, limit }, next: i };
}

function applyTrim(s: Stream, t: TrimSpec): number {
  // `~` lets Redis keep a few more entries (whole radix-tree nodes); trimming exactly is
  // within that contract and keeps memory strictly bounded.
  return t.kind === 'MAXLEN' ? s.trimMaxLen(t.maxLen, t.limit) : s.trimMinId(t.minId, t.limit);
}

function xadd(ctx: CommandContext, a: string[]): Reply {
  const key = a[1];
  let i = 2;
  let noMkStream = false;
  let trim: TrimSpec | undefined;
  for (;;) {
    const o = upper(a[i]);
    if (o === 'NOMKSTREAM') {
      noMkStream = true;
      i++;
    } else if ((o === 'MAXLEN' || o === 'MINID') && i + 1 < a.length) ({ spec: trim, next: i } = parseTrim(a, i));
    else break;
  }
  const fields = a.slice(i + 1);
  if (i >= a.length || fields.length === 0 || fields.length % 2 !== 0) fail(wrongArity('xadd'));
  const idArg = a[i];
  // '*', 'ms-*' or an explicit id
  let explicit: StreamId | undefined;
  let msOnly: bigint | undefined;
  if (idArg !== '*') {
    if (idArg.endsWith('-*')) {
      const ms = idArg.slice(0, -2);
      if (!/^\d{1,20}$/.test(ms) || BigInt(ms) > (1n << 64n) - 1n) fail(INVALID_ID);
      msOnly = BigInt(ms);
    } else {
      explicit = parseId(idArg);
      if (explicit === 0n) fail('ERR The ID specified in XADD must be greater than 0-0');
    }
  }
  let s = stream(ctx, key);
  if (!s) {
    if (noMkStream) return null;
    s = ctx.db.getOrCreate(key, 'stream', () => new Stream(), ctx.now);
  }
  if (s.lastId === MAX_ID) fail('ERR The stream has exhausted the last possible ID, unable to add more items');
  let id: StreamId;
  if (explicit !== undefined) id = explicit;
  else if (msOnly !== undefined) {
    const lastMs = idMs(s.lastId);
    if (msOnly > lastMs) id = makeId(msOnly, 0n);
    else if (msOnly === lastMs && idSeq(s.lastId) < (1n << 64n) - 1n) id = makeId(msOnly, idSeq(s.lastId) + 1n);
    else fail('ERR The ID specified in XADD is equal or smaller than the target stream top item');
  } else id = s.nextId(ctx.now);
  if (id <= s.lastId) fail('ERR The ID specified in XADD is equal or smaller than the target stream top item');
  s.append(id, fields);
  if (trim) applyTrim(s, trim);
  ctx.db.onTouch(key);
  return formatId(id);
}

function xtrim(ctx: CommandContext, a: string[]): Reply {
  const o = upper(a[2]);
  if (o !== 'MAXLEN' && o !== 'MINID') fail(SYNTAX);
  const { spec, next } = parseTrim(a, 2);
  if (next !== a.length) fail(SYNTAX);
  const s = stream(ctx, a[1]);
  if (!s) return 0;
  const n = applyTrim(s, spec);
  if (n) ctx.db.onTouch(a[1]);
  return n;
}

function xdel(ctx: CommandContext, a: string[]): Reply {
  const ids = a.slice(2).map((x) => parseId(x));
  const s = stream(ctx, a[1]);
  if (!s) return 0;
  let n = 0;
  for (const id of ids) if (s.delete(id)) n++;
  if (n) ctx.db.onTouch(a[1]);
  return n;
}

function xrange(ctx: CommandContext, a: string[], rev: boolean): Reply {
  const start = parseRangeBound(rev ? a[3] : a[2], true);
  const end = parseRangeBound(rev ? a[2] : a[3], false);
  let count = -1;
  for (let j = 4; j < a.length; j++) {
    if (upper(a[j]) === 'COUNT' && j + 1 < a.length) {
      count = Math.max(0, parseInteger(a[++j]));
    } else fail(SYNTAX);
  }
  const s = stream(ctx, a[1]);
  if (!s) return [];
  if (count === 0) return NULL_ARRAY;
  return s.range(start, end, count < 0 ? 0 : count, rev).map(entryReply);
}

interface ReadSpec {
  keys: string[];
  ids: string[];
  count: number;
  block: number | undefined;
  noAck: boolean;
  group?: string;
  consumer?: string;
}

function parseRead(a: string[], isGroup: boolean): ReadSpec {
  const name = isGroup ? 'xreadgroup' : 'xread';
  let count = 0;
  let block: number | undefined;
  let noAck = false;
  let group: string | undefined;
  let consumer: string | undefined;
  let streamsAt = -1;
  for (let i = 1; i < a.length; i++) {
    const o = upper(a[i]);
    const more = a.length - i - 1;
    if (o === 'BLOCK' && more >= 1) {
      block = parseInteger(a[++i], 'ERR timeout is not an integer or out of range');
      if (block < 0) fail('ERR timeout is negative');
    } else if (o === 'COUNT' && more >= 1) {
      count = Math.max(0, parseInteger(a[++i]));
    } else if (o === 'STREAMS' && more >= 1) {
      streamsAt = i + 1;
      break;
    } else if (o === 'GROUP' && more >= 2) {
      if (!isGroup) fail('ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.');
      group = a[i + 1];
      consumer = a[i + 2];
      i += 2;
    } else if (o === 'NOACK') {
      if (!isGroup) fail('ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.');
      noAck = true;
    } else fail(SYNTAX);
  }
  if (streamsAt === -1) fail(SYNTAX);
  const rest = a.length - streamsAt;
  if (rest % 2 !== 0) {
    fail(`ERR Unbalanced '${name}' list of streams: for each stream key an ID or '${isGroup ? '>' : '$'}' must be specified.`);
  }
  if (isGroup && group === undefined) fail('ERR Missing GROUP option for XREADGROUP');
  const n = rest / 2;
  return { keys: a.slice(streamsAt, streamsAt + n), ids: a.slice(streamsAt + n), count, block, noAck, group, consumer };
}

/** XREAD and XREADGROUP, blocking when asked and there is nothing to return. */
function xread(ctx: CommandContext, a: string[], isGroup: boolean): Reply | Block {
  const spec = parseRead(a, isGroup);
  // Resolve the ids once ('$' is the last id at the time of the call, as in Redis).
  const from: (StreamId | '>')[] = spec.ids.map((raw, i) => {
    if (isGroup) {
      // as Redis: the key and group are checked before the id
      if (!stream(ctx, spec.keys[i])?.groups.has(spec.group!)) {
        fail(`NOGROUP No such key '${spec.keys[i]}' or consumer group '${spec.group}' in XREADGROUP with GROUP option`);
      }
      if (raw === '>') return '>';
      if (raw === '$') {
        fail(
          'ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.',
        );
      }
      return parseId(raw);
    }
    if (raw === '>') fail('ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.');
    if (raw === '$') return stream(ctx, spec.keys[i])?.lastId ?? 0n;
    return parseId(raw);
  });
  const attempt = (c: CommandContext): Reply | undefined => readOnce(c, spec, from);
  const first = attempt(ctx);
  if (first !== undefined) return first;
  if (spec.block === undefined || !ctx.canBlock) return NULL_ARRAY;
  return new Block(spec.keys, spec.block, attempt, NULL_ARRAY);
}

function readOnce(ctx: CommandContext, spec: ReadSpec, from: (StreamId | '>')[]): Reply | undefined {
  // Every key and group is checked before anything is read or changed.
  const targets = spec.keys.map((key) => {
    const s = stream(ctx, key);
    if (spec.group === undefined) return { key, s, g: undefined };
    const g = s?.groups.get(spec.group);
    if (!s || !g) fail(`NOGROUP No such key '${key}' or consumer group '${spec.group}' in XREADGROUP with GROUP option`);
    return { key, s, g };
  });
  const out: Reply[] = [];
  targets.forEach(({ key, s, g }, i) => {
    const id = from[i];
    if (!g) {
      // XREAD: entries after id
      if (!s || id === '>') return;
      const entries = s.range(id + 1n, MAX_ID, spec.count);
      if (entries.length) out.push([key, entries.map(entryReply)]);
      return;
    }
    const consumer = lookupOrCreateConsumer(g, spec.consumer!, ctx.now);
    if (id === '>') {
      const entries = s!.range(g.lastId + 1n, MAX_ID, spec.count);
      if (!entries.length) return;
      for (const e of entries) {
        s!.advanceGroup(g, e.id);
        if (spec.noAck) continue;
        const existing = g.pel.get(e.id);
        if (existing) {
          existing.consumer.pel.delete(e.id);
          existing.consumer = consumer;
          existing.deliveryTime = ctx.now;
          existing.deliveryCount = 1;
          consumer.pel.set(e.id, existing);
        } else {
          const nack = { consumer, deliveryTime: ctx.now, deliveryCount: 1 };
          g.pel.set(e.id, nack);
          consumer.pel.set(e.id, nack);
        }
      }
      out.push([key, entries.map(entryReply)]);
      return;
    }
    // History: this consumer's pending entries after id.
    const rows: Reply[] = [];
    for (const [pid, nack] of consumer.pel.range(id + 1n, MAX_ID, spec.count || Infinity)) {
      const e = s!.get(pid);
      if (!e) rows.push([formatId(pid), NULL_ARRAY]);
      else {
        nack.deliveryTime = ctx.now;
        nack.deliveryCount++;
        rows.push(entryReply(e));
      }
    }
    out.push([key, rows]);
  });
  return out.length ? out : undefined;
}

function xack(ctx: CommandContext, a: string[]): Reply {
  const ids = a.slice(3).map((x) => parseId(x));
  const g = stream(ctx, a[1])?.groups.get(a[2]);
  if (!g) return 0;
  let n = 0;
  for (const id of ids) if (dropNack(g, id)) n++;
  return n;
}

function xgroup(ctx: CommandContext, a: string[]): Reply {
  const sub = upper(a[1]);
  const wants = (min: number, max: number) => {
    if (a.length < min || a.length > max) fail(`ERR wrong number of arguments for 'xgroup|${a[1].toLowerCase()}' command`);
  };
  if (sub === 'HELP')
    return ['XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are: CREATE, CREATECONSUMER, DELCONSUMER, DESTROY, SETID, HELP'];
  if (sub === 'CREATE') wants(5, 8);
  else if (sub === 'SETID') wants(5, 7);
  else if (sub === 'DESTROY') wants(4, 4);
  else if (sub === 'CREATECONSUMER' || sub === 'DELCONSUMER') wants(5, 5);
  else fail(`ERR unknown subcommand '${a[1]}'. Try XGROUP HELP.`);
  const key = a[2];
  const name = a[3];
  let mkStream = false;
  let entriesRead: number | undefined;
  if (sub === 'CREATE' || sub === 'SETID') {
    for (let i = 5; i < a.length; i++) {
      const o = upper(a[i]);
      if (sub === 'CREATE' && o === 'MKSTREAM') mkStream = true;
      else if (o === 'ENTRIESREAD' && i + 1 < a.length) {
        entriesRead = parseInteger(a[++i]);
        if (entriesRead < 0 && entriesRead !== INVALID_ENTRIES_READ) fail('ERR value for ENTRIESREAD must be positive or -1');
      } else fail(SYNTAX);
    }
  }
  let s = stream(ctx, key);
  if (!s) {
    if (sub !== 'CREATE' || !mkStream) fail(REQUIRES_KEY);
    s = ctx.db.getOrCreate(key, 'stream', () => new Stream(), ctx.now);
  }
  const idArg = a[4];
  const resolve = () => (idArg === '$' ? s.lastId : parseId(idArg));
  switch (sub) {
    case 'CREATE': {
      const id = resolve();
      if (s.groups.has(name)) fail('BUSYGROUP Consumer Group name already exists');
      s.createGroup(name, id, entriesRead ?? INVALID_ENTRIES_READ);
      return OK;
    }
    case 'SETID': {
      const g = s.groups.get(name);
      if (!g) fail(`NOGROUP No such consumer group '${name}' for key name '${key}'`);
      g.lastId = resolve();
      g.entriesRead = entriesRead ?? INVALID_ENTRIES_READ;
      return OK;
    }
    case 'DESTROY': {
      const had = s.groups.delete(name);
      if (had) ctx.db.onTouch(key); // wakes readers blocked on the group: they get NOGROUP
      return had ? 1 : 0;
    }
    case 'CREATECONSUMER': {
      const g = s.groups.get(name);
      if (!g) fail(`NOGROUP No such consumer group '${name}' for key name '${key}'`);
      if (g.consumers.has(a[4])) return 0;
      lookupOrCreateConsumer(g, a[4], ctx.now);
      return 1;
    }
    default: {
      const g = s.groups.get(name);
      if (!g) fail(`NOGROUP No such consumer group '${name}' for key name '${key}'`);
      const c = g.consumers.get(a[4]);
      if (!c) return 0;
      const pending = c.pel.size;
      for (const [id] of c.pel.range(0n, MAX_ID)) g.pel.delete(id);
      g.consumers.delete(a[4]);
      return pending;
    }
  }
}

function xpending(ctx: CommandContext, a: string[]): Reply {
  const key = a[1];
  const group = a[2];
  const extended = a.length > 3;
  let minIdle = 0;
  let i = 3;
  if (extended) {
    if (upper(a[3]) === 'IDLE') {
      if (a.length < 6 + 2) fail(SYNTAX);
      minIdle = Math.max(0, parseInteger(a[4]));
      i = 5;
    }
    if (a.length - i < 3 || a.length - i > 4) fail(SYNTAX);
  }
  let start = 0n,
    end = MAX_ID,
    count = 0;
  let consumerName: string | undefined;
  if (extended) {
    start = parseRangeBound(a[i], true);
    end = parseRangeBound(a[i + 1], false);
    count = Math.max(0, parseInteger(a[i + 2]));
    consumerName = a[i + 3];
  }
  const { g } = groupOf(ctx, key, group);
  if (!extended) {
    if (g.pel.size === 0) return [0, null, null, NULL_ARRAY];
    const consumers = [...g.consumers.values()]
      .filter((c) => c.pel.size > 0)
      .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
      .map((c) => [c.name, String(c.pel.size)]);
    return [g.pel.size, formatId(g.pel.first()!), formatId(g.pel.last()!), consumers];
  }
  let pel = g.pel;
  if (consumerName !== undefined) {
    const c = lookupConsumer(g, consumerName, ctx.now, false);
    if (!c) return [];
    pel = c.pel;
  }
  const out: Reply[] = [];
  if (count === 0 || start > end) return out;
  for (const [id, n] of pel.range(start, end)) {
    if (out.length >= count) break;
    const idle = ctx.now - n.deliveryTime;
    if (minIdle && idle < minIdle) continue;
    out.push([formatId(id), n.consumer.name, idle, n.deliveryCount]);
  }
  return out;
}

function xclaim(ctx: CommandContext, a: string[]): Reply {
  const [, key, group, consumerName] = a;
  const minIdle = Math.max(0, parseInteger(a[4], 'ERR Invalid min-idle-time argument for XCLAIM'));
  const ids: StreamId[] = [];
  let j = 5;
  for (; j < a.length; j++) {
    const id = tryParseStrictId(a[j]);
    if (id === undefined) break;
    ids.push(id);
  }
  let deliveryTime = ctx.now;
  let retryCount = -1;
  let force = false;
  let justId = false;
  let lastId: StreamId | undefined;
  for (; j < a.length; j++) {
    const o = upper(a[j]);
    const more = a.length - j - 1;
    if (o === 'FORCE') force = true;
    else if (o === 'JUSTID') justId = true;
    else if (o === 'IDLE' && more >= 1) deliveryTime = ctx.now - parseInteger(a[++j], 'ERR Invalid IDLE option argument for XCLAIM');
    else if (o === 'TIME' && more >= 1) deliveryTime = parseInteger(a[++j], 'ERR Invalid TIME option argument for XCLAIM');
    else if (o === 'RETRYCOUNT' && more >= 1) retryCount = parseInteger(a[++j], 'ERR Invalid RETRYCOUNT option argument for XCLAIM');
    else if (o === 'LASTID' && more >= 1) lastId = parseId(a[++j]);
    else fail(`ERR Unrecognized XCLAIM option '${a[j]}'`);
  }
  if (deliveryTime > ctx.now) deliveryTime = ctx.now;
  const { s, g } = groupOf(ctx, key, group);
  if (lastId !== undefined && lastId > g.lastId) g.lastId = lastId;
  let consumer: ReturnType<typeof lookupOrCreateConsumer> | undefined;
  const out: Reply[] = [];
  for (const id of ids) {
    let nack = g.pel.get(id);
    if (!s.has(id)) {
      if (nack) dropNack(g, id);
      continue;
    }
    if (force && !nack) {
      nack = { consumer: undefined as never, deliveryTime: ctx.now, deliveryCount: 0 };
      g.pel.set(id, nack);
    }
    if (!nack) continue;
    if (nack.consumer && minIdle && ctx.now - nack.deliveryTime < minIdle) continue;
    consumer ??= lookupOrCreateConsumer(g, consumerName, ctx.now);
    if (nack.consumer !== consumer) {
      nack.consumer?.pel.delete(id);
      nack.consumer = consumer;
      consumer.pel.set(id, nack);
    }
    nack.deliveryTime = deliveryTime;
    if (retryCount >= 0) nack.deliveryCount = retryCount;
    else if (!justId) nack.deliveryCount++;
    out.push(justId ? formatId(id) : entryReply(s.get(id)!));
  }
  return out;
}

function xautoclaim(ctx: CommandContext, a: string[]): Reply {
  const [, key, group, consumerName] = a;
  const minIdle = Math.max(0, parseInteger(a[4], 'ERR Invalid min-idle-time argument for XAUTOCLAIM'));
  const start = parseRangeBound(a[5], true);
  let count = 100;
  let justId = false;
  for (let j = 6; j < a.length; j++) {
    const o = upper(a[j]);
    if (o === 'COUNT' && j + 1 < a.length) {
      count = parseInteger(a[++j], 'ERR COUNT must be > 0');
      if (count < 1 || count > Math.floor(Number.MAX_SAFE_INTEGER / 10)) fail('ERR COUNT must be > 0');
    } else if (o === 'JUSTID') justId = true;
    else fail(SYNTAX);
  }
  const { s, g } = groupOf(ctx, key, group);
  let attempts = count * 10;
  let consumer: ReturnType<typeof lookupOrCreateConsumer> | undefined;
  const claimed: Reply[] = [];
  const deleted: string[] = [];
  // Walk the PEL from start, as Redis does with its rax iterator.
  let current = g.pel.ceiling(start);
  while (attempts-- > 0 && count > 0 && current !== undefined) {
    const id: StreamId = current;
    const nack = g.pel.get(id)!;
    current = g.pel.next(id);
    if (!s.has(id)) {
      dropNack(g, id);
      deleted.push(formatId(id));
      count--;
      continue;
    }
    if (minIdle && ctx.now - nack.deliveryTime < minIdle) continue;
    consumer ??= lookupOrCreateConsumer(g, consumerName, ctx.now);
    if (nack.consumer !== consumer) {
      nack.consumer.pel.delete(id);
      nack.consumer = consumer;
      consumer.pel.set(id, nack);
    }
    nack.deliveryTime = ctx.now;
    if (!justId) nack.deliveryCount++;
    claimed.push(justId ? formatId(id) : entryReply(s.get(id)!));
    count--;
  }
  return [current === undefined ? '0-0' : formatId(current), claimed, deleted];
}

function xinfo(ctx: CommandContext, a: string[]): Reply {
  const sub = upper(a[1]);
  if (sub === 'HELP') return ['XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are: CONSUMERS, GROUPS, STREAM, HELP'];
  const need = sub === 'CONSUMERS' ? 4 : sub === 'GROUPS' ? 3 : sub === 'STREAM' ? 3 : 0;
  if (!need) fail(`ERR unknown subcommand '${a[1]}'. Try XINFO HELP.`);
  if (a.length < need || (sub !== 'STREAM' && a.length > need))
    fail(`ERR wrong number of arguments for 'xinfo|${a[1].toLowerCase()}' command`);
  const key = a[2];
  const s = stream(ctx, key);
  if (!s) fail('ERR no such key');
  const byName = <T extends { name: string }>(xs: Iterable<T>) => [...xs].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  if (sub === 'GROUPS') {
    return byName(s.groups.values()).map((g) => [
      'name',
      g.name,
      'consumers',
      g.consumers.size,
      'pending',
      g.pel.size,
      'last-delivered-id',
      formatId(g.lastId),
      'entries-read',
      g.entriesRead === INVALID_ENTRIES_READ ? null : g.entriesRead,
      'lag',
      s.lag(g),
    ]);
  }
  if (sub === 'CONSUMERS') {
    const g = s.groups.get(a[3]);
    if (!g) fail(`NOGROUP No such consumer group '${a[3]}' for key name '${key}'`);
    return byName(g.consumers.values()).map((c) => ['name', c.name, 'pending', c.pel.size, 'idle', Math.max(0, ctx.now - c.seenTime)]);
  }
  if (a.length > 3) fail(SYNTAX);
  const first = s.firstEntry();
  const last = s.lastEntry();
  return [
    'length',
    s.length,
    'radix-tree-keys',
    s.length ? Math.ceil(s.length / 100) : 0,
    'radix-tree-nodes',
    s.length ? Math.ceil(s.length / 100) + 1 : 1,
    'last-generated-id',
    formatId(s.lastId),
    'max-deleted-entry-id',
    formatId(s.maxDeletedId),
    'entries-added',
    s.entriesAdded,
    'recorded-first-entry-id',
    formatId(s.firstId),
    'groups',
    s.groups.size,
    'first-entry',
    first ? entryReply(first) : null,
    'last-entry',
    last ? entryReply(last) : null,
  ];
}
