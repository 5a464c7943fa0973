"""Signal quality's SQL rows as the batch's event frame, and the batch's result.

The statements are in server/analytics/quality_rows.py (shared with the live feed, which
must not import pandas); rows are untrusted there and here: a number that is not one becomes
NaN and the batch leaves that row out (server/analytics/quality_batch.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import pandas as pd

from server.analytics.quality import EVENT_COLUMNS, QualityRules, signal_seq_of
from server.analytics.quality_batch import events_frame, quality_batch
from server.analytics.quality_report import SignalQuality
from server.analytics.quality_rows import (
    MAX_META_CHARS,
    QUERY_COLUMNS,
    fold_events,
    parse_meta,
    quality_query,
)

_NUMBERS: Final = ("confidence", "price", "qty", "fee", "pnl", "close")

__all__ = [
    "MAX_META_CHARS",
    "QUERY_COLUMNS",
    "build_quality",
    "parse_meta",
    "quality_events",
    "quality_query",
]


def quality_events(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The batch's frame from :func:`quality_query` rows, in fold order (ts, kind, symbol, seq).

    Vectorised (the per-row path, :func:`fold_events` then ``events_frame``, gives the same
    frame and is what the live feed uses): a row whose time is not a number is left out (the
    live fold rejects it), a seq that is not one sorts as 0, a ``meta`` is parsed only where
    it may name a signal.
    """
    if not rows:
        return events_frame(fold_events(rows))
    # Plain tuples: pandas probes each SQLAlchemy Row for attributes (2 exceptions a row).
    frame = pd.DataFrame([tuple(row) for row in rows], columns=list(QUERY_COLUMNS))
    # A row without a time cannot be placed in the fold (the live fold rejects it too).
    frame = frame[pd.to_numeric(frame["ts"], errors="coerce").notna().to_numpy()]
    for name in ("ts", "seq", "rank"):
        number = pd.to_numeric(frame[name], errors="coerce").fillna(0).clip(-(2**62), 2**62)
        frame[name] = number.astype("int64")
    frame["kind"] = frame["kind"].astype(str)
    frame["symbol"] = frame["symbol"].astype(str)
    frame = frame.sort_values(["ts", "rank", "symbol", "seq"], kind="stable").reset_index(drop=True)
    meta = frame["meta"]
    named = (meta.notna() & (meta != "{}")).to_numpy()
    signal_seq = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    if named.any():
        signal_seq[named] = pd.array([signal_seq_of(parse_meta(text)) for text in meta[named]], dtype="Int64")
    out = frame[list(EVENT_COLUMNS[:-1])].copy()
    for name in _NUMBERS:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    out["signal_seq"] = signal_seq
    return out


def build_quality(
    rows: Sequence[Sequence[Any]], rules: QualityRules, start_ms: int, end_ms: int, query_ms: float
) -> SignalQuality:
    """:class:`SignalQuality` from :func:`quality_query` rows (CPU work: off the event loop)."""
    began = time.perf_counter()
    groups = quality_batch(quality_events(rows), rules)
    compute_ms = (time.perf_counter() - began) * 1000
    return SignalQuality(start_ms, end_ms, rules, groups, {"query": query_ms, "compute": compute_ms})
