-- Creates a session from ARGV[5..] (field, value pairs), created at ARGV[4]. Returns 0,
-- writing nothing, when the key exists: a new session never overwrites another.
if redis.call('EXISTS', key) == 1 then
  return 0
end
-- The creation time goes with the first entries: one HSET for a state of up to 99 entries.
local first_chunk_end = math.min(5 + 197, #ARGV)
redis.call('HSET', key, '\0c', ARGV[4], unpack(ARGV, 5, first_chunk_end))
set_pairs(first_chunk_end + 1, #ARGV)
redis.call('PEXPIRE', key, idle)
return 1
