"""A recorded-looking event stream for the flight recorder's tests (ts rising with seq)."""

from __future__ import annotations

import random

from publishers.events import BotStatus, Candle, Event, Signal, Trade


def stream(symbol: str, count: int, t0: int, seed: int) -> list[Event]:
    """A mixed stream whose ts rises with every event (1 s apart), as a live bot's do."""
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(count):
        ts = t0 + i * 1000
        who = {"symbol": symbol, "ts": ts, "bot": "momo-1", "strategy": "momentum"}
        price = 100 + rng.uniform(-5, 5)
        roll = rng.random()
        if roll < 0.4:
            ohlc = {"open": price, "high": price + 1, "low": price - 1, "close": price + 0.5}
            events.append(Candle(symbol=symbol, ts=ts, tf="1s", volume=1.0, **ohlc))
        elif roll < 0.7:
            events.append(
                Signal(**who, type=rng.choice(("buy", "sell")), price=price, confidence=rng.random())
            )
        elif roll < 0.9:
            events.append(
                Trade(
                    **who,
                    side="buy",
                    action="entry",
                    price=price,
                    qty=1.0,
                    fee=0.0,
                    pnl=None,
                    position=f"p{i}",
                )
            )
        else:
            events.append(BotStatus(**who, status="active", equity=10_000.0 + i))
    return events


async def forget_symbol(redis_url: str, symbol: str) -> None:
    """Remove a test symbol's keys and registration from the shared Redis: a replay test leaves
    long logs, which every later ``serve`` of the same Redis would otherwise record first."""
    from publishers import keys
    from publishers.connection import async_client

    client = async_client(redis_url)
    try:
        await client.srem(keys.SYMBOLS_KEY, symbol)
        await client.delete(keys.log_key(symbol), keys.meta_key(symbol))
    finally:
        await client.aclose()
