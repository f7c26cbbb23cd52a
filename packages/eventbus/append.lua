-- Atomically append events to one partition stream, in units that succeed or fail alone.
--
-- A unit is what one caller asked for (one request's events): all of a unit's events are
-- written, or none. Units of different callers share this call only to share its round trip.
--
-- KEYS[1]               the partition's stream
-- KEYS[2i], KEYS[2i+1]  event i's dedupe key (source+id) and its aggregate's version key
-- ARGV[1]               seconds a dedupe key is kept
-- ARGV[2]               seconds an aggregate's version is kept after its last append
-- ARGV[3i], ARGV[3i+1], ARGV[3i+2]
--                       event i's unit (events of a unit are adjacent), expected aggregate
--                       version ("" for no check), payload (CloudEvents structured JSON)
--
-- Returns, per event:
--   {entry id, 0, aggregate version}   written
--   {entry id of the first, 1, 0}      duplicate of an event already written (or earlier here)
--   {"", 2, current version, index}    its unit was refused: event `index` expected another version
local count = (#KEYS - 1) / 2
local dedupe_ttl = tonumber(ARGV[1])
local version_ttl = tonumber(ARGV[2])

local function unit_of(i) return ARGV[3 * i] end
local function expected_of(i) return ARGV[3 * i + 1] end
local function payload_of(i) return ARGV[3 * i + 2] end

local versions = {}   -- version key -> version after the accepted units checked so far
local first = {}      -- dedupe key -> index of the event that will write it
local results = {}

-- Check every unit before writing anything; a refused unit leaves no trace in the tables.
local i = 1
while i <= count do
  local last = i
  while last < count and unit_of(last + 1) == unit_of(i) do last = last + 1 end
  local staged_versions, staged_first = {}, {}
  local conflict, conflict_at = nil, nil
  for k = i, last do
    local dedupe_key, version_key = KEYS[2 * k], KEYS[2 * k + 1]
    local existing = redis.call('GET', dedupe_key)
    if existing then
      results[k] = {existing, 1, 0}
    elseif staged_first[dedupe_key] or first[dedupe_key] then
      results[k] = staged_first[dedupe_key] or first[dedupe_key]  -- resolved after writing
    else
      local current = staged_versions[version_key] or versions[version_key]
      if current == nil then current = tonumber(redis.call('GET', version_key) or '0') end
      local expected = expected_of(k)
      if expected ~= '' and tonumber(expected) ~= current then
        -- Report the version that exists, not one staged by this refused unit itself.
        conflict = versions[version_key] or tonumber(redis.call('GET', version_key) or '0')
        conflict_at = k
        break
      end
      staged_versions[version_key] = current + 1
      staged_first[dedupe_key] = k
    end
  end
  if conflict then
    for k = i, last do results[k] = {'', 2, conflict, conflict_at - i} end
  else
    for key, value in pairs(staged_versions) do versions[key] = value end
    for key, value in pairs(staged_first) do first[key] = value end
  end
  i = last + 1
end

for k = 1, count do
  if results[k] == nil then
    local version_key = KEYS[2 * k + 1]
    local id = redis.call('XADD', KEYS[1], '*', 'event', payload_of(k))
    local version = redis.call('INCR', version_key)
    redis.call('EXPIRE', version_key, version_ttl)
    redis.call('SET', KEYS[2 * k], id, 'EX', dedupe_ttl)
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
