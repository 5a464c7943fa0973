"""The ``bots`` table: one row per bot name, kept current from the events recorded.

A batch's events are folded per bot (first and last seen, the newest status) and written
with one merged upsert for all of them (``INSERT .. ON CONFLICT (name) DO UPDATE`` keeping
the earliest first_seen, the latest last_seen and the newest status, so recorders writing
the same bot at once agree). With a :class:`BotCache` (the recorder keeps one) a bot is
written only when its row changes: a new bot, an earlier first_seen or a newer status at
once; a later last_seen alone at most once per ``last_seen_every_s`` (the rest is written
by :meth:`BotCache.due`, so the row is never more than that behind).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from sqlalchemy import Table, and_, case, func, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.models import BotRow

_BOTS: Final = cast(Table, BotRow.__table__)
_STATUS: Final = ("status", "equity", "last_status_ts", "strategy")


def fold(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bot named by the events: its row as these events alone would make it."""
    bots: dict[str, dict[str, Any]] = {}
    for event in events:
        name = event.get("bot")
        if not name:
            continue
        ts = int(event["ts"])
        entry = bots.get(name)
        if entry is None:
            entry = bots[name] = {
                "name": name,
                "strategy": event.get("strategy", ""),
                "first_seen": ts,
                "last_seen": ts,
                "status": None,
                "equity": None,
                "last_status_ts": None,
            }
        entry["first_seen"] = min(entry["first_seen"], ts)
        entry["last_seen"] = max(entry["last_seen"], ts)
        if event["kind"] == "bot" and (entry["last_status_ts"] is None or ts >= entry["last_status_ts"]):
            entry.update(
                status=event["status"],
                equity=event.get("equity"),
                last_status_ts=ts,
                strategy=event["strategy"],
            )
    return bots


def merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two views of a bot's row as one (the rule the upsert applies in SQL)."""
    out = dict(old)
    out["first_seen"] = min(old["first_seen"], new["first_seen"])
    out["last_seen"] = max(old["last_seen"], new["last_seen"])
    if new["last_status_ts"] is not None and (
        old["last_status_ts"] is None or new["last_status_ts"] >= old["last_status_ts"]
    ):
        out.update({key: new[key] for key in _STATUS})
    return out


class BotCache:
    """What a recorder has seen and written of each bot, so unchanged rows are not written again.

    ``remember`` only after the COMMIT: a transaction rolled back leaves the bot dirty.
    Holds at most ``max_bots`` bots (clean ones are forgotten first: a forgotten bot is
    simply written again the next time it is seen).
    """

    def __init__(
        self,
        *,
        last_seen_every_s: float = 1.0,
        max_bots: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.last_seen_every_s = last_seen_every_s
        self.max_bots = max_bots
        self._clock = clock
        self._seen: dict[str, dict[str, Any]] = {}
        self._written: dict[str, tuple[dict[str, Any], float]] = {}
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._seen)

    def to_write(self, batch: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Note ``batch``'s bots (see :func:`fold`); the rows that must be written now, theirs
        and any held back until now (:meth:`due`)."""
        for name, entry in batch.items():
            seen = self._seen.get(name)
            self._seen[name] = merge(seen, entry) if seen is not None else dict(entry)
        rows = self.due()
        self.skipped += len(batch) - sum(1 for row in rows if row["name"] in batch)
        self._bound()
        return rows

    def due(self) -> list[dict[str, Any]]:
        """Rows that changed since written (a later last_seen alone: once it is
        ``last_seen_every_s`` since the last write)."""
        return [dict(self._seen[name]) for name in list(self._seen) if self._needs_write(name)]

    def dirty(self) -> bool:
        """Some row seen is not written as it is (held back or not committed)."""
        return any(self._written.get(n, ({}, 0.0))[0] != row for n, row in self._seen.items())

    def remember(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """These rows are committed."""
        now = self._clock()
        for row in rows:
            self._written[row["name"]] = (dict(row), now)

    def _needs_write(self, name: str) -> bool:
        seen = self._seen[name]
        written = self._written.get(name)
        if written is None:
            return True
        row, at = written
        if seen["first_seen"] < row["first_seen"] or any(seen[k] != row[k] for k in _STATUS):
            return True
        return seen["last_seen"] > row["last_seen"] and self._clock() - at >= self.last_seen_every_s

    def _bound(self) -> None:
        if len(self._seen) <= self.max_bots:
            return
        for name in list(self._seen):
            if len(self._seen) <= self.max_bots // 2:
                break
            written = self._written.get(name)
            if written is not None and written[0] == self._seen[name]:
                del self._seen[name], self._written[name]


async def upsert_bots(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Write the rows in one statement (executemany), merged with what the table holds."""
    if not rows:
        return
    postgres = connection.dialect.name == "postgresql"
    insert = (pg_insert if postgres else sqlite_insert)(_BOTS)
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    table, excluded = _BOTS.c, insert.excluded
    newer = and_(
        excluded.last_status_ts.is_not(None),
        or_(table.last_status_ts.is_(None), excluded.last_status_ts >= table.last_status_ts),
    )
    statement = insert.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "first_seen": least(table.first_seen, excluded.first_seen),
            "last_seen": greatest(table.last_seen, excluded.last_seen),
            **{key: case((newer, excluded[key]), else_=table[key]) for key in _STATUS},
        },
    )
    # In the order the events named them: new bots get their ids in order of appearance.
    await connection.execute(statement, rows)
