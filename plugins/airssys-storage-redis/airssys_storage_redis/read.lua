-- A listing of airssys-storage on Redis: live keys (and values) of one component in [start, end), in
-- bytewise key order, from the ordered index; one atomic read, so it sees a commit entirely or not at all.
-- KEYS: 1 rows, 2 ordered index, 3 expiry index (see commit.lua)
-- ARGV: 1 start, 2 end ("" none), 3 limit (live rows), 4 now (ms), 5 "1": values too
-- Returns keys, or key, value, key, value ... (expired rows are skipped and do not count).
local rows, index, expiry = KEYS[1], KEYS[2], KEYS[3]
local high = ARGV[2] == '' and '+' or '(' .. ARGV[2]
local want, now, values = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local out, found, offset = {}, 0, 0
while found < want do
  local asked = want - found
  local page = redis.call('ZRANGEBYLEX', index, '[' .. ARGV[1], high, 'LIMIT', offset, asked)
  for _, key in ipairs(page) do
    if values then
      local raw = redis.call('HGET', rows, key)
      local colon = string.find(raw, ':', 1, true)
      local meta = string.sub(raw, 1, colon - 1)
      local comma = string.find(meta, ',', 1, true)
      if not comma or tonumber(string.sub(meta, comma + 1)) > now then
        out[#out + 1] = key
        out[#out + 1] = string.sub(raw, colon + 1)
        found = found + 1
      end
    else
      local deadline = redis.call('ZSCORE', expiry, key)
      if not deadline or tonumber(deadline) > now then
        out[#out + 1] = key
        found = found + 1
      end
    end
  end
  if #page < asked then break end
  offset = offset + #page
end
return out
