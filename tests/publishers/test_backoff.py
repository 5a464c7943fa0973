"""The one backoff rule: exponential caps, full jitter, bounded retries (no sleeping needed)."""

from __future__ import annotations

import itertools
import random
import threading

import pytest

from publishers.backoff import Backoff, Retries, RetryBudget


def test_caps_double_from_first_to_max() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.cap(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.cap(10_000) == 1.0  # no overflow however long the outage
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first_s=2.0, max_s=1.0)


def test_full_jitter_draws_uniformly_below_the_cap() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    # The bounds of the draw: 0 at the bottom, just below the cap at the top.
    assert list(itertools.islice(backoff.delays(lambda: 0.0), 4)) == [0.0] * 4
    top = list(itertools.islice(backoff.delays(lambda: 0.999), 6))
    assert top == pytest.approx([0.0999, 0.1998, 0.3996, 0.7992, 0.999, 0.999])
    # Spread over the whole range: waits of processes that failed together differ.
    rng = random.Random(5)
    draws = [backoff.delay(6, rng.random) for _ in range(2000)]
    assert 0.0 <= min(draws) < 0.01 and 0.99 < max(draws) < 1.0
    assert sum(draws) / len(draws) == pytest.approx(0.5, abs=0.03)
    assert len({round(d, 6) for d in draws}) > 1900


def test_retries_reset_after_a_success() -> None:
    retries = Retries(Backoff(first_s=1.0, max_s=8.0), uniform=lambda: 0.5)
    assert [retries.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    retries.succeeded()
    assert retries.next_delay() == 0.5


def test_blocking_wait_ends_when_stopped() -> None:
    stop = threading.Event()
    stop.set()
    assert Retries(Backoff(first_s=30.0, max_s=30.0), uniform=lambda: 1.0).wait_blocking(stop) is True


async def test_async_wait_sleeps_the_drawn_delay() -> None:
    retries = Retries(Backoff(first_s=0.001, max_s=0.001), uniform=lambda: 0.5)
    assert await retries.wait() == 0.0005
    assert retries.failures == 1


def test_budget_stops_after_the_attempts_or_the_deadline() -> None:
    now = [0.0]
    budget = RetryBudget(
        3, 10.0, Backoff(first_s=1.0, max_s=4.0), uniform=lambda: 0.999, clock=lambda: now[0]
    )
    assert [budget.next_delay() for _ in range(4)] == pytest.approx([0.999, 1.998, 3.996, None])
    assert budget.tries == 4
    budget = RetryBudget(
        100, 2.5, Backoff(first_s=1.0, max_s=4.0), uniform=lambda: 0.999, clock=lambda: now[0]
    )
    delays = []
    while (delay := budget.next_delay()) is not None:
        delays.append(delay)
        now[0] += delay
    # The last wait is cut to the deadline, and nothing starts after it.
    assert delays == pytest.approx([0.999, 1.501])
    assert RetryBudget(0, 10.0, Backoff()).next_delay() is None
