"""Rate-limited logging (pure, with a fake clock)."""

from __future__ import annotations

import logging

import pytest

from server.logs import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_once_per_key_per_interval_then_says_how_many_were_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="test.ratelog")
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 60.0, clock=clock)
    assert limited.warning(("SYM", "json"), "dropped", symbol="SYM")
    assert not any(limited.warning(("SYM", "json"), "dropped", symbol="SYM") for _ in range(5))
    assert limited.warning(("SYM", "envelope"), "dropped", symbol="SYM"), "another key logs at once"
    clock.now = 61.0
    assert limited.warning(("SYM", "json"), "dropped", symbol="SYM")
    records = [r for r in caplog.records if r.name == "test.ratelog"]
    assert len(records) == 3 and records[-1].held_back == 5
    assert records[0].symbol == "SYM"


def test_memory_is_bounded_whatever_the_keys() -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 60.0, max_keys=10, clock=Clock())
    for i in range(10_000):
        limited.warning(f"name-{i}", "bad name")
    assert len(limited._seen) <= 10
