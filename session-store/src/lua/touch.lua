-- Slides the expiry of a live session. With ARGV[3] == '1' it also returns all of its fields,
-- so that loading a session and refreshing its TTL cost one round trip.
local now = now_ms()
local ttl = remaining(now)
if not ttl then
  return false
end
touch(now, ttl)
if ARGV[3] == '1' then
  return redis.call('HGETALL', key)
end
return 1
