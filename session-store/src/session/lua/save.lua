-- Creates a session from ARGV[7..] (field, value pairs), created at ARGV[4], and then, when
-- ARGV[5] names a channel, publishes the announcement ARGV[6] there. Returns 0, writing and
-- announcing nothing, when the key exists: a new session never overwrites another.
if redis.call('EXISTS', key) == 1 then
  return 0
end
-- The creation time goes with the first entries: one HSET for a state of up to 99 entries.
local first_chunk_end = math.min(7 + 197, #ARGV)
redis.call('HSET', key, '\0c', ARGV[4], unpack(ARGV, 7, first_chunk_end))
set_pairs(first_chunk_end + 1, #ARGV)
redis.call('PEXPIRE', key, idle)
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 1
