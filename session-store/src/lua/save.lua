-- Creates a session from ARGV[4..] (field, value pairs). Returns 0, writing nothing, when the
-- key exists: a new session never overwrites another.
if redis.call('EXISTS', key) == 1 then
  return 0
end
redis.call('HSET', key, '\0c', ARGV[3])
set_pairs(4, #ARGV)
redis.call('PEXPIRE', key, idle)
return 1
