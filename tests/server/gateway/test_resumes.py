"""Resume reads shared by clients asking for the same thing (no sockets, no Redis)."""

from __future__ import annotations

import asyncio

import pytest

from server.core.fanout import Fanout
from server.core.filters import EVERYTHING
from server.gateway.resumes import SharedResumes
from server.history.source import After

EPOCH = "e1"


class CountingHistory:
    """A history source whose reads wait on a gate and are counted; the log ends at ``to_seq``."""

    def __init__(self, to_seq: int = 10, reset: str | None = None) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.to_seq = to_seq
        self.reset = reset

    async def after(self, symbol: str, flt: object, *, epoch: str, seq: int) -> After:
        self.calls += 1
        self.started.set()
        to_seq = self.to_seq  # where the log ended when the read started
        await self.gate.wait()
        events = [(s, f'{{"seq":{s}}}') for s in range(seq + 1, to_seq + 1)]
        return After(EPOCH, to_seq, events, reset_reason=self.reset, reached=to_seq)


def live_at(seq: int) -> Fanout:
    fanout = Fanout()
    fanout.join("c", "SYM", EVERYTHING)
    fanout.prime("SYM", EPOCH, seq)
    return fanout


def resumes_over(history: CountingHistory, fanout: Fanout, **options: int) -> SharedResumes:
    return SharedResumes(history, fanout, **options)  # type: ignore[arg-type]


async def test_clients_resuming_from_the_same_point_share_one_read() -> None:
    history = CountingHistory()
    resumes = resumes_over(history, live_at(10))
    waiting = [asyncio.create_task(resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)) for _ in range(50)]
    await asyncio.sleep(0)
    history.gate.set()
    results = await asyncio.gather(*waiting)
    assert history.calls == 1 and {id(r) for r in results} == {id(results[0])}
    assert [s for s, _ in results[0].events] == [6, 7, 8, 9, 10]
    again = await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)
    assert again is results[0] and history.calls == 1, "kept while the live path has not passed it"
    assert (resumes.reads, resumes.shared) == (1, 50)


async def test_a_read_is_not_shared_with_a_client_that_asked_after_the_live_path_passed_it() -> None:
    """The client joined after seq 11 went live: the read (to 10) would leave 11 out of its stream."""
    history = CountingHistory(to_seq=10)
    fanout = live_at(10)
    resumes = resumes_over(history, fanout)
    first = asyncio.create_task(resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5))
    await history.started.wait()  # the shared read has begun
    fanout.symbols["SYM"].last_seq = 11  # the live path processed seq 11 while the read ran
    history.to_seq = 11
    late = asyncio.create_task(resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5))
    for _ in range(5):  # the late client is waiting on the shared read
        await asyncio.sleep(0)
    history.gate.set()
    assert (await first).to_seq == 10
    assert (await late).to_seq == 11, "read on its own"
    assert history.calls == 2


async def test_a_reset_makes_every_earlier_read_stale() -> None:
    history = CountingHistory(to_seq=10)
    history.gate.set()
    fanout = live_at(10)
    resumes = resumes_over(history, fanout)
    await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)
    fanout.reset_symbol("SYM", EPOCH, 7)  # history rewritten in Redis after seq 7
    await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)
    assert history.calls == 2


async def test_a_client_leaving_does_not_cancel_the_read_others_wait_for() -> None:
    history = CountingHistory()
    resumes = resumes_over(history, live_at(10))
    leaving = asyncio.create_task(resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5))
    staying = asyncio.create_task(resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5))
    await asyncio.sleep(0)
    leaving.cancel()
    history.gate.set()
    assert (await staying).to_seq == 10
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_resets_are_not_shared_and_kept_reads_are_bounded() -> None:
    history = CountingHistory(reset="epoch changed")
    history.gate.set()
    resumes = resumes_over(history, live_at(10), max_kept=3)
    await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)
    await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=5)
    assert history.calls == 2
    history.reset = None
    for seq in range(10):  # positions a hostile client may send: the kept reads stay bounded
        await resumes.after("SYM", EVERYTHING, epoch=EPOCH, seq=seq)
    assert len(resumes._reads) == 3
