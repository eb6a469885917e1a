-- Replaces the entries of a live session with ARGV[3..] (field, value pairs) and keeps its
-- metadata. Returns 0, writing nothing, when the session is gone: a write that races a logout
-- or an expiry must not bring the session back.
local now = now_ms()
local ttl = remaining(now)
if not ttl then
  return 0
end
local keep = {}
for i = 3, #ARGV, 2 do
  keep[ARGV[i]] = true
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  local metadata = string.byte(field, 1) == 0 and string.byte(field, 2) ~= 0
  if not metadata and not keep[field] then
    redis.call('HDEL', key, field)
  end
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
touch(now, ttl)
return 1
