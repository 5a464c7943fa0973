"""Demo bots: a simulated trading floor that makes signalpush look and behave like production.

A random-walk market per symbol (volatility regimes and the odd jump) feeds live,
updating candles; bots running momentum, ema_crossover and mean_reversion emit signals
with confidences, open and close positions (with partial exits) with realistic P&L and
fees, and report their status and equity as a heartbeat. One bot pauses now and then.

:class:`TradingFloor` is pure (no I/O): ``tick(now_ms)`` returns the events of one
step, so the same code seeds hours of history and drives the live demo.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from publishers.events import BotStatus, Candle, Event, Signal, Trade

if TYPE_CHECKING:
    from publishers.options import PublisherOptions

log = logging.getLogger(__name__)

BASE_PRICES = {"BTCUSDT": 64_000.0, "ETHUSDT": 3_200.0, "SOLUSDT": 150.0, "ADAUSDT": 0.45}
STRATEGIES = ("momentum", "ema_crossover", "mean_reversion")
_TF_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_NOTIONAL = 1_000.0
_FEE_RATE = 0.0004
_START_EQUITY = 10_000.0


def timeframe_ms(tf: str) -> int:
    return int(tf[:-1]) * _TF_UNITS_MS[tf[-1]]


@dataclass
class Market:
    """Geometric random walk with volatility regimes and rare jumps."""

    symbol: str
    price: float
    rng: random.Random
    sigma_per_s: float = 3e-4
    regime_left_s: float = 0.0
    regime: float = 1.0

    def step(self, dt_s: float) -> float:
        if self.regime_left_s <= 0:
            self.regime = self.rng.choice((0.6, 1.0, 1.0, 1.6))
            self.regime_left_s = self.rng.uniform(300, 1800)
        self.regime_left_s -= dt_s
        shock = self.rng.gauss(0.0, self.sigma_per_s * self.regime * math.sqrt(dt_s))
        if self.rng.random() < 0.0005 * dt_s:
            shock += self.rng.choice((-1, 1)) * self.rng.uniform(0.004, 0.012)
        self.price *= math.exp(shock)
        return self.price


@dataclass
class LiveCandle:
    tf: str
    span_ms: int
    open_ts: int = -1
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    volume: float = 0.0

    def update(self, ts: int, price: float, volume: float) -> Candle | None:
        """Fold a tick in; returns the candle that just closed, if this tick opened a new one."""
        bucket = ts - ts % self.span_ms
        closed = None
        if bucket != self.open_ts:
            if self.open_ts >= 0:
                closed = self.snapshot()
            self.open_ts, self.open, self.high, self.low, self.volume = bucket, price, price, price, 0.0
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += volume
        return closed

    def snapshot(self, symbol: str = "") -> Candle:
        return Candle(
            symbol=symbol or "X",
            ts=self.open_ts,
            tf=self.tf,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=round(self.volume, 6),
        )


@dataclass
class Position:
    id: str
    side: str
    price: float
    qty: float


@dataclass
class BotBook:
    """One bot's state on one symbol: indicator memory, cooldown, open position."""

    prices: deque[float] = field(default_factory=lambda: deque(maxlen=240))
    fast: float | None = None
    slow: float | None = None
    last_signal_ms: int = 0
    last_sample_ms: int = 0
    ema_spread: float | None = None
    position: Position | None = None
    realized: float = 0.0


@dataclass
class DemoBot:
    name: str
    strategy: str
    symbols: tuple[str, ...]
    pauses: bool = False
    status: str = "active"
    status_until_ms: int = 0
    books: dict[str, BotBook] = field(default_factory=dict)
    positions_opened: int = 0

    def equity(self, prices: dict[str, float]) -> float:
        total = _START_EQUITY
        for symbol, book in self.books.items():
            total += book.realized
            if book.position is not None:
                total += _unrealized(book.position, prices[symbol])
        return round(total, 2)


def _unrealized(position: Position, price: float) -> float:
    direction = 1 if position.side == "buy" else -1
    return direction * (price - position.price) * position.qty


def default_bots(symbols: Sequence[str]) -> list[DemoBot]:
    """Bots spread over the symbols so every symbol has at least two strategies on it."""
    names = [
        ("momo-1", "momentum"),
        ("ema-1", "ema_crossover"),
        ("mr-1", "mean_reversion"),
        ("momo-2", "momentum"),
    ]
    bots = []
    for index, (name, strategy) in enumerate(names):
        picked = tuple(symbols[(index + k) % len(symbols)] for k in range(min(2, len(symbols))))
        bots.append(DemoBot(name, strategy, tuple(dict.fromkeys(picked)), pauses=name == "momo-2"))
    return bots


class TradingFloor:
    """The simulated market and bots. Pure: feed it times, get events back."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        timeframe: str = "1m",
        seed: int = 7,
        prices: dict[str, float] | None = None,
        status_every_ms: int = 10_000,
    ) -> None:
        self.rng = random.Random(seed)
        self.symbols = list(symbols)
        start = prices or {}
        self.markets = {
            s: Market(
                s,
                start.get(s) or BASE_PRICES.get(s, self.rng.uniform(5, 500)),
                random.Random(self.rng.random()),
            )
            for s in self.symbols
        }
        self.candles = {s: LiveCandle(timeframe, timeframe_ms(timeframe)) for s in self.symbols}
        self.bots = default_bots(self.symbols)
        for bot in self.bots:
            bot.books = {s: BotBook() for s in bot.symbols}
        self.status_every_ms = status_every_ms
        self._last_ms: int | None = None
        self._last_status_ms = 0

    @property
    def prices(self) -> dict[str, float]:
        return {s: m.price for s, m in self.markets.items()}

    def tick(self, now_ms: int, *, live_candles: bool = True) -> list[Event]:
        """Advance to ``now_ms`` and return what happened, in publish order.

        With ``live_candles`` every tick republishes the open candle (the live demo);
        without, only closed candles are returned (seeding history fast).
        """
        dt_s = 1.0 if self._last_ms is None else max(0.001, (now_ms - self._last_ms) / 1000)
        self._last_ms = now_ms
        events: list[Event] = []
        for symbol, market in self.markets.items():
            price = market.step(dt_s)
            volume = abs(self.rng.gauss(0, 1)) * _NOTIONAL / price * dt_s
            closed = self.candles[symbol].update(now_ms, round(price, 6), volume)
            if closed is not None and not live_candles:
                events.append(_with_symbol(closed, symbol))
            if live_candles:
                events.append(_with_symbol(self.candles[symbol].snapshot(), symbol))
        for bot in self.bots:
            events.extend(self._run_bot(bot, now_ms))
        if now_ms - self._last_status_ms >= self.status_every_ms:
            self._last_status_ms = now_ms
            events.extend(self.statuses(now_ms))
        return events

    def statuses(self, now_ms: int) -> list[Event]:
        prices = self.prices
        return [
            BotStatus(
                symbol=s,
                ts=now_ms,
                bot=bot.name,
                strategy=bot.strategy,
                status=bot.status,
                equity=bot.equity(prices),
            )
            for bot in self.bots
            for s in bot.symbols
        ]

    def _run_bot(self, bot: DemoBot, now_ms: int) -> list[Event]:
        events: list[Event] = []
        if bot.pauses and now_ms >= bot.status_until_ms:
            if bot.status_until_ms:  # not the first call: flip between active and paused
                bot.status = "paused" if bot.status == "active" else "active"
                events.extend(
                    BotStatus(
                        symbol=s,
                        ts=now_ms,
                        bot=bot.name,
                        strategy=bot.strategy,
                        status=bot.status,
                        equity=bot.equity(self.prices),
                    )
                    for s in bot.symbols
                )
            span_s = self.rng.uniform(60, 180) if bot.status == "paused" else self.rng.uniform(300, 900)
            bot.status_until_ms = now_ms + int(span_s * 1000)
        if bot.status != "active":
            return events
        for symbol in bot.symbols:
            events.extend(self._decide(bot, bot.books[symbol], symbol, now_ms))
        return events

    def _decide(self, bot: DemoBot, book: BotBook, symbol: str, now_ms: int) -> list[Event]:
        price = self.markets[symbol].price
        if now_ms - book.last_sample_ms >= 5_000:
            book.last_sample_ms = now_ms
            book.prices.append(price)
            book.fast = price if book.fast is None else book.fast + (price - book.fast) * 2 / 13
            book.slow = price if book.slow is None else book.slow + (price - book.slow) * 2 / 49
        events: list[Event] = []
        exit_event = self._risk_exit(bot, book, symbol, price, now_ms)
        if exit_event:
            events.extend(exit_event)
        if now_ms - book.last_signal_ms < 45_000 or len(book.prices) < 30:
            return events
        call = _STRATEGY_RULES[bot.strategy](book, price)
        if call is None:
            return events
        signal_type, confidence = call
        book.last_signal_ms = now_ms
        confidence = round(min(1.0, max(0.0, confidence)), 3)
        events.append(
            Signal(
                symbol=symbol,
                ts=now_ms,
                bot=bot.name,
                strategy=bot.strategy,
                type=signal_type,
                price=round(price, 6),
                confidence=confidence,
            )
        )
        if signal_type != "hold" and confidence >= 0.55:
            events.extend(self._act(bot, book, symbol, signal_type, price, now_ms))
        return events

    def _act(
        self, bot: DemoBot, book: BotBook, symbol: str, side: str, price: float, now_ms: int
    ) -> list[Event]:
        position = book.position
        if position is not None and position.side != side:
            return self._close(bot, book, symbol, price, now_ms, position.qty)
        if position is None:
            bot.positions_opened += 1
            qty = round(_NOTIONAL / price, 8)
            book.position = Position(f"{bot.name}-{symbol}-{bot.positions_opened}", side, price, qty)
            return [
                Trade(
                    symbol=symbol,
                    ts=now_ms,
                    bot=bot.name,
                    strategy=bot.strategy,
                    side=side,
                    action="entry",
                    price=round(price, 6),
                    qty=qty,
                    position=book.position.id,
                    fee=round(price * qty * _FEE_RATE, 6),
                )
            ]
        return []

    def _risk_exit(self, bot: DemoBot, book: BotBook, symbol: str, price: float, now_ms: int) -> list[Event]:
        position = book.position
        if position is None:
            return []
        move = _unrealized(position, price) / (position.price * position.qty)
        if move >= 0.006 and position.qty == round(_NOTIONAL / position.price, 8):
            return self._close(bot, book, symbol, price, now_ms, round(position.qty / 2, 8))  # take half
        if move >= 0.012 or move <= -0.008:
            return self._close(bot, book, symbol, price, now_ms, position.qty)
        return []

    def _close(
        self, bot: DemoBot, book: BotBook, symbol: str, price: float, now_ms: int, qty: float
    ) -> list[Event]:
        position = book.position
        assert position is not None
        fee = round(price * qty * _FEE_RATE, 6)
        entry_fee = position.price * qty * _FEE_RATE
        pnl = round(
            _unrealized(Position(position.id, position.side, position.price, qty), price) - fee - entry_fee, 6
        )
        book.realized += pnl
        remaining = round(position.qty - qty, 8)
        book.position = (
            Position(position.id, position.side, position.price, remaining) if remaining > 0 else None
        )
        exit_side = "sell" if position.side == "buy" else "buy"
        return [
            Trade(
                symbol=symbol,
                ts=now_ms,
                bot=bot.name,
                strategy=bot.strategy,
                side=exit_side,
                action="exit",
                price=round(price, 6),
                qty=qty,
                position=position.id,
                fee=fee,
                pnl=pnl,
            )
        ]


def _momentum(book: BotBook, price: float) -> tuple[str, float] | None:
    past = book.prices[-12]
    change = (price - past) / past
    if abs(change) < 0.0015:
        return ("hold", 0.2 + abs(change) * 100) if abs(change) > 0.001 else None
    return ("buy" if change > 0 else "sell", 0.35 + abs(change) * 120)


def _ema_crossover(book: BotBook, price: float) -> tuple[str, float] | None:
    if book.fast is None or book.slow is None:
        return None
    spread = (book.fast - book.slow) / book.slow
    previous = spread if book.ema_spread is None else book.ema_spread
    book.ema_spread = spread
    if previous <= 0 < spread or previous >= 0 > spread:
        return ("buy" if spread > 0 else "sell", 0.5 + min(0.5, abs(spread) * 300))
    return None


def _mean_reversion(book: BotBook, price: float) -> tuple[str, float] | None:
    window = list(book.prices)[-60:]
    mean = sum(window) / len(window)
    spread = math.sqrt(sum((p - mean) ** 2 for p in window) / len(window)) or 1e-12
    z = (price - mean) / spread
    if abs(z) < 1.6:
        return None
    return ("sell" if z > 0 else "buy", 0.3 + (abs(z) - 1.6) / 2)


_STRATEGY_RULES = {"momentum": _momentum, "ema_crossover": _ema_crossover, "mean_reversion": _mean_reversion}


def _with_symbol(candle: Candle, symbol: str) -> Candle:
    return Candle(
        symbol=symbol,
        ts=candle.ts,
        tf=candle.tf,
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=candle.volume,
    )


def seed_history(floor: TradingFloor, *, end_ms: int, hours: float, step_ms: int = 1000) -> list[Event]:
    """Simulate ``hours`` before ``end_ms`` and return their events (closed candles only)."""
    events: list[Event] = []
    start = end_ms - int(hours * 3_600_000)
    floor.status_every_ms = 300_000
    for now in range(start, end_ms, step_ms):
        events.extend(floor.tick(now, live_candles=False))
    floor.status_every_ms = 10_000
    return events


async def last_prices(url: str, symbols: Sequence[str]) -> dict[str, float]:
    """The last candle close of each symbol that already has a log (to continue its prices)."""
    from publishers import keys
    from publishers.connection import async_client

    client = async_client(url)
    prices: dict[str, float] = {}
    try:
        for symbol in symbols:
            entries = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await client.xrevrange(keys.log_key(symbol), count=5000),
            )
            for _, fields in entries:
                event = json.loads(fields[keys.LOG_FIELD.encode()])
                if event.get("kind") == "candle":
                    prices[symbol] = float(event["close"])
                    break
            else:
                if await client.exists(keys.meta_key(symbol)):
                    prices[symbol] = BASE_PRICES.get(symbol, 100.0)
    finally:
        await client.aclose()
    return prices


async def run_demo_bots(
    url: str,
    *,
    symbols: Sequence[str],
    timeframe: str = "1m",
    tick_s: float = 1.0,
    seed_hours: float = 6.0,
    seed: int = 7,
    stop: asyncio.Event | None = None,
    options: PublisherOptions | None = None,
) -> None:
    """Publish the simulated floor to Redis at ``url`` until ``stop`` is set.

    ``options``: the publisher's (``settings.redis.publisher_options()``), else the defaults.

    On a fresh Redis it first loads ``seed_hours`` of history, so a new wall shows the
    last hours at once; on a Redis that already has the symbols it continues their prices.
    """
    from publishers.events import now_ms
    from publishers.publisher import Publisher

    stop = stop or asyncio.Event()
    known = await last_prices(url, symbols)
    floor = TradingFloor(symbols, timeframe=timeframe, seed=seed, prices=known)
    async with Publisher(url, options=options) as publisher:
        fresh = [s for s in symbols if s not in known]
        if fresh and seed_hours > 0:
            events = [e for e in seed_history(floor, end_ms=now_ms(), hours=seed_hours) if e.symbol in fresh]
            await publisher.publish_many(events)
            log.info("demo history seeded", extra={"events": len(events), "symbols": fresh})
        while not stop.is_set():
            await publisher.publish_many(floor.tick(now_ms()))
            try:
                await asyncio.wait_for(stop.wait(), tick_s)
            except TimeoutError:
                pass
