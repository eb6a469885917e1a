-- Adds the session ARGV[2] (its digest), scored ARGV[1] (the end of its lifetime), to the
-- user's index KEYS[1], unless it is there already; prunes the entries past their lifetime
-- (scored up to ARGV[3], now) and keeps the index no longer than ARGV[4] milliseconds. Then,
-- when the index holds more than ARGV[5] sessions, returns the oldest of them (never the one
-- just added), at most ARGV[6]: the sessions the caller ends, and only then removes from the
-- index, so that the index never loses a live session. Concurrent additions may name the same
-- ones; what one leaves over the limit, the next addition names again.
local index = KEYS[1]
local added = ARGV[2]
redis.call('ZADD', index, 'NX', ARGV[1], added)
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[3])
redis.call('PEXPIRE', index, ARGV[4])
local excess = redis.call('ZCARD', index) - tonumber(ARGV[5])
if excess <= 0 then
  return {}
end
local wanted = math.min(excess, tonumber(ARGV[6]))
local oldest = {}
for _, digest in ipairs(redis.call('ZRANGE', index, 0, wanted)) do
  if digest ~= added and #oldest < wanted then
    oldest[#oldest + 1] = digest
  end
end
return oldest
