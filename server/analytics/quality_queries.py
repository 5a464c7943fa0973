"""The one SQL statement behind signal quality, and its rows as the batch's event frame.

Rows read from SQL are untrusted like any input: a number that is not one becomes NaN and
the batch leaves that row out (server/analytics/quality_batch.py), a ``meta`` that is not a
JSON object names no signal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Final

import pandas as pd
from sqlalchemy import Float, Integer, String, and_, cast, func, literal, null, select, union_all
from sqlalchemy.sql import CompoundSelect

from server.analytics.quality import QualityRules, signal_seq_of
from server.analytics.quality_batch import EVENT_COLUMNS, events_frame, quality_batch
from server.analytics.quality_report import SignalQuality
from server.analytics.queries import BotFilter, event_conditions
from server.history.models import CANDLES, SIGNALS, TRADES

#: ``meta`` texts longer than this are not parsed (a link is a few bytes).
MAX_META_CHARS: Final = 4096
#: Query columns: the event columns (``meta`` as text instead of ``signal_seq``) and a kind rank.
QUERY_COLUMNS: Final = (*EVENT_COLUMNS[:-1], "meta", "rank")
_KIND_RANK: Final = {"candle": 0, "signal": 1, "trade": 2}


def quality_query(flt: BotFilter, start_ms: int, end_ms: int) -> CompoundSelect[Any]:
    """Signals and trades of the filtered bots in [start, end], and each traded symbol's last
    candle at ``end`` (the mark of open positions), as one UNION ALL in fold order."""
    s, t, c = SIGNALS.c, TRADES.c, CANDLES.c

    def row(kind: str, given: dict[str, Any]) -> list[Any]:
        out: list[Any] = [literal(kind, String).label("kind")]
        for name in QUERY_COLUMNS[1:]:
            if name == "rank":
                out.append(literal(_KIND_RANK[kind], Integer).label("rank"))
            elif name in given:
                out.append(given[name].label(name))
            elif name in ("confidence", "price", "qty", "fee", "pnl", "close"):
                out.append(cast(null(), Float).label(name))
            elif name in ("seq", "ts"):
                out.append(cast(null(), Integer).label(name))
            else:
                out.append(cast(null(), String).label(name))
        return out

    signal_part = select(
        *row(
            "signal",
            {n: s[n] for n in ("symbol", "seq", "ts", "bot", "strategy", "type", "confidence", "price")},
        )
    ).where(*event_conditions(SIGNALS, flt, start_ms, end_ms))
    trade_fields = ("symbol", "seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "fee", "pnl")
    trade_part = select(
        *row(
            "trade", {**{n: t[n] for n in trade_fields}, "position": t.position, "meta": cast(t.meta, String)}
        )
    ).where(*event_conditions(TRADES, flt, start_ms, end_ms))
    traded = select(t.symbol).where(and_(*event_conditions(TRADES, flt, start_ms, end_ms))).distinct()
    last_ts = (
        select(CANDLES.c.symbol.label("symbol"), func.max(c.ts).label("ts"))
        .where(c.symbol.in_(traded), c.ts <= end_ms, c.ts >= start_ms)
        .group_by(c.symbol)
        .subquery("last_candle")
    )
    candle_part = select(
        *row("candle", {"symbol": c.symbol, "seq": c.seq, "ts": c.ts, "close": c.close})
    ).join(last_ts, and_(c.symbol == last_ts.c.symbol, c.ts == last_ts.c.ts))
    return union_all(signal_part, trade_part, candle_part)


def quality_events(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The batch's frame from :func:`quality_query` rows, in fold order (ts, kind, symbol, seq)."""
    records = []
    for raw in rows:
        record = dict(zip(QUERY_COLUMNS, raw, strict=True))
        meta_text = record.pop("meta")
        record["meta"] = _meta(meta_text)
        records.append(record)
    records.sort(key=_fold_key)
    return events_frame(
        (
            str(r["kind"]),
            str(r["symbol"]),
            _int(r["seq"]),
            {k: v for k, v in r.items() if k not in ("kind", "rank")},
        )
        for r in records
    )


def _fold_key(record: dict[str, Any]) -> tuple[int, int, str, int]:
    return (_int(record["ts"]), int(record["rank"] or 0), str(record["symbol"]), _int(record["seq"]))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _meta(text: Any) -> dict[str, Any] | None:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and signal_seq_of(value) is not None else None


def build_quality(
    rows: Sequence[Sequence[Any]], rules: QualityRules, start_ms: int, end_ms: int, query_ms: float
) -> SignalQuality:
    """:class:`SignalQuality` from :func:`quality_query` rows (CPU work: off the event loop)."""
    began = time.perf_counter()
    groups = quality_batch(quality_events(rows), rules)
    compute_ms = (time.perf_counter() - began) * 1000
    return SignalQuality(start_ms, end_ms, rules, groups, {"query": query_ms, "compute": compute_ms})
