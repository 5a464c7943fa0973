"""Helpers shared by the tests: waiting on conditions with a scaled timeout."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TEST_REDIS_ENV = "SIGNALPUSH_TEST_REDIS_URL"
TEST_DATABASE_ENV = "SIGNALPUSH_TEST_DATABASE_URL"
#: Multiply every test timeout (slow CI machines): SIGNALPUSH_TEST_TIMEOUT_SCALE=3.
TIMEOUT_SCALE = float(os.environ.get("SIGNALPUSH_TEST_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE


def wait_until(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after the scaled timeout."""
    deadline = time.monotonic() + scaled(timeout)
    delay = 0.005
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


async def async_wait_until(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Async twin of :func:`wait_until`; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + scaled(timeout)
    delay = 0.005
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):g}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
