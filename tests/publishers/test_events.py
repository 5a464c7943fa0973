from __future__ import annotations

import json
import math
import os
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from publishers.events import (
    MAX_META_BYTES,
    BotStatus,
    Candle,
    InvalidEventError,
    Signal,
    Trade,
    event_from_dict,
    now_ms,
)

TS = 1_732_560_000_120
SIGNAL: dict[str, Any] = dict(
    symbol="BTCUSDT", ts=TS, bot="momo-1", strategy="momentum", type="buy", price=50123.5, confidence=0.82
)
TRADE: dict[str, Any] = dict(
    symbol="BTCUSDT",
    ts=TS,
    bot="momo-1",
    strategy="momentum",
    side="buy",
    action="entry",
    price=50123.5,
    qty=0.1,
    position="p-17",
)
CANDLE: dict[str, Any] = dict(
    symbol="BTCUSDT", ts=TS, tf="1m", open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0
)
STATUS: dict[str, Any] = dict(symbol="BTCUSDT", ts=TS, bot="momo-1", strategy="momentum", status="active")


def test_signal_encodes_to_the_wire_shape_with_seq_first() -> None:
    event = Signal(**SIGNAL, meta={"note": "x"})
    assert event.to_dict(1301) == {
        "seq": 1301,
        "kind": "signal",
        "symbol": "BTCUSDT",
        "ts": TS,
        "bot": "momo-1",
        "strategy": "momentum",
        "type": "buy",
        "price": 50123.5,
        "confidence": 0.82,
        "meta": {"note": "x"},
    }
    assert json.loads('{"seq":7,' + event.body()) == event.to_dict(7)


@pytest.mark.parametrize(
    ("cls", "base"), [(Signal, SIGNAL), (Trade, TRADE), (Candle, CANDLE), (BotStatus, STATUS)]
)
def test_every_kind_round_trips_through_its_dict(cls: Any, base: dict[str, Any]) -> None:
    event = cls(**base)
    assert event_from_dict(event.to_dict(5)) == event


def test_datetimes_become_milliseconds() -> None:
    moment = datetime(2024, 11, 25, 18, 40, tzinfo=UTC)
    assert Signal(**{**SIGNAL, "ts": moment}).ts == 1_732_560_000_000
    assert Signal(**{**SIGNAL, "ts": pd.Timestamp("2024-11-25 18:40")}).ts == 1_732_560_000_000  # UTC


def test_a_naive_datetime_is_local_time_so_datetime_now_is_now() -> None:
    """On a machine far from UTC, an event stamped datetime.now() lands at now (issue 17)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    time.tzset()
    try:
        stamped = Signal(**{**SIGNAL, "ts": datetime.now()}).ts
        naive = Signal(**{**SIGNAL, "ts": datetime(2024, 11, 26, 8, 40)}).ts  # 18:40 UTC the day before
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
    assert abs(stamped - now_ms()) < 60_000 and naive == 1_732_560_000_000


@pytest.mark.parametrize(
    ("cls", "base", "field", "value"),
    [
        (Signal, SIGNAL, "price", math.nan),
        (Signal, SIGNAL, "price", math.inf),
        (Signal, SIGNAL, "price", -math.inf),
        (Signal, SIGNAL, "price", 0),
        (Signal, SIGNAL, "price", "50000"),
        (Signal, SIGNAL, "price", True),
        (Signal, SIGNAL, "confidence", 1.01),
        (Signal, SIGNAL, "confidence", -0.1),
        (Signal, SIGNAL, "confidence", math.nan),
        (Signal, SIGNAL, "type", "strong_buy"),
        (Signal, SIGNAL, "type", None),
        (Signal, SIGNAL, "symbol", ""),
        (Signal, SIGNAL, "symbol", "BTC{USDT}"),
        (Signal, SIGNAL, "symbol", "BTC USDT"),
        (Signal, SIGNAL, "symbol", 42),
        (Signal, SIGNAL, "symbol", "BTCUSDT\n"),  # `$` matched before a final newline
        (Signal, SIGNAL, "bot", "momo-1\n"),
        (Signal, SIGNAL, "bot", ""),
        (Signal, SIGNAL, "bot", "   "),
        (Signal, SIGNAL, "strategy", 7),
        (Signal, SIGNAL, "ts", 1_732_560_000),  # seconds by mistake
        (Signal, SIGNAL, "ts", "yesterday"),
        (Signal, SIGNAL, "ts", 1.5e12 + 0.5),
        (Signal, SIGNAL, "meta", "not a dict"),
        (Signal, SIGNAL, "meta", {"x": math.nan}),
        (Signal, SIGNAL, "meta", {"x": object()}),
        (Signal, SIGNAL, "meta", {1: "int key"}),
        (Signal, SIGNAL, "meta", {"blob": "x" * MAX_META_BYTES}),
        (Trade, TRADE, "side", "long"),
        (Trade, TRADE, "action", "open"),
        (Trade, TRADE, "qty", 0),
        (Trade, TRADE, "qty", -1),
        (Trade, TRADE, "fee", -0.01),
        (Trade, TRADE, "pnl", math.inf),
        (Trade, TRADE, "position", ""),
        (Candle, CANDLE, "tf", "1 minute"),
        (Candle, CANDLE, "tf", "1m\n"),
        (Candle, CANDLE, "high", 1.2),
        (Candle, CANDLE, "low", 1.2),
        (Candle, CANDLE, "volume", -1),
        (Candle, CANDLE, "close", math.nan),
        (BotStatus, STATUS, "status", "sleeping"),
        (BotStatus, STATUS, "equity", math.nan),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(
    cls: Any, base: dict[str, Any], field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: ") as caught:
        cls(**{**base, field: value})
    assert isinstance(caught.value, InvalidEventError)
    assert caught.value.field == field


def test_event_from_dict_names_a_missing_field_and_a_bad_kind() -> None:
    with pytest.raises(ValueError, match="^confidence: is required"):
        event_from_dict({k: v for k, v in {**SIGNAL, "kind": "signal"}.items() if k != "confidence"})
    with pytest.raises(ValueError, match="^kind: "):
        event_from_dict({**SIGNAL, "kind": "order"})
