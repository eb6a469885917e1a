-- A read for the near cache. KEYS[1] is the session's hash. Returns the time it has left to
-- live in milliseconds and its fields; slides its expiry, to ARGV[2] milliseconds, only once it
-- has ARGV[1] or less left: a session read on many instances is written (and so every copy of
-- it dropped) at most once per granularity, the difference of the two.
local key = KEYS[1]
local fields = redis.call('HGETALL', key)
local left = redis.call('PTTL', key)
if left >= 0 and left <= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', key, ARGV[2])
  left = tonumber(ARGV[2])
end
return {left, fields}
