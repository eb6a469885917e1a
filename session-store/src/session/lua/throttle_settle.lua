-- Settles the attempt ARGV[1] in the login throttle's log KEYS[1] (see throttle_take.lua):
-- ARGV[2] says how its password check went. 'failed': the attempt counts as a failure for
-- ARGV[3] milliseconds from now. 'given_back': it no longer counts (never checked, or right
-- from this address). 'cleared': right for this account, which forgets its failures too;
-- other attempts under way keep counting, so that a login that succeeds does not open the
-- door to guesses sent beside it. Returns how many entries the log still holds.
local log, attempt, outcome = KEYS[1], ARGV[1], ARGV[2]
if redis.call('TYPE', log).ok ~= 'zset' then
  return 0
end
redis.call('ZREM', log, 'p' .. attempt)
if outcome == 'failed' then
  local window = tonumber(ARGV[3])
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', log, now + window, 'f' .. attempt)
  if redis.call('PTTL', log) < window then
    redis.call('PEXPIRE', log, window)
  end
elseif outcome == 'cleared' then
  local failures = {}
  for _, entry in ipairs(redis.call('ZRANGE', log, 0, -1)) do
    if string.sub(entry, 1, 1) == 'f' then
      failures[#failures + 1] = entry
    end
  end
  if #failures > 0 then
    redis.call('ZREM', log, unpack(failures))
  end
end
return redis.call('ZCARD', log)
