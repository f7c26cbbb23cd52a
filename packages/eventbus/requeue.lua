-- Put a dead letter back on its stream (as a new entry) and remove it from the dead-letter
-- stream, atomically: it is in exactly one of the two at any time.
--
-- The new entry carries `requeued_for` = the group that dead-lettered it: the other groups
-- handled the original already, so their consumers ack the copy without handling it, and a
-- replay keeps it only where it stands in for an original that was never archived
-- (projections/replay.py).
-- A dead letter with no group (dead_letter.lua always writes one; one added by hand may not)
-- goes back to every group.
--
-- KEYS[1] dead-letter stream   KEYS[2] the partition's stream   ARGV[1] dead-letter entry id
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then
  return nil
end
local fields = entries[1][2]
local payload, group
for i = 1, #fields, 2 do
  if fields[i] == 'event' then payload = fields[i + 1] end
  if fields[i] == 'group' then group = fields[i + 1] end
end
local new_id
if group and group ~= '' then
  new_id = redis.call('XADD', KEYS[2], '*', 'event', payload, 'requeued_for', group)
else
  new_id = redis.call('XADD', KEYS[2], '*', 'event', payload)
end
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
