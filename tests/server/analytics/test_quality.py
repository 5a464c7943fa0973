"""Signal quality: hand-computed golden figures, and the live stream equal to the batch."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.analytics.quality import QualityRules, mean_interval, signal_seq_of, wilson
from server.analytics.quality_batch import events_frame, quality_batch
from server.analytics.quality_stream import QualityStream

Event = tuple[str, str, int, dict[str, Any]]
B = {"bot": "b1", "strategy": "s1"}


def _signal(seq: int, ts: int, kind: str, price: float, confidence: float, **more: Any) -> Event:
    return (
        "signal",
        "X",
        seq,
        {"ts": ts, "type": kind, "price": price, "confidence": confidence, **B, **more},
    )


def _trade(
    seq: int, ts: int, side: str, action: str, price: float, qty: float, position: str, **more: Any
) -> Event:
    fields = {"ts": ts, "side": side, "action": action, "price": price, "qty": qty, "position": position}
    return ("trade", "X", seq, {**B, **fields, **more})


def _candle(seq: int, ts: int, close: float, symbol: str = "X") -> Event:
    return ("candle", symbol, seq, {"ts": ts, "close": close, "open": close, "high": close, "low": close})


GOLDEN: list[Event] = [
    _signal(1, 1000, "buy", 100.0, 0.75),
    _trade(2, 2000, "buy", "entry", 101.0, 1.0, "p1", fee=0.1),  # partial fills of signal 1
    _trade(3, 2500, "buy", "entry", 103.0, 1.0, "p1", fee=0.1),
    _candle(4, 3000, 110.0),
    _trade(5, 4000, "sell", "exit", 110.0, 1.0, "p1", fee=0.1),
    _signal(6, 5000, "sell", 100.0, 0.35),
    _trade(7, 5000, "sell", "entry", 99.0, 2.0, "p2", meta={"signal_seq": 6}),
    _trade(8, 6000, "buy", "exit", 101.0, 2.0, "p2"),  # p2 closes before p1: out of order
    _trade(9, 6000, "sell", "exit", 115.0, 1.0, "p1", fee=0.1),
    _signal(10, 7000, "hold", 100.0, 0.9),
    _signal(11, 8000, "buy", 100.0, 0.95),  # never followed by an entry: unlinked
    _trade(12, 9000, "buy", "entry", 100.0, 1.0, "p3", meta={"signal_seq": 99}),  # names no signal
    _candle(13, 9500, 104.0),
]


def _row(events: list[Event]) -> dict[str, Any]:
    stream = QualityStream()
    stream.apply_all(events)
    (row,) = stream.snapshot()
    return row


def test_golden_attribution_slippage_and_pnl() -> None:
    row = _row(GOLDEN)
    # Signal 1 led to both entries of p1 (vwap 102 vs 100: +200 bps, first fill after 1 s);
    # signal 6 to p2 by its explicit seq (99 vs 100 for a short: +100 bps, 0 s).
    assert (row["signals"], row["holds"], row["linked"], row["unlinked"]) == (3, 1, 2, 1)
    assert (row["entries"], row["linked_entries"], row["unknown_links"]) == (4, 3, 1)
    assert row["latency_mean_ms"] == 500.0 and row["latency_max_ms"] == 1000
    assert row["slippage_mean_bps"] == pytest.approx(150.0)
    # p1 at average cost 102, entry fees 0.2: 8 - 0.1 - 0.1 = 7.8 and 13 - 0.1 - 0.1 = 12.8.
    # p2 short: -(101 - 99) * 2 = -4.
    assert (row["trades"], row["wins"], row["losses"]) == (2, 1, 1)
    assert row["realised_pnl"] == pytest.approx(20.6 - 4.0)
    assert row["expectancy"] == pytest.approx(8.3)
    assert row["profit_factor"] == pytest.approx(20.6 / 4.0)
    # p3 open at 100, marked to the last candle 104.
    assert row["unrealised_pnl"] == pytest.approx(4.0)
    assert row["equity"] == pytest.approx(10_000 + 16.6 + 4.0)
    # Realised equity 10007.8 -> 10003.8 -> 10016.6: 4.0 below its peak.
    assert row["max_drawdown"] == pytest.approx(4.0)
    assert row["max_drawdown_pct"] == pytest.approx(4.0 / 10_007.8 * 100)


def test_golden_calibration_buckets() -> None:
    buckets = {b["bucket"]: b for b in _row(GOLDEN)["calibration"]}
    assert (buckets[7]["signals"], buckets[7]["resolved"], buckets[7]["hits"]) == (1, 1, 1)
    assert buckets[7]["mean_pnl"] == pytest.approx(20.6)
    assert (buckets[3]["signals"], buckets[3]["hits"], buckets[3]["mean_pnl"]) == (1, 0, pytest.approx(-4.0))
    assert (buckets[9]["signals"], buckets[9]["linked"], buckets[9]["resolved"]) == (1, 0, 0)
    assert buckets[9]["hit_rate"] is None
    assert sum(b["signals"] for b in buckets.values()) == 3


def test_an_open_position_leaves_its_signal_unresolved() -> None:
    events = GOLDEN[:4]
    row = _row(events)
    assert (row["linked"], row["resolved"]) == (1, 0)
    # Two long lots at average 102, marked to 110.
    assert row["unrealised_pnl"] == pytest.approx(16.0)


def test_wilson_and_mean_intervals() -> None:
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (None, None)
    mean, low2, high2 = mean_interval(4, 10.0, 30.0)  # values 1, 2, 3, 4
    assert mean == 2.5
    assert high2 is not None and low2 is not None
    assert high2 - mean == pytest.approx(1.959963984540054 * math.sqrt((5 / 3) / 4))


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"signal_seq": 5}, 5),
        ({"signal_seq": True}, None),
        ({"signal_seq": -1}, None),
        ({"signal_seq": 2**63}, None),
        ({"signal_seq": "5"}, None),
        (None, None),
        ([1], None),
    ],
)
def test_signal_seq_is_taken_only_when_usable(meta: Any, expected: int | None) -> None:
    assert signal_seq_of(meta) == expected


def test_hostile_numbers_are_rejected_and_counted() -> None:
    stream = QualityStream()
    assert not stream.apply(
        "trade",
        "X",
        1,
        {**B, "ts": 1, "side": "buy", "action": "entry", "price": "nan", "qty": 1.0, "position": "p"},
    )
    assert not stream.apply(
        "trade",
        "X",
        2,
        {**B, "ts": 1, "side": "buy", "action": "entry", "price": 1.0, "qty": -1.0, "position": "p"},
    )
    assert not stream.apply("signal", "X", 3, {**B, "ts": 1, "type": "buy", "price": 1.0})
    assert stream.rejected == 3 and stream.snapshot() == []


# -- the stream equals the batch ----------------------------------------------------------

BOTS = ("b1", "b2")
STRATEGIES = ("s1", "s2")
SYMBOLS = ("X", "Y")


@st.composite
def event_sequences(draw: st.DrawFn) -> list[Event]:
    count = draw(st.integers(min_value=1, max_value=80))
    events: list[Event] = []
    ts = 1_700_000_000_000
    seqs = {s: 0 for s in SYMBOLS}
    signal_seqs: list[tuple[str, int]] = []
    for _ in range(count):
        ts += draw(st.sampled_from([0, 1_000, 45_000, 250_000, 3_600_000, 20 * 3_600_000]))
        symbol = draw(st.sampled_from(SYMBOLS))
        seqs[symbol] += 1
        seq = seqs[symbol]
        bot, strategy = draw(st.sampled_from(BOTS)), draw(st.sampled_from(STRATEGIES))
        price = draw(st.floats(min_value=1.0, max_value=200.0))
        what = draw(st.sampled_from(["signal", "signal", "entry", "entry", "exit", "exit", "candle"]))
        base = {"ts": ts, "bot": bot, "strategy": strategy}
        if what == "signal":
            kind = draw(st.sampled_from(["buy", "sell", "hold"]))
            confidence = draw(st.floats(min_value=0.0, max_value=1.0))
            events.append(
                ("signal", symbol, seq, {**base, "type": kind, "price": price, "confidence": confidence})
            )
            signal_seqs.append((symbol, seq))
        elif what == "candle":
            events.append(_candle(seq, ts, price, symbol))
        else:
            fields: dict[str, Any] = {
                **base,
                "side": draw(st.sampled_from(["buy", "sell"])),
                "action": "entry" if what == "entry" else "exit",
                "price": price,
                "qty": draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0])),
                "fee": draw(st.sampled_from([0.0, 0.01, 0.1])),
                "position": draw(st.sampled_from(["p1", "p2", "p3"])),
            }
            if what == "exit" and draw(st.booleans()):
                fields["pnl"] = draw(st.floats(min_value=-50.0, max_value=50.0))
            if what == "entry" and signal_seqs and draw(st.integers(0, 3)) == 0:
                fields["meta"] = {"signal_seq": draw(st.sampled_from(signal_seqs))[1]}
            events.append(("trade", symbol, seq, fields))
    return events


def _same(streamed: Any, batch: Any, path: str = "") -> None:
    if isinstance(streamed, dict):
        assert streamed.keys() == batch.keys(), path
        for key in streamed:
            _same(streamed[key], batch[key], f"{path}.{key}")
    elif isinstance(streamed, list):
        assert len(streamed) == len(batch), path
        for index, (a, b) in enumerate(zip(streamed, batch, strict=True)):
            _same(a, b, f"{path}[{index}]")
    elif isinstance(streamed, float) or isinstance(batch, float):
        assert streamed is not None and batch is not None, (path, streamed, batch)
        assert math.isclose(streamed, batch, rel_tol=1e-9, abs_tol=1e-9), (path, streamed, batch)
    else:
        assert streamed == batch, (path, streamed, batch)


@settings(max_examples=150, deadline=None)
@given(event_sequences(), st.integers(min_value=0, max_value=600_000))
def test_streamed_equals_batch(events: list[Event], horizon_ms: int) -> None:
    rules = QualityRules(horizon_ms=horizon_ms, window_days=7)
    stream = QualityStream(rules)
    cut = len(events) // 2
    stream.apply_all(events[:cut])
    _same(stream.snapshot(), quality_batch(events_frame(events[:cut]), rules))
    stream.apply_all(events[cut:])
    _same(stream.snapshot(), quality_batch(events_frame(events), rules))
