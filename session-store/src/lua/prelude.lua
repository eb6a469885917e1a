-- Shared head of every session script. KEYS[1] is the session's hash; ARGV[1] is the idle
-- timeout and ARGV[2] the absolute lifetime, both in milliseconds. Metadata fields are a NUL
-- byte and a letter: '\0c' created, '\0s' last seen (see state.rs for why they cannot collide).
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local lifetime = tonumber(ARGV[2])

-- Milliseconds since the epoch by the Redis server's clock: one clock for all app instances.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Milliseconds the session has left: the idle timeout, capped by what remains of its absolute
-- lifetime. nil when there is no session; a session past its lifetime is deleted here.
local function remaining(now)
  local created = tonumber(redis.call('HGET', key, '\0c'))
  if not created then
    return nil
  end
  local left = math.min(idle, created + lifetime - now)
  if left <= 0 then
    redis.call('DEL', key)
    return nil
  end
  return left
end

-- Records the visit and slides the expiry.
local function touch(now, ttl)
  redis.call('HSET', key, '\0s', string.format('%d', now))
  redis.call('PEXPIRE', key, ttl)
end
