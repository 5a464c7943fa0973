"""Idempotent batched inserts of events (the recorder's write path)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from publishers.events import SCHEMA
from server.history.bots import BotCache, fold, upsert_bots
from server.history.models import TABLES, VoidRow

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
    pairs = list(events)
    await _insert_rows(connection, pairs)
    await upsert_bots(connection, list(fold(event for _, event in pairs).values()))
    return len(pairs)


async def _insert_rows(connection: AsyncConnection, pairs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """One executemany per event table (an INSERT ... ON CONFLICT DO NOTHING)."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for epoch, event in pairs:
        by_kind[event["kind"]].append(_row(epoch, event))
    upsert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    for kind, rows in by_kind.items():
        statement = upsert(TABLES[kind]).on_conflict_do_nothing(index_elements=["symbol", "epoch", "seq"])
        await connection.execute(statement, rows)


async def insert_voids(connection: AsyncConnection, voids: Iterable[tuple[str, str, int, str]]) -> None:
    """Insert (symbol, epoch, seq, reason) void seqs; ones already present are skipped."""
    rows = [{"symbol": s, "epoch": e, "seq": q, "reason": r} for s, e, q, r in voids]
    if not rows:
        return
    upsert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = upsert(VoidRow).on_conflict_do_nothing(index_elements=["symbol", "epoch", "seq"])
    await connection.execute(statement, rows)


async def commit_batches(
    engine: AsyncEngine, batches: Sequence[Any], bots: BotCache | None = None
) -> int | None:
    """Insert the events and void seqs of the recorder's batches in one transaction and COMMIT:
    one executemany per table. With ``bots``, only the bots whose row changed are written
    (and those it has due); without, every bot of the batches.

    Returns how many events were offered (None: nothing to write). A claim and a re-read
    may hand the same entry over twice in one round: each is written once.
    """
    unique = {(b.symbol, b.epoch, e["seq"]): (b.epoch, e) for b in batches for e in b.events}
    pairs = list(unique.values())
    voids = {(b.symbol, b.epoch, seq, reason) for b in batches for seq, reason in b.voids}
    folded = fold(event for _, event in pairs)
    bot_rows = list(folded.values()) if bots is None else bots.to_write(folded)
    if not pairs and not voids and not bot_rows:
        return None
    async with engine.begin() as connection:
        await _insert_rows(connection, pairs)
        await upsert_bots(connection, bot_rows)
        await insert_voids(connection, voids)
    if bots is not None:
        bots.remember(bot_rows)
    return len(pairs) if pairs or voids else None


async def commit_each_symbol(
    engine: AsyncEngine,
    batches: Sequence[Any],
    errors: tuple[type[BaseException], ...],
    bots: BotCache | None = None,
) -> tuple[list[Any], dict[str, BaseException]]:
    """Commit each symbol's batches in a transaction of their own (after the one for all failed):
    returns the batches committed and, per symbol, the error that refused the others."""
    committed: list[Any] = []
    refused: dict[str, BaseException] = {}
    for symbol in sorted({b.symbol for b in batches}):
        mine = [b for b in batches if b.symbol == symbol]
        try:
            await commit_batches(engine, mine, bots)
        except errors as exc:
            refused[symbol] = exc
            continue
        committed += mine
    return committed, refused
