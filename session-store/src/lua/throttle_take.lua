-- Takes one attempt from the login throttle's counter KEYS[1], whose window is ARGV[2]
-- milliseconds from the first attempt it counts, unless the counter is at its limit ARGV[1].
-- Returns -1 when it took one, or else the milliseconds left of the window (at least 1).
-- One script, so that the test and the count are one step on the server: logins on any
-- number of instances at once cannot all pass the test before any of them counts.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    -- A counter without an expiry (written by hand, or by an older version) would refuse
    -- forever: give it a window of its own.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return math.max(left, 1)
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return -1
