"""``bench hostile``'s store: the 30-day history the pulls ask for, and what SQL holds of the honest feed."""

from __future__ import annotations

import secrets

from sqlalchemy import text

from publishers.connection import async_client
from publishers.events import now_ms
from server.bench.backfill import Dataset, load_redis, load_sql
from server.bench.honest import HonestRecord
from server.history.engine import create_engine
from server.history.migrate import upgrade_database

_SEQS = text(
    "SELECT seq FROM signals WHERE symbol = :s UNION ALL SELECT seq FROM trades WHERE symbol = :s"
    " UNION ALL SELECT seq FROM bot_status WHERE symbol = :s"
)


async def seed_history(database_url: str, redis_url: str, symbol: str, rows: int) -> None:
    """``rows`` events of ``symbol`` over the last 30 days in SQL (the newest 1,000 in its Redis log only,
    as if the recorder were a little behind), with the schema upgraded first."""
    await upgrade_database(database_url)
    data = Dataset(symbol, secrets.token_hex(6), rows, 30.0, now_ms(), min(1000, rows // 10))
    engine = create_engine(database_url)
    client = async_client(redis_url, name="signalpush-bench")
    try:
        await load_sql(engine, data, "history")
        await load_redis(client, data)
    finally:
        await client.aclose()
        await engine.dispose()


async def sql_seqs(database_url: str, symbols: list[str]) -> dict[str, list[int]]:
    """Every seq stored per symbol (a seq stored twice appears twice)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return {
                s: [int(r[0]) for r in (await connection.execute(_SEQS, {"s": s})).all()] for s in symbols
            }
    finally:
        await engine.dispose()


async def honest_in_sql(database_url: str, record: HonestRecord, since_ns: int, up_to_ns: int) -> bool:
    """True when SQL holds every honest event published (successfully) from ``since_ns`` to ``up_to_ns``."""
    wanted = {
        symbol: {e.seq for e in events if since_ns <= e.stamp_ns <= up_to_ns}
        for symbol, events in record.events.items()
    }
    stored = await sql_seqs(database_url, list(wanted))
    return all(seqs <= set(stored[s]) for s, seqs in wanted.items())
