"""The evaluator's reader: coalescing changes no decision, a poisoned log stops nothing."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publishers import keys
from publishers.connection import async_client
from publishers.events import BotStatus, Signal, Trade
from publishers.publisher import Publisher
from server.alerts.decisions import Decision
from server.alerts.engine import Engine
from server.alerts.log_text import plain_signal_fields, signal_fields
from server.alerts.rules import parse_alerts
from server.cli.embedded import EmbeddedRedis
from server.core.trust import check_event
from server.gateway.alert_reads import COUNT_EVERY_S, LogReader
from server.gateway.alerting import ROUND_GAP_S, AlertEvaluator
from tests.server.gateway.test_alerting import SETTINGS, STATUS_RULE, alerts_in_log, evaluating, status
from tests.support import async_wait_until
from tests.support.fixtures_store import running_recorder

SYMBOL = "COAL"
RULES = [
    {"name": "silent", "condition": {"type": "silent", "seconds": 60}},
    {"name": "strong", "condition": {"type": "signal", "min_confidence": 0.8}, "cooldown_s": 0},
    {
        "name": "strong-b1",
        "scope": {"bots": ["b1"]},
        "condition": {"type": "signal", "min_confidence": 0.6, "types": ["sell"]},
        "cooldown_s": 0,
    },
    {"name": "error", "condition": {"type": "status", "in": ["error"]}},
    {"name": "streak", "condition": {"type": "loss_streak", "count": 2}},
]


def random_events(rng: random.Random, count: int) -> list[str]:
    """Event texts as the publish script stores them (seq 1..count), a few of them malformed."""
    texts = []
    for seq in range(1, count + 1):
        bot, strategy = rng.choice(["b1", "b2", "b3"]), rng.choice(["s1", "s2"])
        roll = rng.random()
        event: Any
        if roll < 0.7:
            confidence = rng.choice([0.1, 0.5, 0.65, 0.79, 0.8, 0.95, 1])
            event = Signal(
                symbol=SYMBOL,
                ts=1_760_000_000_000 + seq,
                bot=bot,
                strategy=strategy,
                type=rng.choice(["buy", "sell"]),
                price=1.0,
                confidence=confidence,
            )
        elif roll < 0.85:
            event = Trade(
                symbol=SYMBOL,
                ts=1_760_000_000_000 + seq,
                bot=bot,
                strategy=strategy,
                side="sell",
                action="exit",
                price=1.0,
                qty=1.0,
                position="p",
                pnl=rng.choice([-1.0, 1.0]),
            )
        else:
            event = BotStatus(
                symbol=SYMBOL,
                ts=1_760_000_000_000 + seq,
                bot=bot,
                strategy=strategy,
                status=rng.choice(["active", "error"]),
            )
        text = f'{{"seq":{seq},{event.body()}'
        if rng.random() < 0.05:
            text = text.replace('"confidence":', '"confidence":"x', 1) if roll < 0.7 else text[:-3]
        elif roll < 0.7 and rng.random() < 0.15:
            text = text[:-1] + rng.choice(_SIGNAL_TWISTS) + "}"  # out of the plain shape, or hostile
        texts.append(text)
    return texts


# Tails that take a signal out of the publishers' plain shape: the parsed path decides those.
_SIGNAL_TWISTS = [
    ',"bot":"b3"',  # a second bot: JSON keeps the last
    ',"\\u0062ot":"b2"',  # the same, spelt with an escape
    ',"confidence":0.99',
    ',"confidence":0.1',
    ',"kind":"trade"',
    ',"note":{"nested":[1,2]}',
    ',"n":1.2.3',
]


def entries(texts: list[str], start: int, stop: int) -> list[Any]:
    """Log entries ``start..stop-1`` (0-based) as XREAD answers them (RESP2 flat field lists)."""
    return [[f"{i + 1}-0".encode(), [b"e", texts[i].encode()]] for i in range(start, stop)]


def decisions_key(decisions: list[Decision]) -> list[tuple[str, str, str]]:
    return sorted((d.action, d.alert_id, d.message) for d in decisions)


@pytest.mark.parametrize("seed", range(30))
def test_coalescing_changes_no_decision_and_no_state(seed: int) -> None:
    rng = random.Random(seed)
    texts = random_events(rng, rng.randint(1, 300))
    config = parse_alerts(RULES)
    plain, coalesced = Engine(config), Engine(config)
    counters: dict[str, int] = {}
    reader = LogReader(cluster=False, signal_floor=coalesced.signal_floor, counters=counters)
    cursor = ["e1", 0]
    got: list[Decision] = []
    want: list[Decision] = []
    start, now = 0, 1_000
    while start < len(texts):  # reads of random sizes, each at its own "now"
        stop = min(len(texts), start + rng.randint(1, 80))
        for i in range(start, stop):
            event = check_event(texts[i], i + 1, SYMBOL)
            if not isinstance(event, str):
                want += plain.observe(event, now, f"{SYMBOL}:e1:{i + 1}")
        events, cursor[1] = reader._events(SYMBOL, "e1", entries(texts, start, stop), cursor[1])
        for symbol, epoch, seq, event in events:
            got += coalesced.observe(event, now, f"{symbol}:{epoch}:{seq}")
        want += plain.tick(now)
        got += coalesced.tick(now)
        start, now = stop, now + rng.randint(0, 90_000)
    assert cursor == ["e1", len(texts)]
    assert decisions_key(got) == decisions_key(want)
    assert coalesced.state() == plain.state()


def test_a_floor_without_signal_rules_is_infinite() -> None:
    engine = Engine(parse_alerts([STATUS_RULE]))
    assert engine.signal_floor("X", "b", "s") == float("inf")
    assert Engine(parse_alerts(RULES)).signal_floor("X", "b1", "s") == 0.6


@pytest.mark.asyncio
async def test_a_log_of_the_wrong_type_does_not_stop_alerting(own_redis: EmbeddedRedis, symbol: str) -> None:
    """One poisoned key (a string where a stream belongs) failed the one XREAD for every symbol."""
    url = own_redis.url
    client = async_client(url)
    poisoned = f"{symbol}P"
    await client.sadd(keys.SYMBOLS_KEY, poisoned)
    await client.hset(keys.meta_key(poisoned), mapping={keys.META_EPOCH: "abc", keys.META_SEQ: "3"})
    await client.set(keys.log_key(poisoned), "not a stream")
    async with evaluating(url, [STATUS_RULE]) as evaluator, Publisher(url) as publisher:
        await publisher.publish(status(symbol, "error"))
        fired = await async_wait_until(lambda: alerts_in_log(url, symbol), what="the alert")
        assert [a["state"] for a in fired] == ["firing"]
        assert evaluator.counters["bad_logs"] == 1
        assert poisoned in evaluator.reader.left_out
    await client.aclose()


@pytest.mark.asyncio
async def test_a_flood_of_weak_signals_is_coalesced(own_redis: EmbeddedRedis, symbol: str) -> None:
    url = own_redis.url
    rule = {"name": "strong", "condition": {"type": "signal", "min_confidence": 0.9}, "cooldown_s": 0}
    weak = [
        Signal(
            symbol=symbol,
            ts=1_760_000_000_000 + i,
            bot="b",
            strategy="s",
            type="buy",
            price=1.0,
            confidence=0.5,
        )
        for i in range(500)
    ]
    strong = Signal(
        symbol=symbol, ts=1_760_000_001_000, bot="b", strategy="s", type="buy", price=1.0, confidence=0.95
    )
    async with Publisher(url) as publisher:
        # A checkpoint with the symbol's cursor (an evaluator without one starts at the tail),
        # then the flood while no evaluator runs: the next one reads it in one XREAD.
        await publisher.publish(status(symbol, "active", bot="b"))
        async with evaluating(url, [rule]) as first:
            await async_wait_until(lambda: symbol in first.reader.cursors, what="the symbol's cursor")
        await publisher.publish_many([*weak[:250], strong, *weak[250:]])
        async with evaluating(url, [rule]) as evaluator:
            fired = await async_wait_until(
                lambda: alerts_in_log(url, symbol), what="the strong signal's alert"
            )
            assert len(fired) == 1 and fired[0]["value"] == 0.95
            assert evaluator.counters["coalesced"] == 499


async def command_calls(url: str) -> dict[str, int]:
    client = async_client(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@pytest.mark.asyncio
async def test_a_steady_stream_is_read_in_rounds_that_do_not_grow_with_its_rate(
    own_redis: EmbeddedRedis, symbol: str
) -> None:
    """XREAD BLOCK answers as soon as one event is in: under a steady stream every event would make
    a round of its own, each a few Redis round trips of CPU. Rounds that read are ROUND_GAP_S apart
    and the registry's size is compared every COUNT_EVERY_S, whatever the rate."""
    url = own_redis.url
    count = 300
    async with Publisher(url) as publisher:
        await publisher.publish(status(symbol, "active"))
        async with evaluating(url, [STATUS_RULE]) as evaluator:
            await async_wait_until(lambda: _cursor_at(evaluator, symbol, 1), what="seq 1 read")
            before = await command_calls(url)
            started = time.monotonic()
            for _ in range(count):  # one at a time: each its own XADD, as a live bot's
                await publisher.publish(status(symbol, "active"))
            await async_wait_until(lambda: _cursor_at(evaluator, symbol, count + 1), what="all read")
            elapsed = time.monotonic() - started
            after = await command_calls(url)
    rounds = after.get("xread", 0) - before.get("xread", 0)
    counts = after.get("scard", 0) - before.get("scard", 0)
    assert rounds <= elapsed / ROUND_GAP_S + 5, (rounds, elapsed)
    assert counts <= elapsed / COUNT_EVERY_S + 5, (counts, elapsed)


@pytest.mark.asyncio
async def test_events_the_recorder_trimmed_before_the_evaluator_read_them_are_read_from_sql(
    own_redis: EmbeddedRedis, symbol: str, store_url: str
) -> None:
    """An evaluator that lags (here: restarted from an old checkpoint) finds the log trimmed
    behind what SQL holds; the alert its cause should fire still fires, read back from SQL."""
    url = own_redis.url
    client = async_client(url)
    async with Publisher(url) as publisher:
        await checkpoint_after_seq_1(url, publisher, symbol)
        async with running_recorder(url, store_url, [symbol]) as recording:
            await publisher.publish(status(symbol, "error"))  # seq 2: the cause, read by no evaluator
            await recording.caught_up(symbol, 2)
            await async_wait_until(lambda: _log_empty(client, symbol), what="the recorder's trim")
        evaluator = AlertEvaluator(
            url, parse_alerts([STATUS_RULE]), SETTINGS, owner="late", database_url=store_url
        )
        stop = asyncio.Event()
        task = asyncio.create_task(evaluator.run(stop))
        try:
            fired = await async_wait_until(
                lambda: alerts_in_log(url, symbol), what="the alert on the trimmed cause"
            )
            assert [(a["state"], a["rule"]) for a in fired] == [("firing", "bot-error")]
            assert evaluator.counters["filled"] == 1 and evaluator.counters["missed"] == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    await client.aclose()


@pytest.mark.asyncio
async def test_a_gap_neither_the_log_nor_sql_holds_is_counted(own_redis: EmbeddedRedis, symbol: str) -> None:
    url = own_redis.url
    client = async_client(url)
    async with Publisher(url) as publisher:
        await checkpoint_after_seq_1(url, publisher, symbol)
        await publisher.publish(status(symbol, "error"))
        await publisher.publish(status(symbol, "active"))
        await client.xtrim(keys.log_key(symbol), minid="3-0", approximate=False)  # seq 2: nowhere
        async with evaluating(url, [STATUS_RULE]) as late:
            await async_wait_until(lambda: late.counters["missed"] == 1, what="the gap counted")
            await async_wait_until(lambda: late.reader.cursors[symbol][1] == 3, what="the read past it")
    await client.aclose()


async def _log_empty(client: Any, symbol: str) -> bool:
    return int(await client.xlen(keys.log_key(symbol))) == 0


async def checkpoint_after_seq_1(url: str, publisher: Publisher, symbol: str) -> None:
    """A checkpoint whose cursor for ``symbol`` is at seq 1 (an evaluator without one starts at
    the tail), left by an evaluator that then stops."""
    await publisher.publish(status(symbol, "active"))
    async with evaluating(url, [STATUS_RULE]) as first:
        await async_wait_until(lambda: _cursor_at(first, symbol, 1), what="seq 1 read")


def _cursor_at(evaluator: AlertEvaluator, symbol: str, seq: int) -> bool:
    cursor = evaluator.reader.cursors.get(symbol)
    return cursor is not None and cursor[1] == seq


_NAMES = st.text(max_size=6) | st.sampled_from(["b1", "bot", "strategy", 'a"b', "x\\y", "kind", "confidence"])


@given(
    bot=_NAMES,
    strategy=_NAMES,
    confidence=st.floats(0, 1) | st.integers(0, 1),
    meta=st.dictionaries(_NAMES, _NAMES | st.integers(), max_size=3),
    ascii_only=st.booleans(),
    tail=st.sampled_from(
        ["", ',"bot":"other"', ', "bot" : "other"', ',"\\u0062ot":"other"', ',"confidence":0.9']
    ),
)
def test_the_unparsed_signal_fields_are_the_parsed_ones_when_given(
    bot: str, strategy: str, confidence: float, meta: dict[str, Any], ascii_only: bool, tail: str
) -> None:
    """signal_fields reads (bot, strategy, confidence) without parsing only where that is exact:
    on every valid event it answers, its answer is the JSON parser's (duplicate keys, escapes,
    spaces and look-alike names in meta included)."""
    event = {
        "seq": 1,
        "kind": "signal",
        "symbol": SYMBOL,
        "ts": 1_760_000_000_000,
        "bot": bot,
        "strategy": strategy,
        "type": "buy",
        "price": 1.0,
        "confidence": confidence,
        "meta": meta,
    }
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=ascii_only)[:-1] + tail + "}"
    checked = check_event(text, 1, SYMBOL)
    for fields in (signal_fields(text), plain_signal_fields(text.encode())):
        if fields is not None and isinstance(checked, dict):
            assert fields == (checked["bot"], checked["strategy"], checked["confidence"])
            assert type(fields[2]) is float


@given(
    bot=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=6).filter(
        lambda n: not n.isspace()
    ),
    confidence=st.floats(0, 1),
    price=st.floats(1e-9, 1e12),
    meta=st.dictionaries(_NAMES, st.text(max_size=4) | st.integers() | st.floats(-1e9, 1e9) | st.booleans()
                         | st.none() | st.dictionaries(_NAMES, st.integers(), max_size=2), max_size=3),
)  # fmt: skip
def test_a_signal_as_publishers_write_it_is_read_plainly_when_its_meta_is_flat(
    bot: str, confidence: float, price: float, meta: dict[str, Any]
) -> None:
    """The publishers' own text takes the plain path (what keeps a flood cheap) unless a string
    holds a quote or backslash or meta nests; where it answers, it is the parser's answer."""
    signal = Signal(symbol=SYMBOL, ts=1_760_000_000_000, bot=bot, strategy="s/1", type="buy",
                    price=price, confidence=confidence, meta=meta)  # fmt: skip
    text = f'{{"seq":7,{signal.body()}'
    fields = plain_signal_fields(text.encode())
    flat = not any(isinstance(v, dict) for v in meta.values())
    if flat and "\\" not in text:  # JSON escapes a quote too: no backslash, no quote in a string
        assert fields == (bot, "s/1", confidence)
    if fields is not None:
        checked = check_event(text, 7, SYMBOL)
        assert isinstance(checked, dict)
        assert fields == (checked["bot"], checked["strategy"], checked["confidence"])
