"""signalpush publishers: the library trading bots import to publish events.

    from publishers import Publisher

    async with Publisher(bot="momo-1", strategy="momentum") as pub:
        seq = await pub.signal("BTCUSDT", "buy", price=50123.5, confidence=0.82)

`SyncPublisher` is the blocking twin for plain-Python bots.
"""

from __future__ import annotations

from publishers.errors import (
    ConfigError,
    PublishError,
    SignalpushError,
)
from publishers.events import BotStatus, Candle, Event, Signal, Trade
from publishers.options import PublisherOptions
from publishers.publisher import Publisher
from publishers.sync_publisher import SyncPublisher

__all__ = [
    "BotStatus",
    "Candle",
    "ConfigError",
    "Event",
    "PublishError",
    "Publisher",
    "PublisherOptions",
    "Signal",
    "SignalpushError",
    "SyncPublisher",
    "Trade",
]
