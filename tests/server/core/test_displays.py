"""The wall fleet's pure core: heartbeats parsed with bounds, health, records, commands, views."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.core.displays import (
    MAX_PARAMS,
    MAX_TILES,
    DisplayStaleCondition,
    HealthRules,
    health,
    make_record,
    parse_command,
    parse_display,
    parse_record,
    parse_stored_view,
    parse_view,
)
from server.core.protocol import Display, parse_client_frame
from server.errors import ProtocolError

NOW = 1_800_000_000_000


def beat(**extra: Any) -> dict[str, Any]:
    return {
        "op": "display",
        "display": "lobby-left",
        "tiles": [{"id": "BTCUSDT", "seq": 41, "age_s": 1.5}, {"id": "ETHUSDT@60", "seq": 7, "age_s": None}],
        "fps": 59.7,
        "long_frames": 3,
        "heap_mb": 81.2,
        "page_age_s": 3600,
        "reconnects": 1,
        "params": {"symbols": "BTCUSDT,ETHUSDT", "minutes": "60", "token": "secret-never-kept"},
        **extra,
    }


def test_a_heartbeat_is_a_display_op_with_every_field_parsed() -> None:
    message = parse_client_frame(json.dumps({**beat(), "ref": 3}))
    assert isinstance(message, Display) and message.ref == 3
    report = message.report
    assert report.display == "lobby-left" and report.fps == 59.7 and report.long_frames == 3
    assert [(t.id, t.seq, t.age_s) for t in report.tiles] == [("BTCUSDT", 41, 1.5), ("ETHUSDT@60", 7, -1.0)]
    assert report.params == {"symbols": "BTCUSDT,ETHUSDT", "minutes": "60"}, "the token is never kept"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"display": "../../etc"}, "display"),
        ({"display": "x" * 65}, "display"),
        ({"display": None}, "display"),
        ({"fps": float("inf")}, "fps"),
        ({"fps": -1}, "fps"),
        ({"fps": True}, "fps"),
        ({"heap_mb": "80"}, "heap_mb"),
        ({"long_frames": 1.5}, "long_frames"),
        ({"reconnects": 10**30}, "reconnects"),
        ({"tiles": [{"id": "A", "seq": 1}] * (MAX_TILES + 1)}, "tiles"),
        ({"tiles": [{"id": "", "seq": 1}]}, "tiles.id"),
        ({"tiles": [{"id": "A\n", "seq": 1}]}, "tiles.id"),
        ({"tiles": [{"id": "A", "seq": -1}]}, "tiles.seq"),
        ({"tiles": "all"}, "tiles"),
        ({"params": {f"k{i}": "v" for i in range(MAX_PARAMS + 1)}}, "params"),
        ({"params": {"symbols": "x" * 10_000}}, "params.symbols"),
        ({"params": {"a b": "x"}}, "params"),
        ({"params": {"symbols": 3}}, "params.symbols"),
        ({"params": {"symbols": "\ud800"}}, "params.symbols"),
        ({"status": "fine"}, "status"),
        ({"extra": 1}, "extra"),
    ],
)
def test_hostile_heartbeats_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(json.dumps({**beat(), **change, "ref": "r1"}))
    assert caught.value.code == "bad_request" and caught.value.message.startswith(field), caught.value.message
    assert caught.value.ref == "r1"


def test_a_record_round_trips_and_a_tampered_one_is_refused() -> None:
    report = parse_display(beat())
    record = make_record(report, gateway="host:1", principal="wall-1", now_ms=NOW)
    assert record.since_ms == NOW - 3_600_000
    assert parse_record(record.encode()) == record
    assert make_record(
        report, gateway="", principal="w", now_ms=NOW, status="token_expired"
    ).report.status == ("token_expired")
    raw = json.loads(record.encode())
    for tampered in (
        b"not json",
        b"[1]",
        json.dumps({**raw, "fps": "fast"}),
        json.dumps({**raw, "received_ms": "soon"}),
        json.dumps({**raw, "gateway": 5}),
        json.dumps({**raw, "display": "a b"}),
        "[" * 100_000,
    ):
        with pytest.raises(ProtocolError):
            parse_record(tampered)


def test_health_is_a_function_of_the_record_and_now() -> None:
    rules = HealthRules(stale_s=15, dead_s=60, min_fps=1)
    record = make_record(parse_display(beat()), gateway="g", principal="p", now_ms=NOW)
    assert health(record, NOW + 1_000, rules) == "live"
    assert health(record, NOW + 16_000, rules) == "stale"
    assert health(record, NOW + 61_000, rules) == "dead"
    stalled = make_record(parse_display(beat(fps=0)), gateway="g", principal="p", now_ms=NOW)
    assert health(stalled, NOW, rules) == "not drawing"
    expired = make_record(parse_display(beat(status="token_expired")), gateway="g", principal="p", now_ms=NOW)
    assert health(expired, NOW, rules) == "not drawing"
    undrawn = make_record(
        parse_display(beat(tiles=[{"id": "A", "seq": 0, "age_s": None}])),
        gateway="g",
        principal="p",
        now_ms=NOW,
    )
    assert health(undrawn, NOW, rules) == "not drawing"
    empty = make_record(parse_display(beat(tiles=[])), gateway="g", principal="p", now_ms=NOW)
    assert health(empty, NOW, rules) == "not drawing"


def test_the_display_stale_condition_for_alerts() -> None:
    a = make_record(parse_display(beat(display="a")), gateway="g", principal="p", now_ms=NOW)
    b = make_record(parse_display(beat(display="b")), gateway="g", principal="p", now_ms=NOW - 40_000)
    condition = DisplayStaleCondition(seconds=30)
    assert not condition.holds(a, NOW + 29_000) and condition.holds(b, NOW)
    assert condition.stale([a, b], NOW) == ["b"]
    assert condition.stale([a, b], NOW + 31_000) == ["a", "b"]


@pytest.mark.parametrize(
    ("params", "action", "expected"),
    [
        ({"action": "reload"}, "reload", {}),
        ({"action": "identify"}, "identify", {"seconds": "10"}),
        ({"action": "identify", "seconds": "3"}, "identify", {"seconds": "3"}),
        ({"action": "theme", "theme": "night"}, "theme", {"theme": "night"}),
        ({"action": "view", "name": "trading-floor"}, "view", {"name": "trading-floor"}),
        (
            {"action": "playlist", "views": "a,b", "every_s": "30"},
            "playlist",
            {"views": "a,b", "every_s": "30"},
        ),
        ({"action": "playlist", "views": ""}, "playlist", {"views": "", "every_s": "60"}),
        (
            {"action": "set", "symbols": "BTCUSDT", "minutes": "30", "bots": "momo-1", "cols": "2"},
            "set",
            {"symbols": "BTCUSDT", "minutes": "30", "bots": "momo-1", "cols": "2"},
        ),
        ({"action": "reload", "token": "t"}, "reload", {}),
    ],
)
def test_commands_from_query_parameters(
    params: dict[str, str], action: str, expected: dict[str, str]
) -> None:
    command = parse_command(params)
    assert (command.action, dict(command.params)) == (action, expected)
    frame = json.loads(command.frame("c1"))
    assert frame == {"op": "command", "id": "c1", "action": action, "params": expected}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"action": "shutdown"},
        {"action": "reload", "force": "1"},
        {"action": "identify", "seconds": "1e9"},
        {"action": "identify", "seconds": "nan"},
        {"action": "theme", "theme": "neon"},
        {"action": "view", "name": "../x"},
        {"action": "playlist", "views": "a,../b"},
        {"action": "playlist", "views": "a", "every_s": "1"},
        {"action": "set"},
        {"action": "set", "ws": "ws://evil.example/ws"},
        {"action": "set", "symbols": "A\x00B"},
    ],
)
def test_bad_commands_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_command(params)
    assert caught.value.code == "bad_request"


def test_views_are_names_to_wall_parameters() -> None:
    assert parse_view("trading-floor", {"symbols": "BTCUSDT,ETHUSDT", "minutes": "60"}) == (
        "trading-floor",
        {"symbols": "BTCUSDT,ETHUSDT", "minutes": "60"},
    )
    assert parse_stored_view(b"v", b'{"symbols":"A"}') == ("v", {"symbols": "A"})
    for name, params in (("a b", {"symbols": "A"}), ("v", {}), ("v", {"ws": "x"}), ("v", ["symbols"])):
        with pytest.raises(ProtocolError):
            parse_view(name, params)
    with pytest.raises(ProtocolError):
        parse_stored_view(b"v", b"{not json")
