-- Move one SKU's stock for one order, atomically, and append the move's event to the SKU's
-- catalog stream in the same step: the stream then says exactly what happened to the stock,
-- in the order it happened, among the SKU's catalog updates and deliveries.
--
-- Every key is in the hash slot of the SKU's catalog partition.
-- KEYS[1]  the partition's stream
-- KEYS[2]  the SKU's catalog entry: a hash whose on_hand the catalog events keep and whose
--          reserved this script keeps (available = on_hand - reserved)
-- KEYS[3]  the order's record for the SKU: a hash {state, quantity}
-- KEYS[4]  the dedupe key (source+id) of the move's event, set as append.lua sets it
-- KEYS[5]  the SKU's aggregate version key, counted as append.lua counts it
-- ARGV[1]  the move: reserve, commit or release
-- ARGV[2]  the order's quantity of the SKU (a positive integer)
-- ARGV[3]  the move's event (CloudEvents structured JSON), appended only when stock moves
-- ARGV[4]  seconds the record is kept after its last change
-- ARGV[5]  seconds a dedupe key is kept
-- ARGV[6]  seconds an aggregate version is kept after its last event
--
-- The record makes each move happen at most once per (order, SKU):
--   reserve  no record -> reserved  if on_hand - reserved >= quantity (reserved += quantity)
--                      -> rejected  otherwise; nothing moves
--            a record  -> unchanged: a repeated request gets the first answer, and after a
--                         release (even one that came first) nothing is held again
--   commit   reserved  -> committed (reserved -= quantity; on_hand -= quantity, not below 0)
--            otherwise -> unchanged: committed already, or nothing is held to commit
--   release  reserved  -> released  (reserved -= quantity)
--            no record -> released with quantity 0: a tombstone, so that a reservation
--                         arriving late holds nothing
--            otherwise -> unchanged
-- on_hand only ever falls by units an order holds, reserved only by units it added, and a
-- reservation needs as many units available: nothing goes negative. (A catalog update may
-- set on_hand below reserved; then commits take on_hand down to zero, never below.)
--
-- A request naming another quantity than the record's is refused with an error and moves
-- nothing: an order asks for one quantity of a SKU, so it is a caller's bug.
--
-- Returns {state after the call, the record's quantity, entry id of the event or ""}.
local stream, item, record, dedupe_key, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local move, payload = ARGV[1], ARGV[3]
local quantity = tonumber(ARGV[2])
local record_ttl, dedupe_ttl, version_ttl = ARGV[4], ARGV[5], ARGV[6]

if move ~= 'reserve' and move ~= 'commit' and move ~= 'release' then
  return redis.error_reply('stock: unknown move ' .. tostring(move))
end
if not quantity or quantity < 1 or quantity % 1 ~= 0 then
  return redis.error_reply('stock: quantity must be a positive integer, not ' .. tostring(ARGV[2]))
end

local function int(n) return string.format('%d', n) end

local function set_record(state, units)
  redis.call('HSET', record, 'state', state, 'quantity', int(units))
  redis.call('EXPIRE', record, record_ttl)
end

local function append_event()
  local id = redis.call('XADD', stream, '*', 'event', payload)
  redis.call('INCR', version_key)
  redis.call('EXPIRE', version_key, version_ttl)
  redis.call('SET', dedupe_key, id, 'EX', dedupe_ttl)
  return id
end

local held = redis.call('HMGET', record, 'state', 'quantity')
local state, recorded = held[1], tonumber(held[2] or '0')
if state and recorded ~= 0 and recorded ~= quantity then
  return redis.error_reply(
    'stock: the order holds ' .. int(recorded) .. ' (' .. state .. '), not ' .. int(quantity))
end

if move == 'reserve' then
  if state then return {state, recorded, ''} end
  local stock = redis.call('HMGET', item, 'on_hand', 'reserved')
  local on_hand, reserved = tonumber(stock[1] or '0'), tonumber(stock[2] or '0')
  if on_hand - reserved < quantity then
    set_record('rejected', quantity)
    return {'rejected', quantity, ''}
  end
  redis.call('HINCRBY', item, 'reserved', int(quantity))
  set_record('reserved', quantity)
  return {'reserved', quantity, append_event()}
end

if move == 'release' and not state then
  set_record('released', 0)
  return {'released', 0, ''}
end
if state ~= 'reserved' then return {state or '', recorded, ''} end

local after
redis.call('HINCRBY', item, 'reserved', int(-quantity))
if move == 'release' then
  after = 'released'
else
  local on_hand = tonumber(redis.call('HGET', item, 'on_hand') or '0')
  redis.call('HINCRBY', item, 'on_hand', int(-math.min(quantity, math.max(on_hand, 0))))
  after = 'committed'
end
set_record(after, quantity)
return {after, quantity, append_event()}
