"""Pure assembly of a history window's columnar ``data`` (no I/O).

Items are plain tuples (thousands per window: tuples sort and transpose at C speed):

* ``CandleItem = (ts, current, seq, open, high, low, close, volume)``
* ``EventItem = (ts, current, seq, kind, values)`` with ``values`` in the order of the
  kind's columns.

``current`` is True for the symbol's current epoch. Rules:

* Candles: several updates share a ts (the live, still-open candle); the last one wins:
  the current epoch over older epochs, then the highest seq. Past ``max_points`` they are
  downsampled into OHLCV buckets (open=first, high=max, low=min, close=last, volume=sum)
  whose width is a multiple of the candle spacing, aligned to the Unix epoch, each
  labelled with its start time.
* Signals, trades and bot statuses are never downsampled: past ``max_events`` (all three
  together) the latest by ts are kept and the rest counted as omitted.
* Every non-finite float becomes None (JSON null).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

from publishers.events import SCHEMA

#: A history frame's candle columns (the event schema's).
CANDLE_COLUMNS: Final = SCHEMA["candle"].history_columns

CandleItem = tuple[int, bool, int, float, float, float, float, float]
EventItem = tuple[int, bool, int, str, tuple[Any, ...]]


def finite(value: Any) -> Any:
    """``value`` with NaN and ±inf replaced by None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def finite_list(values: Iterable[Any]) -> list[Any]:
    """A column as a list, non-finite floats as None."""
    out = list(values)
    try:
        if all(map(math.isfinite, out)):  # the common case, at C speed
            return out
    except TypeError:  # None or text in the column
        pass
    return [finite(v) for v in out]


def latest_candles(items: Iterable[CandleItem]) -> list[CandleItem]:
    """One candle per ts (the last update), ordered by ts."""
    best: dict[int, CandleItem] = {}
    for item in sorted(items, key=lambda c: c[:3]):
        best[item[0]] = item  # later in (ts, current, seq) order wins
    return list(best.values())


def bucket_ms(timestamps: Sequence[int], max_points: int) -> int:
    """Width of the OHLCV buckets that bring ``timestamps`` (sorted, distinct) to at most max_points (>= 2).

    A multiple of the smallest spacing between candles. Buckets are aligned to multiples of
    the width from the Unix epoch (stable as the window slides), so a span touches at most
    ``ceil(span / width) + 1`` of them: the width is at least ``span / (max_points - 1)``.
    """
    spacing = min(b - a for a, b in itertools.pairwise(timestamps))
    span = timestamps[-1] - timestamps[0]
    needed = -(-span // (max_points - 1))
    return spacing * max(1, math.ceil(needed / spacing))


def candle_columns(candles: Sequence[CandleItem], max_points: int) -> dict[str, list[Any]]:
    """The candle columns of the frame (``candles`` as from latest_candles), downsampled past max_points."""
    if not candles:
        return {name: [] for name in CANDLE_COLUMNS}
    ts, _, _, opens, highs, lows, closes, volumes = zip(*candles, strict=True)
    if len(candles) <= max_points:
        columns = (opens, highs, lows, closes, volumes)
        return {
            "ts": list(ts),
            **{n: finite_list(c) for n, c in zip(CANDLE_COLUMNS[1:], columns, strict=True)},
        }
    import pandas as pd  # only windows past max_points need it: serve starts without pandas

    frame = pd.DataFrame(
        {"ts": ts, "open": opens, "high": highs, "low": lows, "close": closes, "volume": volumes}
    )
    if max_points <= 1:
        frame["bucket"] = ts[0]  # everything in one point
    else:
        width = bucket_ms(ts, max_points)
        frame["bucket"] = (frame["ts"] // width) * width
    buckets = frame.groupby("bucket", sort=True).agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    out: dict[str, list[Any]] = {"ts": [int(t) for t in buckets.index.tolist()]}
    for name in CANDLE_COLUMNS[1:]:
        out[name] = finite_list(float(v) for v in buckets[name].tolist())
    return out


def keep_latest(items: Iterable[EventItem], max_events: int, total: int) -> tuple[list[EventItem], int]:
    """The latest ``max_events`` items by ts (oldest first) and how many of ``total`` were left out."""
    ordered = sorted(items, key=lambda e: e[:3])
    kept = ordered[-max_events:] if max_events > 0 else []
    return kept, max(0, total - len(kept))


def event_columns(items: Sequence[EventItem], names: Sequence[str]) -> dict[str, list[Any]]:
    """Columns ``names`` of ``items`` (already ordered), non-finite floats as None."""
    if not items:
        return {name: [] for name in names}
    columns = zip(*(item[4] for item in items), strict=True)
    return {name: finite_list(column) for name, column in zip(names, columns, strict=True)}
