-- Whole-component checks and repairs of airssys-storage on Redis, each atomic (see commit.lua for the keys;
-- a clear is commit.lua's mode "x", which appends its change event).
-- KEYS: 1 rows, 2 ordered index, 3 expiry index, 4 counter row
-- ARGV[1] = "count": return {b, k, f (the counter row), key, value size, meta, key, value size, meta ...}.
-- ARGV[1] = "fix": ARGV[2] keys to remove, then pairs (key, new meta) to rewrite, then the floor to keep
--   (decimal; "" none); every row left is recounted into the counter row. Returns {b, k}.
local rows, index, expiry, space = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode = ARGV[1]

local function split(digits)
  local n = #digits
  if n <= 9 then return 0, tonumber(digits) end
  return tonumber(string.sub(digits, 1, n - 9)), tonumber(string.sub(digits, n - 8))
end

local function bigger(a, b) -- the larger of two versions (canonical decimal strings)
  if not string.match(a, '^%d+$') or #a > 20 then return b end
  local h1, l1 = split(a)
  local h2, l2 = split(b)
  if h1 > h2 or (h1 == h2 and l1 > l2) then return a end
  return b
end

if mode == 'count' then
  local counter = redis.call('HMGET', space, 'b', 'k', 'f')
  local out = {counter[1] or '0', counter[2] or '0', counter[3] or '0'}
  local all = redis.call('HGETALL', rows)
  for i = 1, #all, 2 do
    local raw = all[i + 1]
    local colon = string.find(raw, ':', 1, true) or 0
    out[#out + 1] = all[i]
    out[#out + 1] = tostring(#raw - colon)
    out[#out + 1] = colon > 0 and string.sub(raw, 1, colon - 1) or raw
  end
  return out
end

local floor = redis.call('HGET', space, 'f') or '0'
-- fix
local removals = tonumber(ARGV[2])
local i = 3
for _ = 1, removals do
  redis.call('HDEL', rows, ARGV[i])
  redis.call('ZREM', index, ARGV[i])
  redis.call('ZREM', expiry, ARGV[i])
  i = i + 1
end
while i + 2 <= #ARGV do
  local key, meta = ARGV[i], ARGV[i + 1]
  local raw = redis.call('HGET', rows, key)
  if raw then
    local colon = string.find(raw, ':', 1, true) or 0
    redis.call('HSET', rows, key, meta .. ':' .. string.sub(raw, colon + 1))
  end
  i = i + 2
end
if ARGV[i] and ARGV[i] ~= '' then floor = bigger(ARGV[i], floor) end
local bytes, keys = 0, 0
local all = redis.call('HGETALL', rows)
for j = 1, #all, 2 do
  local colon = string.find(all[j + 1], ':', 1, true) or 0
  bytes = bytes + #all[j] + #all[j + 1] - colon
  keys = keys + 1
end
local b, k = string.format('%d', bytes), string.format('%d', keys)
redis.call('HSET', space, 'b', b, 'k', k, 'f', floor)
return {b, k}
