"""The recorder's atomic steps on one symbol's log (a Lua script, so each step sees one epoch).

``read`` returns the symbol's epoch together with the entries it hands to the consumer,
so an entry is never stored under the epoch that replaced it; it also re-creates the
consumer group when a new epoch DELeted the log (NOGROUP). ``ack`` acknowledges only if
the epoch is still the one the entries were read under (after a new epoch the same ids
name other events, which another recorder may hold uncommitted), then trims the log
behind the lowest unacknowledged seq: everything below it is committed in SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from publishers import keys

RECORDER_SCRIPT: Final = (
    keys.lua_names()
    + r"""
-- The names (META_EPOCH, LOG_FIELD ...) are locals from publishers/keys.py (keys.lua_names).
-- KEYS[1] meta hash  KEYS[2] log stream
-- ARGV[1] 'read' | 'ack'   ARGV[2] group   ARGV[3] consumer
-- read: ARGV[4] 'new' | 'own' | 'claim'   ARGV[5] count   ARGV[6] claim min idle ms   ARGV[7] claim cursor
--   -> {epoch or '', group's last delivered id before the read or '', next claim cursor or '',
--       entries dropped as forged, id1, json1, id2, json2, ...}
--      (json '' = the entry is gone from the log; ' ' = it has no event)
--   An entry above the meta seq was not written by the publish script (which takes the seq
--   first): it is acknowledged and left out, and the group's cursor is put back to the meta
--   seq, so the events published after it are still delivered and never trimmed unrecorded.
-- ack:  ARGV[4] epoch of the ids   ARGV[5] '1' to trim   ARGV[6..] ids
--   -> {acked, committed watermark (-1 = no group), meta seq}
local meta, log = KEYS[1], KEYS[2]
local op, group, consumer = ARGV[1], ARGV[2], ARGV[3]

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function last_delivered()
  local groups = redis.pcall('XINFO', 'GROUPS', log)
  if groups.err then return nil end
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then return last end
  end
  return nil
end

local epoch = redis.call('HGET', meta, META_EPOCH)

if op == 'read' then
  if not epoch then return {'', '', ''} end
  if redis.call('EXISTS', log) == 0 then return {epoch, '', ''} end
  local last = last_delivered()
  if not last then
    redis.call('XGROUP', 'CREATE', log, group, '0')
    last = '0-0'
  end
  local out = {epoch, last, '', 0}
  local entries
  if ARGV[4] == 'claim' then
    local reply = redis.call('XAUTOCLAIM', log, group, consumer, ARGV[6], ARGV[7], 'COUNT', ARGV[5])
    out[3] = reply[1]
    entries = reply[2]
  else
    local from = '>'
    if ARGV[4] == 'own' then from = '0' end
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', ARGV[5], 'STREAMS', log, from)
    entries = {}
    if reply then entries = reply[1][2] end
  end
  local meta_seq = tonumber(redis.call('HGET', meta, META_SEQ))
  local forged = {}
  local kept = {}
  for _, entry in ipairs(entries) do
    if meta_seq and seq_of(entry[1]) > meta_seq then
      forged[#forged + 1] = entry[1]
    else
      kept[#kept + 1] = entry
    end
  end
  if #forged > 0 then
    redis.call('XACK', log, group, unpack(forged))
    out[4] = #forged
  end
  if meta_seq and ARGV[4] ~= 'claim' then
    local now_last = last_delivered()
    if now_last and seq_of(now_last) > meta_seq then
      redis.call('XGROUP', 'SETID', log, group, string.format('%d-0', meta_seq))
    end
  end
  entries = kept
  for _, entry in ipairs(entries) do
    local json = ''
    local fields = entry[2]
    if fields then
      json = ' '  -- an entry without an event field is invalid (a void seq), not gone
      for i = 1, #fields, 2 do
        if fields[i] == LOG_FIELD then json = fields[i + 1] end
      end
    end
    out[#out + 1] = entry[1]
    out[#out + 1] = json
  end
  return out
end

-- ack
local acked = 0
if epoch and epoch == ARGV[4] then
  local i = 6
  while i <= #ARGV do
    local chunk = {}
    for j = i, math.min(i + 499, #ARGV) do chunk[#chunk + 1] = ARGV[j] end
    local n = redis.pcall('XACK', log, group, unpack(chunk))
    if type(n) == 'number' then acked = acked + n end
    i = i + 500
  end
end
local seq = tonumber(redis.call('HGET', meta, META_SEQ) or '0')
local mark = -1
local last = last_delivered()
if last then
  local pending = redis.call('XPENDING', log, group)
  local lowest
  if pending[1] > 0 then lowest = seq_of(pending[2]) else lowest = seq_of(last) + 1 end
  -- Never past the meta seq: an id above it was not written by the publish script.
  if lowest > seq + 1 then lowest = seq + 1 end
  mark = lowest - 1
  if ARGV[5] == '1' and lowest > 1 then
    redis.call('XTRIM', log, 'MINID', string.format('%d-0', lowest))
  end
end
return {acked, mark, seq}
"""
)
RECORDER_SHA: Final = hashlib.sha1(RECORDER_SCRIPT.encode()).hexdigest()

ReadMode = Literal["new", "own", "claim"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry: its seq and its event JSON ('' when the entry was trimmed before it was read)."""

    seq: int
    json: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    epoch: str | None
    #: The group's last delivered seq before this read (None: the log does not exist).
    last_delivered: int | None
    #: For claims: where the next XAUTOCLAIM starts ("0-0" = the scan is complete).
    cursor: str | None
    entries: list[LogEntry] = field(default_factory=list)
    #: Entries above the meta seq (not written by the publish script): acknowledged, left out.
    forged: int = 0


@dataclass(frozen=True, slots=True)
class AckResult:
    acked: int
    #: Every seq up to this one is acknowledged, hence committed (-1: the group does not exist).
    committed: int
    meta_seq: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seq(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def read_args(
    symbol: str, mode: ReadMode, count: int, consumer: str, *, min_idle_ms: int = 0, cursor: str = "0-0"
) -> list[Any]:
    """EVALSHA arguments of a read."""
    return [
        2,
        keys.meta_key(symbol),
        keys.log_key(symbol),
        "read",
        keys.RECORDER_GROUP,
        consumer,
        mode,
        count,
        min_idle_ms,
        cursor,
    ]


def ack_args(symbol: str, consumer: str, epoch: str, seqs: Sequence[int], *, trim: bool) -> list[Any]:
    """EVALSHA arguments of an ack (no seqs: only refresh the watermark and trim)."""
    return [
        2,
        keys.meta_key(symbol),
        keys.log_key(symbol),
        "ack",
        keys.RECORDER_GROUP,
        consumer,
        epoch,
        "1" if trim else "0",
        *(f"{seq}-0" for seq in seqs),
    ]


def _event_text(value: Any) -> str:
    # Not UTF-8: an invalid event (a void seq), never an error and never '' (which means gone).
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return "\ufffd"
    return str(value)


def parse_read(raw: Sequence[Any]) -> ReadResult:
    epoch, last, cursor = (_text(v) for v in raw[:3])
    forged = int(raw[3]) if len(raw) > 3 else 0
    entries = [LogEntry(_seq(_text(raw[i])), _event_text(raw[i + 1])) for i in range(4, len(raw), 2)]
    return ReadResult(
        epoch=epoch or None,
        last_delivered=_seq(last) if last else None,
        cursor=cursor or None,
        entries=entries,
        forged=forged,
    )


def parse_ack(raw: Sequence[Any]) -> AckResult:
    return AckResult(acked=int(raw[0]), committed=int(raw[1]), meta_seq=int(raw[2]))


async def run_scripts(client: aioredis.Redis, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """EVALSHA each call in one pipeline (loading the script once if Redis forgot it).

    A call Redis answered with an error (a key of the wrong type, say) gets its
    ``redis.ResponseError`` as its reply, so one symbol's keys cannot fail the others';
    a lost connection raises.
    """
    cluster: object = client  # async_client() types a cluster as a plain client
    if isinstance(cluster, RedisCluster):
        return await _run_scripts_cluster(cluster, calls)
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        async with client.pipeline(transaction=False) as pipe:
            for index in todo:
                pipe.evalsha(RECORDER_SHA, *calls[index])
            results: list[Any] = await pipe.execute(raise_on_error=False)
        missing = []
        for index, result in zip(todo, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                missing.append(index)  # this call did nothing: send it again
            replies[index] = result
        if not missing:
            for reply in replies:
                if isinstance(reply, BaseException) and not isinstance(reply, redis.ResponseError):
                    raise reply
            return replies
        # Redis restarted (or SCRIPT FLUSH) and forgot the script.
        await client.script_load(RECORDER_SCRIPT)
        todo = missing
    raise redis.exceptions.NoScriptError("Redis keeps forgetting the recorder script")


async def _run_scripts_cluster(client: RedisCluster, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """On a cluster scripts cannot be pipelined: one EVALSHA per call, on its symbol's node, side by side."""

    async def one(call: Sequence[Any]) -> Any:
        try:
            try:
                return await client.evalsha(RECORDER_SHA, *call)
            except redis.exceptions.NoScriptError:
                await client.script_load(RECORDER_SCRIPT)
                return await client.evalsha(RECORDER_SHA, *call)
        except redis.ResponseError as exc:
            return exc  # this symbol's keys: the others go on

    return list(await asyncio.gather(*(one(call) for call in calls)))


# -- plain reads and upkeep (the recorder maps their errors) --------------------------------


async def meta_seqs(client: aioredis.Redis, names: Sequence[str]) -> dict[str, int]:
    """The meta seq of each symbol that has a readable one (a bad meta is left out, not an error)."""
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(keys.meta_key(name), keys.META_SEQ)
        replies = await pipe.execute(raise_on_error=False)
    out = {}
    for name, reply in zip(names, replies, strict=True):
        text = reply.decode("ascii", "replace") if isinstance(reply, bytes) else ""
        if text.isascii() and text.isdigit():
            out[name] = int(text)
    return out


async def log_types(client: aioredis.Redis, names: Sequence[str]) -> dict[str, str]:
    """The Redis type of each symbol's log key ("stream", "none", or what wrongly sits there)."""
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(keys.log_key(name))
        replies = await pipe.execute(raise_on_error=False)
    return {
        name: _text(kind)
        for name, kind in zip(names, replies, strict=True)
        if not isinstance(kind, BaseException)  # TYPE refused (an ACL): unknown, not an outage
    }


async def forget_dead_consumers(client: aioredis.Redis, symbol: str, me: str, idle_ms: int) -> None:
    """Delete the group's consumers other than ``me`` with nothing pending and idle past ``idle_ms``."""
    try:
        consumers = await client.xinfo_consumers(keys.log_key(symbol), keys.RECORDER_GROUP)
        for info in consumers:
            name = info.get("name", b"")  # passed back as read: it may not be text
            if name not in (me, me.encode()) and not info.get("pending") and info.get("idle", 0) > idle_ms:
                await client.xgroup_delconsumer(keys.log_key(symbol), keys.RECORDER_GROUP, name)
    except redis.ResponseError:
        return  # no log or no group yet (or not a stream: the reads report that)
