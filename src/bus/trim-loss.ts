import type { RedisClient } from './redis.js';
import { COUNTER_FIELDS } from './keys.js';
import { LuaScript } from './script.js';

/**
 * Entries a stream's MAXLEN trimmed before its group ever read them (a consumer stopped or
 * too slow for the stream's length). Such entries vanish without a trace in Redis: this
 * counts them once, atomically, whichever of a group's consumers looks first.
 *
 * Redis keeps, per stream, `entries-added` and, per group, `entries-read`; with no XDEL
 * on the stream (max-deleted-entry-id 0-0), `entries-added - length` entries were trimmed
 * from the head, and those beyond `entries-read` were never delivered. Redis 7.0 does not
 * move `entries-read` past them itself, so the script does (XGROUP SETID .. ENTRIESREAD):
 * the next look counts only new losses, and the group's lag is true again.
 *
 * Returns the entries newly found lost, or -1 when the stream cannot tell (entries were
 * XDELed, or the group's entries-read is unknown).
 */
const TRIM_LOSS = new LuaScript(
  'trim-loss',
  `
local function field(t, name)
  for i = 1, #t, 2 do if t[i] == name then return t[i + 1] end end
end
local ok, s = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return 0 end
if field(s, 'max-deleted-entry-id') ~= '0-0' then return -1 end
local gone = tonumber(field(s, 'entries-added')) - tonumber(field(s, 'length'))
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if field(g, 'name') == ARGV[1] then
    local read = field(g, 'entries-read')
    -- A group created at 0 on an already trimmed stream has read nothing, though Redis
    -- leaves its entries-read unset (it would later jump past the trimmed entries).
    if not read and field(g, 'last-delivered-id') == '0-0' then read = 0 end
    if not read then return -1 end
    local lost = gone - tonumber(read)
    if lost <= 0 then return 0 end
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], field(g, 'last-delivered-id'), 'ENTRIESREAD', gone)
    redis.call('HINCRBY', KEYS[2], ARGV[2], lost)
    return lost
  end
end
return 0
`,
);

/** Counts (in `counters` field `trimmed:<stream>`) entries trimmed unread; see TRIM_LOSS. */
export async function countTrimmedUnread(redis: RedisClient, stream: string, group: string, counters: string): Promise<number> {
  return Number(await TRIM_LOSS.run(redis, [stream, counters], [group, COUNTER_FIELDS.trimmed(stream)]));
}
