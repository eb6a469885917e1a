-- Gives back one attempt taken from the login throttle's counter KEYS[1]: its password was
-- right, or never checked. A counter that comes down to nothing is deleted, and so is the -1
-- a DECR leaves where the window ended meanwhile (a key with no expiry that would otherwise
-- stay forever). Returns 1 when the counter still holds attempts, 0 when it is gone.
if redis.call('DECR', KEYS[1]) > 0 then
  return 1
end
redis.call('DEL', KEYS[1])
return 0
