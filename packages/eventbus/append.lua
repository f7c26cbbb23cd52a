-- Atomically append a batch of events to one partition stream.
--
-- KEYS[1]             the partition's stream
-- KEYS[2i], KEYS[2i+1] event i's dedupe key (source+id) and its aggregate's version key
-- ARGV[1]             seconds a dedupe key is kept
-- ARGV[2]             seconds an aggregate's version is kept after its last append
-- ARGV[2+2i-1]        event i's expected aggregate version, or "" for no check
-- ARGV[2+2i]          event i's payload (CloudEvents structured JSON)
--
-- Returns, per event, {stream entry id, 1 if it was a duplicate else 0, aggregate version}.
-- All checks run before any write, so a batch is all-or-nothing: a version conflict
-- returns an error naming the event and the current version, and writes nothing.
local count = (#KEYS - 1) / 2
local dedupe_ttl = tonumber(ARGV[1])
local version_ttl = tonumber(ARGV[2])

local versions = {}     -- version key -> version after the events checked so far
local first_in_batch = {} -- dedupe key -> index of its first event in this batch
local results = {}

for i = 1, count do
  local dedupe_key = KEYS[2 * i]
  local version_key = KEYS[2 * i + 1]
  local existing = redis.call('GET', dedupe_key)
  if existing then
    results[i] = {existing, 1, 0}
  elseif first_in_batch[dedupe_key] then
    results[i] = first_in_batch[dedupe_key]
  else
    local current = versions[version_key]
    if current == nil then
      current = tonumber(redis.call('GET', version_key) or '0')
    end
    local expected = ARGV[2 + 2 * i - 1]
    if expected ~= '' and tonumber(expected) ~= current then
      return redis.error_reply('VERSION_CONFLICT ' .. i .. ' ' .. current)
    end
    versions[version_key] = current + 1
    first_in_batch[dedupe_key] = i
  end
end

for i = 1, count do
  if results[i] == nil then
    local dedupe_key = KEYS[2 * i]
    local version_key = KEYS[2 * i + 1]
    local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[2 + 2 * i])
    local version = redis.call('INCR', version_key)
    redis.call('EXPIRE', version_key, version_ttl)
    redis.call('SET', dedupe_key, id, 'EX', dedupe_ttl)
    results[i] = {id, 0, version}
  end
end

-- A later event with the same dedupe key as an earlier one in this batch answers like it.
for i = 1, count do
  if type(results[i]) == 'number' then
    local first = results[results[i]]
    results[i] = {first[1], 1, 0}
  end
end
return results
