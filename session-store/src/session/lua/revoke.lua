-- Deletes the session KEYS[1] if its field ARGV[1] (the user entry) holds ARGV[2] (the user),
-- and then, when ARGV[3] is given, publishes ARGV[4] on channel ARGV[3] (a revocation or an
-- eviction). Returns 1 when it deleted the session, 0 when there was none of that user's
-- (ended, or another user's now).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[3] then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
