"""Per-connection state: catch-ups taking turns, the message-rate limit (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from server.gateway.session import Admission, Session, TokenBucket


def _session(name: str) -> Session:
    return Session(ws=name, bucket=TokenBucket(10, 10))  # type: ignore[arg-type]


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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refuses_past_the_burst_and_refills_at_the_rate() -> None:
    clock = _Clock()
    bucket = TokenBucket(10, 5, clock)
    assert [bucket.admit() for _ in range(6)] == [Admission.ACCEPT] * 5 + [Admission.REFUSE]
    clock.now = 0.2  # two tokens back
    assert [bucket.admit() for _ in range(3)] == [Admission.ACCEPT, Admission.ACCEPT, Admission.REFUSE]


def test_violations_decay_so_bursts_now_and_then_are_never_a_flood() -> None:
    clock = _Clock()
    bucket = TokenBucket(10, 5, clock)
    for _ in range(20):  # bursts of 9 every 2 s: 4 refused each time, forgiven before the next
        verdicts = [bucket.admit() for _ in range(9)]
        assert Admission.FLOOD not in verdicts and verdicts.count(Admission.REFUSE) == 4
        clock.now += 2.0
    assert bucket.violations <= 4


def test_a_sustained_flood_is_closed_after_the_documented_time() -> None:
    clock = _Clock()
    rate, burst, sent_rate = 50.0, 200, 200.0  # a client sending 4x the allowed rate
    bucket = TokenBucket(rate, burst, clock)
    sent = 0
    while bucket.admit() is not Admission.FLOOD:
        sent += 1
        clock.now = sent / sent_rate
        assert clock.now < 60, "a flood must be closed"
    # docs/protocol.md: burst / (R - rate) + burst / (R - 1.5 rate) seconds
    expected = burst / (sent_rate - rate) + burst / (sent_rate - 1.5 * rate)
    assert abs(clock.now - expected) < 0.1 * expected


def test_a_client_a_little_over_the_rate_is_limited_but_not_closed() -> None:
    clock = _Clock()
    bucket = TokenBucket(50.0, 200, clock)
    verdicts = []
    for sent in range(70 * 60):  # 70/s for a minute
        clock.now = sent / 70
        verdicts.append(bucket.admit())
    assert Admission.FLOOD not in verdicts and Admission.REFUSE in verdicts
