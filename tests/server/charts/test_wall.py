"""build_symbol_figure and kpis: the wall's figure contract (docs/charts.md)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from publishers.events import now_ms
from server.charts import styles
from server.charts.frames import candle_frame
from server.charts.wall import build_symbol_figure, build_symbol_figure_async, downsample_candles, kpis
from tests.support.analytics_data import DAY0, HOUR_MS, demo_events

COLUMNS = {
    "candle": ["ts", "open", "high", "low", "close", "volume"],
    "signal": ["seq", "ts", "bot", "strategy", "type", "price", "confidence"],
    "trade": ["seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position"],
    "bot": ["ts", "bot", "strategy", "status", "equity"],
}


def columnar(events: list[dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """A history frame's ``data`` object from events (docs/protocol.md)."""
    data: dict[str, dict[str, list[Any]]] = {kind: {c: [] for c in cols} for kind, cols in COLUMNS.items()}
    for seq, event in enumerate(events, start=1):
        event = {**event, "seq": seq}
        for column in COLUMNS[event["kind"]]:
            data[event["kind"]][column].append(event[column])
    return data


@pytest.fixture(scope="module")
def demo() -> dict[str, dict[str, list[Any]]]:
    return columnar([e for e in demo_events(end_ms=now_ms(), hours=2) if e["symbol"] == "BTCUSDT"])


def trace(out: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = out["figure"]["data"][out["trace_map"][key]]
    return found


def test_trace_map_points_to_the_right_traces_and_counts_equal_the_data(demo: dict[str, Any]) -> None:
    out = build_symbol_figure("BTCUSDT", demo)
    data = out["figure"]["data"]
    assert sorted(out["trace_map"].values()) == list(range(len(data)))
    for key, index in out["trace_map"].items():
        assert data[index]["meta"]["key"] == key
    assert trace(out, "candle")["type"] == "candlestick"
    assert len(trace(out, "candle")["x"]) == len(set(demo["candle"]["ts"]))
    signals = demo["signal"]
    for key in (k for k in out["trace_map"] if k.startswith("signal:")):
        _, strategy, signal_type = key.split(":")
        expected = sum(
            1
            for s, t in zip(signals["strategy"], signals["type"], strict=True)
            if (s, t) == (strategy, signal_type)
        )
        assert len(trace(out, key)["x"]) == expected > 0
        assert (
            trace(out, key)["legendgroup"] == strategy
            and trace(out, key)["name"] == f"{strategy} {signal_type}"
        )
    assert sum(len(trace(out, k)["x"]) for k in out["trace_map"] if k.startswith("signal:")) == len(
        signals["ts"]
    )
    actions = demo["trade"]["action"]
    assert len(trace(out, "trade:entry")["x"]) == actions.count("entry")
    assert len(trace(out, "trade:exit")["x"]) == actions.count("exit")
    pnls = [p for p, a in zip(demo["trade"]["pnl"], actions, strict=True) if a == "exit"]
    assert len(trace(out, "trade_line:win")["x"]) == 3 * sum(1 for p in pnls if p > 0)
    assert len(trace(out, "trade_line:loss")["x"]) == 3 * sum(1 for p in pnls if p <= 0)
    bots = sorted(set(demo["bot"]["bot"]))
    assert [k for k in out["trace_map"] if k.startswith("equity:")] == [f"equity:{b}" for b in bots]
    for bot in bots:
        line = trace(out, f"equity:{bot}")
        assert line["yaxis"] == "y2"
        last_per_ts = {
            t: e
            for b, t, e in zip(demo["bot"]["bot"], demo["bot"]["ts"], demo["bot"]["equity"], strict=True)
            if b == bot
        }
        assert [y for y in line["y"] if y is not None] == list(last_per_ts.values())  # one point per ts


def test_markers_follow_the_styling_rules_the_live_block_publishes(demo: dict[str, Any]) -> None:
    out = build_symbol_figure("BTCUSDT", demo)
    live = out["live"]
    (size_min, size_max), (op_min, op_max) = live["confidence"]["size"], live["confidence"]["opacity"]
    buy = trace(out, next(k for k in out["trace_map"] if k.endswith(":buy")))
    assert buy["marker"]["symbol"] == "triangle-up" == live["symbols"]["signal"]["buy"]
    assert buy["marker"]["color"] == live["colors"]["signal"]["buy"] == "#22c55e"
    for (_bot, _strategy, confidence), size, opacity in zip(
        buy["customdata"], buy["marker"]["size"], buy["marker"]["opacity"], strict=True
    ):
        assert size == pytest.approx(size_min + (size_max - size_min) * confidence, abs=1e-3)
        assert opacity == pytest.approx(op_min + (op_max - op_min) * confidence, abs=1e-3)
    sell = trace(out, next(k for k in out["trace_map"] if k.endswith(":sell")))
    assert sell["marker"]["symbol"] == "triangle-down" and sell["marker"]["color"] == "#ef4444"
    exits = trace(out, "trade:exit")
    for custom, color in zip(exits["customdata"], exits["marker"]["color"], strict=True):
        assert len(custom) == len(live["customdata"]["trade:exit"])
        assert custom[6] == f"{custom[5]:+,.2f}"
        assert color == live["colors"]["pnl"]["win" if custom[5] > 0 else "loss" if custom[5] < 0 else "flat"]
    assert "P&L: %{customdata[6]}" in exits["hovertemplate"]
    templates = live["templates"]
    assert set(templates) == {
        "signal",
        "equity",
        "trade:entry",
        "trade:exit",
        "trade_line:win",
        "trade_line:loss",
        "candle",
        "price",
    }
    assert templates["candle"]["type"] == "candlestick" and templates["candle"]["x"] == []
    assert templates["price"]["x"] == [] and templates["price"]["connectgaps"] is False
    skeleton = templates["signal"]["buy"]
    assert (
        skeleton["x"] == []
        and skeleton["name"] == "{strategy} buy"
        and skeleton["legendgroup"] == "{strategy}"
    )
    assert {
        k: v
        for k, v in skeleton.items()
        if k not in ("x", "y", "customdata", "marker", "name", "legendgroup", "meta")
    } == {
        k: v
        for k, v in buy.items()
        if k not in ("x", "y", "customdata", "marker", "name", "legendgroup", "meta")
    }
    assert templates["equity"]["yaxis"] == "y2" and live["equity_bots"] == sorted(set(demo["bot"]["bot"]))


def test_layout_is_a_dark_wall_that_keeps_zoom(demo: dict[str, Any]) -> None:
    layout = build_symbol_figure("BTCUSDT", demo)["figure"]["layout"]
    assert layout["uirevision"] == "BTCUSDT" and layout["xaxis"]["uirevision"] == "BTCUSDT"
    assert layout["xaxis"]["type"] == "date" and layout["xaxis"]["rangeslider"] == {"visible": False}
    assert layout["font"]["size"] >= 18 and layout["paper_bgcolor"] == styles.THEMES["dark"].background
    assert layout["yaxis2"]["domain"][1] < layout["yaxis"]["domain"][0]
    light = build_symbol_figure("BTCUSDT", demo, theme="light")["figure"]["layout"]
    assert light["paper_bgcolor"] == "#ffffff"
    with pytest.raises(ValueError, match="theme: must be one of dark, light"):
        build_symbol_figure("BTCUSDT", demo, theme="neon")


def test_json_is_safe_with_nulls_and_nans() -> None:
    data = {
        "signal": {
            "seq": [1, 2],
            "ts": [DAY0, DAY0 + 60_000],
            "bot": ["b", "b"],
            "strategy": ["s", "s"],
            "type": ["buy", "hold"],
            "price": [10.0, 11.0],
            "confidence": [0.5, 1.0],
        },
        "trade": {
            "seq": [3, 4, 5],
            "ts": [DAY0, DAY0 + 1, DAY0 + 2],
            "bot": ["b"] * 3,
            "strategy": ["s"] * 3,
            "side": ["buy", "sell", "sell"],
            "action": ["entry", "exit", "exit"],
            "price": [10.0, 12.0, 9.0],
            "qty": [2.0, 1.0, 1.0],
            "pnl": [None, None, float("nan")],
            "position": ["p", "p", "q"],
        },
        "bot": {
            "ts": [DAY0, DAY0 + 1],
            "bot": ["b", "b"],
            "strategy": ["s", "s"],
            "status": ["active", "paused"],
            "equity": [None, float("nan")],
        },
    }
    out = build_symbol_figure("X", data)
    text = json.dumps(out, allow_nan=False)  # raises on NaN/inf
    assert "NaN" not in text
    exits = trace(out, "trade:exit")
    assert [c[5] for c in exits["customdata"]] == [2.0, None]  # computed from the entry; unknown stays null
    assert [c[6] for c in exits["customdata"]] == ["+2.00", "n/a"]
    assert not any(k.startswith("equity:") for k in out["trace_map"])  # no equity reported: no strip
    assert "yaxis2" not in out["figure"]["layout"]
    assert trace(out, "price")["type"] == "scatter"  # no candles: a price line


def test_price_line_and_equity_show_time_gaps_as_gaps() -> None:
    minutes = [0, 1, 2, 3, 4, 60, 61, 62]  # an hour without anything between 4 and 60
    ts = [DAY0 + m * 60_000 for m in minutes]
    data = {
        "signal": {
            "seq": list(range(8)),
            "ts": ts,
            "bot": ["b"] * 8,
            "strategy": ["s"] * 8,
            "type": ["buy"] * 8,
            "price": [float(100 + i) for i in range(8)],
            "confidence": [0.5] * 8,
        },
        "bot": {
            "ts": ts,
            "bot": ["b"] * 8,
            "strategy": ["s"] * 8,
            "status": ["active"] * 8,
            "equity": [1000.0 + i for i in range(8)],
        },
    }
    out = build_symbol_figure("X", data)
    price = trace(out, "price")
    assert price["y"].count(None) == 1 and price["y"].index(None) == 5
    equity = trace(out, "equity:b")
    assert equity["y"].count(None) == 1 and equity["connectgaps"] is False
    # the thresholds used, for the client: 10x / 3x the median step (1 minute), at least a minute
    assert out["live"]["gap_ms"] == {"price": 600_000, "equity": 180_000}


def test_a_bot_that_also_reports_on_every_status_change_has_no_false_gaps() -> None:
    regular = [DAY0 + m * 5 * 60_000 for m in range(24)]  # every 5 minutes for two hours
    flips = [t + d for t in regular[:-1] for d in (10_000, 20_000)]  # and on status changes
    ts = sorted(regular + flips)
    data = {
        "bot": {
            "ts": ts,
            "bot": ["b"] * len(ts),
            "strategy": ["s"] * len(ts),
            "status": ["active"] * len(ts),
            "equity": [1000.0] * len(ts),
        }
    }
    out = build_symbol_figure("X", data)
    assert None not in trace(out, "equity:b")["y"]  # the median step is short; 5 minutes is no gap
    assert 5 * 60_000 < out["live"]["gap_ms"]["equity"] <= 3 * 5 * 60_000
    late = [*ts, ts[-1] + 60 * 60_000]  # then an hour of silence: a gap
    data["bot"] = {k: [*v, v[-1]] for k, v in data["bot"].items()} | {"ts": late}
    assert trace(build_symbol_figure("X", data), "equity:b")["y"].count(None) == 1


def test_a_figure_without_equity_says_how_to_make_room_for_it() -> None:
    out = build_symbol_figure("X", {})
    axes = out["live"]["equity_axes"]
    with_equity = build_symbol_figure(
        "X",
        {"bot": {"ts": [DAY0], "bot": ["b"], "strategy": ["s"], "status": ["active"], "equity": [1.0]}},
    )["figure"]["layout"]
    assert axes["yaxis.domain"] == with_equity["yaxis"]["domain"]
    assert axes["yaxis2"] == with_equity["yaxis2"] and axes["annotations"] == with_equity["annotations"]
    assert axes["xaxis.anchor"] == with_equity["xaxis"]["anchor"] == "y2"


def test_candles_are_downsampled_in_time_buckets_and_gaps_stay() -> None:
    ts = [DAY0 + m * 60_000 for m in range(100)] + [DAY0 + HOUR_MS * 5 + m * 60_000 for m in range(100)]
    candles = candle_frame(
        {
            "ts": ts,
            "open": list(range(200)),
            "high": [x + 5 for x in range(200)],
            "low": [x - 5 for x in range(200)],
            "close": [x + 1 for x in range(200)],
            "volume": [1.0] * 200,
        }
    )
    small = downsample_candles(candles, 20)
    assert len(small) <= 20
    first = small.iloc[0]
    bucket = int(small["ts"].iloc[1] - small["ts"].iloc[0])
    n = bucket // 60_000
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        0,
        n - 1 + 5,
        -5,
        n,
        float(n),
    )
    gap = small["ts"].diff().max()
    assert gap > HOUR_MS * 3  # the empty hours are not filled or bridged by a bucket
    out = build_symbol_figure(
        "X",
        {
            "candle": {
                "ts": ts,
                "open": [1.0] * 200,
                "high": [2.0] * 200,
                "low": [0.5] * 200,
                "close": [1.5] * 200,
                "volume": [1.0] * 200,
            }
        },
        max_points=50,
    )
    assert len(trace(out, "candle")["x"]) <= 50 and out["live"]["max_points"] == 50


def test_an_empty_symbol_still_has_a_figure() -> None:
    out = build_symbol_figure("NEW", {})
    assert out["trace_map"] == {"price": 0}
    assert trace(out, "price")["x"] == []
    json.dumps(out, allow_nan=False)


def test_kpis() -> None:
    now = DAY0 + 12 * HOUR_MS
    data = {
        "candle": {
            "ts": [DAY0, DAY0 + 60_000],
            "open": [1.0, 2.0],
            "high": [1.0, 2.0],
            "low": [1.0, 2.0],
            "close": [100.0, 105.0],
            "volume": [1.0, 1.0],
        },
        "trade": {
            "seq": [1, 2, 3, 4, 5],
            "bot": ["a"] * 5,
            "strategy": ["s"] * 5,
            "ts": [DAY0 - HOUR_MS, DAY0 - 1000, DAY0 + 1000, DAY0 + 2000, DAY0 + 3000],
            "side": ["buy", "sell", "buy", "sell", "buy"],
            "action": ["entry", "exit", "entry", "exit", "entry"],
            "price": [100.0, 90.0, 100.0, 104.0, 100.0],
            "qty": [1.0] * 5,
            "pnl": [None, -10.0, None, 4.0, None],
            "position": ["p1", "p1", "p2", "p2", "p3"],
        },
        "bot": {
            "ts": [DAY0, DAY0 + 1, DAY0 + 2],
            "bot": ["a", "b", "a"],
            "strategy": ["s"] * 3,
            "status": ["paused", "active", "active"],
            "equity": [None, None, 990.0],
        },
    }
    tiles = kpis(data, now_ms=now)
    assert tiles["last_price"] == 105.0
    assert tiles["today_pnl"] == pytest.approx(4.0)  # the -10 exit was yesterday (UTC)
    assert tiles["win_rate"] == pytest.approx(50.0)
    assert tiles["open_positions"] == 1 and tiles["unrealized_pnl"] == pytest.approx(5.0)
    assert tiles["active_bots"] == 2 and tiles["trades"] == 2 and tiles["realized_pnl"] == pytest.approx(-6.0)
    assert tiles["day_start"] == DAY0
    empty = kpis({}, now_ms=now)
    assert empty["last_price"] is None and empty["win_rate"] is None and empty["active_bots"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in empty.values())


async def test_the_async_twin_builds_the_same_figure(demo: dict[str, Any]) -> None:
    assert await build_symbol_figure_async("BTCUSDT", demo, max_points=100) == build_symbol_figure(
        "BTCUSDT", demo, max_points=100
    )
