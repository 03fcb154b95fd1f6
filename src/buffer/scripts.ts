import type { RedisClient } from '../bus/redis.js';
import type { FieldList } from '../bus/fields.js';
import { LuaScript, type ScriptArg, type ScriptCall } from '../bus/script.js';

/**
 * Hands one waiting frame from a lane to its processors, atomically:
 * 1. every target ready stream must have room (XLEN < capacity: ready streams hold only
 *    un-acked entries, processors XDEL on ack), else nothing happens (reply {2, k});
 * 2. XDEL of the lane entry is the claim: 0 means another buffer took it ({0, 0});
 * 3. then XADD of each ready message and of each frame.queued event ({1, 0}).
 * KEYS: lane, events, ready streams... ARGV: entry id, maxlen, n, n capacities, n messages
 * (count, fields...), n events (count, fields...).
 */
const DISPATCH = new LuaScript(
  'dispatch',
  `
local n = tonumber(ARGV[3])
for k = 1, n do
  local cap = tonumber(ARGV[3 + k])
  if redis.call('XLEN', KEYS[2 + k]) >= cap then return {2, k} end
end
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return {0, 0} end
local i = 4 + n
for k = 1, 2 * n do
  local c = tonumber(ARGV[i])
  local f = {}
  for j = 1, c do f[j] = ARGV[i + j] end
  i = i + c + 1
  local key = KEYS[2]
  if k <= n then key = KEYS[2 + k] end
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[2], '*', unpack(f))
end
return {1, 0}`,
);

export interface DispatchCall {
  lane: string;
  entryId: string;
  routes: { stream: string; capacity: number; message: FieldList; event: FieldList }[];
}

export type DispatchOutcome = 'sent' | 'taken' | 'full';

export async function dispatchFrames(
  redis: RedisClient,
  events: string,
  calls: DispatchCall[],
  maxLen: number,
): Promise<DispatchOutcome[]> {
  const scripted: ScriptCall[] = calls.map((c) => {
    const args: ScriptArg[] = [c.entryId, maxLen, c.routes.length, ...c.routes.map((r) => r.capacity)];
    for (const r of c.routes) args.push(r.message.length, ...r.message);
    for (const r of c.routes) args.push(r.event.length, ...r.event);
    return { keys: [c.lane, events, ...c.routes.map((r) => r.stream)], args };
  });
  const res = await DISPATCH.runMany(redis, scripted);
  return res.map((r) => {
    if (r instanceof Error) throw r;
    const code = Number((r as unknown[])[0]);
    return code === 1 ? 'sent' : code === 2 ? 'full' : 'taken';
  });
}

/**
 * Intake's fast path while the lanes are empty: XACK the captured entry (the guard), then
 * hand the frame straight to its processors when every target ready stream has room, or
 * else put it in its lane, all in one step ({1}: handed off, {2}: went to the lane, {0}:
 * already taken in by an earlier delivery).
 * KEYS: captured, lane, events, ready streams... ARGV: group, entry id, maxlen, n,
 * n capacities, lane entry (count, fields...), n messages, n events (count, fields...).
 */
const INTAKE_DIRECT = new LuaScript(
  'intake_direct',
  `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local n = tonumber(ARGV[4])
local i = 5 + n
local c = tonumber(ARGV[i])
local laneFields = {}
for j = 1, c do laneFields[j] = ARGV[i + j] end
i = i + c + 1
for k = 1, n do
  if redis.call('XLEN', KEYS[3 + k]) >= tonumber(ARGV[4 + k]) then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(laneFields))
    return 2
  end
end
for k = 1, 2 * n do
  local m = tonumber(ARGV[i])
  local f = {}
  for j = 1, m do f[j] = ARGV[i + j] end
  i = i + m + 1
  local key = KEYS[3]
  if k <= n then key = KEYS[3 + k] end
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[3], '*', unpack(f))
end
return 1`,
);

export interface DirectCall {
  captured: string;
  group: string;
  entryId: string;
  lane: string;
  laneEntry: FieldList;
  routes: { stream: string; capacity: number; message: FieldList; event: FieldList }[];
}

export type DirectOutcome = 'sent' | 'laned' | 'duplicate';

export async function intakeDirect(redis: RedisClient, events: string, calls: DirectCall[], maxLen: number): Promise<DirectOutcome[]> {
  const res = await INTAKE_DIRECT.runMany(
    redis,
    calls.map((c) => {
      const args: ScriptArg[] = [
        c.group,
        c.entryId,
        maxLen,
        c.routes.length,
        ...c.routes.map((r) => r.capacity),
        c.laneEntry.length,
        ...c.laneEntry,
      ];
      for (const r of c.routes) args.push(r.message.length, ...r.message);
      for (const r of c.routes) args.push(r.event.length, ...r.event);
      return { keys: [c.captured, c.lane, events, ...c.routes.map((r) => r.stream)], args };
    }),
  );
  return res.map((r) => {
    if (r instanceof Error) throw r;
    const code = Number(r);
    return code === 1 ? 'sent' : code === 2 ? 'laned' : 'duplicate';
  });
}
