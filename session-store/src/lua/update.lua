-- Writes changes to a live session and keeps its metadata. ARGV[3] is 'replace' or 'delta';
-- ARGV[4] the number N of field, value pairs that follow (from ARGV[5]); after them come the
-- names of fields to remove. 'replace' makes the pairs the whole state: every other entry
-- goes. 'delta' sets the pairs and removes the named fields, and leaves the rest alone, so
-- concurrent requests that change different entries all keep their changes.
-- Returns 0, writing nothing, when the session is gone: a write that races a logout or an
-- expiry must not bring the session back.
local now = now_ms()
local ttl = remaining(now)
if not ttl then
  return 0
end
local pairs_end = 4 + 2 * tonumber(ARGV[4])
if ARGV[3] == 'replace' then
  local keep = {}
  for i = 5, pairs_end, 2 do
    keep[ARGV[i]] = true
  end
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local metadata = string.byte(field, 1) == 0 and string.byte(field, 2) ~= 0
    if not metadata and not keep[field] then
      redis.call('HDEL', key, field)
    end
  end
else
  for i = pairs_end + 1, #ARGV do
    redis.call('HDEL', key, ARGV[i])
  end
end
for i = 5, pairs_end, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
touch(now, ttl)
return 1
