-- Atomically append events to one partition stream, in units that succeed or fail alone.
--
-- A unit is what one caller asked for (one request's events): all of a unit's events are
-- written, or none. Units of different callers share this call only to share its round trip.
--
-- Beside its stream entry, an event may carry
-- - a claim: a key that must not exist yet, like a dedupe key that the caller names and
--   that stores the caller's value instead of an entry id (an idempotency record, say).
--   When it is held already (in Redis, or by a unit before it in this call) the unit is
--   refused and the holder's value returned; otherwise it is set, kept as long as a dedupe
--   key;
-- - side writes: HSET or HINCRBY on a key of this partition's hash slot, done only when the
--   event is written (never for a duplicate or a refused unit), so state kept beside the
--   stream moves exactly as the stream does.
--
-- KEYS[1]   the partition's stream
-- ARGV[1]   seconds a dedupe key (or a claim) is kept
-- ARGV[2]   seconds an aggregate's version is kept after its last append
-- then, event after event (the events of a unit adjacent), keys from KEYS[2] and arguments
-- from ARGV[3]:
--   keys    dedupe key (source+id), aggregate version key, the claim's key if it has one,
--           one key per side write
--   args    unit, expected aggregate version ("" for no check), payload (CloudEvents
--           structured JSON), then "1" and the claim's value or just "0", then the number
--           of side writes and for each: command, number of its arguments, the arguments
--
-- Returns, per event:
--   {entry id, 0, aggregate version}   written
--   {entry id of the first, 1, 0}      duplicate of an event already written (or earlier here)
--   {"", 2, current version, index}    its unit was refused: event `index` expected another version
--   {"", 3, claim value, index}        its unit was refused: event `index`'s claim is held
local dedupe_ttl = tonumber(ARGV[1])
local version_ttl = tonumber(ARGV[2])
local SIDE_WRITE_COMMANDS = {HSET = true, HINCRBY = true}

-- Read the variable-length layout once; refuse a malformed call before any check or write.
local events = {}
do
  local k, a = 2, 3
  while k <= #KEYS do
    local event = {
      dedupe_key = KEYS[k], version_key = KEYS[k + 1],
      unit = ARGV[a], expected = ARGV[a + 1], payload = ARGV[a + 2],
    }
    k, a = k + 2, a + 3
    if ARGV[a] == '1' then
      event.claim_key, event.claim_value = KEYS[k], ARGV[a + 1]
      k, a = k + 1, a + 2
    else
      a = a + 1
    end
    local side_writes = tonumber(ARGV[a])
    a = a + 1
    if side_writes > 0 then
      event.side_writes = {}
      for w = 1, side_writes do
        local command, argc = ARGV[a], tonumber(ARGV[a + 1])
        if not SIDE_WRITE_COMMANDS[command] then
          return redis.error_reply('append: side write ' .. tostring(command) .. ' is not allowed')
        end
        event.side_writes[w] = {command, KEYS[k], unpack(ARGV, a + 2, a + 1 + argc)}
        k, a = k + 1, a + 2 + argc
      end
    end
    events[#events + 1] = event
  end
end
local count = #events

local versions = {}   -- version key -> version after the accepted units checked so far
local first = {}      -- dedupe key -> index of the event that will write it
local claims = {}     -- claim key -> value an accepted unit will store
local results = {}

-- Check every unit before writing anything; a refused unit leaves no trace in the tables.
local i = 1
while i <= count do
  local last = i
  while last < count and events[last + 1].unit == events[i].unit do last = last + 1 end
  local staged_versions, staged_first, staged_claims = {}, {}, {}
  local refusal, refused_at = nil, nil
  for k = i, last do
    local event = events[k]
    local dedupe_key, version_key = event.dedupe_key, event.version_key
    local existing = redis.call('GET', dedupe_key)
    if existing then
      results[k] = {existing, 1, 0}
    elseif staged_first[dedupe_key] or first[dedupe_key] then
      results[k] = staged_first[dedupe_key] or first[dedupe_key]  -- resolved after writing
    else
      local claim_key = event.claim_key
      if claim_key then
        local held = staged_claims[claim_key] or claims[claim_key] or redis.call('GET', claim_key)
        if held then
          refusal, refused_at = {3, held}, k
          break
        end
        staged_claims[claim_key] = event.claim_value
      end
      local current = staged_versions[version_key] or versions[version_key]
      if current == nil then current = tonumber(redis.call('GET', version_key) or '0') end
      local expected = event.expected
      if expected ~= '' and tonumber(expected) ~= current then
        -- Report the version that exists, not one staged by this refused unit itself.
        refusal = {2, versions[version_key] or tonumber(redis.call('GET', version_key) or '0')}
        refused_at = k
        break
      end
      staged_versions[version_key] = current + 1
      staged_first[dedupe_key] = k
    end
  end
  if refusal then
    for k = i, last do results[k] = {'', refusal[1], refusal[2], refused_at - i} end
  else
    for key, value in pairs(staged_versions) do versions[key] = value end
    for key, value in pairs(staged_first) do first[key] = value end
    for key, value in pairs(staged_claims) do claims[key] = value end
  end
  i = last + 1
end

for k = 1, count do
  if results[k] == nil then
    local event = events[k]
    local id = redis.call('XADD', KEYS[1], '*', 'event', event.payload)
    local version = redis.call('INCR', event.version_key)
    redis.call('EXPIRE', event.version_key, version_ttl)
    redis.call('SET', event.dedupe_key, id, 'EX', dedupe_ttl)
    if event.claim_key then
      redis.call('SET', event.claim_key, event.claim_value, 'EX', dedupe_ttl)
    end
    if event.side_writes then
      for _, write in ipairs(event.side_writes) do redis.call(unpack(write)) end
    end
    results[k] = {id, 0, version}
  end
end

-- An event repeating an earlier one of this call answers with that event's entry id.
for k = 1, count do
  if type(results[k]) == 'number' then
    results[k] = {results[results[k]][1], 1, 0}
  end
end
return results
