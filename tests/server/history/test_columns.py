from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from server.history.columns import (
    CandleItem,
    EventItem,
    bucket_ms,
    candle_columns,
    event_columns,
    finite_list,
    keep_latest,
    latest_candles,
)


def candle(ts: int, current: bool, seq: int, close: float = 1.0) -> CandleItem:
    return (ts, current, seq, 1.0, 2.0, 0.5, close, 1.0)


def test_the_last_update_of_a_candle_wins_and_the_current_epoch_beats_older_ones() -> None:
    items = [
        candle(60, True, 5, 3.0),
        candle(0, True, 1),
        candle(60, True, 7, 4.0),
        candle(60, False, 900, 9.0),
    ]
    assert latest_candles(items) == [candle(0, True, 1), candle(60, True, 7, 4.0)]


def test_downsampling_a_hand_computed_example() -> None:
    # Six 1-minute candles into at most 4 points: 2-minute buckets aligned to the Unix epoch
    # (3 points: aligned buckets of a 5-minute span may touch one more than span / width).
    bars = [(0, 10, 12, 9, 11, 1), (1, 11, 15, 10, 14, 2), (2, 14, 14, 8, 9, 3),
            (3, 9, 10, 7, 8, 4), (4, 8, 9, 6, 7, 5), (5, 7, 20, 7, 19, 6)]  # fmt: skip
    items: list[CandleItem] = [
        (m * 60_000, True, m + 1, float(o), float(h), float(lo), float(c), float(v))
        for m, o, h, lo, c, v in bars
    ]
    assert candle_columns(items, 4) == {
        "ts": [0, 120_000, 240_000],
        "open": [10.0, 14.0, 8.0],
        "high": [15.0, 14.0, 20.0],
        "low": [9.0, 7.0, 6.0],
        "close": [14.0, 8.0, 19.0],
        "volume": [3.0, 7.0, 11.0],
    }
    assert candle_columns(items, 6)["ts"] == [m * 60_000 for m in range(6)]  # no downsampling needed


@settings(max_examples=60)
@given(
    gaps=st.lists(st.integers(1, 50), min_size=1, max_size=300),
    unit=st.sampled_from([1000, 60_000]),
    start=st.integers(0, 10**6),
    max_points=st.integers(2, 100),
)
def test_buckets_never_exceed_max_points_and_are_a_multiple_of_the_spacing(
    gaps: list[int], unit: int, start: int, max_points: int
) -> None:
    stamps = [start * unit]
    for gap in gaps:
        stamps.append(stamps[-1] + gap * unit)
    width = bucket_ms(stamps, max_points)
    assert width % (min(gaps) * unit) == 0
    assert len({ts // width for ts in stamps}) <= max_points


def test_non_finite_numbers_become_none() -> None:
    assert finite_list([1.0, math.nan, None, math.inf, "x", -math.inf, 2]) == [
        1.0,
        None,
        None,
        None,
        "x",
        None,
        2,
    ]
    items: list[CandleItem] = [
        (0, True, 1, math.nan, 2.0, 0.5, 1.0, math.inf),
        (60, True, 2, 1.0, 2.0, 0.5, 1.0, 1.0),
    ]
    columns = candle_columns(items, 10)
    assert columns["open"] == [None, 1.0] and columns["volume"] == [None, 1.0]


def test_past_max_events_the_latest_by_ts_are_kept() -> None:
    items: list[EventItem] = [
        (ts, True, seq, "signal", (seq, ts)) for seq, ts in [(1, 50), (2, 10), (3, 30), (4, 40)]
    ]
    kept, omitted = keep_latest(items, 2, total=10)
    assert [item[2] for item in kept] == [4, 1] and omitted == 8
    assert event_columns(kept, ("seq", "ts")) == {"seq": [4, 1], "ts": [40, 50]}
    assert event_columns([], ("seq", "ts")) == {"seq": [], "ts": []}


def test_one_point_holds_everything() -> None:
    items: list[CandleItem] = [(60_000 * m, True, m, 1.0, 2.0 + m, 0.5, 1.5, 1.0) for m in range(5)]
    assert candle_columns(items, 1) == {
        "ts": [0], "open": [1.0], "high": [6.0], "low": [0.5], "close": [1.5], "volume": [5.0]
    }  # fmt: skip
