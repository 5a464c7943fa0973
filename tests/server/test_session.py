"""Per-connection state: the stalled-connection rule and catch-ups taking turns (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from server.session import Session, TokenBucket, stalled_sessions


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


async def test_catch_ups_of_one_connection_run_one_at_a_time() -> None:
    session = _session("a")
    running: list[int] = []
    overlap: list[int] = []
    gate = asyncio.Event()

    async def catch_up(index: int) -> None:
        running.append(index)
        overlap.append(len(running))
        try:
            await gate.wait()
        finally:
            running.remove(index)

    for index in range(3):
        session.start_catch_up(f"g{index}", lambda i=index: catch_up(i), f"t{index}")  # type: ignore[misc]
    await asyncio.sleep(0.01)
    assert running == [0]
    session.cancel("g0")  # a replaced subscription lets the next one go
    await asyncio.sleep(0.01)
    assert running == [1]
    gate.set()
    tasks: list[Any] = list(session.tasks.values())
    await asyncio.gather(*tasks)
    assert overlap == [1, 1, 1]
    assert running == []
