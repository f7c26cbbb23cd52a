-- Read new entries of one partition for a group, only while this consumer holds the
-- partition's lease. The check and the read are one atomic step: a consumer that lost its
-- lease (stalled past it, say) can never take entries ahead of the partition's new owner,
-- which already claimed everything pending when it took the lease.
--
-- KEYS[1] stream   KEYS[2] lease   ARGV[1] group   ARGV[2] consumer   ARGV[3] count
-- Returns false without the lease; else {entries, last id}: the entries as XREADGROUP gives
-- them, and when there are none, the stream's last entry id (where a blocking XREAD waits).
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return false
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
if reply and #reply[1][2] > 0 then
  return {reply[1][2], ''}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  return {{}, last[1][1]}
end
return {{}, '0-0'}
