"""The one event schema: the event classes, the JSON export and every column set derive from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from publishers.events import (
    FILTER_FIELDS,
    KINDS,
    MAX_NAME_LENGTH,
    SCHEMA,
    Alert,
    BotStatus,
    Candle,
    InvalidEventError,
    Signal,
    Trade,
    kinds_with,
    schema_json,
    schema_json_text,
)

REPO = Path(__file__).resolve().parents[2]
CLASSES = {"signal": Signal, "trade": Trade, "candle": Candle, "bot": BotStatus, "alert": Alert}
TS = 1_732_560_000_000
IDENTITY: dict[str, Any] = {"symbol": "S", "ts": TS, "bot": "b", "strategy": "s"}
EXAMPLES = {
    "signal": Signal(**IDENTITY, type="buy", price=1.0, confidence=1),
    "trade": Trade(**IDENTITY, side="buy", action="exit", price=1.0, qty=2.0, position="p", pnl=0.5),
    "candle": Candle(symbol="S", ts=TS, tf="1m", open=1, high=2, low=1, close=2, volume=0),
    "bot": BotStatus(**IDENTITY, status="active"),
    "alert": Alert(
        symbol="S", ts=TS, alert_id="a1", rule="r", state="firing", severity="warning", scope="b", message="m"
    ),
}


def test_the_committed_json_export_is_current() -> None:
    committed = (REPO / "client_js" / "events-schema.json").read_text()
    assert committed == schema_json_text(), "run `make schema` and commit client_js/events-schema.json"


def test_the_event_classes_are_the_schema() -> None:
    assert set(KINDS) == set(SCHEMA) == set(CLASSES)
    for kind, spec in SCHEMA.items():
        cls = CLASSES[kind]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(fields) == set(spec.names), kind
        for field in spec.fields:
            has_default = not (
                fields[field.name].default is dataclasses.MISSING
                and fields[field.name].default_factory is dataclasses.MISSING
            )
            assert has_default == (not field.required), (kind, field.name)
            if has_default:
                built = fields[field.name].default_factory
                default = built() if built is not dataclasses.MISSING else fields[field.name].default
                assert default == field.default_value(), (kind, field.name)
        # The wire order of the fields is the schema's.
        assert list(EXAMPLES[kind].to_dict(seq=7)) == ["seq", "kind", *spec.names]


def test_lengths_and_choices_are_what_the_events_accept() -> None:
    assert SCHEMA["signal"].field("bot").max_length == MAX_NAME_LENGTH
    with pytest.raises(InvalidEventError, match="^symbol: "):
        Signal(
            symbol="S" * 33, ts=1_732_560_000_000, bot="b", strategy="s", type="buy", price=1, confidence=1
        )
    Signal(
        symbol="S" * 32, ts=1_732_560_000_000, bot="b" * 64, strategy="s", type="buy", price=1, confidence=1
    )
    for kind, spec in SCHEMA.items():
        for field in spec.fields:
            if field.choices is not None:
                assert field.max_length is not None and max(map(len, field.choices)) <= field.max_length
                values = {k: v for k, v in EXAMPLES[kind].to_dict().items() if k != "kind"}
                with pytest.raises(InvalidEventError, match=f"^{field.name}: must be one of"):
                    CLASSES[kind](**{**values, field.name: "nope"})


def test_filters_apply_to_the_kinds_carrying_their_field() -> None:
    assert kinds_with("bot") == ("signal", "trade", "bot")
    assert {key: kinds_with(name) for key, name in FILTER_FIELDS.items()} == {
        "bots": ("signal", "trade", "bot"),
        "strategies": ("signal", "trade", "bot"),
        "signal_types": ("signal",),
        "min_confidence": ("signal",),
        "sides": ("trade",),
    }
    exported = schema_json()["filters"]
    assert list(exported) == ["kinds", *FILTER_FIELDS]
    assert exported["kinds"]["kinds"] == list(SCHEMA)


def test_the_history_frame_columns_are_the_protocol_s() -> None:
    # docs/protocol.md: what a history frame's data holds per kind (a change here is a protocol change).
    assert {kind: spec.history_columns for kind, spec in SCHEMA.items()} == {
        "candle": ("ts", "open", "high", "low", "close", "volume"),
        "signal": ("seq", "ts", "bot", "strategy", "type", "price", "confidence"),
        "trade": ("seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position"),
        "bot": ("seq", "ts", "bot", "strategy", "status", "equity"),
        "alert": ("seq", "ts", "alert_id", "rule", "state", "severity", "scope", "message", "value", "meta"),
    }
    assert schema_json()["kinds"]["trade"]["history"][0] == "seq"
    with pytest.raises(KeyError, match="no field 'nope'"):
        SCHEMA["trade"].columns(drop=("nope",))
