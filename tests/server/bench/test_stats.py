from __future__ import annotations

from server.bench.rig import judge
from server.bench.stats import LatencyHistogram, median_rows, ratio


def test_histogram_quantiles_within_one_percent_and_merge() -> None:
    first, second = LatencyHistogram(), LatencyHistogram()
    for value in range(1, 1001):
        (first if value % 2 else second).add(float(value))
    first.merge(LatencyHistogram.from_json(second.to_json()))
    assert first.count == 1000
    assert abs(first.quantile_us(0.5) - 500) / 500 < 0.02
    assert abs(first.quantile_us(0.99) - 990) / 990 < 0.02
    assert first.max_us == 1000
    assert first.summary_ms()["max_ms"] == 1.0


def test_median_rows_takes_each_figure_s_median_and_keeps_text() -> None:
    runs = [
        [{"figure": "a", "x": 1, "y": 2.0}],
        [{"figure": "a", "x": 5, "y": None}],
        [{"figure": "a", "x": 3, "y": 4.0}],
    ]
    assert median_rows(runs) == [{"figure": "a", "x": 3, "y": 3.0}]


def test_ratio_and_judge() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0) is None
    rows = judge(
        [{"figure": "f", "ratio": 1.6}, {"figure": "g", "v": 1}, {"figure": "h"}],
        {"f": ("ratio", ">= 1.5"), "g": ("v", "== 0")},
    )
    assert rows[0]["target"] == "ratio >= 1.5 ok"
    assert rows[1]["target"] == "v == 0 MISSED"
    assert "target" not in rows[2]
