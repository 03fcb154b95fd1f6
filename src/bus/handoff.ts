import type { RedisClient } from './redis.js';
import type { FieldList } from './fields.js';
import { LuaScript, type ScriptArg, type ScriptCall } from './script.js';

/** An entry to append to a stream as part of a guarded hand-off. */
export interface Append {
  stream: string;
  fields: FieldList;
}

const APPEND_LOOP = `
local i = ARGV_START
for k = FIRST_TARGET, #KEYS do
  local n = tonumber(ARGV[i])
  local f = {}
  for j = 1, n do f[j] = ARGV[i + j] end
  i = i + n + 1
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[MAXLEN_ARG], '*', unpack(f))
end`;

/**
 * XACK the source entry; only if that acked it (it was still pending: this is the first
 * time its work is committed) append the targets, bump a counter, and XDEL the source
 * entry when asked. A redelivered entry whose work another consumer already committed, or
 * a retried call whose first reply was lost, therefore appends nothing: exactly-once effect.
 * KEYS: source, counters hash, targets... ARGV: group, id, maxlen, del (1/0), counter field
 * ('' = none), then per target n, fields.
 */
const ACK_AND_APPEND = new LuaScript(
  'ack_and_append',
  `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[4] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[5], 1) end
${APPEND_LOOP.replace('ARGV_START', '6').replace('FIRST_TARGET', '3').replace('MAXLEN_ARG', '3')}
return 1`,
);

/**
 * XDEL the source entry (a stream used as a queue without consumer group, like the
 * buffer's lanes); only if it was still there append the targets and bump a counter.
 * Two buffers racing for one entry: one wins, the other appends nothing.
 * KEYS: source, counters hash, targets... ARGV: id, maxlen, counter field ('' = none), then per target n, fields.
 */
const DEL_AND_APPEND = new LuaScript(
  'del_and_append',
  `
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
${APPEND_LOOP.replace('ARGV_START', '4').replace('FIRST_TARGET', '3').replace('MAXLEN_ARG', '2')}
return 1`,
);

function targetArgs(targets: Append[]): ScriptArg[] {
  const out: ScriptArg[] = [];
  for (const t of targets) out.push(t.fields.length, ...t.fields);
  return out;
}

export interface AckAndAppend {
  source: string;
  group: string;
  id: string;
  /** XDEL the source entry too (queues whose XLEN is their depth). */
  del: boolean;
  targets: Append[];
  /** Field of the counters hash to increment when the entry is committed (e.g. dead_letter:<stream>). */
  counter?: string;
}

export function ackAndAppendCall(c: AckAndAppend, countersKey: string, maxLen: number): ScriptCall {
  return {
    keys: [c.source, countersKey, ...c.targets.map((t) => t.stream)],
    args: [c.group, c.id, maxLen, c.del ? 1 : 0, c.counter ?? '', ...targetArgs(c.targets)],
  };
}

/** Runs guarded hand-offs in one round trip; true per call that committed, false where it was done already. */
export async function ackAndAppend(redis: RedisClient, countersKey: string, calls: AckAndAppend[], maxLen: number): Promise<boolean[]> {
  const res = await ACK_AND_APPEND.runMany(
    redis,
    calls.map((c) => ackAndAppendCall(c, countersKey, maxLen)),
  );
  return res.map((r) => {
    if (r instanceof Error) throw r;
    return Number(r) === 1;
  });
}

export interface DelAndAppend {
  source: string;
  id: string;
  targets: Append[];
  /** Field of the counters hash to increment when the entry was taken. */
  counter?: string;
}

export async function delAndAppend(redis: RedisClient, countersKey: string, calls: DelAndAppend[], maxLen: number): Promise<boolean[]> {
  const res = await DEL_AND_APPEND.runMany(
    redis,
    calls.map((c) => ({
      keys: [c.source, countersKey, ...c.targets.map((t) => t.stream)],
      args: [c.id, maxLen, c.counter ?? '', ...targetArgs(c.targets)],
    })),
  );
  return res.map((r) => {
    if (r instanceof Error) throw r;
    return Number(r) === 1;
  });
}
