-- Writes what a request changed into a session of actix-session's own store, KEYS[1]: a
-- string holding a JSON object of entry name to entry value (JSON text). ARGV[1] is the TTL
-- in seconds the old store gives a written session; ARGV[2] the number of entries set, whose
-- name, value pairs follow; the names after them are the entries removed.
--
-- Returns 0, writing nothing, when the session is gone (a logout, an expiry): unlike the old
-- store's update, a write never brings a session back. Returns 1 when it wrote.
local value = redis.call('GET', KEYS[1])
if not value then
  return 0
end
local ok, state = pcall(cjson.decode, value)
if not ok or type(state) ~= 'table' then
  return 0
end
local set_end = 2 + 2 * tonumber(ARGV[2])
for i = 3, set_end, 2 do
  state[ARGV[i]] = ARGV[i + 1]
end
for i = set_end + 1, #ARGV do
  state[ARGV[i]] = nil
end
-- An empty table would encode as an object too (cjson's default), as the old store expects.
redis.call('SET', KEYS[1], cjson.encode(state), 'XX', 'EX', ARGV[1])
return 1
