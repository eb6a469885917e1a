-- Creates a session from ARGV[4..] (field, value pairs). Returns 0, writing nothing, when the
-- key exists: a new session never overwrites another.
if redis.call('EXISTS', key) == 1 then
  return 0
end
-- The creation time goes with the first entries: one HSET for a state of up to 99 entries.
local first_chunk_end = math.min(4 + 197, #ARGV)
redis.call('HSET', key, '\0c', ARGV[3], unpack(ARGV, 4, first_chunk_end))
set_pairs(first_chunk_end + 1, #ARGV)
redis.call('PEXPIRE', key, idle)
return 1
