-- Take pending entries of one partition over for this consumer, only while it holds the
-- partition's lease.
--
-- KEYS[1] stream   KEYS[2] lease   ARGV[1] group   ARGV[2] consumer
-- ARGV[3] "1": count this as a delivery of each entry (it is about to be attempted on its
--         own); "0": keep the delivery counts (entries that so far only waited behind another)
-- ARGV[4..] entry ids
-- Returns false without the lease; else the claimed entries as XCLAIM gives them.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return false
end
local ids = {unpack(ARGV, 4)}
if ARGV[3] == '1' then
  return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
end
-- JUSTID leaves the counts alone but returns no fields: read them separately.
local command = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids)}
command[#command + 1] = 'JUSTID'
local claimed = {}
for _, id in ipairs(redis.call(unpack(command))) do
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry > 0 then
    claimed[#claimed + 1] = entry[1]
  end
end
return claimed
