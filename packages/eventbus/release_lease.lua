-- Give a lease up, only if this consumer still holds it (it may have expired and been taken).
--
-- KEYS[1] the lease   ARGV[1] consumer
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
