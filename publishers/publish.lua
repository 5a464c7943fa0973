-- signalpush publish script: one atomic step per call, for one symbol.
-- KEYS[1] meta hash   sp:{SYM}:meta   (epoch, seq, p:<publisher> dedup marks)
-- KEYS[2] log stream  sp:{SYM}:log    (entry id <seq>-0, field e = event json)
-- KEYS[3] live channel sp:{SYM}:live  (message "<epoch> <seq> <publish ms> <event json>")
-- KEYS[4] optional symbol registry set (left out on a cluster: it lives in another slot)
-- ARGV[1] candidate epoch, kept only when the symbol has none
-- ARGV[2] publisher id ('' = no dedup)   ARGV[3] call number of that publisher
-- ARGV[4] log hard cap (MAXLEN ~)        ARGV[5] symbol
-- ARGV[6] PUBLISH or SPUBLISH            ARGV[7..] event bodies: the event json without its '{'
-- Returns {epoch, first seq, last seq, 1 if this call was a retry already applied}.
local meta, log, live = KEYS[1], KEYS[2], KEYS[3]
local pid, n = ARGV[2], tonumber(ARGV[3])
local epoch
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  -- A new epoch: whatever log is left belongs to a lost state, and seqs restart at 1.
  epoch = ARGV[1]
  redis.call('DEL', log)
  redis.call('HSET', meta, 'seq', 0)
else
  epoch = redis.call('HGET', meta, 'epoch')
  if pid ~= '' then
    local mark = redis.call('HGET', meta, 'p:' .. pid)
    if mark then
      local last_n, first_seq, last_seq = string.match(mark, '^(%d+) (%d+) (%d+)$')
      if tonumber(last_n) >= n then
        return {epoch, tonumber(first_seq), tonumber(last_seq), 1}
      end
    end
  end
end
local now = redis.call('TIME')
local publish_ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
local first, seq
for i = 7, #ARGV do
  seq = redis.call('HINCRBY', meta, 'seq', 1)
  first = first or seq
  local event = '{"seq":' .. seq .. ',' .. ARGV[i]
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', event)
  redis.call(ARGV[6], live, epoch .. ' ' .. seq .. ' ' .. publish_ms .. ' ' .. event)
end
if pid ~= '' then
  redis.call('HSET', meta, 'p:' .. pid, n .. ' ' .. first .. ' ' .. seq)
end
if KEYS[4] then
  redis.call('SADD', KEYS[4], ARGV[5])
end
return {epoch, first, seq, 0}
