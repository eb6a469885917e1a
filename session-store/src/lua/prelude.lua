-- Shared head of every session script. KEYS[1] is the session's hash. ARGV[1] is the idle
-- timeout and ARGV[2] the absolute lifetime, both in milliseconds; ARGV[3] is the time now,
-- in milliseconds since the epoch. The metadata field '\0c' holds the creation time (see
-- state.rs for why it cannot collide with an entry).
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local lifetime = tonumber(ARGV[2])
local now = tonumber(ARGV[3])

-- Whether the session exists and is within its absolute lifetime. A session past its
-- lifetime is deleted here.
local function alive()
  local created = tonumber(redis.call('HGET', key, '\0c'))
  if not created then
    return false
  end
  if now - created >= lifetime then
    redis.call('DEL', key)
    return false
  end
  return true
end

-- HSETs the field, value pairs ARGV[first..last], many per call (but few enough per call for
-- Lua's stack).
local function set_pairs(first, last)
  for i = first, last, 200 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
  end
end
