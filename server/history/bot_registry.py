"""The bot registry in Redis (publishers/registry.py) copied into the SQL ``bots`` table.

Two things only Redis knows reach SQL this way:

* **Stable ids.** ``sp:bot_ids`` gives each bot its id once, when it first publishes. A bot
  the writer saw first (from its events) got a provisional id from the database; the copy
  moves it to its registry id (and moves aside a row that sat on that id), so ids agree in
  every database that records the same bus, whatever order recorders met the bots in.
* **Statuses without a symbol.** A bot that says ``active`` when it starts, before its first
  signal, has no symbol to publish the status on; the registry (``sp:bots``) holds it, and
  the copy makes the bot a row with that status, so ``active_only`` filters find it.

Everything read from Redis is hostile: an id that is not a positive 32-bit integer, JSON that
does not parse or a field of the wrong type drops that entry (counted in :class:`SyncResult`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from publishers import keys
from publishers.checks import MAX_NAME_LENGTH
from publishers.events import STATUSES
from publishers.registry import parse_bot_id
from server.history.models import BotRow
from server.logs import RateLimitedLog

_SETVAL: Final = (
    "SELECT setval(pg_get_serial_sequence('bots', 'id'), GREATEST((SELECT MAX(id) FROM bots), 1))"
)
#: How often a recorder copies the registry (a bot's first status shows in SQL within this).
BOTS_EVERY_S: Final = 1.0
#: Statuses older than this many ms after the epoch are refused as garbage (2001-09-09).
_MIN_TS: Final = 1_000_000_000_000


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """A bot's last status as the registry holds it."""

    strategy: str
    status: str
    equity: float | None
    ts: int


@dataclass(slots=True)
class SyncResult:
    """What one copy did (for logs and tests)."""

    moved: int = 0
    inserted: int = 0
    statuses: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and value.isprintable():
        return value
    return None


def parse_ids(raw: Mapping[Any, Any], result: SyncResult) -> dict[str, int]:
    """``HGETALL sp:bot_ids`` as name -> id; bad names, bad ids and duplicate ids are dropped."""
    ids: dict[str, int] = {}
    for raw_name, raw_id in raw.items():
        name, bot_id = _text(raw_name), parse_bot_id(raw_id)
        if name is None or bot_id is None:
            result.dropped["id"] = result.dropped.get("id", 0) + 1
            continue
        ids[name] = bot_id
    owners: dict[int, list[str]] = {}
    for name, bot_id in ids.items():
        owners.setdefault(bot_id, []).append(name)
    for names in owners.values():
        if len(names) > 1:  # an id given twice (a forged hash): nobody gets it
            for name in names:
                del ids[name]
            result.dropped["duplicate id"] = result.dropped.get("duplicate id", 0) + len(names)
    return ids


def _status(raw: Any) -> RegistryStatus | None:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(raw, str) or len(raw) > 4096:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    strategy = _text(entry.get("strategy"))
    status, equity, ts = (entry.get(k) for k in ("status", "equity", "ts"))
    if strategy is None or status not in STATUSES:
        return None
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < _MIN_TS:
        return None
    if equity is not None and (
        isinstance(equity, bool) or not isinstance(equity, int | float) or not math.isfinite(equity)
    ):
        return None
    return RegistryStatus(strategy=strategy, status=status, equity=equity, ts=ts)


def parse_statuses(raw: Mapping[Any, Any], result: SyncResult) -> dict[str, RegistryStatus]:
    """``HGETALL sp:bots`` as name -> last status; entries that do not parse are dropped."""
    statuses: dict[str, RegistryStatus] = {}
    for raw_name, raw_entry in raw.items():
        name, entry = _text(raw_name), _status(raw_entry)
        if name is None or entry is None:
            result.dropped["status"] = result.dropped.get("status", 0) + 1
            continue
        statuses[name] = entry
    return statuses


async def read_registry(client: Any) -> tuple[dict[str, int], dict[str, RegistryStatus], SyncResult]:
    """The registry from Redis (a ``redis.asyncio`` client), parsed; a key of the wrong type reads
    as empty (counted) instead of failing."""
    result = SyncResult()
    raws: list[Mapping[Any, Any]] = []
    for key in (keys.BOT_IDS_KEY, keys.BOTS_KEY):
        try:
            raws.append(await client.hgetall(key))
        except redis.ResponseError:  # WRONGTYPE: nothing usable there
            result.dropped[key] = result.dropped.get(key, 0) + 1
            raws.append({})
    return parse_ids(raws[0], result), parse_statuses(raws[1], result), result


async def apply_registry(
    connection: AsyncConnection,
    ids: Mapping[str, int],
    statuses: Mapping[str, RegistryStatus],
    result: SyncResult | None = None,
) -> SyncResult:
    """Make the ``bots`` table agree with the registry (in the caller's transaction)."""
    result = result or SyncResult()
    columns = select(BotRow.id, BotRow.name, BotRow.last_seen, BotRow.last_status_ts)
    rows = {r.name: r for r in (await connection.execute(columns)).all()}
    moves = {name: ids[name] for name, row in rows.items() if name in ids and row.id != ids[name]}
    # New rows: bots the registry knows a status of and SQL has not seen yet.
    new = {name: ids[name] for name in statuses if name not in rows and name in ids}
    targets = set(moves.values()) | set(new.values())
    if targets:
        top = max([*(r.id for r in rows.values()), *ids.values()])
        for name in moves:  # out of the way first: every id they held is free after this
            await connection.execute(update(BotRow).where(BotRow.name == name).values(id=-rows[name].id))
        for name, row in rows.items():
            if name not in moves and row.id in targets:  # an unregistered bot sits on a wanted id
                top += 1
                await connection.execute(update(BotRow).where(BotRow.name == name).values(id=top))
        for name, bot_id in moves.items():
            await connection.execute(update(BotRow).where(BotRow.name == name).values(id=bot_id))
        upsert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        for name, bot_id in new.items():
            values = _new_row(name, bot_id, statuses[name])
            await connection.execute(upsert(BotRow).values(**values).on_conflict_do_nothing())
        result.moved += len(moves)
        result.inserted += len(new)
    # Statuses newer than SQL's (a status published without a symbol reaches SQL only so).
    for name, entry in statuses.items():
        known = rows.get(name)
        if known is None or (known.last_status_ts is not None and known.last_status_ts >= entry.ts):
            continue
        await connection.execute(
            update(BotRow)
            .where(BotRow.name == name)
            .values(
                status=entry.status,
                equity=entry.equity,
                strategy=entry.strategy,
                last_status_ts=entry.ts,
                last_seen=max(known.last_seen, entry.ts),
            )
        )
        result.statuses += 1
    if connection.dialect.name == "postgresql" and targets:
        # Explicit ids do not advance the serial: the writer's next new bot must not collide.
        await connection.execute(text(_SETVAL))
    return result


def _new_row(name: str, bot_id: int, entry: RegistryStatus) -> dict[str, Any]:
    return {
        "id": bot_id,
        "name": name,
        "strategy": entry.strategy,
        "status": entry.status,
        "equity": entry.equity,
        "first_seen": entry.ts,
        "last_seen": entry.ts,
        "last_status_ts": entry.ts,
    }


async def sync_bots(client: Any, engine: AsyncEngine, warnings: RateLimitedLog) -> SyncResult | None:
    """The recorder's periodic copy: failures are logged (rate-limited) and never stop recording;
    the next copy, a second later, tries again."""
    try:
        result = await sync_registry(client, engine)
    except (redis.RedisError, OSError, SQLAlchemyError) as exc:
        warnings.warning("bot registry", "recorder: cannot copy the bot registry into SQL", error=str(exc))
        return None
    if result.dropped:
        warnings.warning("bot registry entries", "recorder: bot registry entries dropped", **result.dropped)
    return result


async def sync_registry(client: Any, engine: AsyncEngine) -> SyncResult:
    """Read the registry from Redis and copy it into SQL in one transaction."""
    ids, statuses, result = await read_registry(client)
    if not ids and not statuses:
        return result
    async with engine.begin() as connection:
        return await apply_registry(connection, ids, statuses, result)
