"""Test data for analytics and charts: hand-written trades, demo-floor history, a fresh schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from server.cli.demo import TradingFloor, seed_history
from server.history.engine import create_engine
from server.history.models import Base
from server.history.writer import insert_events

DAY_MS = 86_400_000
#: 2024-11-20 00:00:00 UTC: a midnight, so fixtures can say "day 0, 23:30".
DAY0 = 1_732_060_800_000
HOUR_MS = 3_600_000


def trade(
    ts: int,
    bot: str,
    action: str,
    side: str,
    price: float,
    qty: float,
    position: str,
    *,
    strategy: str = "momentum",
    symbol: str = "BTCUSDT",
    fee: float = 0.0,
    pnl: float | None = None,
) -> dict[str, Any]:
    return {
        "kind": "trade",
        "symbol": symbol,
        "ts": ts,
        "bot": bot,
        "strategy": strategy,
        "side": side,
        "action": action,
        "price": price,
        "qty": qty,
        "fee": fee,
        "pnl": pnl,
        "position": position,
        "meta": {},
    }


def signal(
    ts: int,
    bot: str,
    type_: str,
    price: float,
    confidence: float,
    *,
    strategy: str = "momentum",
    symbol: str = "BTCUSDT",
) -> dict[str, Any]:
    return {
        "kind": "signal",
        "symbol": symbol,
        "ts": ts,
        "bot": bot,
        "strategy": strategy,
        "type": type_,
        "price": price,
        "confidence": confidence,
        "meta": {},
    }


def status(
    ts: int,
    bot: str,
    status_: str = "active",
    equity: float | None = None,
    *,
    strategy: str = "momentum",
    symbol: str = "BTCUSDT",
) -> dict[str, Any]:
    return {
        "kind": "bot",
        "symbol": symbol,
        "ts": ts,
        "bot": bot,
        "strategy": strategy,
        "status": status_,
        "equity": equity,
        "meta": {},
    }


def candle(ts: int, close: float, *, symbol: str = "BTCUSDT", tf: str = "1m") -> dict[str, Any]:
    return {
        "kind": "candle",
        "symbol": symbol,
        "ts": ts,
        "tf": tf,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 1.0,
    }


def with_seqs(events: Iterable[Mapping[str, Any]], epoch: str = "e1") -> list[tuple[str, dict[str, Any]]]:
    """(epoch, event) pairs with contiguous seqs per symbol, in the given order."""
    seqs: dict[str, int] = {}
    pairs = []
    for event in events:
        seqs[event["symbol"]] = seqs.get(event["symbol"], 0) + 1
        pairs.append((epoch, {"seq": seqs[event["symbol"]], **event}))
    return pairs


async def fresh_store(url: str, events: Iterable[Mapping[str, Any]] = ()) -> None:
    """Drop and recreate every table, then insert ``events`` (seqs assigned per symbol)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.run_sync(Base.metadata.create_all)
        pairs = with_seqs(events)
        if pairs:
            async with engine.begin() as connection:
                await insert_events(connection, pairs)
    finally:
        await engine.dispose()


def fresh_store_sync(url: str, events: Iterable[Mapping[str, Any]] = ()) -> None:
    asyncio.run(fresh_store(url, list(events)))


def demo_events(
    *, end_ms: int, hours: float = 2.0, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), seed: int = 3
) -> list[dict[str, Any]]:
    """Realistic events from the demo trading floor (momentum, ema_crossover, mean_reversion bots)."""
    floor = TradingFloor(list(symbols), seed=seed)
    return [event.to_dict() for event in seed_history(floor, end_ms=end_ms, hours=hours)]
