"""``signalpush replay``: the recorded events of a window, printed in seq order."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers.events import now_ms
from server.cli.main import main
from server.cli.replay import replay_window
from server.core.filters import parse_filter
from tests.support.fixtures_store import publish, running_recorder
from tests.support.replay_stream import forget_symbol, stream


@pytest.fixture(autouse=True)
async def _forget_the_symbol(redis_url: str, symbol: str) -> AsyncIterator[None]:
    yield
    await forget_symbol(redis_url, symbol)


async def test_replay_prints_the_window_as_jsonl_and_as_a_table(
    redis_url: str, engine: AsyncEngine, store_url: str, symbol: str
) -> None:
    t0 = now_ms() - 10 * 60_000
    events = stream(symbol, 120, t0, seed=11)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await publish(redis_url, events[:80])
        await recorder.caught_up(symbol, 80)
    await publish(redis_url, events[80:])  # the tail only in the log
    out = io.StringIO()
    count = await replay_window(
        store_url,
        redis_url,
        symbol,
        flt=parse_filter({"kinds": ["signal", "trade"]}),
        from_ms=t0 + 10_000,
        to_ms=t0 + 109_000,
        speed="max",
        jsonl=True,
        out=out,
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = [i + 1 for i, e in enumerate(events) if e.kind in ("signal", "trade") and 10 <= i <= 109]
    assert [e["seq"] for e in lines] == expected and count == len(expected)
    table = io.StringIO()
    await replay_window(
        store_url, redis_url, symbol, flt=parse_filter(None), from_ms=t0, to_ms=t0 + 2_000,
        speed=1000.0, jsonl=False, out=table,
    )  # fmt: skip
    rows = table.getvalue().splitlines()
    assert len(rows) == 3 and rows[0].split()[0] == "1" and events[0].kind in rows[0]


def test_replay_refuses_bad_times(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--from"):
        main(["replay", "BTCUSDT", "--from", "not-a-time"])
