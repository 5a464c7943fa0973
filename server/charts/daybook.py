"""The wall's day book: a symbol's P&L, trades and win rate of *today*, whatever a chart's window.

The wall's "P&L today" and "win" KPIs once came from the exits inside the chart's window, so
a 60-minute wall and a 6-hour wall disagreed in sign under the same label, and a running wall
disagreed with a fresh load of itself (exits slid out of the window). Now the day is the
server's: from 00:00 in ``tz`` (UTC unless asked) to now, over the trades of the symbol that
pass the tile's filter, served by ``GET /api/day`` with the history position it is complete
to (``epoch``, ``to_seq``); the wall keeps it live with the events after that seq
(client_js/wall-daybook.js, same rules), and fetches it again on every history frame and at
midnight. Pure: the caller reads the trades (a history window's columnar ``data``).

Rules (server/analytics/performance.py's, as the wall's ledger applies them): entries and
exits pair by (bot, position); a position's direction is its first entry's side, its entry
price the quantity-weighted average of its entries; an exit's P&L is its reported ``pnl``,
else computed from that average (no fees: history data carries none, so the live side cannot
either). A *day trade* is a position with at least one exit of known P&L today; it wins when
the sum of today's exits is > 0. Open positions: quantity left above float dust.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publishers.events import now_ms
from server.core.filters import EventFilter
from server.errors import ProtocolError
from server.history.source import HistorySource

DAY_MS: Final = 86_400_000
#: Entries of positions exited today are looked for this far before the day's start.
ENTRY_LOOKBACK_MS: Final = 2 * DAY_MS
#: Open quantity below this share of the entered quantity is float dust.
CLOSED_SHARE: Final = 1e-9
#: Positions a day book lists at most (the newest; the totals count every one).
MAX_POSITIONS: Final = 5000


def zone(name: str | None) -> ZoneInfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Berlin``); ``UTC`` when empty. ValueError when unknown."""
    if not name:
        return ZoneInfo("UTC")
    if len(name) > 64 or ".." in name or name.startswith("/"):
        raise ValueError(f"tz: {name[:64]!r} is not a time zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz: {name[:64]!r} is not a time zone") from None


def day_bounds(now_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the local day of ``now_ms`` in ``tz``, in ms since the epoch (DST-aware)."""
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)  # wall-clock arithmetic: a DST day is 23 or 25 h
    return int(start.astimezone(UTC).timestamp() * 1000), int(end.astimezone(UTC).timestamp() * 1000)


def window_minutes(now_ms: int, day_start_ms: int) -> int:
    """History minutes that cover the day and the entry lookback before it."""
    return math.ceil((now_ms - day_start_ms + ENTRY_LOOKBACK_MS) / 60_000) + 1


@dataclass
class Position:
    bot: str
    position: str
    side: str | None = None
    qty: float = 0.0
    notional: float = 0.0
    exit_qty: float = 0.0
    day_pnl: float | None = None
    last_ts: int = 0
    exits_today: int = field(default=0)

    @property
    def open(self) -> bool:
        left = max(self.qty - self.exit_qty, 0.0)
        return self.side is not None and left > 0 and left > self.qty * CLOSED_SHARE

    def to_json(self) -> dict[str, Any]:
        return {
            "bot": self.bot,
            "position": self.position,
            "side": self.side,
            "qty": self.qty,
            "notional": self.notional,
            "exit_qty": self.exit_qty,
            "day_pnl": None if self.day_pnl is None else round(self.day_pnl, 6),
        }


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rows(trade: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The columnar ``trade`` data as rows in (ts, seq) order; rows missing a field are skipped."""
    if not trade:
        return []
    columns = {k: v for k, v in trade.items() if isinstance(v, list)}
    n = len(columns.get("ts", []))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row = {k: (v[i] if i < len(v) else None) for k, v in columns.items()}
        ts, price, qty = _num(row.get("ts")), _num(row.get("price")), _num(row.get("qty"))
        if ts is None or price is None or qty is None or row.get("action") not in ("entry", "exit"):
            continue
        row.update(ts=int(ts), price=price, qty=qty)
        rows.append(row)
    rows.sort(key=lambda r: (r["ts"], _num(r.get("seq")) or 0))
    return rows


def day_book(trade: Mapping[str, Any] | None, *, day_start: int, day_end: int, now_ms: int) -> dict[str, Any]:
    """The day book of a history window's ``trade`` data (columnar, ts in ms); see the module doc."""
    rows = _rows(trade)
    positions: dict[tuple[str, str], Position] = {}

    def get(row: dict[str, Any]) -> Position:
        key = (str(row.get("bot")), str(row.get("position")))
        found = positions.get(key)
        if found is None:
            found = positions[key] = Position(*key)
        found.last_ts = max(found.last_ts, row["ts"])
        return found

    # Entries first: an exit's computed P&L uses every entry of its position (the wall's ledger).
    for row in rows:
        if row["action"] == "entry":
            p = get(row)
            if p.side is None:
                p.side = str(row.get("side"))
            p.qty += row["qty"]
            p.notional += row["price"] * row["qty"]
    for row in rows:
        if row["action"] != "exit":
            continue
        p = get(row)
        pnl = _num(row.get("pnl"))
        if pnl is None and p.side is not None and p.qty > 0:
            direction = 1.0 if p.side == "buy" else -1.0
            pnl = direction * (row["price"] - p.notional / p.qty) * row["qty"]
        p.exit_qty += row["qty"]
        if pnl is not None and day_start <= row["ts"] < day_end and row["ts"] <= now_ms:
            p.day_pnl = (p.day_pnl or 0.0) + pnl
            p.exits_today += 1
    kept = [p for p in positions.values() if p.open or p.day_pnl is not None]
    traded = [p for p in kept if p.day_pnl is not None]
    wins = sum(1 for p in traded if (p.day_pnl or 0.0) > 0)
    pnl = sum(p.day_pnl or 0.0 for p in traded)
    kept.sort(key=lambda p: p.last_ts)
    return {
        "day_start": day_start,
        "day_end": day_end,
        "pnl": round(pnl, 6),
        "trades": len(traded),
        "wins": wins,
        "win_rate": wins / len(traded) * 100 if traded else None,
        "open_positions": sum(1 for p in kept if p.open),
        "positions": [p.to_json() for p in kept[-MAX_POSITIONS:]],
    }


async def day_book_payload(
    history: HistorySource, symbol: str, flt: EventFilter, *, tz_name: str | None, now: int | None = None
) -> dict[str, Any]:
    """``GET /api/day``: the day book of ``symbol``'s trades passing ``flt`` (kinds forced to
    trades), with the history position it is complete to. ProtocolError for an unknown ``tz``."""
    try:
        tz = zone(tz_name)
    except ValueError as exc:
        raise ProtocolError("bad_request", str(exc)) from None
    now = now_ms() if now is None else now
    start, end = day_bounds(now, tz)
    window = await history.window(
        symbol, replace(flt, kinds=("trade",)), minutes=window_minutes(now, start), max_points=10
    )
    book = day_book(window.data.get("trade"), day_start=start, day_end=end, now_ms=now)
    return {
        "open_price": await _day_open(history, symbol, start, now),
        "symbol": symbol,
        "epoch": window.epoch,
        "to_seq": window.to_seq,
        "tz": tz.key,
        "now": now,
        "truncated": window.truncated,
        **book,
    }


async def _day_open(history: HistorySource, symbol: str, day_start: int, now: int) -> float | None:
    """The day's opening price: the open of the first candle in the whole minutes since ``day_start``
    (one bucket of the history window: its open is the first candle's); None in the day's first
    minute or without candles."""
    minutes = (now - day_start) // 60_000
    if minutes < 1:
        return None
    window = await history.window(symbol, EventFilter(kinds=("candle",)), minutes=minutes, max_points=1)
    opens = (window.data.get("candle") or {}).get("open") or []
    return _num(opens[0]) if opens else None
