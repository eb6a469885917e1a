-- Writes changes to a live session and keeps its metadata. ARGV[4] is 'replace' or 'delta';
-- ARGV[5] the number N of field, value pairs that follow (from ARGV[6]); after them come the
-- names of fields to remove. 'replace' makes the pairs the whole state: every other entry
-- goes. 'delta' sets the pairs and removes the named fields, and leaves the rest alone, so
-- concurrent requests that change different entries all keep their changes.
-- Returns 0, writing nothing, when the session is gone: a write that races a logout or an
-- expiry must not bring the session back.
if not alive() then
  return 0
end
local pairs_end = 5 + 2 * tonumber(ARGV[5])
if ARGV[4] == 'replace' then
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
else
  for i = pairs_end + 1, #ARGV do
    redis.call('HDEL', key, ARGV[i])
  end
end
set_pairs(6, pairs_end)
redis.call('PEXPIRE', key, idle)
return 1
