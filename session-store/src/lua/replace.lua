-- Makes ARGV[6..] (ARGV[5] field, value pairs) the whole state of a live session: every other
-- entry goes, the metadata stays. Used when the store does not know what a request changed.
-- Returns 0, writing nothing, when the session is gone: a write that races a logout or an
-- expiry must not bring the session back.
if not alive() then
  return 0
end
local pairs_end = 5 + 2 * tonumber(ARGV[5])
local keep = {}
for i = 6, pairs_end, 2 do
  keep[ARGV[i]] = true
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  local metadata = string.byte(field, 1) == 0 and string.byte(field, 2) ~= 0
  if not metadata and not keep[field] then
    redis.call('HDEL', key, field)
  end
end
set_pairs(6, pairs_end)
redis.call('PEXPIRE', key, idle)
return 1
