"""Consistent reads of a symbol's Redis log for the history: each read is one MULTI/EXEC with the meta.

All keys of a symbol share its hash slot, so the transaction is valid on a cluster too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from publishers import keys
from server.core.trust import is_epoch
from server.errors import BusError


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


def entry_text(value: Any) -> str:
    """A log entry's event field as text; '' when it is not UTF-8 (an invalid entry, never an error)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return ""
    return value if isinstance(value, str) else ""


def meta_of(symbol: str, epoch: Any, seq: Any) -> tuple[str | None, int]:
    """The (epoch, seq) of a symbol's meta hash as read; BusError if they are not what the script writes."""
    text = None if epoch is None else entry_text(epoch)
    seq_text = "0" if seq is None else entry_text(seq)
    if (text is not None and not is_epoch(text)) or not (seq_text.isascii() and seq_text.isdigit()):
        raise BusError(
            f"{keys.meta_key(symbol)} holds an unusable epoch or seq (not written by the publish script)"
        )
    return text, int(seq_text)


def entries(raw: Sequence[Any]) -> list[LogEntry]:
    """Log entries of an XRANGE reply (a missing or non-UTF-8 event field gives '': invalid)."""
    out = []
    for entry_id, fields in raw:
        payload = fields.get(keys.LOG_FIELD.encode(), fields.get(keys.LOG_FIELD, b""))
        out.append(LogEntry(int(_text(entry_id).split("-", 1)[0]), entry_text(payload)))
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
    current, last = meta_of(symbol, epoch, seq)
    return Snapshot(current, last, entries(raw))


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
    if current is None or entry_text(current) != epoch:
        raise EpochMoved
    return entries(raw)
