"""Signal quality's SQL rows as the batch's event frame, and the batch's result.

The statements are in server/analytics/quality_rows.py (shared with the live feed, which
must not import pandas); rows are untrusted there and here: a number that is not one becomes
NaN and the batch leaves that row out (server/analytics/quality_batch.py).

The frame is built column by column from each kind's rows (:func:`quality_frame`): numbers
straight into float64 arrays, texts as categories (each distinct name once), then one
lexsort into fold order. Building it row by row cost more than the pandas pass itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from server.analytics.quality import EVENT_COLUMNS, QualityRules, signal_seq_of
from server.analytics.quality_batch import quality_batch
from server.analytics.quality_report import SignalQuality
from server.analytics.quality_rows import (
    BATCH_COLUMNS,
    CODED,
    MAX_META_CHARS,
    QUERY_COLUMNS,
    batch_queries,
    parse_meta,
    quality_query,
)

_NUMBERS: Final = frozenset(("confidence", "price", "qty", "fee", "pnl", "close"))
_INTEGERS: Final = ("seq", "ts")
_KINDS: Final = ("candle", "signal", "trade")  # the fold's rank of kinds at one timestamp
#: (kind -> rows of BATCH_COLUMNS[kind]), as read by the statements of ``batch_queries``.
KindRows = Mapping[str, Sequence[Sequence[Any]]]

__all__ = [
    "MAX_META_CHARS",
    "QUERY_COLUMNS",
    "batch_queries",
    "build_quality",
    "parse_meta",
    "quality_events",
    "quality_frame",
    "quality_query",
]


def quality_events(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The batch's frame from :func:`quality_query` rows (one UNION ALL): :func:`quality_frame`
    of the same rows split by kind."""
    index = {name: i for i, name in enumerate(QUERY_COLUMNS)}
    parts: dict[str, list[list[Any]]] = {kind: [] for kind in _KINDS}
    for row in rows:
        kind = row[0]
        if kind in parts:
            parts[kind].append([row[index[name]] for name in BATCH_COLUMNS[kind]])
    return quality_frame(parts)


def quality_frame(parts: KindRows, *, coded: bool = False) -> pd.DataFrame:
    """The batch's frame, in fold order (ts, kind, symbol, seq), with :data:`EVENT_COLUMNS`.

    Same rules as the live feed's per-row path (``fold_events`` then ``events_frame``; tested
    equal): a row whose time is not a number is left out, a seq that is not one sorts as 0, a
    number that is not one is NaN, ``meta`` is parsed only where it may name a signal. Text
    columns are categories (the batch groups and compares them). ``coded``: the rows are of
    ``batch_queries(..., coded=True)`` (an integer in a :data:`CODED` column is a code).
    """
    sizes = {kind: len(parts.get(kind) or ()) for kind in _KINDS}
    columns: dict[str, list[Sequence[Any] | None]] = {name: [] for name in (*EVENT_COLUMNS, "meta")}
    for kind in _KINDS:
        rows = parts.get(kind) or ()
        have = dict(zip(BATCH_COLUMNS[kind], _transposed(rows, len(BATCH_COLUMNS[kind])), strict=True))
        for name, column in columns.items():
            column.append(have.get(name) if rows else ())
    total = sum(sizes.values())

    def numbers(name: str) -> np.ndarray[Any, Any]:
        """One column over every kind as float64 (NaN where a kind has no such column)."""
        pieces = [
            np.full(sizes[kind], np.nan) if values is None else _numbers(values)
            for kind, values in zip(_KINDS, columns[name], strict=True)
        ]
        return np.concatenate(pieces)

    frame: dict[str, Any] = {}
    ts = numbers("ts")
    keep = ~np.isnan(ts)
    for name in _INTEGERS:
        values = ts if name == "ts" else numbers(name)
        frame[name] = np.clip(np.nan_to_num(values, nan=0.0), -(2.0**62), 2.0**62).astype("int64")
    kind_codes = np.repeat(np.arange(len(_KINDS)), [sizes[k] for k in _KINDS])
    frame["kind"] = _categories(kind_codes, list(_KINDS))
    for name in EVENT_COLUMNS:
        if name in frame or name == "signal_seq":
            continue
        if name in _NUMBERS:
            frame[name] = numbers(name)
        else:
            pieces = [(columns[name][k], sizes[kind]) for k, kind in enumerate(_KINDS)]
            frame[name] = _texts(pieces, CODED.get(name, ()) if coded else ())
    # Only a trade has a meta; only one that is not "{}" may name a signal.
    links = np.zeros(total, dtype="int64")
    unlinked = np.ones(total, dtype=bool)
    metas = columns["meta"][_KINDS.index("trade")]
    metas = () if metas is None else metas
    offset = sizes["candle"] + sizes["signal"]
    for i, text in enumerate(metas):
        if text is not None and text != "{}":
            link = signal_seq_of(parse_meta(text))
            if link is not None:
                links[offset + i], unlinked[offset + i] = link, False
    frame["signal_seq"] = pd.arrays.IntegerArray(links, unlinked)
    out = pd.DataFrame(frame, columns=list(EVENT_COLUMNS))[keep]
    # Categories are sorted: code order is name order (kinds: candle < signal < trade).
    codes = [out[name].cat.codes.to_numpy() for name in ("symbol", "kind")]
    order = np.lexsort((out["seq"].to_numpy(), *codes, out["ts"].to_numpy()))
    ordered: pd.DataFrame = out.iloc[order].reset_index(drop=True)
    return ordered


def _transposed(rows: Sequence[Sequence[Any]], width: int) -> list[Any]:
    """The columns of ``rows`` (each ``width`` long), as object arrays when they can be.

    pandas' C helper behind ``DataFrame.from_records`` makes one 2-D object array from tuples in
    half the time of ``zip(*rows)``, and numpy converts its columns to numbers faster than
    tuples. It is not public API: anything unexpected (rows that are not tuples, as SQLAlchemy
    Rows on PostgreSQL, or a pandas without it) takes the plain path.
    """
    if not rows:
        return [() for _ in range(width)]
    try:
        table = _to_object_array_tuples(rows)
    except (TypeError, ValueError, AttributeError):
        table = None
    if table is not None and table.shape == (len(rows), width):
        return [table[:, j] for j in range(width)]
    return list(zip(*rows, strict=True))


def _to_object_array_tuples(rows: Sequence[Sequence[Any]]) -> np.ndarray[Any, Any] | None:
    if not all(type(row) is tuple for row in rows[:1]):
        return None
    from pandas._libs import lib

    table: np.ndarray[Any, Any] = lib.to_object_array_tuples(list(rows))  # type: ignore[attr-defined]
    return table


def _numbers(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """float64, NaN for what is not a number (SQL rows are untrusted)."""
    try:
        return np.array(values, dtype="float64")  # None -> NaN; the common case
    except (TypeError, ValueError, OverflowError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype="float64")


def _texts(pieces: Sequence[tuple[Sequence[Any] | None, int]], coded: Sequence[str] = ()) -> Any:
    """Names over every kind as one categorical with sorted categories, from each kind's column
    (None: the kind has none, ``size`` missing values). None stays missing, another type is
    text, an integer ``i`` is ``coded[i]`` when there is one. Each kind is factorised alone:
    a column of names only hashes twice as fast as one padded with the other kinds' None."""
    found: list[tuple[np.ndarray[Any, Any], list[str]]] = []
    for values, size in pieces:
        if values is None or not size:
            found.append((np.full(size, -1, dtype="int64"), []))
            continue
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))  # C hashing; None -> -1
        names = [
            u if type(u) is str else coded[u] if type(u) is int and 0 <= u < len(coded) else str(u)
            for u in uniques
        ]
        found.append((codes, names))
    distinct = sorted({name for _codes, names in found for name in names})
    position = {name: i for i, name in enumerate(distinct)}
    remapped = [
        np.array([*(position[name] for name in names), -1], dtype="int64")[codes] for codes, names in found
    ]
    return _categories(np.concatenate(remapped) if remapped else np.empty(0, dtype="int64"), distinct)


def _categories(codes: np.ndarray[Any, Any], names: list[str]) -> Any:
    """A categorical of ``codes`` (-1: missing) into the sorted ``names``."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype="str"))


def build_quality(
    parts: dict[str, list[Any]],
    rules: QualityRules,
    start_ms: int,
    end_ms: int,
    query_ms: float,
    *,
    coded: bool = False,
) -> SignalQuality:
    """:class:`SignalQuality` from the rows of :func:`batch_queries` (CPU work: off the event loop).

    ``parts`` is emptied once the frame is built: its rows are the batch's largest allocation,
    and the pandas pass reuses their memory instead of faulting in new pages.
    """
    began = time.perf_counter()
    frame = quality_frame(parts, coded=coded)
    parts.clear()
    groups = quality_batch(frame, rules)
    compute_ms = (time.perf_counter() - began) * 1000
    return SignalQuality(start_ms, end_ms, rules, groups, {"query": query_ms, "compute": compute_ms})
