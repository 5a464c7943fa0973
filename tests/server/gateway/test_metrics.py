"""/metrics: the Prometheus text format, label values escaped wherever they come from."""

from __future__ import annotations

import re

import redis

from publishers import Publisher, keys
from server.gateway.metrics import GatewayMetrics, label_value, render, sample
from tests.support import async_wait_until
from tests.support.gateway import get, serving

#: A sample line of the text format: name, optional {label="value",...} with escapes, a value.
_SAMPLE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*",?)*\})? \S+')
FORGED = 'EVIL"} 1\nsignalpush_forged_total 1\n# '


def assert_valid_exposition(text: str) -> None:
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        assert _SAMPLE.fullmatch(line), f"not a sample line: {line!r}"
        assert not line.startswith("signalpush_forged"), f"forged line: {line!r}"


def test_label_values_are_escaped() -> None:
    assert label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert label_value("\udcff") == "\\\\udcff"  # a lone surrogate (undecodable bytes) cannot break the body
    line = sample("signalpush_recorder_lag_events", {"symbol": FORGED}, 3)
    assert "\n" not in line
    assert_valid_exposition(line)
    assert_valid_exposition(render(GatewayMetrics(), {"connections": (1.0, "x")}, lambda: [line]))


async def test_a_symbol_name_from_redis_cannot_forge_metric_lines(
    redis_url: str, store_url: str, symbol: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.sadd(keys.SYMBOLS_KEY, FORGED)
        async with (
            serving(redis_url, store_url) as running,
            Publisher(redis_url, bot="b", strategy="s") as bot,
        ):
            await bot.signal(symbol, "buy", price=1.0, confidence=0.5)

            async def metrics() -> str | None:
                reply = await get(running.port, "/metrics")
                assert reply.status == 200
                text = reply.body.decode()
                # Once the recorder reports the honest symbol, it has read the whole symbol set.
                return text if f'symbol="{symbol}"' in text else None

            assert_valid_exposition(await async_wait_until(metrics, what="the recorder's metrics"))
    finally:
        client.srem(keys.SYMBOLS_KEY, FORGED)
        client.close()
