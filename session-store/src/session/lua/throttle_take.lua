-- Takes an attempt for the login throttle's log KEYS[1] (a sorted set of attempts, each
-- scored by when it stops counting), unless the log is at its limit ARGV[1]: adds 'p' ..
-- ARGV[2], an attempt under way, counting ARGV[3] milliseconds (its lease) unless settled
-- before. ARGV[4] is the window a failure counts for, which the key's expiry must cover.
-- Returns {0, 0} when it took the attempt; when it did not, {1, ms} if failures alone fill
-- the log (ms until the first of them stops counting), or {2, ms} if attempts under way do
-- (ms until the first lease ends; most settle long before).
-- One script, so that the test and the count are one step on the server: logins on any
-- number of instances at once cannot all pass the test before any of them counts. Time is the
-- server's, so that instances whose clocks disagree keep one log.
local log, limit = KEYS[1], tonumber(ARGV[1])
local lease, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('TYPE', log).ok ~= 'zset' then
  -- Anything else under the name (a counter of an older version) would fail every command.
  redis.call('DEL', log)
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', log, '-inf', now)
local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
if #entries / 2 < limit then
  redis.call('ZADD', log, now + lease, 'p' .. ARGV[2])
  if redis.call('PTTL', log) < math.max(lease, window) then
    redis.call('PEXPIRE', log, math.max(lease, window))
  end
  return {0, 0}
end
local failures, first_failure, first_lease = 0, nil, nil
for i = 1, #entries, 2 do
  local ends = tonumber(entries[i + 1]) - now
  if string.sub(entries[i], 1, 1) == 'f' then
    failures = failures + 1
    first_failure = first_failure or ends
  else
    first_lease = first_lease or ends
  end
end
if failures >= limit then
  return {1, math.max(first_failure, 1)}
end
return {2, math.max(first_lease, 1)}
