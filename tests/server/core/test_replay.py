"""The flight recorder's pure parts: the replay option, replay_control, the pacing clock, frames."""

from __future__ import annotations

import json
import math

import pytest

from server.core.protocol import Subscribe, parse_client_frame
from server.core.replay import (
    MAX,
    ReplayClock,
    ReplayControl,
    ReplayRequest,
    parse_time,
    replay_frame,
)
from server.errors import ProtocolError

T = 1_796_515_094_000  # a time in 2026


def subscribe(replay: object, **extra: object) -> Subscribe:
    frame = parse_client_frame(
        json.dumps({"op": "subscribe", "symbol": "BTCUSDT", "replay": replay, **extra})
    )
    assert isinstance(frame, Subscribe)
    return frame


def test_replay_times_are_milliseconds_or_iso_and_to_defaults_to_live() -> None:
    request = subscribe({"from": "2026-12-03T03:00:00Z", "to": T, "speed": 10}).replay
    assert request == ReplayRequest(1_796_266_800_000, T, 10.0)
    assert subscribe({"from": T}).replay == ReplayRequest(T, None, 1.0)
    assert subscribe({"from": T, "to": "live", "speed": "max"}).replay == ReplayRequest(T, None, MAX)
    assert parse_time("2026-12-03T04:00:00+01:00", "x") == 1_796_266_800_000
    assert parse_time("2026-12-03T03:00:00", "x") == 1_796_266_800_000  # naive is UTC
    assert subscribe(None).replay is None


@pytest.mark.parametrize(
    ("replay", "message"),
    [
        ("yesterday", "replay: must be an object"),
        ({}, "replay.from: required"),
        ({"from": "soon"}, "is not an ISO 8601 time"),
        ({"from": "2" * 41}, "must be milliseconds or an ISO"),
        ({"from": True}, "must be milliseconds"),
        ({"from": 1.5}, "whole milliseconds"),
        ({"from": 10**30}, "between the years 2000 and 2100"),
        ({"from": "1970-01-01T00:00:00Z"}, "between the years 2000 and 2100"),
        ({"from": T, "to": T - 1}, "must not be before"),
        ({"from": T, "speed": 0.05}, "between 0.1 and 1000"),
        ({"from": T, "speed": 1001}, "between 0.1 and 1000"),
        ({"from": T, "speed": "fast"}, 'or "max"'),
        ({"from": T, "speed": True}, 'or "max"'),
        ({"from": T, "loop": 1}, "replay.loop: unknown key"),
    ],
)
def test_hostile_replay_options_are_bad_requests(replay: object, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        subscribe(replay)
    assert caught.value.code == "bad_request" and message in caught.value.message


def test_replay_cannot_be_combined_with_resume() -> None:
    with pytest.raises(ProtocolError, match="cannot be combined with resume"):
        subscribe({"from": T}, resume={"epoch": "e", "seq": 1})


def test_replay_control_actions() -> None:
    def control(**fields: object) -> ReplayControl:
        frame = parse_client_frame(json.dumps({"op": "replay_control", "ref": 7, "sub": "r1", **fields}))
        assert isinstance(frame, ReplayControl)
        return frame

    assert control(action="pause") == ReplayControl(7, "r1", "pause")
    assert control(action="resume").action == "resume"
    assert control(action="seek", to="2026-12-03T03:00:00Z").to_ms == 1_796_266_800_000
    assert control(action="speed", speed="max").speed == MAX
    for bad in (
        {"action": "rewind"},
        {"action": "seek"},
        {"action": "speed", "speed": -1},
        {"action": "pause", "x": 1},
    ):
        with pytest.raises(ProtocolError) as caught:
            control(**bad)
        assert caught.value.code == "bad_request" and caught.value.ref == 7
    with pytest.raises(ProtocolError, match="sub"):
        parse_client_frame(json.dumps({"op": "replay_control", "sub": 5, "action": "pause"}))


def test_the_clock_plays_recorded_time_at_speed() -> None:
    clock = ReplayClock(T, 10.0, now=100.0)
    assert clock.time_ms(100.0) == T and clock.time_ms(101.0) == T + 10_000
    assert clock.wait_s(T + 5_000, now=100.0) == pytest.approx(0.5)
    assert clock.wait_s(T - 1, now=100.0) == 0.0  # already due
    clock.pause(now=101.0)
    assert clock.time_ms(500.0) == T + 10_000 and math.isinf(clock.wait_s(T + 20_000, now=500.0))
    clock.resume(now=600.0)
    assert clock.time_ms(601.0) == T + 20_000
    clock.set_speed(1.0, now=601.0)
    assert clock.time_ms(603.0) == T + 22_000
    clock.seek(T + 60_000, now=603.0)
    assert clock.time_ms(603.5) == T + 60_500


def test_at_max_speed_everything_is_due_and_the_clock_follows_the_events() -> None:
    clock = ReplayClock(T, MAX, now=0.0)
    assert clock.wait_s(T + 10**9, now=0.0) == 0.0
    clock.played(T + 3_000)
    clock.played(T + 1_000)  # an event stamped earlier does not move it back
    assert clock.time_ms(50.0) == T + 3_000
    clock.set_speed(2.0, now=50.0)
    assert clock.time_ms(51.0) == T + 5_000


def test_replay_frames() -> None:
    frame = json.loads(replay_frame("r1", "BTCUSDT", "live", time_ms=T, speed=MAX, ref="a"))
    assert frame == {
        "op": "replay",
        "sub": "r1",
        "symbol": "BTCUSDT",
        "state": "live",
        "time": T,
        "speed": "max",
        "ref": "a",
    }
