"""Demo data for wall tests: the demo trading floor, seeded and then published live from a thread.

The floor is ``server.cli.demo.TradingFloor`` (the same bots ``signalpush demo`` runs), here with
short candles so a test sees new points every few seconds. The floor's bots signal at most every
45 s, so a live-only ``scalp-1`` bot (strategy ``scalping``) adds signals, entries, exits (a third
without a reported P&L) and equity reports every few ticks: seconds of a test carry enough live
events to notice one missing or drawn twice. ``pause(symbol)`` stops publishing a symbol (its bots
go quiet) while the others go on.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from publishers.events import BotStatus, Event, Signal, Trade, now_ms
from publishers.sync_publisher import SyncPublisher
from server.cli.demo import TradingFloor, seed_history

BASES = (64_000.0, 3_200.0, 150.0, 0.45, 25.0, 600.0)


class FloorFeed:
    """Publishes a demo floor to Redis at ``url``: ``seed(hours)`` first, then ``start()`` ticks live."""

    def __init__(
        self, url: str, symbols: Sequence[str], *, timeframe: str = "5s", tick_s: float = 0.25, seed: int = 5
    ) -> None:
        self.symbols = list(symbols)
        prices = {s: BASES[i % len(BASES)] for i, s in enumerate(self.symbols)}
        self.floor = TradingFloor(self.symbols, timeframe=timeframe, seed=seed, prices=prices)
        self.publisher = SyncPublisher(url)
        self.tick_s = tick_s
        self.published = 0
        self.errors: list[BaseException] = []
        self._paused: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(seed)
        self._scalps: dict[str, tuple[str, str, float, float]] = {}  # symbol -> (position, side, price, qty)
        self._scalp_count = 0

    def seed(self, hours: float) -> int:
        """Publish ``hours`` of history ending now; returns the number of events."""
        events = seed_history(self.floor, end_ms=now_ms(), hours=hours, step_ms=2000)
        self.publisher.publish_many(events)
        self.published += len(events)
        return len(events)

    def pause(self, *symbols: str) -> None:
        with self._lock:
            self._paused.update(symbols or self.symbols)

    def resume(self, *symbols: str) -> None:
        with self._lock:
            self._paused.difference_update(symbols or self.symbols)

    def start(self) -> FloorFeed:
        self._thread = threading.Thread(target=self._run, name="floor-feed", daemon=True)
        self._thread.start()
        return self

    def _scalper(self, ts: int) -> list[Event]:
        events: list[Event] = []
        rng = self._rng
        for symbol, price in self.floor.prices.items():
            price = round(price, 6)
            if rng.random() < 0.5:
                kind = rng.choice(("buy", "sell", "hold"))
                events.append(
                    Signal(
                        symbol=symbol,
                        ts=ts,
                        bot="scalp-1",
                        strategy="scalping",
                        type=kind,
                        price=price,
                        confidence=round(rng.random(), 3),
                    )
                )
            held = self._scalps.get(symbol)
            if held is None and rng.random() < 0.3:
                self._scalp_count += 1
                held = (f"s-{self._scalp_count}", rng.choice(("buy", "sell")), price, round(10 / price, 8))
                self._scalps[symbol] = held
                events.append(
                    Trade(
                        symbol=symbol,
                        ts=ts,
                        bot="scalp-1",
                        strategy="scalping",
                        side=held[1],
                        action="entry",
                        price=price,
                        qty=held[3],
                        position=held[0],
                    )
                )
            elif held is not None and rng.random() < 0.3:
                del self._scalps[symbol]
                direction = 1 if held[1] == "buy" else -1
                pnl = (
                    None if self._scalp_count % 3 == 0 else round(direction * (price - held[2]) * held[3], 6)
                )
                events.append(
                    Trade(
                        symbol=symbol,
                        ts=ts,
                        bot="scalp-1",
                        strategy="scalping",
                        side="sell" if held[1] == "buy" else "buy",
                        action="exit",
                        price=price,
                        qty=held[3],
                        position=held[0],
                        pnl=pnl,
                    )
                )
            if rng.random() < 0.2:
                equity = round(10_000 + rng.uniform(-20, 20), 2)
                events.append(
                    BotStatus(
                        symbol=symbol,
                        ts=ts,
                        bot="scalp-1",
                        strategy="scalping",
                        status="active",
                        equity=equity,
                    )
                )
        return events

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            ts = now_ms()
            events = self.floor.tick(ts) + self._scalper(ts)
            with self._lock:
                events = [e for e in events if e.symbol not in self._paused]
            try:
                self.publisher.publish_many(events)
                self.published += len(events)
            except Exception as exc:  # reported by the test through .errors
                self.errors.append(exc)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.publisher.close()
