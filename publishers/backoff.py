"""Exponential backoff with full jitter: the one retry delay rule of signalpush.

After the n-th consecutive failure (n >= 1) a loop waits a time drawn uniformly from
``[0, min(max_s, first_s * 2**(n-1)))`` ("full jitter"): processes that failed together
(every gateway and bot when Redis restarts) do not retry together. The delays are pure
(:meth:`Backoff.delay`, :meth:`Backoff.delays`, testable without sleeping); the waits are
thin: :meth:`Retries.wait` (asyncio) and :meth:`Retries.wait_blocking` (threads).
:class:`RetryBudget` bounds a retry by attempts and by time (the publishers' retry).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

#: A source of uniform numbers in [0, 1) (``random.random``; tests pass their own).
Uniform = Callable[[], float]
_MAX_DOUBLINGS: Final = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff from ``first_s`` doubling up to ``max_s``, with full jitter."""

    first_s: float = 0.1
    max_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got first_s={self.first_s} max_s={self.max_s}")

    def cap(self, failures: int) -> float:
        """The upper bound of the wait after ``failures`` consecutive failures (>= 1)."""
        doublings = min(max(failures, 1) - 1, _MAX_DOUBLINGS)
        return min(self.max_s, self.first_s * 2.0**doublings)

    def delay(self, failures: int, uniform: Uniform = random.random) -> float:
        """The wait after ``failures`` consecutive failures: uniform in [0, cap(failures))."""
        return uniform() * self.cap(failures)

    def delays(self, uniform: Uniform = random.random) -> Iterator[float]:
        """The waits after the 1st, 2nd, ... consecutive failure (endless)."""
        failures = 0
        while True:
            failures += 1
            yield self.delay(failures, uniform)


class Retries:
    """The failures of one retry loop so far: the next wait, forgotten after a success."""

    __slots__ = ("_uniform", "backoff", "failures")

    def __init__(self, backoff: Backoff, uniform: Uniform = random.random) -> None:
        self.backoff = backoff
        self.failures = 0
        self._uniform = uniform

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next try."""
        self.failures += 1
        return self.backoff.delay(self.failures, self._uniform)

    def succeeded(self) -> None:
        self.failures = 0

    async def wait(self) -> float:
        """Count a failure and sleep its delay (asyncio); returns the delay."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def wait_blocking(self, stop: threading.Event | None = None) -> bool:
        """Count a failure and block for its delay, or until ``stop`` is set (then True)."""
        delay = self.next_delay()
        if stop is None:
            time.sleep(delay)
            return False
        return stop.wait(delay)


class RetryBudget:
    """A bounded retry: at most ``attempts`` retries, none starting after ``timeout_s``.

    :meth:`next_delay` gives the wait before the next try (full jitter, never past the
    deadline), or None when the budget is spent.
    """

    __slots__ = ("_clock", "_deadline", "_retries", "attempts", "tries")

    def __init__(
        self,
        attempts: int,
        timeout_s: float,
        backoff: Backoff,
        *,
        uniform: Uniform = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.tries = 0
        self._clock = clock
        self._deadline = clock() + timeout_s
        self._retries = Retries(backoff, uniform)

    def next_delay(self) -> float | None:
        """Count a failed try; the wait before the next one, or None when none is left."""
        self.tries += 1
        remaining = self._deadline - self._clock()
        if self.tries > self.attempts or remaining <= 0:
            return None
        return min(self._retries.next_delay(), remaining)
