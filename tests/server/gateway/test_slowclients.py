"""The slow-client rules: the stalled-connection clock (no sockets)."""

from __future__ import annotations

from server.gateway.session import Session, TokenBucket
from server.gateway.slowclients import stalled_sessions


def _session(name: str) -> Session:
    return Session(ws=name, bucket=TokenBucket(10, 10))  # type: ignore[arg-type]


def test_a_session_is_stalled_only_when_blocked_at_every_check_for_the_timeout() -> None:
    a, b = _session("a"), _session("b")
    blocked = {"a": True, "b": True}

    def check(now: float) -> list[str]:
        return [str(s.ws) for s in stalled_sessions([a, b], now, 30.0, lambda ws: blocked[str(ws)])]

    assert check(0.0) == []
    assert check(20.0) == []
    blocked["b"] = False  # b drained once: its clock starts over
    assert check(25.0) == []
    blocked["b"] = True
    assert check(31.0) == ["a"]
    assert check(50.0) == ["a"]
    assert check(56.0) == ["a"]
    assert check(62.0) == ["a", "b"]
    a.closing = True  # closed once
    assert check(63.0) == ["b"]
