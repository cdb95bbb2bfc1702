-- One commit of airssys-storage on Redis: the planner's rules (airssys_storage/planner.py, general loop)
-- run where the data is, so that reading the old rows, the quota guard and the writes are one atomic
-- step across every client, in one round trip. The Python side re-runs airssys_storage.planner.plan on
-- the old state this script returns: that builds the Plan (and every error message) and checks that
-- both agree; tests/test_redis_lua_planner.py compares them on random commits.
--
-- KEYS: 1 rows (hash key -> "<version>[,<expires_at>]:<value>"), 2 ordered index (sorted set, score 0),
--       3 expiry index (sorted set, score expires_at), 4 counter row (hash b, k, f),
--       5 recorded op ids (hash op_id -> result), 6 their times (sorted set, score ms),
--       7 the change log (stream, entry id "<seq>-0"; only when the feed is on)
-- ARGV: 1 mode ("c": commit, "q": commit answering only {"ok", result 1} when it succeeds, "r": delete a range,
--         "x": clear), 2 now (ms), 3 limit (bytes, "" none), 4 op records older than this (ms) are dropped, "" keep,
--       5 the change feed: "" off, else "<retain events>,<drop events older than this (ms), "" keep>,
--         <capture values up to this many bytes, -1 none>,<pub/sub channel>" (airssys_storage.changes);
--   "c": 7 per write: key, kind (p put, d delete, i increment, t touch, s sweep, r record), value,
--        expires_at ("" none), if_version ("" none), delta, op_id ("" none); a record (the planner's
--        "Op records") changes no row: it records op_id -> delta, refused ("condition") if op_id is recorded
--   "r": start, end ("" none), expired_only ("1"/"0"), limit ("" none)
-- The change feed (ARGV 5 set): a commit that changed something appends its events (the planner's,
--   airssys_storage.changes.plan_records / range_records / clear_record) to the log in this same atomic
--   step: the last seq and time live in the counter row (fields q, a), so seqs are dense and strictly
--   increasing across every client; each entry holds k (key), o (op), v (version), t (time, ms, never
--   below its predecessor's), x (captured value), e (the end of a delete-range). The log is trimmed as
--   FeedConfig.keep_from / age_cutoff say (a prefix; never the newest), then the stream's key name is
--   PUBLISHed on the channel: it only wakes readers, which then pull.
-- Returns {status, b, k, f (the counter row before), n, rows, the old value of each increment's key
--   (in order; up to 32 bytes)} and, for "r", the n keys removed after that. rows is one string, per
--   write "<has row 1/0>,<value size>,<version>,<expires_at>,<recorded op result>,<result>" ("" where
--   none), joined by ";" (one bulk string instead of six per write: the client parses far less).
--   Mode "q" answers {"ok", result} when it succeeded. status: "ok" (applied) or the refusal
--   ("quota", "condition", "counter", "version", "malformed"), when nothing was written.
-- Numbers: Lua numbers are doubles, so versions and counters (64-bit) stay decimal strings and are
-- added as (high, low) halves of at most 11 + 9 digits, each exact. Strings are never compared with
-- < (Lua's string order follows the server's locale): keys bytewise by less(), versions as numbers.
local rows, index, expiry, space, ops, optimes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = tonumber(ARGV[2])
local E9 = 1000000000
local TRIM_STEP = 64 -- airssys_storage.changes.TRIM_STEP
local feed = nil -- {retain events, age cutoff (ms) or nil, value capture cap, channel}
if ARGV[5] ~= '' then
  local retain, cutoff, cap, channel = string.match(ARGV[5], '^(%d+),(%-?%d*),(%-?%d+),(.*)$')
  feed = {tonumber(retain), cutoff ~= '' and tonumber(cutoff) or nil, tonumber(cap), channel}
end

local function split(digits) -- decimal digits -> high, low (value = high * 1e9 + low)
  local n = #digits
  if n <= 9 then return 0, tonumber(digits) end
  return tonumber(string.sub(digits, 1, n - 9)), tonumber(string.sub(digits, n - 8))
end

local function above(h1, l1, h2, l2) return h1 > h2 or (h1 == h2 and l1 > l2) end

local function show(negative, h, l)
  local text = h > 0 and string.format('%d%09d', h, l) or string.format('%d', l)
  if negative and text ~= '0' then return '-' .. text end
  return text
end

local function bigger(a, b) -- the larger of two versions (decimal strings)
  local h1, l1 = split(a)
  local h2, l2 = split(b)
  if above(h1, l1, h2, l2) then return a end
  return b
end

local function next_version(v) -- v + 1, or nil past 2**64 - 1
  local h, l = split(v)
  l = l + 1
  if l == E9 then h, l = h + 1, 0 end
  if above(h, l, 18446744073, 709551615) then return nil end
  return show(false, h, l)
end

local function signed(text) -- a counter's decimal text -> high, low (both carrying the sign), or nil
  if #text > 20 or not string.match(text, '^%-?%d+$') then return nil end
  local negative = string.sub(text, 1, 1) == '-'
  local h, l = split(negative and string.sub(text, 2) or text)
  if above(h, l, 9223372036, negative and 854775808 or 854775807) then return nil end
  if negative then return -h, -l end
  return h, l
end

local function add(text, delta) -- counter text + delta text -> decimal text, or nil (no counter / overflow)
  local h1, l1 = signed(text)
  local h2, l2 = signed(delta)
  if h1 == nil or h2 == nil then return nil end
  local h, l = h1 + h2, l1 + l2
  if l >= E9 then h, l = h + 1, l - E9 elseif l <= -E9 then h, l = h - 1, l + E9 end
  if h > 0 and l < 0 then h, l = h - 1, l + E9 elseif h < 0 and l > 0 then h, l = h + 1, l - E9 end
  local negative = h < 0 or (h == 0 and l < 0)
  if negative then h, l = -h, -l end
  if above(h, l, 9223372036, negative and 854775808 or 854775807) then return nil end
  return show(negative, h, l)
end

local function less(a, b) -- bytewise a < b
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function captured(value) -- a set event's value, when the feed captures it
  if feed[3] >= 0 and #value <= feed[3] then return value end
  return false
end

local function add_event(log, seq, e, stamp) -- XADD one event as entry "<seq>-0"; the error reply if refused
  local id = string.format('%d-0', seq)
  if e[4] then
    return redis.pcall('XADD', log, id, 'k', e[1], 'o', e[2], 'v', e[3], 't', stamp, 'x', e[4])
  elseif e[5] then
    return redis.pcall('XADD', log, id, 'k', e[1], 'o', e[2], 'v', e[3], 't', stamp, 'e', e[5])
  end
  return redis.pcall('XADD', log, id, 'k', e[1], 'o', e[2], 'v', e[3], 't', stamp)
end

-- Append events ({key, op, version, value or false, end or false} each, in order) after the last seq q and
-- its time a (the counter row's fields, read with it), trim, and wake the readers.
local function append(events, q, a)
  if #events == 0 then return end
  local log = KEYS[7]
  local last = tonumber(q or '0')
  local before, at = last, now
  if a and tonumber(a) > at then at = tonumber(a) end -- never below the previous event's time: age trims a prefix
  local stamp = string.format('%d', at)
  for i, e in ipairs(events) do
    local added = add_event(log, last + 1, e, stamp)
    if i == 1 and type(added) == 'table' and added.err then
      -- the log is ahead of q (a counter row rewritten around the backend): continue above its newest id,
      -- rather than fail a commit whose data is written
      local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
      last = math.max(last, newest and tonumber(string.match(newest[1], '^%d+')) or 0)
      before = last
      added = add_event(log, last + 1, e, stamp)
    end
    if type(added) == 'table' and added.err then error(added.err) end -- not a stream (written around us)
    last = last + 1
  end
  redis.call('HSET', space, 'q', string.format('%d', last), 'a', stamp)
  local retain = feed[1]
  if math.floor(last / TRIM_STEP) ~= math.floor(before / TRIM_STEP) or retain < TRIM_STEP then
    -- every TRIM_STEP seqs (each commit for logs shorter than a step): by count (FeedConfig.keep_from),
    -- then by age (at most TRIM_STEP of the oldest events are looked at; their times never decrease)
    local held = redis.call('XLEN', log)
    local oldest = last - held + 1
    local keep = oldest
    if held > retain + math.min(TRIM_STEP, retain) then keep = last - retain + 1 end
    if feed[2] then
      for _, entry in ipairs(redis.call('XRANGE', log, string.format('%d-0', keep), '+', 'COUNT', TRIM_STEP)) do
        local seq = tonumber(string.match(entry[1], '^%d+'))
        if seq >= last or tonumber(entry[2][8]) >= feed[2] then break end
        keep = seq + 1
      end
    end
    if keep > oldest then redis.call('XTRIM', log, 'MINID', string.format('%d-0', keep)) end
  end
  redis.call('PUBLISH', feed[4], log)
end

if ARGV[1] == 'x' then -- clear: remove every row; the floor is raised to the highest removed version
  local counter = redis.call('HMGET', space, 'f', 'q', 'a')
  local floor = counter[1] or '0'
  local any = false
  for _, raw in ipairs(redis.call('HVALS', rows)) do
    local meta = string.match(raw, '^[^:,]*')
    any = true
    if string.match(meta, '^%d+$') and #meta <= 20 then floor = bigger(meta, floor) end -- damaged: verify's
  end
  redis.call('DEL', rows, index, expiry)
  redis.call('HSET', space, 'b', '0', 'k', '0', 'f', floor)
  if feed and any then append({{'', 'clear', floor, false, false}}, counter[2], counter[3]) end
  return any and '1' or '0'
end

-- The writes: {key, kind, value, expires_at, if_version, delta, op_id}
local writes = {}
local removed = nil
if ARGV[1] ~= 'r' then
  for base = 6, #ARGV, 7 do
    writes[#writes + 1] = {ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4],
      ARGV[base + 5], ARGV[base + 6]}
  end
else
  local start, stop, expired_only, most = ARGV[6], ARGV[7], ARGV[8] == '1', ARGV[9]
  local high = stop == '' and '+' or '(' .. stop
  local keys
  if expired_only then -- the expired rows (from the expiry index) in the range, first ones in key order
    keys = {}
    for _, key in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
      if not less(key, start) and (stop == '' or less(key, stop)) then keys[#keys + 1] = key end
    end
    table.sort(keys, less)
    if most ~= '' then
      for i = #keys, tonumber(most) + 1, -1 do keys[i] = nil end
    end
  elseif most == '' then
    keys = redis.call('ZRANGEBYLEX', index, '[' .. start, high)
  else
    keys = redis.call('ZRANGEBYLEX', index, '[' .. start, high, 'LIMIT', 0, tonumber(most))
  end
  local kind = expired_only and 's' or 'd'
  for i, key in ipairs(keys) do writes[i] = {key, kind, '', '', '', '0', ''} end
  removed = keys
end

local counter -- the counter row (and, with the feed on, the log's last seq and time)
if feed then
  counter = redis.call('HMGET', space, 'b', 'k', 'f', 'q', 'a')
else
  counter = redis.call('HMGET', space, 'b', 'k', 'f')
end
local used, count, floor = counter[1] or '0', counter[2] or '0', counter[3] or '0'
local reply = {'ok', used, count, floor, tostring(#writes), ''}
local summary, first_result = {}, nil
local status = 'ok'
local delta, key_delta, new_floor = 0, 0, floor
local puts, deletes, records = {}, {}, {}
local events, top = {}, nil -- the change events (feed on), the highest version removed

for _, w in ipairs(writes) do
  local key, kind, value, expires_at, condition, op_id = w[1], w[2], w[3], w[4], w[5], w[7]
  local raw = false
  if kind ~= 'r' then raw = redis.call('HGET', rows, key) end -- a record reads no row
  local version, old_expiry, colon = '', '', 0
  local live, old_size = false, 0
  if raw then
    colon = string.find(raw, ':', 1, true)
    local meta = string.sub(raw, 1, colon - 1)
    local comma = string.find(meta, ',', 1, true)
    if comma then
      version, old_expiry = string.sub(meta, 1, comma - 1), string.sub(meta, comma + 1)
      live = tonumber(old_expiry) > now
    else
      version, live = meta, true
    end
    old_size = #key + #raw - colon
  end
  local old_value = ''
  if raw and kind == 'i' then old_value = string.sub(raw, colon + 1, colon + 32) end
  local done = false
  if op_id ~= '' then done = redis.call('HGET', ops, op_id) end
  if kind == 'i' then reply[#reply + 1] = old_value end
  local result = '0'
  if kind == 'r' then -- records op_id -> delta; refused if op_id is recorded already
    if status ~= 'ok' then
      result = '0'
    elseif op_id == '' or condition ~= '' then
      status = 'malformed'
    elseif done then
      status = 'condition'
    else
      result = w[6]
    end
  elseif status ~= 'ok' or done then
    result = done or '0'
  elseif condition ~= '' and condition ~= (live and version or '0') then
    status = 'condition'
  elseif kind == 'p' or kind == 'i' then
    if kind == 'i' then
      value = add(live and string.sub(raw, colon + 1) or '0', w[6])
      expires_at = live and old_expiry or ''
      if value == nil then status = 'counter' end
    end
    local new_version = next_version(raw and version or new_floor)
    if new_version == nil then status = 'version' end
    if status == 'ok' then
      if not raw then key_delta = key_delta + 1 end
      delta = delta + #key + #value - old_size
      puts[#puts + 1] = {key, value, new_version, expires_at, raw, old_expiry}
      result = kind == 'i' and value or new_version
      if feed then events[#events + 1] = {key, 'set', new_version, captured(value), false} end
    end
  elseif kind == 't' then
    if live then
      local new_version = next_version(version)
      if new_version == nil then
        status = 'version'
      else
        puts[#puts + 1] = {key, string.sub(raw, colon + 1), new_version, expires_at, raw, old_expiry}
        result = new_version
        if feed then events[#events + 1] = {key, 'set', new_version, false, false} end
      end
    end
  elseif raw and not (kind == 's' and live) then -- remove the row (a sweep only an expired one)
    deletes[#deletes + 1] = {key, old_expiry}
    delta = delta - old_size
    key_delta = key_delta - 1
    new_floor = bigger(new_floor, version)
    if live or kind == 's' then result = '1' end
    if feed then
      events[#events + 1] = {key, live and 'delete' or 'expire', version, false, false}
      top = top and bigger(top, version) or version
    end
  end
  summary[#summary + 1] = (raw and '1,' or '0,') .. (raw and tostring(#raw - colon) or '0') .. ',' .. version
    .. ',' .. old_expiry .. ',' .. (done or '') .. ',' .. result
  first_result = first_result or result
  if op_id ~= '' and not done then records[#records + 1] = {op_id, result} end
end

if status == 'ok' and ARGV[3] ~= '' and delta > 0 and tonumber(used) + delta > tonumber(ARGV[3]) then
  status = 'quota'
end
reply[1] = status
reply[6] = table.concat(summary, ';')
if status ~= 'ok' then return reply end

-- Everything is decided: write (nothing above wrote, so a refusal leaves the store as it was).
for _, p in ipairs(puts) do
  local key, expires_at = p[1], p[4]
  local meta = expires_at == '' and p[3] or p[3] .. ',' .. expires_at
  redis.call('HSET', rows, key, meta .. ':' .. p[2])
  if not p[5] then redis.call('ZADD', index, 0, key) end
  if expires_at ~= '' then
    redis.call('ZADD', expiry, expires_at, key)
  elseif p[6] ~= '' then
    redis.call('ZREM', expiry, key)
  end
end
for _, d in ipairs(deletes) do
  redis.call('HDEL', rows, d[1])
  redis.call('ZREM', index, d[1])
  if d[2] ~= '' then redis.call('ZREM', expiry, d[1]) end
end
if delta ~= 0 or key_delta ~= 0 or new_floor ~= floor then
  redis.call('HSET', space, 'b', string.format('%d', tonumber(used) + delta),
    'k', string.format('%d', tonumber(count) + key_delta), 'f', new_floor)
end
if #records > 0 then
  for _, r in ipairs(records) do
    redis.call('HSET', ops, r[1], r[2])
    redis.call('ZADD', optimes, now, r[1])
  end
  if ARGV[4] ~= '' then
    for _, op_id in ipairs(redis.call('ZRANGEBYSCORE', optimes, '-inf', '(' .. ARGV[4], 'LIMIT', 0, 100)) do
      redis.call('HDEL', ops, op_id)
      redis.call('ZREM', optimes, op_id)
    end
  end
end
if feed then
  if removed and ARGV[8] ~= '1' and top then -- a range delete is one event
    events = {{ARGV[6], 'delete-range', top, false, ARGV[7] ~= '' and ARGV[7]}}
  end
  append(events, counter[4], counter[5])
end
if removed then
  for _, key in ipairs(removed) do reply[#reply + 1] = key end
elseif ARGV[1] == 'q' then
  return {'ok', first_result}
end
return reply
