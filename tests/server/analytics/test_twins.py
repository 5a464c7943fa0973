"""Blocking entry points are their async methods run on a background loop, not copies of them."""

from __future__ import annotations

import inspect

import pytest

from server.analytics.service import BotDataService
from server.charts.layers import bot_integration
from server.charts.layers.bot_enhanced_layers import BotIntegratedSignalLayer, BotIntegratedTradeLayer

TWINS = [
    (BotDataService, ("get_bots", "get_signals", "get_trades", "performance_report", "get_performance")),
    (bot_integration.BotDataService, ("get_signals_for_bots", "get_trades_for_bots", "get_bot_performance")),
    (bot_integration.BotSignalLayerIntegration, ("get_signals_for_chart", "get_trades_for_chart")),
    (BotIntegratedSignalLayer, ("fetch",)),
    (BotIntegratedTradeLayer, ("fetch",)),
]


@pytest.mark.parametrize(("cls", "names"), TWINS, ids=[cls.__qualname__ for cls, _ in TWINS])
def test_each_blocking_method_wraps_its_async_twin(cls: type, names: tuple[str, ...]) -> None:
    for name in names:
        blocking, twin = getattr(cls, name), getattr(cls, f"{name}_async")
        assert blocking.__wrapped__ is twin, name
        assert not inspect.iscoroutinefunction(blocking)
        # Same parameters (what help() shows), and the async method's documentation.
        assert inspect.signature(blocking) == inspect.signature(twin)
        assert blocking.__doc__.startswith(f"Blocking twin of :meth:`{name}_async`.")
