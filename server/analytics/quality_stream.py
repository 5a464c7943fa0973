"""Signal quality, live: fold events one at a time, publish a snapshot whenever asked.

:class:`QualityStream` applies the rules of :mod:`server.analytics.quality` incrementally:
each event costs O(1) plus the signals of the one position it touches (no recomputation of
the past). A change to a position retracts what it and its signals contributed to the
totals and adds their new contribution. :meth:`QualityStream.snapshot` equals
:func:`server.analytics.quality_batch.quality_batch` over the same events (tested to 1e-9).

Events are trusted shapes (the bus check ran) but their numbers still are guarded: an item
with a non-finite number is rejected and counted, never folded in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.analytics.quality import (
    CLOSED_SHARE,
    DAY_MS,
    DIRECTIONS,
    GroupTotals,
    QualityRules,
    drawdown_pct,
    group_row,
    signal_seq_of,
)

Group = tuple[str, str]
#: (bot, symbol, position)
PositionKey = tuple[str, str, str]


@dataclass(slots=True)
class _Signal:
    group: Group
    bucket: int
    ts: int
    price: float
    direction: int
    fills: list[tuple[_Position, float]] = field(default_factory=list)
    fill_value: float = 0.0
    fill_qty: float = 0.0
    #: What this signal adds to its bucket now: (resolved, hit, pnl) or None.
    counted: tuple[bool, bool, float] | None = None
    slippage: float | None = None


@dataclass(slots=True)
class _Position:
    group: Group
    key: PositionKey
    direction: int = 0
    entered: float = 0.0
    entry_value: float = 0.0
    entry_fees: float = 0.0
    exited: float = 0.0
    realised: float = 0.0
    signals: list[_Signal] = field(default_factory=list)
    #: What this position adds to the trade totals now: its P&L when closed, else None.
    counted: float | None = None

    @property
    def closed(self) -> bool:
        return self.entered > 0 and self.exited >= self.entered * (1 - CLOSED_SHARE)


@dataclass(slots=True)
class _GroupState:
    totals: GroupTotals
    buckets: list[list[float]]
    day_pnl: dict[int, float] = field(default_factory=dict)
    open_positions: dict[PositionKey, _Position] = field(default_factory=dict)
    #: The group's latest signal or trade: its Sharpe/Sortino window ends that day.
    last_ts: int | None = None


class QualityStream:
    """Signal quality of every (bot, strategy), updated one event at a time."""

    def __init__(self, rules: QualityRules | None = None) -> None:
        self.rules = rules or QualityRules()
        self._groups: dict[Group, _GroupState] = {}
        self._positions: dict[tuple[str, str, str], _Position] = {}
        #: The last buy/sell signal per (bot, strategy, symbol, direction).
        self._last_signal: dict[tuple[str, str, str, int], _Signal] = {}
        #: Signals by (symbol, seq, bot), for explicit ``meta.signal_seq`` links.
        self._by_seq: dict[tuple[str, int, str], _Signal] = {}
        self._marks: dict[str, float] = {}
        #: Open positions by symbol: a candle changes the unrealised P&L of their groups.
        self._open_by_symbol: dict[str, dict[PositionKey, _Position]] = {}
        #: Groups whose row changed since :meth:`take_changed` (what the live feed pushes).
        self.changed: set[Group] = set()
        self.events = 0
        self.rejected = 0

    # -- folding ---------------------------------------------------------------------------

    def apply(self, kind: str, symbol: str, seq: int, fields: Mapping[str, Any]) -> bool:
        """Fold one event in; False (and counted in :attr:`rejected`) if it cannot be used."""
        try:
            ts = int(fields["ts"])
            if kind == "signal":
                self._signal(symbol, seq, ts, fields)
            elif kind == "trade":
                self._trade(symbol, ts, fields)
            elif kind == "candle":
                close = _finite(fields["close"])
                self._marks[symbol] = close
                for position in self._open_by_symbol.get(symbol, {}).values():
                    self.changed.add(position.group)
            else:
                return False
        except (KeyError, TypeError, ValueError):
            self.rejected += 1
            return False
        self.events += 1
        return True

    def apply_all(self, events: Iterable[tuple[str, str, int, Mapping[str, Any]]]) -> None:
        for kind, symbol, seq, fields in events:
            self.apply(kind, symbol, seq, fields)

    def _group(self, group: Group) -> _GroupState:
        state = self._groups.get(group)
        if state is None:
            totals = GroupTotals(peak=self.rules.capital)
            state = _GroupState(totals, [[0, 0, 0, 0, 0.0, 0.0] for _ in range(self.rules.buckets)])
            self._groups[group] = state
        return state

    def _signal(self, symbol: str, seq: int, ts: int, fields: Mapping[str, Any]) -> None:
        bot, strategy, kind = str(fields["bot"]), str(fields["strategy"]), fields["type"]
        confidence, price = _finite(fields["confidence"]), _finite(fields["price"])
        state = self._group((bot, strategy))
        self.changed.add((bot, strategy))
        _seen(state, ts)
        direction = DIRECTIONS.get(kind)
        if direction is None:
            state.totals.holds += 1
            return
        bucket = self.rules.bucket(confidence)
        signal = _Signal((bot, strategy), bucket, ts, price, direction)
        state.totals.signals += 1
        state.totals.unlinked += 1
        state.buckets[bucket][0] += 1
        self._last_signal[(bot, strategy, symbol, direction)] = signal
        self._by_seq[(symbol, seq, bot)] = signal

    def _trade(self, symbol: str, ts: int, fields: Mapping[str, Any]) -> None:
        bot, strategy = str(fields["bot"]), str(fields["strategy"])
        price, qty = _finite(fields["price"]), _finite(fields["qty"])
        if qty <= 0:
            raise ValueError("qty must be positive")
        fee = _finite(fields.get("fee") or 0.0)
        raw_pnl = fields.get("pnl")
        pnl = None if raw_pnl is None else _finite(raw_pnl)
        key = (bot, symbol, str(fields["position"]))
        position = self._positions.get(key)
        if fields["action"] == "entry":
            direction = 1 if fields["side"] == "buy" else -1
            if position is None:
                position = self._positions[key] = _Position((bot, strategy), key, direction)
            elif position.direction == 0:
                position.direction = direction
            self._retract(position)
            position.entered += qty
            position.entry_value += price * qty
            position.entry_fees += fee
            state = self._group(position.group)
            state.totals.entries += 1
            signal = self._link(symbol, ts, bot, strategy, direction, fields.get("meta"), state)
            if signal is not None:
                state.totals.linked_entries += 1
                self._fill(signal, position, ts, price, qty)
            self._assert(position)
            _seen(state, ts)
            return
        if position is None:
            position = self._positions[key] = _Position((bot, strategy), key)
        self._retract(position)
        if pnl is None and position.entered <= 0:
            self._group(position.group).totals.unpaired_exits += 1
        else:
            if pnl is None:
                average = position.entry_value / position.entered
                share = position.entry_fees * qty / position.entered
                pnl = position.direction * (price - average) * qty - fee - share
            position.realised += pnl
            self._book(position.group, ts, pnl)
        position.exited += qty
        self._assert(position)
        _seen(self._group(position.group), ts)

    def _link(
        self, symbol: str, ts: int, bot: str, strategy: str, direction: int, meta: Any, state: _GroupState
    ) -> _Signal | None:
        named = signal_seq_of(meta)
        if named is not None:
            signal = self._by_seq.get((symbol, named, bot))
            if signal is None:
                state.totals.unknown_links += 1
            return signal
        signal = self._last_signal.get((bot, strategy, symbol, direction))
        if signal is None or not 0 <= ts - signal.ts <= self.rules.horizon_ms:
            return None
        return signal

    def _fill(self, signal: _Signal, position: _Position, ts: int, price: float, qty: float) -> None:
        self.changed.add(signal.group)
        totals = self._groups[signal.group].totals
        if not signal.fills:
            totals.linked += 1
            totals.unlinked -= 1
            self._groups[signal.group].buckets[signal.bucket][1] += 1
            latency = ts - signal.ts
            totals.latency_sum += latency
            totals.latency_max = latency if totals.latency_max is None else max(totals.latency_max, latency)
        if signal.slippage is not None:
            totals.slippage_sum -= signal.slippage
            totals.slippage_count -= 1
        if all(p is not position for p, _ in signal.fills):
            position.signals.append(signal)
        signal.fills.append((position, qty))
        signal.fill_value += price * qty
        signal.fill_qty += qty
        if signal.fill_qty > 0 and signal.price > 0:
            vwap = signal.fill_value / signal.fill_qty
            signal.slippage = signal.direction * (vwap - signal.price) / signal.price * 1e4
            totals.slippage_sum += signal.slippage
            totals.slippage_count += 1
        else:
            signal.slippage = None

    def _book(self, group: Group, ts: int, pnl: float) -> None:
        """A realised exit: the equity curve's next sample."""
        totals = self._group(group).totals
        totals.realised += pnl
        equity = self.rules.capital + totals.realised
        totals.peak = max(totals.peak, equity)
        drawdown = totals.peak - equity
        if drawdown > totals.max_drawdown:
            totals.max_drawdown, totals.max_drawdown_pct = drawdown, drawdown_pct(drawdown, totals.peak)
        day_pnl = self._groups[group].day_pnl
        day = ts // DAY_MS
        day_pnl[day] = day_pnl.get(day, 0.0) + pnl

    # -- contributions of a position and its signals ----------------------------------------

    def _retract(self, position: _Position) -> None:
        state = self._group(position.group)
        self.changed.add(position.group)
        if position.counted is not None:
            _trade_totals(state.totals, position.counted, -1)
            position.counted = None
        for signal in position.signals:
            self._retract_signal(signal)

    def _assert(self, position: _Position) -> None:
        state = self._group(position.group)
        if position.closed:
            position.counted = position.realised
            _trade_totals(state.totals, position.realised, 1)
        for signal in position.signals:
            self._assert_signal(signal)
        self._track_open(position)

    def _track_open(self, position: _Position) -> None:
        opened = self._groups[position.group].open_positions
        by_symbol = self._open_by_symbol.setdefault(position.key[1], {})
        if position.entered > 0 and not position.closed:
            opened[position.key] = position
            by_symbol[position.key] = position
        else:
            opened.pop(position.key, None)
            by_symbol.pop(position.key, None)
            if not by_symbol:
                del self._open_by_symbol[position.key[1]]

    def _retract_signal(self, signal: _Signal) -> None:
        if signal.counted is None:
            return
        resolved, hit, pnl = signal.counted
        row = self._groups[signal.group].buckets[signal.bucket]
        if resolved:
            row[2] -= 1
            row[3] -= int(hit)
            row[4] -= pnl
            row[5] -= pnl * pnl
        signal.counted = None

    def _assert_signal(self, signal: _Signal) -> None:
        self._retract_signal(signal)  # a signal may sit in several positions
        self.changed.add(signal.group)
        pnl = 0.0
        resolved = True
        for position, qty in signal.fills:
            pnl += qty / position.entered * position.realised
            resolved = resolved and position.closed
        hit = resolved and pnl > 0
        signal.counted = (resolved, hit, pnl)
        if resolved:
            row = self._groups[signal.group].buckets[signal.bucket]
            row[2] += 1
            row[3] += int(hit)
            row[4] += pnl
            row[5] += pnl * pnl

    # -- what it publishes -----------------------------------------------------------------

    def take_changed(self) -> set[Group]:
        """The groups whose row changed since the last call (and forget them)."""
        changed, self.changed = self.changed, set()
        return changed

    def unrealised(self, group: Group) -> float:
        """Open positions of ``group`` marked to their symbol's latest candle close."""
        total = 0.0
        opened = self._groups[group].open_positions
        for key in sorted(opened):
            position = opened[key]
            mark = self._marks.get(key[1])
            if mark is None:
                continue
            average = position.entry_value / position.entered
            total += position.direction * (mark - average) * (position.entered - position.exited)
        return total

    def snapshot(self, groups: Iterable[Group] | None = None) -> list[dict[str, Any]]:
        """One row per (bot, strategy) (``groups``, else all), sorted: KPIs and calibration."""
        wanted = sorted(self._groups) if groups is None else sorted(g for g in groups if g in self._groups)
        return [
            group_row(
                self.rules,
                bot,
                strategy,
                self._groups[(bot, strategy)].totals,
                self._groups[(bot, strategy)].buckets,
                unrealised=self.unrealised((bot, strategy)),
                day_pnl=self._groups[(bot, strategy)].day_pnl,
                last_day=_day(self._groups[(bot, strategy)].last_ts),
            )
            for bot, strategy in wanted
        ]


def _seen(state: _GroupState, ts: int) -> None:
    if state.last_ts is None or ts > state.last_ts:
        state.last_ts = ts


def _day(ts: int | None) -> int | None:
    return None if ts is None else ts // DAY_MS


def _trade_totals(totals: GroupTotals, pnl: float, sign: int) -> None:
    totals.trades += sign
    totals.trade_pnl += sign * pnl
    if pnl > 0:
        totals.wins += sign
        totals.gross_profit += sign * pnl
    elif pnl < 0:
        totals.gross_loss -= sign * pnl


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number
