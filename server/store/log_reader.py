"""Consistent reads of a symbol's Redis log for the history: each read is one MULTI/EXEC with the meta.

All keys of a symbol share its hash slot, so the transaction is valid on a cluster too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from publishers import keys
from publishers.errors import BusError


@dataclass(slots=True)
class LogEntry:
    seq: int
    json: str


@dataclass(slots=True)
class Snapshot:
    epoch: str | None
    seq: int
    entries: list[LogEntry]


class EpochMoved(Exception):
    """The symbol's epoch is not the one being read any more."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_event(text: str) -> dict[str, Any] | None:
    """A log entry's event (None for a malformed entry, which the recorder skips too)."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("ts"), int) else None


def entries(raw: Sequence[Any]) -> list[LogEntry]:
    out = []
    for entry_id, fields in raw:
        payload = fields.get(keys.LOG_FIELD.encode(), fields.get(keys.LOG_FIELD, b""))
        out.append(LogEntry(int(_text(entry_id).split("-", 1)[0]), _text(payload)))
    return out


async def snapshot(client: aioredis.Redis, symbol: str, start: int, count: int) -> Snapshot:
    """Epoch, last seq and the log from ``start`` (up to ``count`` entries), atomically."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.meta_key(symbol), keys.META_EPOCH, keys.META_SEQ)
            pipe.xrange(keys.log_key(symbol), min=str(start), max="+", count=count)
            (epoch, seq), raw = await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise BusError(f"cannot read {symbol}'s log from Redis: {exc}") from exc
    return Snapshot(None if epoch is None else _text(epoch), int(seq or 0), entries(raw))


async def chunk(
    client: aioredis.Redis, symbol: str, epoch: str, start: int, end: int, count: int
) -> list[LogEntry]:
    """Log entries start..end, atomically with a check that the epoch is still ``epoch``."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hget(keys.meta_key(symbol), keys.META_EPOCH)
            pipe.xrange(keys.log_key(symbol), min=str(start), max=str(end), count=count)
            current, raw = await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise BusError(f"cannot read {symbol}'s log from Redis: {exc}") from exc
    if current is None or _text(current) != epoch:
        raise EpochMoved
    return entries(raw)
