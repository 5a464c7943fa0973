-- signalpush publish script: one atomic step per call, for one symbol.
-- The names (PREFIX, META_EPOCH, LOG_FIELD ...) are locals that publishers/script.py puts above
-- this text, from publishers/keys.py (keys.lua_names): the script spells out no key or field name.
-- KEYS[1] meta hash   sp:{SYM}:meta   (epoch, seq, p:<publisher> dedup marks)
-- KEYS[2] log stream  sp:{SYM}:log    (entry id <seq>-0, field e = event json)
-- KEYS[3] live channel sp:{SYM}:live  (message "<epoch> <seq> <publish ms> <event json>")
-- KEYS[4] optional symbol registry set (left out on a cluster: it lives in another slot)
-- ARGV[1] candidate epoch, kept only when the symbol has none
-- ARGV[2] publisher id ('' = no dedup)   ARGV[3] call number of that publisher
-- ARGV[4] log hard cap (MAXLEN ~)        ARGV[5] symbol
-- ARGV[6] PUBLISH or SPUBLISH            ARGV[7..] event bodies: the event json without its '{'
-- Returns {epoch, first seq, last seq, 1 if this call was a retry already applied}.
-- Checks before it writes (docs/history.md, "The publish script's guards"): a refused call
-- writes nothing and burns no seq; its error starts with SIGNALPUSH and names the key.
local meta, log, live = KEYS[1], KEYS[2], KEYS[3]
local symbol, pid, n = ARGV[5], ARGV[2], tonumber(ARGV[3])

local function refuse(message)
  return redis.error_reply('SIGNALPUSH ' .. message)
end

local function is_token(value)
  return value ~= nil and #value <= 32 and string.match(value, '^[%w_.-]+$') ~= nil
end

if #symbol > 32 or not (symbol == '_alerts' or string.match(symbol, '^[%w][%w._:/-]*$')) then
  return refuse('symbol ' .. string.format('%q', symbol) .. ' is not a symbol')
end
local tag = PREFIX .. ':{' .. symbol .. '}:'
if meta ~= tag .. META_SUFFIX or log ~= tag .. LOG_SUFFIX or live ~= tag .. LIVE_SUFFIX
    or (KEYS[4] and KEYS[4] ~= SYMBOLS_KEY) then
  return refuse('the keys are not those of symbol ' .. symbol)
end
if not is_token(ARGV[1]) then
  return refuse('the candidate epoch is not a token of at most 32 letters, digits, _ . -')
end
if KEYS[4] then
  local added = redis.pcall('SADD', KEYS[4], symbol)
  if type(added) == 'table' and added.err then
    return refuse(KEYS[4] .. ' is not a set (' .. added.err .. '): DEL it; publishers register symbols again')
  end
end

local epoch
local created = redis.pcall('HSETNX', meta, META_EPOCH, ARGV[1])
if type(created) == 'table' and created.err then
  return refuse(meta .. ' is not a hash (' .. created.err .. '): DEL it to start a new epoch of ' .. symbol)
end
if created == 1 then
  -- A new epoch: whatever log is left belongs to a lost state, and seqs restart at 1.
  epoch = ARGV[1]
  redis.call('DEL', log)
  redis.call('HSET', meta, META_SEQ, 0)
else
  epoch = redis.call('HGET', meta, META_EPOCH)
  if not is_token(epoch) then
    return refuse(meta .. ' holds an epoch the script never writes: DEL it to start a new epoch of ' .. symbol)
  end
  if pid ~= '' then
    local mark = redis.call('HGET', meta, PUBLISHER_MARK .. pid)
    local last_n, first_seq, last_seq
    if mark then
      last_n, first_seq, last_seq = string.match(mark, '^(%d+) (%d+) (%d+)$')
    end
    if last_n and tonumber(last_n) >= n then
      return {epoch, tonumber(first_seq), tonumber(last_seq), 1}
    end
  end
end

local now = redis.call('TIME')
local publish_ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
local first, seq
for i = 7, #ARGV do
  seq = redis.pcall('HINCRBY', meta, META_SEQ, 1)
  if type(seq) == 'table' and seq.err then
    return refuse(meta .. ' field ' .. META_SEQ .. ' is not a whole number: DEL ' .. meta .. ' to start a new epoch of ' .. symbol)
  end
  first = first or seq
  local event = '{"seq":' .. seq .. ',' .. ARGV[i]
  local added = redis.pcall('XADD', log, 'MAXLEN', '~', ARGV[4], seq .. '-0', LOG_FIELD, event)
  if type(added) == 'table' and added.err then
    -- Only the first XADD can fail (each later id is above the one just added): undo its seq.
    redis.call('HINCRBY', meta, META_SEQ, -1)
    if string.find(added.err, 'WRONGTYPE', 1, true) then
      return refuse(log .. ' is not a stream: DEL ' .. log .. ' (nothing of it is readable)')
    end
    local top = 'an id'
    local info = redis.pcall('XINFO', 'STREAM', log)  -- only to word the error (may be denied)
    if type(info) == 'table' and not info.err then
      for j = 1, #info, 2 do
        if info[j] == 'last-generated-id' then top = 'ids up to ' .. info[j + 1] end
      end
    end
    return refuse(log .. ' already holds ' .. top .. ' (its last generated id) at or above seq ' .. seq
      .. ' (' .. added.err .. '), and ' .. meta .. ' is at seq ' .. (seq - 1) .. ': something else than '
      .. 'the publish script wrote to it. Nothing was written. Repair: XDEL ' .. log .. ' the entries above '
      .. (seq - 1) .. ', then XSETID ' .. log .. ' ' .. (seq - 1) .. '-0 (nothing is lost); or DEL ' .. log
      .. ' (its events not yet recorded are lost) or DEL ' .. meta .. ' (a new epoch of ' .. symbol .. ' starts)')
  end
  redis.call(ARGV[6], live, epoch .. ' ' .. seq .. ' ' .. publish_ms .. ' ' .. event)
end
if pid ~= '' then
  redis.call('HSET', meta, PUBLISHER_MARK .. pid, n .. ' ' .. first .. ' ' .. seq)
end
return {epoch, first, seq, 0}
