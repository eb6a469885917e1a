-- Shared head of every session script. KEYS[1] is the session's hash. ARGV[1] is its idle
-- timeout in milliseconds. A session is alive while its creation time (the metadata field
-- '\0c', see fields.rs for why it cannot collide with an entry) lies after ARGV[2] and no later
-- than ARGV[3], milliseconds since the epoch: the store works out both bounds, its absolute
-- lifetime and the clock skew it allows, so no rule is written twice. ARGV[4] is the creation
-- time a new session gets.
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local born_after = tonumber(ARGV[2])
local born_by = tonumber(ARGV[3])

-- HSETs the field, value pairs ARGV[first..last], many per call (but few enough per call for
-- Lua's stack).
local function set_pairs(first, last)
  for i = first, last, 200 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
  end
end
