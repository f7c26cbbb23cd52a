-- Take a partition's lease for a consumer, or renew it if the consumer holds it already.
-- Returns 1 when the consumer holds the lease afterwards, 0 when another consumer does.
--
-- KEYS[1] the lease   ARGV[1] consumer   ARGV[2] lease time (ms)
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
