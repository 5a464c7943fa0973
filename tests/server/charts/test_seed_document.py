"""Each code block of the seed document (docs/seed/bot-integration.md), imports changed to ours,
placeholders the seed leaves undefined (market_data, get_signals_from_api(), create_base_chart,
the custom query's filter) defined here, run against a real database holding demo-bot history;
one test per block, in the document's order, then the seed's promises the blocks rely on
(keywords, degradation, ids, status order)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import pytest

from publishers.events import now_ms
from server.charts import layers as charts_layers
from server.charts.database import dispose_engines
from server.cli.embedded import free_port
from server.errors import StoreError
from tests.support import async_wait_until
from tests.support.analytics_data import demo_events, fresh_store
from tests.support.fixtures_store import running_recorder

NOW = now_ms()


@functools.cache
def history() -> tuple[dict[str, Any], ...]:
    return tuple(demo_events(end_ms=NOW, hours=1.5))


@pytest.fixture
def market_data() -> pd.DataFrame:
    """BTCUSDT candles (naive UTC timestamps), what the document calls ``market_data``."""
    rows = [e for e in history() if e["kind"] == "candle" and e["symbol"] == "BTCUSDT"]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["ts"], unit="ms")
    return frame[["timestamp", "open", "high", "low", "close", "volume"]]


@pytest.fixture
def store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Demo history in a fresh database, which BotDataService() and the module functions use."""
    asyncio.run(fresh_store(database_url, history()))
    monkeypatch.setenv("SIGNALPUSH_DATABASE_URL", database_url)
    charts_layers.configure(database_url)
    yield database_url
    charts_layers.configure(database_url).close()
    dispose_engines()


def events(kind: str, symbol: str = "BTCUSDT", **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in history()
        if e["kind"] == kind and e["symbol"] == symbol and all(e.get(k) == v for k, v in match.items())
    ]


def names(fig: go.Figure) -> list[str]:
    return [trace.name for trace in fig.data]


def markers(fig: go.Figure, key_prefix: str) -> int:
    return sum(len(t.x) for t in fig.data if t.meta and t.meta["key"].startswith(key_prefix))


# --- Quick Start ---------------------------------------------------------------------------


def test_quick_start_basic_bot_signal_visualization(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import create_bot_signal_layer

    # Create a bot-integrated signal layer for BTCUSDT
    signal_layer = create_bot_signal_layer(
        symbol="BTCUSDT", active_only=True, confidence_threshold=0.5, time_window_days=7
    )

    # Add to chart
    fig = go.Figure()
    fig = signal_layer.render(fig, market_data, symbol="BTCUSDT")

    expected = [e for e in events("signal") if e["confidence"] >= 0.5]
    assert expected and markers(fig, "signal:") == len(expected)
    assert set(names(fig)) <= {"buy signals", "sell signals", "hold signals"}
    # Marker size and opacity grow with confidence (light theme: 8..20 px, 0.35..1).
    trace = fig.data[0]
    confidences = [c[2] for c in trace.customdata]
    assert list(trace.marker.size) == pytest.approx([8 + 12 * c for c in confidences], abs=1e-3)
    assert list(trace.marker.opacity) == pytest.approx([0.35 + 0.65 * c for c in confidences], abs=1e-3)
    assert "bot: %{customdata[0]}" in trace.hovertemplate and "confidence" in trace.hovertemplate


def test_quick_start_complete_bot_visualization_setup(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import create_complete_bot_layers

    # Create complete bot layer set for a symbol
    result = create_complete_bot_layers(
        symbol="BTCUSDT", timeframe="1h", active_only=True, time_window_days=7
    )

    fig = go.Figure()
    if result["success"]:
        signal_layer = result["layers"]["signals"]
        trade_layer = result["layers"]["trades"]

        # Add to chart
        fig = signal_layer.render(fig, market_data, symbol="BTCUSDT")
        fig = trade_layer.render(fig, market_data, symbol="BTCUSDT")

    assert result["success"] and result["error"] is None and result["bots"] == 4
    trades = events("trade")
    assert markers(fig, "trade:entry") == sum(1 for t in trades if t["action"] == "entry")
    assert markers(fig, "trade:exit") == sum(1 for t in trades if t["action"] == "exit")
    assert {"entries", "exits", "winning trades", "losing trades"} <= set(names(fig))
    exits = next(t for t in fig.data if t.meta["key"] == "trade:exit")
    assert "P&L: %{customdata[6]}" in exits.hovertemplate
    pnl_by_label = {c[6] for c in exits.customdata}
    assert {f"{t['pnl']:+,.2f}" for t in trades if t["action"] == "exit"} == pnl_by_label
    # entry -> exit lines: three points per exit (entry, exit, gap), green for wins, red for losses
    wins = next(t for t in fig.data if t.meta["key"] == "trade_line:win")
    assert wins.line.color == "#22c55e" and list(wins.x[2::3]) == [None] * (len(wins.x) // 3)
    win_exits = [t for t in trades if t["action"] == "exit" and t["pnl"] > 0]
    assert len(wins.x) == 3 * len(win_exits)


# --- Bot Data Service -------------------------------------------------------------------------


def test_bot_data_service_basic_usage(store: str) -> None:
    from server.charts.layers.bot_integration import BotDataService, BotFilterConfig

    # Initialize service
    service = BotDataService()

    # Create filter configuration
    bot_filter = BotFilterConfig(
        symbols=["BTCUSDT"], strategies=["momentum", "ema_crossover"], active_only=True
    )

    # Fetch bot data
    bots_df = service.get_bots(bot_filter)
    signals_df = service.get_signals_for_bots(
        bot_ids=bots_df["id"].tolist(),
        start_time=datetime.now() - timedelta(days=7),
        end_time=datetime.now(),
        min_confidence=0.3,
    )

    assert service.database_url == store
    assert sorted(bots_df["name"]) == ["ema-1", "momo-1", "momo-2"] or sorted(bots_df["name"]) == [
        "ema-1",
        "momo-1",
    ]
    assert set(bots_df["status"]) == {"active"}
    assert set(signals_df["bot"]) <= set(bots_df["name"]) and len(signals_df) > 0
    assert (signals_df["confidence"] >= 0.3).all()
    assert {"ETHUSDT", "BTCUSDT"} >= set(signals_df["symbol"])  # bot ids select bots, not symbols
    performance = service.get_bot_performance(bots_df["id"].tolist())
    trades = service.get_trades_for_bots(bots_df["id"].tolist(), sides=["buy"])
    assert set(performance.index) <= set(bots_df["name"]) and set(trades["side"]) == {"buy"}
    service.close()


def test_bot_filter_config_options() -> None:
    from server.charts.layers.bot_integration import BotFilterConfig

    config = BotFilterConfig()
    assert (
        config.bot_ids,
        config.bot_names,
        config.strategies,
        config.symbols,
        config.statuses,
        config.date_range,
        config.active_only,
    ) == (None, None, None, None, None, None, False)
    flt = BotFilterConfig(
        bot_ids=[1, 2], bot_names=["a"], date_range=(datetime(2024, 1, 1), 1_800_000_000_000)
    )
    converted = flt.to_bot_filter()
    assert converted.bot_ids == (1, 2) and converted.bots == ("a",)
    assert converted.date_range == (int(datetime(2024, 1, 1).timestamp() * 1000), 1_800_000_000_000)


# --- Signal Layer Integration -----------------------------------------------------------------


def test_chart_specific_signal_fetching_and_summary_stats(store: str) -> None:
    from server.charts.layers.bot_integration import BotFilterConfig, BotSignalLayerIntegration

    start_time, end_time = datetime.now() - timedelta(days=1), datetime.now()
    integration = BotSignalLayerIntegration()

    # Get signals for specific chart context
    signals_df = integration.get_signals_for_chart(
        symbol="BTCUSDT",
        timeframe="1h",
        bot_filter=BotFilterConfig(active_only=True),
        time_range=(start_time, end_time),
        signal_types=["buy", "sell"],
        min_confidence=0.5,
    )

    # Get trades for chart context
    trades_df = integration.get_trades_for_chart(
        symbol="BTCUSDT",
        timeframe="1h",
        bot_filter=BotFilterConfig(strategies=["momentum"]),
        time_range=(start_time, end_time),
    )

    # Get bot summary statistics
    stats = integration.get_bot_summary_stats(bot_ids=[1, 2, 3])

    expected = [e for e in events("signal") if e["type"] != "hold" and e["confidence"] >= 0.5]
    assert set(signals_df["symbol"]) == {"BTCUSDT"} and set(signals_df["signal_type"]) <= {"buy", "sell"}
    assert len(signals_df) == sum(1 for e in expected if e["bot"] != "momo-2" or _active_at_end("momo-2"))
    assert len(trades_df) == sum(1 for t in events("trade") if t["strategy"] == "momentum")
    assert stats["success"] and {b["bot"] for b in stats["bots"]} <= {"momo-1", "ema-1", "mr-1"}
    assert stats["trade_count"] == sum(b["trade_count"] for b in stats["bots"])


def _active_at_end(bot: str) -> bool:
    statuses = [e for e in history() if e["kind"] == "bot" and e["bot"] == bot]
    return statuses[-1]["status"] == "active"


def test_performance_analytics_summary(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    from server.charts.layers import get_bot_performance_summary

    # Get comprehensive performance summary
    performance = get_bot_performance_summary(bot_id=1, days_back=30)  # Specific bot or None for all

    print(f"Total trades: {performance['trade_count']}")
    print(f"Win rate: {performance['win_rate']:.1f}%")
    print(f"Total P&L: ${performance['bot_stats']['total_pnl']:.2f}")

    out = capsys.readouterr().out
    assert performance["success"] and [b["bot"] for b in performance["bots"]] == ["momo-1"]
    momo = performance["bots"][0]
    assert f"Total trades: {momo['trade_count']}" in out and f"Win rate: {momo['win_rate']:.1f}%" in out
    realized = sum(t["pnl"] for t in history() if t["kind"] == "trade" and t["bot"] == "momo-1" and t["pnl"])
    assert momo["realized_pnl"] == pytest.approx(realized)
    everyone = get_bot_performance_summary(days_back=30)
    assert len(everyone["bots"]) == 4 and {s["strategy"] for s in everyone["strategies"]} == {
        "momentum",
        "ema_crossover",
        "mean_reversion",
    }


# --- Enhanced Bot Layers ----------------------------------------------------------------------


def test_bot_integrated_signal_layer(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import BotIntegratedSignalLayer, BotSignalLayerConfig

    # Configure bot-integrated signal layer
    config = BotSignalLayerConfig(
        name="BTCUSDT Bot Signals",
        auto_fetch_data=True,  # Automatically fetch from database
        time_window_days=7,  # Look back 7 days
        active_bots_only=True,  # Only active bots
        include_bot_info=True,  # Include bot info in hover
        group_by_strategy=True,  # Group signals by strategy
        confidence_threshold=0.3,  # Minimum confidence
        signal_types=["buy", "sell"],  # Signal types to show
    )

    layer = BotIntegratedSignalLayer(config)

    # Render automatically fetches data
    fig = go.Figure()
    fig = layer.render(fig, market_data, symbol="BTCUSDT")

    assert fig.data, "signals were fetched and drawn"
    for trace in fig.data:
        strategy, signal_type = trace.name.rsplit(" ", 1)
        assert trace.legendgroup == strategy and signal_type in ("buy", "sell")
        assert trace.meta["layer"] == "BTCUSDT Bot Signals"
        assert all(c[1] == strategy and c[2] >= 0.3 for c in trace.customdata)
    assert layer.last_error is None


def test_bot_integrated_trade_layer(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import BotIntegratedTradeLayer, BotTradeLayerConfig

    config = BotTradeLayerConfig(
        name="BTCUSDT Bot Trades",
        auto_fetch_data=True,
        time_window_days=7,
        show_pnl=True,  # Show profit/loss
        show_trade_lines=True,  # Connect entry/exit
        include_bot_info=True,  # Bot info in hover
        group_by_strategy=False,
    )

    layer = BotIntegratedTradeLayer(config)
    fig = go.Figure()
    fig = layer.render(fig, market_data, symbol="BTCUSDT")

    keys = [t.meta["key"] for t in fig.data]
    assert keys[:2] == ["trade:entry", "trade:exit"] and set(keys[2:]) <= {
        "trade_line:win",
        "trade_line:loss",
    }
    no_lines = BotIntegratedTradeLayer(BotTradeLayerConfig(show_trade_lines=False, show_pnl=False))
    plain = no_lines.render(go.Figure(), market_data, symbol="BTCUSDT")
    assert [t.meta["key"] for t in plain.data] == ["trade:entry", "trade:exit"]
    assert "P&L" not in plain.data[1].hovertemplate


# --- Multi-Bot Visualization ------------------------------------------------------------------


def test_strategy_comparison(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import bot_multi_layer

    fig = go.Figure()
    # Compare multiple strategies on the same symbol
    result = bot_multi_layer.create_strategy_comparison_layers(
        symbol="BTCUSDT",
        strategies=["momentum", "ema_crossover", "mean_reversion"],
        timeframe="1h",
        time_window_days=14,
    )

    if result["success"]:
        for strategy in result["strategies"]:
            signal_layer = result["layers"][f"{strategy}_signals"]
            trade_layer = result["layers"][f"{strategy}_trades"]

            fig = signal_layer.render(fig, market_data, symbol="BTCUSDT")
            fig = trade_layer.render(fig, market_data, symbol="BTCUSDT")

    assert result["success"]
    groups = {t.legendgroup for t in fig.data}
    assert groups == {"momentum", "ema_crossover", "mean_reversion"}
    assert markers(fig, "signal:") == len(events("signal"))
    assert markers(fig, "trade:momentum:exit") == sum(
        1 for t in events("trade") if t["strategy"] == "momentum" and t["action"] == "exit"
    )


def test_multi_symbol_bot_view(store: str) -> None:
    from server.charts.layers import create_complete_bot_layers

    # Create bot layers for multiple symbols
    symbols = ["BTCUSDT", "ETHUSDT", "ADAUSDT"]
    charts = {}
    for symbol in symbols:
        bot_layers = create_complete_bot_layers(symbol=symbol, active_only=True, time_window_days=7)

        if bot_layers["success"]:
            # Add layers to respective charts
            signal_layer = bot_layers["layers"]["signals"]
            charts[symbol] = signal_layer.render(go.Figure(), None)  # ... render on symbol-specific chart

    assert set(charts) == set(symbols)  # ADAUSDT has no bots: success, and an empty chart
    assert markers(charts["ETHUSDT"], "signal:") == sum(
        1 for e in events("signal", "ETHUSDT") if e["confidence"] >= 0.3
    )
    assert not charts["ADAUSDT"].data


# --- Configuration Options --------------------------------------------------------------------


def get_signals_from_api() -> pd.DataFrame:
    """Stands for the document's get_signals_from_api(): signals from elsewhere, no bot info."""
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([NOW - 60_000, NOW], unit="ms"),
            "signal_type": ["buy", "sell"],
            "price": [64_000.0, 64_100.0],
            "confidence": [0.2, 0.9],
        }
    )


def test_auto_fetch_disabled_draws_manual_data(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import BotIntegratedSignalLayer, BotSignalLayerConfig

    # Disable auto-fetch for manual data control
    config = BotSignalLayerConfig(
        name="Manual Bot Signals",
        auto_fetch_data=False,  # Disable auto-fetch
        active_bots_only=True,
    )

    layer = BotIntegratedSignalLayer(config)

    # Manually provide signal data
    manual_signals = get_signals_from_api()
    fig = go.Figure()
    fig = layer.render(fig, market_data, signals=manual_signals)

    assert names(fig) == ["buy signals", "sell signals"]
    assert [list(t.y) for t in fig.data] == [[64_000.0], [64_100.0]]
    # With a symbol but auto_fetch off, still nothing is fetched.
    assert not layer.render(go.Figure(), market_data, symbol="BTCUSDT").data


def test_time_window_and_bot_specific_filtering(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import BotIntegratedSignalLayer, BotSignalLayerConfig
    from server.charts.layers.bot_integration import BotFilterConfig

    # Custom time window
    config = BotSignalLayerConfig(
        name="Short Term Signals",
        time_window_days=1,  # Last 24 hours only
        active_bots_only=True,
        confidence_threshold=0.7,  # High confidence only
    )
    short = BotIntegratedSignalLayer(config).render(go.Figure(), market_data, symbol="BTCUSDT")
    assert all(c[2] >= 0.7 for t in short.data for c in t.customdata)

    # Filter for specific bots
    bot_filter = BotFilterConfig(
        bot_ids=[1, 2, 5],  # Specific bot IDs
        symbols=["BTCUSDT"],
        active_only=True,
    )

    config = BotSignalLayerConfig(name="Selected Bots", bot_filter=bot_filter, include_bot_info=True)
    fig = BotIntegratedSignalLayer(config).render(go.Figure(), market_data, symbol="BTCUSDT")
    assert {c[0] for t in fig.data for c in t.customdata} <= {"momo-1", "ema-1"}


# --- Examples -------------------------------------------------------------------------------


def test_dashboard_integration_example_in_a_plain_thread(store: str) -> None:
    import importlib.util

    path = Path(__file__).parents[3] / "examples" / "dash_app.py"
    spec = importlib.util.spec_from_file_location("dash_app_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    figures: list[go.Figure] = []
    # Dash runs callbacks in worker threads with no event loop.
    worker = threading.Thread(
        target=lambda: figures.append(example.update_chart_with_bots("BTCUSDT", ["bot-signals"]))
    )
    worker.start()
    worker.join(120)
    (fig,) = figures
    assert fig.data[0].type == "candlestick" and len(fig.data[0].x) == len(events("candle"))
    assert any(t.meta and t.meta["key"] == "trade:exit" for t in fig.data[1:])
    bare = example.update_chart_with_bots("BTCUSDT", [])
    assert len(bare.data) == 1


def test_custom_bot_analysis(store: str) -> None:
    from server.charts.layers import (
        create_bot_signal_layer,
        get_bot_performance_summary,
        get_bot_signals_by_strategy,
    )

    # Custom analysis for specific strategy
    def analyze_momentum_strategy(symbol: str, days_back: int = 30) -> dict[str, Any]:
        """Analyze momentum strategy performance for a symbol."""

        # Get momentum bot signals
        signals = get_bot_signals_by_strategy(strategy_name="momentum", symbol=symbol, days_back=days_back)

        # Get performance summary
        performance = get_bot_performance_summary(days_back=days_back)

        # Create visualizations
        signal_layer = create_bot_signal_layer(
            symbol=symbol,
            active_only=False,  # Include all momentum bots
            time_window_days=days_back,
        )

        return {"signals": signals, "performance": performance, "layer": signal_layer}

    # Usage
    analysis = analyze_momentum_strategy("BTCUSDT", days_back=14)

    assert len(analysis["signals"]) == sum(1 for e in events("signal") if e["strategy"] == "momentum")
    assert set(analysis["signals"]["strategy"]) == {"momentum"}
    assert analysis["performance"]["success"]
    assert analysis["layer"].config.time_window_days == 14 and not analysis["layer"].config.active_bots_only


def test_real_time_monitoring_setup(store: str) -> None:
    from server.charts.layers import create_bot_signal_layer, create_bot_trade_layer, get_active_bot_signals

    # Real-time bot monitoring dashboard component
    def create_realtime_bot_monitor(symbols: list[str]) -> dict[str, Any]:
        """Create real-time bot monitoring charts."""

        charts = {}

        for symbol in symbols:
            # Get latest bot data
            active_signals = get_active_bot_signals(
                symbol=symbol,
                days_back=1,  # Last 24 hours
                min_confidence=0.5,
            )

            # Create monitoring layers
            signal_layer = create_bot_signal_layer(symbol=symbol, active_only=True, time_window_days=1)

            trade_layer = create_bot_trade_layer(
                symbol=symbol, active_only=True, show_pnl=True, time_window_days=1
            )

            charts[symbol] = {
                "signal_layer": signal_layer,
                "trade_layer": trade_layer,
                "active_signals": len(active_signals),
            }

        return charts

    charts = create_realtime_bot_monitor(["BTCUSDT", "ETHUSDT"])
    assert charts["BTCUSDT"]["active_signals"] > 0
    assert charts["ETHUSDT"]["trade_layer"].config.show_pnl


# --- Best Practices, Troubleshooting, Debug Mode, Testing --------------------------------------


def test_error_handling_falls_back_when_the_database_is_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from server.charts.layers import TradingSignalLayer, create_complete_bot_layers

    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    charts_layers.configure(down)
    logger = logging.getLogger("test")
    try:
        bot_layers = create_complete_bot_layers("BTCUSDT")

        if not bot_layers["success"]:
            logger.warning(f"Bot layer creation failed: {bot_layers.get('error')}")
            # Fallback to manual signal layer
            signal_layer = TradingSignalLayer()
        else:
            signal_layer = bot_layers["layers"]["signals"]
    except Exception as e:  # the document's belt and braces; never reached
        logger.error(f"Bot integration error: {e}")
        raise

    assert bot_layers == {
        "success": False,
        "layers": {},
        "error": bot_layers["error"],
        "symbol": "BTCUSDT",
        "timeframe": "1h",
    }
    assert bot_layers["error"].startswith("database query failed")
    assert isinstance(signal_layer, TradingSignalLayer)
    # The other entry points degrade the same way: no traceback, the reason kept.
    signals = charts_layers.get_active_bot_signals("BTCUSDT")
    assert (
        signals.empty and "signal_type" in signals.columns and signals.attrs["error"].startswith("database")
    )
    summary = charts_layers.get_bot_performance_summary()
    assert (
        summary["success"] is False and summary["trade_count"] == 0 and summary["bot_stats"]["total_pnl"] == 0
    )
    layer = charts_layers.create_bot_signal_layer("BTCUSDT")
    fig = layer.render(go.Figure(), None)
    assert isinstance(fig, go.Figure) and not fig.data and layer.last_error is not None
    comparison = charts_layers.bot_multi_layer.create_strategy_comparison_layers("BTCUSDT", ["momentum"])
    assert comparison["success"] is False and comparison["layers"] == {}
    with pytest.raises(StoreError):
        charts_layers.BotDataService(down).get_bots()
    assert any(r.name == "bot_enhanced_layers" and r.levelname == "WARNING" for r in caplog.records)
    charts_layers.configure(down).close()


def test_troubleshooting_no_signals_showing(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    from server.charts.layers import get_active_bot_signals
    from server.charts.layers.bot_integration import BotDataService, BotFilterConfig

    # Check if bots exist for symbol
    service = BotDataService()
    bots = service.get_bots(BotFilterConfig(symbols=["BTCUSDT"]))
    print(f"Found {len(bots)} bots for BTCUSDT")

    # Check signal count
    signals = get_active_bot_signals("BTCUSDT", days_back=7)
    print(f"Found {len(signals)} signals in last 7 days")

    out = capsys.readouterr().out
    assert "Found 4 bots for BTCUSDT" in out
    active = {"momo-1", "ema-1", "mr-1"} | ({"momo-2"} if _active_at_end("momo-2") else set())
    assert f"Found {sum(1 for e in events('signal') if e['bot'] in active)} signals" in out
    service.close()


def test_troubleshooting_database_connection(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Test database connection
    try:
        from server.charts.database import get_session

        with get_session() as session:
            print("Database connection successful")
    except Exception as e:
        print(f"Database connection failed: {e}")

    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    try:
        with get_session(down):
            print("Database connection successful")
    except Exception as e:
        print(f"Database connection failed: {e}")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Database connection successful"
    assert out[1].startswith("Database connection failed: database query failed")
    assert session.bind is not None


def test_troubleshooting_performance_options_and_best_practices(store: str) -> None:
    from server.charts.layers import BotSignalLayerConfig, BotSignalLayerIntegration
    from server.charts.layers.bot_integration import BotFilterConfig

    # Reduce time window
    config = BotSignalLayerConfig(
        time_window_days=3, confidence_threshold=0.5
    )  # Reduced from 7; higher threshold
    # Filter by specific strategies
    bot_filter = BotFilterConfig(strategies=["momentum"], active_only=True)  # Specific strategy only
    assert config.time_window_days == 3 and bot_filter.to_bot_filter().strategies == ("momentum",)

    # Reuse integration instances
    integration = BotSignalLayerIntegration()  # Create once
    first = integration.get_signals_for_chart("BTCUSDT", bot_filter=bot_filter)
    second = integration.get_signals_for_chart("ETHUSDT", bot_filter=bot_filter)
    assert set(first["symbol"]) == {"BTCUSDT"} and set(second["symbol"]) == {"ETHUSDT"}
    assert set(first["strategy"]) == {"momentum"}


def test_debug_mode_loggers(store: str, market_data: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    from server.charts.layers import create_bot_signal_layer, get_bot_performance_summary

    # Enable debug logging for bot integration
    logging.getLogger("bot_integration").setLevel(logging.DEBUG)
    logging.getLogger("bot_enhanced_layers").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            create_bot_signal_layer("BTCUSDT").render(go.Figure(), market_data)
            get_bot_performance_summary()
    finally:
        logging.getLogger("bot_integration").setLevel(logging.NOTSET)
        logging.getLogger("bot_enhanced_layers").setLevel(logging.NOTSET)
    messages = [(r.name, r.getMessage()) for r in caplog.records]

    def said(logger: str, start: str) -> str:
        return next(m for name, m in messages if name == logger and m.startswith(start))

    assert "'BTCUSDT'" in said("bot_enhanced_layers", "fetching signals:")  # data fetching
    assert "active_only=True" in said("bot_integration", "signals for chart: symbol=BTCUSDT filter=")
    assert " rows in " in said("bot_integration", "query: ")  # the row count and the time
    assert said("bot_enhanced_layers", "rendering signals: ")
    assert said("bot_integration", "performance computed: ")  # performance metrics


def test_testing_bot_integration_with_the_documents_data() -> None:
    from server.charts.layers import BotIntegratedSignalLayer, BotSignalLayerConfig

    config = BotSignalLayerConfig(
        name="Test Bot Signals",
        auto_fetch_data=False,  # Use manual data for testing
    )

    layer = BotIntegratedSignalLayer(config)

    # Provide test data
    test_signals = pd.DataFrame(
        {
            "timestamp": [datetime.now()],
            "signal_type": ["buy"],
            "price": [50000],
            "confidence": [0.8],
            "bot_name": ["Test Bot"],
        }
    )

    fig = go.Figure()
    result = layer.render(fig, None, signals=test_signals)

    assert len(result.data) > 0
    (trace,) = result.data
    assert trace.name == "buy signals" and trace.customdata[0][0] == "Test Bot"
    assert list(trace.y) == [50000.0] and trace.marker.symbol == "triangle-up"


def test_async_twins(store: str, market_data: pd.DataFrame) -> None:
    from server.charts.layers import (
        BotSignalLayerIntegration,
        create_bot_signal_layer,
        create_bot_trade_layer,
    )

    async def main() -> tuple[go.Figure, pd.DataFrame]:
        fig = await create_bot_signal_layer("BTCUSDT").render_async(go.Figure(), market_data)
        fig = await create_bot_trade_layer("BTCUSDT").render_async(fig, market_data)
        trades = await BotSignalLayerIntegration().get_trades_for_chart_async("BTCUSDT")
        return fig, trades

    fig, trades = asyncio.run(main())
    assert markers(fig, "trade:entry") + markers(fig, "trade:exit") == len(trades) == len(events("trade"))


def test_imports_map_from_the_seed_paths() -> None:
    import server.charts as charts
    from server.charts.layers import bot_enhanced_layers, bot_integration, signals

    for name in charts_layers.__all__:
        assert getattr(charts, name) is getattr(charts_layers, name)
    assert bot_integration.BotDataService is charts_layers.BotDataService
    assert bot_enhanced_layers.bot_multi_layer is charts_layers.bot_multi_layer
    assert signals.TradingSignalLayer is charts_layers.TradingSignalLayer
    assert os.path.basename(bot_integration.__file__) == "bot_integration.py"


def test_database_connection_management_pattern(store: str) -> None:
    from server.charts.database import Bot, get_session

    logger = logging.getLogger("test")
    condition = Bot.status == "active"  # the seed's "filter(...)"

    # The bot integration handles database connections automatically
    # But for custom queries, follow these patterns:

    def custom_bot_query() -> list[Any]:
        try:
            with get_session() as session:
                # Your database operations
                result = session.query(Bot).filter(condition).all()
                return result
        except Exception as e:
            logger.error(f"Database query failed: {e}")
            return []

    active = custom_bot_query()
    assert {bot.name for bot in active} == {"momo-1", "ema-1", "mr-1"} | (
        {"momo-2"} if _active_at_end("momo-2") else set()
    )
    assert all(isinstance(bot.id, int) and bot.strategy for bot in active)
    charts_layers.configure(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    assert custom_bot_query() == []  # the seed's except branch: the database is down


def test_session_models_cover_every_table(store: str) -> None:
    from server.charts.database import Bot, Candle, Signal, Trade, get_session

    with get_session() as session:
        counts = {model.__name__: session.query(model).count() for model in (Bot, Signal, Trade, Candle)}
        momo = session.query(Bot).filter(Bot.name == "momo-1").one()
        signals = session.query(Signal).filter(Signal.bot == momo.name).count()
    assert counts["BotRow"] == 4
    assert counts["SignalRow"] == len([e for e in history() if e["kind"] == "signal"])
    assert signals == len([e for e in history() if e["kind"] == "signal" and e["bot"] == "momo-1"])


def test_get_bots_takes_the_seeds_keyword(store: str) -> None:
    from server.charts.layers.bot_integration import BotDataService, BotFilterConfig

    with BotDataService() as service:
        by_keyword = service.get_bots(filter_config=BotFilterConfig(strategies=["momentum"]))
        positional = service.get_bots(BotFilterConfig(strategies=["momentum"]))
        # The seed's "Available Methods" table, every parameter by its name.
        ids = by_keyword["id"].tolist()
        start, end = datetime.now() - timedelta(days=7), datetime.now()
        signals = service.get_signals_for_bots(
            bot_ids=ids, start_time=start, end_time=end, signal_types=["buy"], min_confidence=0.2
        )
        trades = service.get_trades_for_bots(bot_ids=ids, start_time=start, end_time=end, sides=["sell"])
        performance = service.get_bot_performance(bot_ids=ids, start_time=start, end_time=end)
    assert list(by_keyword["name"]) == list(positional["name"]) and len(by_keyword) == 2
    assert set(signals["signal_type"]) == {"buy"} and (signals["confidence"] >= 0.2).all()
    assert set(signals["bot"]) <= set(by_keyword["name"]) and set(trades["side"]) == {"sell"}
    assert set(performance.index) <= set(by_keyword["name"])


def test_naive_datetimes_are_local_time(store: str) -> None:
    """datetime.now() on a machine far from UTC still means now: the seed's windows find the data."""
    import time as clock

    from server.charts.layers.bot_integration import BotDataService

    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    clock.tzset()
    try:
        with BotDataService() as service:
            recent = service.get_signals_for_bots(
                start_time=datetime.now() - timedelta(hours=2), end_time=datetime.now()
            )
            future = service.get_signals_for_bots(start_time=datetime.now() + timedelta(hours=1))
            # A naive pandas Timestamp is UTC (what the returned frames hold): fetched times round-trip.
            newest = service.get_signals_for_bots(start_time=recent["timestamp"].max())
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        clock.tzset()
    assert len(recent) == len(events("signal")) + len(events("signal", "ETHUSDT"))
    assert future.empty and 1 <= len(newest) <= 2


def test_a_sqlite_folder_that_cannot_be_made_degrades_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    charts_layers.configure(f"sqlite+aiosqlite:///{blocker}/sub/history.db")
    try:
        with caplog.at_level(logging.WARNING, logger="bot_integration"):
            tries = [charts_layers.get_active_bot_signals("BTCUSDT") for _ in range(5)]
        summary = charts_layers.get_bot_performance_summary()
    finally:
        charts_layers.configure(f"sqlite+aiosqlite:///{tmp_path}/other.db").close()
    signals = tries[-1]
    assert signals.empty and signals.attrs["error"].startswith("database unavailable")
    assert summary["success"] is False and summary["error"].startswith("database unavailable")
    said = [r.getMessage() for r in caplog.records if r.name == "bot_integration"]
    assert len([m for m in said if m.startswith("bot data unavailable: database unavailable")]) == 1


def test_a_hanging_database_degrades_within_the_query_timeout() -> None:
    """A server that accepts connections and never answers: the call ends with the timeout's
    reason (database.query_timeout_s, 3 s by default), not after the driver's own minutes."""
    import socket

    from server.charts.layers.bot_integration import BotDataService

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepts: the TCP handshake completes, nothing is ever said
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{listener.getsockname()[1]}/hangs"
        service = charts_layers.configure(url)
        try:
            signals = charts_layers.get_active_bot_signals("BTCUSDT")
            with pytest.raises(StoreError, match="timed out after 0.2s"):
                BotDataService(url, timeout_s=0.2).get_bots()
        finally:
            service.close()
    assert service.timeout_s == 3.0
    assert signals.attrs["error"] == "database query timed out after 3s"


async def test_a_bot_that_says_active_when_it_starts_is_an_active_bot_at_once(
    store: str, redis_url: str, symbol: str
) -> None:
    """The natural order: status("active") at start, signals later. The seed's active_only=True
    finds the bot before its first signal, under the id the registry gave it."""
    from publishers import Publisher
    from server.charts.layers.bot_integration import BotDataService, BotFilterConfig

    name = f"starter-{symbol.lower()}"
    async with Publisher(redis_url, bot=name, strategy="momentum") as publisher:
        await publisher.status("active")
        async with running_recorder(redis_url, store, [symbol]):
            service = BotDataService()

            async def listed() -> bool:
                bots = await service.get_bots_async(BotFilterConfig(active_only=True))
                return name in set(bots["name"])

            await async_wait_until(listed, what="the starting bot among the active ones")
            bots = await service.get_bots_async(filter_config=BotFilterConfig(bot_names=[name]))
            await service.aclose()
    assert list(bots["id"]) == [publisher.bot_ids[name]] and list(bots["status"]) == ["active"]
