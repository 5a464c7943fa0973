"""A connection's subscribes and unsubscribes run in order, off its reader (server/gateway/session.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from server.gateway.session import MAX_PENDING_OPS, Session, TokenBucket
from tests.support import async_wait_until


def session() -> Session:
    return Session(cast(Any, None), TokenBucket(50, 200))  # in_order never touches the socket


async def test_ops_run_one_after_the_other_in_arrival_order_without_holding_the_caller() -> None:
    s = session()
    gate = asyncio.Event()
    done: list[int] = []

    async def op(number: int) -> None:
        if number == 0:
            await gate.wait()  # the first op waits (a subscribe waiting for Redis)
        done.append(number)

    assert all(s.in_order(lambda n=n: op(n)) for n in range(5))  # returns at once: nothing awaited
    await asyncio.sleep(0)
    assert done == [] and s.pending_ops == 5  # the others wait their turn
    gate.set()
    await async_wait_until(lambda: s.pending_ops == 0, what="every op to finish")
    assert done == [0, 1, 2, 3, 4]


async def test_at_most_max_pending_ops_wait_and_a_gone_connection_cancels_them() -> None:
    s = session()
    never = asyncio.Event()
    started = [s.in_order(never.wait) for _ in range(MAX_PENDING_OPS + 3)]
    assert started.count(True) == MAX_PENDING_OPS and started.count(False) == 3
    s.cancel_ops()
    await async_wait_until(lambda: s.pending_ops == 0, what="the cancelled ops to end")
    assert s.in_order(lambda: asyncio.sleep(0))  # room again
