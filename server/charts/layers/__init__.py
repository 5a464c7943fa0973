"""The seed document's chart-layer API (``from components.charts.layers import X`` becomes
``from server.charts.layers import X``): bot data services and layers that draw bot
signals and trades on plotly figures, backed by the history store and server.analytics.service."""

from __future__ import annotations

from server.charts.layers.bot_enhanced_layers import (
    BotIntegratedSignalLayer,
    BotIntegratedTradeLayer,
    BotMultiLayerIntegration,
    BotSignalLayerConfig,
    BotTradeLayerConfig,
    bot_multi_layer,
    create_bot_signal_layer,
    create_bot_trade_layer,
    create_complete_bot_layers,
)
from server.charts.layers.bot_integration import (
    BotDataService,
    BotFilterConfig,
    BotSignalLayerIntegration,
    configure,
    get_active_bot_signals,
    get_active_bot_trades,
    get_bot_performance_summary,
    get_bot_signals_by_strategy,
)
from server.charts.layers.signals import (
    SignalLayerConfig,
    TradeExecutionLayer,
    TradeLayerConfig,
    TradingSignalLayer,
)

__all__ = [
    "BotDataService",
    "BotFilterConfig",
    "BotIntegratedSignalLayer",
    "BotIntegratedTradeLayer",
    "BotMultiLayerIntegration",
    "BotSignalLayerConfig",
    "BotSignalLayerIntegration",
    "BotTradeLayerConfig",
    "SignalLayerConfig",
    "TradeExecutionLayer",
    "TradeLayerConfig",
    "TradingSignalLayer",
    "bot_multi_layer",
    "configure",
    "create_bot_signal_layer",
    "create_bot_trade_layer",
    "create_complete_bot_layers",
    "get_active_bot_signals",
    "get_active_bot_trades",
    "get_bot_performance_summary",
    "get_bot_signals_by_strategy",
]
