-- Makes ARGV[9..] (ARGV[8] field, value pairs) the whole state of a live session: every other
-- entry goes, the metadata stays. Used when the store does not know what a request changed.
-- ARGV[7] names the user entry's field ('' when the store names none).
--
-- Returns false, writing nothing, when the session is gone: a write that races a logout or an
-- expiry must not bring the session back. A session past its absolute lifetime is deleted,
-- and when ARGV[5] names a channel, the announcement of its expiry ARGV[6] is published
-- there. Otherwise returns {1, the user entry's value before the write, or false}.
local created = tonumber(redis.call('HGET', key, '\0c'))
if not created then
  return false
end
if created <= born_after or created > born_by then
  redis.call('DEL', key)
  if ARGV[5] ~= '' then
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
  return false
end
local user_before = false
if ARGV[7] ~= '' then
  user_before = redis.call('HGET', key, ARGV[7])
end
local pairs_end = 8 + 2 * tonumber(ARGV[8])
local keep = {}
for i = 9, pairs_end, 2 do
  keep[ARGV[i]] = true
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  local metadata = string.byte(field, 1) == 0 and string.byte(field, 2) ~= 0
  if not metadata and not keep[field] then
    redis.call('HDEL', key, field)
  end
end
set_pairs(9, pairs_end)
redis.call('PEXPIRE', key, idle)
return {1, user_before}
