-- Creates a session from ARGV[3..] (field, value pairs). Returns 0, writing nothing, when the
-- key exists: a new session never overwrites another.
if redis.call('EXISTS', key) == 1 then
  return 0
end
local now = string.format('%d', now_ms())
redis.call('HSET', key, '\0c', now, '\0s', now)
for i = 3, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', key, math.min(idle, lifetime))
return 1
