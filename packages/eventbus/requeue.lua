-- Put a dead letter back on its stream (as a new entry) and remove it from the dead-letter
-- stream, atomically: it is in exactly one of the two at any time.
--
-- KEYS[1] dead-letter stream   KEYS[2] the partition's stream   ARGV[1] dead-letter entry id
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then
  return nil
end
local fields = entries[1][2]
local payload
for i = 1, #fields, 2 do
  if fields[i] == 'event' then payload = fields[i + 1] end
end
local new_id = redis.call('XADD', KEYS[2], '*', 'event', payload)
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
