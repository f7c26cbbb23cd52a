-- Move one pending entry to the dead-letter stream and ack it, in one atomic step, so an
-- entry is never both dead-lettered and still pending, nor acked and lost.
--
-- KEYS[1] the partition's stream   KEYS[2] its dead-letter stream   KEYS[3] its error hash
-- KEYS[4] the group's lease on the partition (only its holder may dead-letter)
-- ARGV[1] group  ARGV[2] entry id  ARGV[3] payload  ARGV[4] consumer  ARGV[5] deliveries
-- ARGV[6] fallback error text (used when no handler recorded one)  ARGV[7] time (ISO 8601)
if redis.call('GET', KEYS[4]) ~= ARGV[4] then
  return false
end
-- Acked meanwhile (a peer handled it after all): then it is no dead letter.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
local error_field = ARGV[1] .. ':' .. ARGV[2]
local error_text = redis.call('HGET', KEYS[3], error_field) or ARGV[6]
local dead_id = redis.call('XADD', KEYS[2], '*',
  'event', ARGV[3], 'stream', KEYS[1], 'entry_id', ARGV[2], 'group', ARGV[1],
  'consumer', ARGV[4], 'deliveries', ARGV[5], 'error', error_text, 'at', ARGV[7])
redis.call('HDEL', KEYS[3], error_field)
return dead_id
