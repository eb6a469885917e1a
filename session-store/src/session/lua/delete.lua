-- Deletes the session KEYS[1] and, when it was there, publishes the announcement ARGV[2] on
-- channel ARGV[1]. (A script only when the store publishes: a plain DEL otherwise. Inside the
-- script the announcement is made only for a session that really ended, and on a cluster it
-- goes with the key's own round trip, where a pipeline could not carry it.) Returns how many
-- keys it deleted.
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return deleted
