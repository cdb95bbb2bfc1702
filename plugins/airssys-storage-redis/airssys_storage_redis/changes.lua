-- A read of a component's change log (airssys_storage.changes), one atomic moment: the events after a seq
-- and the log's bounds, so a reader sees a commit's events entirely or not at all.
-- KEYS: 1 counter row (hash; q = the last seq), 2 the change log (stream, entry id "<seq>-0"; see commit.lua)
-- ARGV: 1 since (seq), 2 limit (events; 0: the bounds only)
-- Returns {last seq, oldest retained seq (last + 1 when the log is empty), entries}: each entry
--   {id, {field, value, ...}} as XRANGE gives it.
local last = tonumber(redis.call('HGET', KEYS[1], 'q') or '0')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local oldest = last + 1
if first[1] then oldest = tonumber(string.match(first[1][1], '^%d+')) end
local limit = tonumber(ARGV[2])
local entries = {}
if limit > 0 then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', tonumber(ARGV[1]) + 1), '+', 'COUNT', limit)
end
return {string.format('%d', last), string.format('%d', oldest), entries}
