"""Idempotent batched inserts of events (the recorder's write path)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from publishers.events import SCHEMA
from server.history.models import TABLES, BotRow, VoidRow

_COLUMNS = {kind: [c.name for c in table.columns if c.name != "id"] for kind, table in TABLES.items()}
#: Optional fields that may not be null: what a missing or null value is stored as (a meta: {}).
_DEFAULTS = {
    kind: [f for f in spec.fields if not (f.required or f.nullable)] for kind, spec in SCHEMA.items()
}


def _row(epoch: str, event: Mapping[str, Any]) -> dict[str, Any]:
    kind = event["kind"]
    row = {name: event.get(name) for name in _COLUMNS[kind]}
    row["epoch"] = epoch
    for spec in _DEFAULTS[kind]:
        if row[spec.name] is None:
            row[spec.name] = spec.default_value()
    return row


async def insert_events(connection: AsyncConnection, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """Insert (epoch, event) pairs; rows already present (same symbol, epoch, seq) are skipped.

    Also keeps the ``bots`` table current. Returns the number of events offered.
    Runs inside the caller's transaction (commit is the caller's job).
    """
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    bots: dict[str, dict[str, Any]] = {}
    count = 0
    for epoch, event in events:
        count += 1
        by_kind[event["kind"]].append(_row(epoch, event))
        bot = event.get("bot")
        if bot:
            _note_bot(bots, event)
    dialect = connection.dialect.name
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    for kind, rows in by_kind.items():
        table = TABLES[kind]
        # Chunks keep each statement under SQLite's bound-parameter limit.
        for start in range(0, len(rows), 500):
            statement = upsert(table).on_conflict_do_nothing(index_elements=["symbol", "epoch", "seq"])
            await connection.execute(statement, rows[start : start + 500])
    if bots:
        await _upsert_bots(connection, bots)
    return count


def _note_bot(bots: dict[str, dict[str, Any]], event: Mapping[str, Any]) -> None:
    name = event["bot"]
    ts = int(event["ts"])
    entry = bots.setdefault(
        name,
        {
            "name": name,
            "strategy": event.get("strategy", ""),
            "first_seen": ts,
            "last_seen": ts,
            "status": None,
            "equity": None,
            "last_status_ts": None,
        },
    )
    entry["first_seen"] = min(entry["first_seen"], ts)
    entry["last_seen"] = max(entry["last_seen"], ts)
    if event["kind"] == "bot" and (entry["last_status_ts"] is None or ts >= entry["last_status_ts"]):
        entry.update(
            status=event["status"], equity=event.get("equity"), last_status_ts=ts, strategy=event["strategy"]
        )


async def _upsert_bots(connection: AsyncConnection, bots: dict[str, dict[str, Any]]) -> None:
    upsert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    existing = {
        row.name: row
        for row in (await connection.execute(select(BotRow).where(BotRow.name.in_(list(bots))))).all()
    }
    for name, entry in bots.items():
        old = existing.get(name)
        if old is None:
            # Another recorder may insert the same new bot at once: the loser's row is skipped.
            await connection.execute(
                upsert(BotRow).values(**entry).on_conflict_do_nothing(index_elements=["name"])
            )
            continue
        values: dict[str, Any] = {
            "first_seen": min(old.first_seen, entry["first_seen"]),
            "last_seen": max(old.last_seen, entry["last_seen"]),
        }
        if entry["last_status_ts"] is not None and (
            old.last_status_ts is None or entry["last_status_ts"] >= old.last_status_ts
        ):
            values.update(
                status=entry["status"],
                equity=entry["equity"],
                last_status_ts=entry["last_status_ts"],
                strategy=entry["strategy"],
            )
        await connection.execute(update(BotRow).where(BotRow.name == name).values(**values))


async def insert_voids(connection: AsyncConnection, voids: Iterable[tuple[str, str, int, str]]) -> None:
    """Insert (symbol, epoch, seq, reason) void seqs; ones already present are skipped."""
    rows = [{"symbol": s, "epoch": e, "seq": q, "reason": r} for s, e, q, r in voids]
    upsert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 500):
        statement = upsert(VoidRow).on_conflict_do_nothing(index_elements=["symbol", "epoch", "seq"])
        await connection.execute(statement, rows[start : start + 500])


async def commit_batches(engine: AsyncEngine, batches: Sequence[Any]) -> int | None:
    """Insert the events and void seqs of the recorder's batches in one transaction and COMMIT.

    Returns how many events were offered (None: nothing to write). A claim and a re-read
    may hand the same entry over twice in one round: each is written once.
    """
    unique = {(b.symbol, b.epoch, e["seq"]): (b.epoch, e) for b in batches for e in b.events}
    pairs = list(unique.values())
    voids = {(b.symbol, b.epoch, seq, reason) for b in batches for seq, reason in b.voids}
    if not pairs and not voids:
        return None
    async with engine.begin() as connection:
        await insert_events(connection, pairs)
        if voids:
            await insert_voids(connection, voids)
    return len(pairs)


async def commit_each_symbol(
    engine: AsyncEngine, batches: Sequence[Any], errors: tuple[type[BaseException], ...]
) -> tuple[list[Any], dict[str, BaseException]]:
    """Commit each symbol's batches in a transaction of their own (after the one for all failed):
    returns the batches committed and, per symbol, the error that refused the others."""
    committed: list[Any] = []
    refused: dict[str, BaseException] = {}
    for symbol in sorted({b.symbol for b in batches}):
        mine = [b for b in batches if b.symbol == symbol]
        try:
            await commit_batches(engine, mine)
        except errors as exc:
            refused[symbol] = exc
            continue
        committed += mine
    return committed, refused
