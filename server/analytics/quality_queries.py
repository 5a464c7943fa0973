"""Signal quality's SQL rows as the batch's event frame, and the batch's result.

The statements are in server/analytics/quality_rows.py (shared with the live feed, which
must not import pandas); rows are untrusted there and here: a number that is not one becomes
NaN and the batch leaves that row out (server/analytics/quality_batch.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from server.analytics.quality import QualityRules
from server.analytics.quality_batch import events_frame, quality_batch
from server.analytics.quality_report import SignalQuality
from server.analytics.quality_rows import (
    MAX_META_CHARS,
    QUERY_COLUMNS,
    fold_events,
    parse_meta,
    quality_query,
)

__all__ = [
    "MAX_META_CHARS",
    "QUERY_COLUMNS",
    "build_quality",
    "parse_meta",
    "quality_events",
    "quality_query",
]


def quality_events(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The batch's frame from :func:`quality_query` rows, in fold order (ts, kind, symbol, seq)."""
    return events_frame(fold_events(rows))


def build_quality(
    rows: Sequence[Sequence[Any]], rules: QualityRules, start_ms: int, end_ms: int, query_ms: float
) -> SignalQuality:
    """:class:`SignalQuality` from :func:`quality_query` rows (CPU work: off the event loop)."""
    began = time.perf_counter()
    groups = quality_batch(quality_events(rows), rules)
    compute_ms = (time.perf_counter() - began) * 1000
    return SignalQuality(start_ms, end_ms, rules, groups, {"query": query_ms, "compute": compute_ms})
