"""Long-running tasks restarted with backoff when they end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.gateway.tasks import SupervisedTask
from tests.support import async_wait_until


async def test_a_task_that_ends_is_logged_counted_and_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="server.gateway.tasks")
    runs: list[float] = []
    restarted: list[str] = []

    async def flaky() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 1:
            raise ValueError("a bug")
        if len(runs) == 2:
            return  # returning is a bug too
        await asyncio.Event().wait()

    task = SupervisedTask("flaky", flaky, on_restart=restarted.append, backoff_s=0.05, max_backoff_s=1.0)
    task.start()
    await async_wait_until(lambda: len(runs) == 3 and task.up, what="the third run")
    assert task.restarts == 2 and restarted == ["flaky", "flaky"] and task.last_error == "returned"
    # Two failures in a row: the second wait was drawn below a doubled cap (full jitter).
    assert task.retries.failures == 2 and task.retries.backoff.cap(2) == pytest.approx(0.1)
    errors = [r for r in caplog.records if r.name == "server.gateway.tasks"]
    assert len(errors) == 2 and errors[0].exc_info is not None
    await task.stop()
    assert not task.up


async def test_stop_lets_the_task_finish_on_its_own_first() -> None:
    stop = asyncio.Event()
    finished = []

    async def graceful() -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # finishing its batch
        finished.append(True)

    task = SupervisedTask("graceful", graceful)
    task.start()
    await async_wait_until(lambda: task.up, what="running")
    stop.set()
    await task.stop(timeout_s=5)
    assert finished == [True] and task.restarts == 0
