from __future__ import annotations

import json

from publishers.events import Signal
from server.bench.pubload import EVENT_BYTES, bench_filters, padding_for, signal_body
from server.core.filters import parse_filter


def test_signal_body_is_what_the_publisher_would_send() -> None:
    for index in range(12):
        body = signal_body("BTCUSDT", index, 1_700_000_000_123_456_789, "xx")
        event = json.loads("{" + body)
        expected = Signal(
            symbol="BTCUSDT",
            ts=event["ts"],
            bot=event["bot"],
            strategy=event["strategy"],
            type=event["type"],
            price=event["price"],
            confidence=event["confidence"],
            meta=event["meta"],
        )
        assert body == expected.body()


def test_events_are_about_200_bytes() -> None:
    body = '{"seq":123456,' + signal_body("BTCUSDT", 7, 1_700_000_000_123_456_789, padding_for("BTCUSDT"))
    assert EVENT_BYTES - 5 <= len(body) <= EVENT_BYTES + 5


def test_bench_filters_are_distinct_and_pass_every_bench_event() -> None:
    filters = [parse_filter(raw) for raw in bench_filters(20)]
    assert len(set(filters)) == 20
    events = [json.loads('{"seq":1,' + signal_body("S", i, 1_700_000_000_000_000_000, "")) for i in range(60)]
    assert all(f.matches(e) for f in filters for e in events)
