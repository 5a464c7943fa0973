"""docs/protocol.md's claims, checked through the wire format alone, with two client libraries.

Nothing here imports the project: the server is driven only by frames (tests/conformance/wire.py);
the harness (conftest.py) runs the server and publishes as bots do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conformance.wire import RECEIVE_LIMIT, Conn

Connect = Callable[[str], Awaitable[Conn]]
#: The harness (tests/conformance/conftest.py): ws_url, and publishing as bots do.
Harness = Any


def subscribe(ref: Any, symbol: str, **extra: Any) -> dict[str, Any]:
    return {"op": "subscribe", "ref": ref, "symbol": symbol, **extra}


async def test_hello_names_the_protocol_and_the_instance(harness: Harness, connect: Connect) -> None:
    conn = await connect(harness.ws_url)
    hello = conn.frames[0]
    assert hello["op"] == "hello" and hello["protocol"] == 1 and hello["heartbeat_s"] > 0
    host, _, pid = hello["instance"].rpartition(":")
    assert host and pid.isdigit()


async def test_refs_come_back_exactly_as_given(harness: Harness, connect: Connect) -> None:
    conn = await connect(harness.ws_url)
    for ref in (7, 7.5, "7", -3, 10**20, "x" * 64):
        pong = await conn.request({"op": "ping", "ref": ref})
        assert pong["op"] == "pong" and pong["ref"] == ref and type(pong["ref"]) is type(ref)
    symbol = harness.symbol()
    subscribed = await conn.request(subscribe(12, symbol))
    assert subscribed["op"] == "subscribed" and subscribed["ref"] == 12
    error = await conn.request({"op": "unsubscribe", "ref": 2.25, "sub": "nope"})
    assert error["op"] == "error" and error["code"] == "bad_request" and error["ref"] == 2.25
    for bad in (True, [1], {"a": 1}, "x" * 65):
        start = len(conn.frames)
        await conn.send({"op": "ping", "ref": bad})
        refused = await conn.expect(lambda f: f["op"] == "error", start=start)
        assert refused["code"] == "bad_request" and refused["message"].startswith("ref:")


async def test_rate_limited_errors_carry_the_ref(harness: Harness, connect: Connect) -> None:
    conn = await connect(harness.ws_url)
    # 260 at once: the bucket (200) answers, the rest are refused; far from a flood (1008).
    await asyncio.gather(*(conn.send({"op": "ping", "ref": i}) for i in range(260)))

    def replies() -> list[dict[str, Any]]:
        return [f for f in conn.frames if f["op"] in ("pong", "error")]

    await conn.expect(lambda _frame: len(replies()) >= 260)
    refused = [f for f in replies() if f["op"] == "error"]
    answered = [f["ref"] for f in replies() if f["op"] == "pong"]
    assert refused and {f["code"] for f in refused} == {"rate_limited"}
    assert sorted(answered + [f["ref"] for f in refused]) == list(range(260))  # every one, its own ref
    assert not conn.closed.is_set()


async def test_resume_with_a_null_epoch_means_i_have_nothing(harness: Harness, connect: Connect) -> None:
    quiet, busy = harness.symbol(), harness.symbol()
    seqs = await harness.signals(busy, 30)
    conn = await connect(harness.ws_url)
    # A symbol never published: subscribed says epoch null, seq 0; resuming from that is fine.
    first = await conn.request(subscribe("q", quiet))
    assert (first["epoch"], first["seq"]) == (None, 0)
    again = await conn.request(subscribe("q2", quiet, resume={"epoch": None, "seq": 0}))
    assert again["op"] == "subscribed" and again["replaced"] is True
    await harness.signals(quiet, 3)
    live = await conn.expect(lambda f: f["op"] == "events" and f["sub"] == again["sub"] and f["to_seq"] == 3)
    assert live["epoch"] is not None
    # A published symbol: the whole current epoch is replayed.
    replay = await conn.request(subscribe("b", busy, resume={"epoch": None, "seq": 0}))
    await conn.expect(lambda f: f["op"] == "events" and f.get("sub") == replay["sub"] and f["to_seq"] >= 30)
    items = [item["seq"] for f in conn.of(replay["sub"], "events") for item in f["items"]]
    assert items == seqs and not conn.of(replay["sub"], "history")
    wrong = await conn.request(subscribe("w", busy, resume={"epoch": None, "seq": 5}))
    assert wrong["op"] == "error" and wrong["code"] == "bad_request" and "resume.seq" in wrong["message"]


async def test_equivalent_filters_are_one_subscription_and_a_replacement_says_so(
    harness: Harness, connect: Connect
) -> None:
    symbol = harness.symbol()
    conn = await connect(harness.ws_url)
    everything = [
        None,
        {},
        {"min_confidence": 0},
        {"kinds": ["trade", "bot", "candle", "signal", "alert"]},
        {"signal_types": ["sell", "hold", "buy"], "sides": ["sell", "buy"]},
    ]
    replies = []
    for index, flt in enumerate(everything):
        frame = subscribe(f"e{index}", symbol)
        if flt is not None:
            frame["filter"] = flt
        replies.append(await conn.request(frame))
    assert {r["sub"] for r in replies} == {replies[0]["sub"]}
    assert [r["replaced"] for r in replies] == [False, True, True, True, True]
    assert all(r["filter"] == {} for r in replies)
    same = [
        {"kinds": ["signal", "candle"]},
        {"kinds": ["candle", "signal", "signal"]},
        {"kinds": ["candle", "signal"], "sides": ["buy"]},  # sides apply to trades: none asked for
    ]
    answers = [await conn.request(subscribe(f"s{i}", symbol, filter=flt)) for i, flt in enumerate(same)]
    assert {a["sub"] for a in answers} == {answers[0]["sub"]} != {replies[0]["sub"]}
    assert answers[0]["filter"] == {"kinds": ["candle", "signal"]} and answers[0]["replaced"] is False
    one = await conn.request(subscribe("o1", symbol, filter={"bots": "momo-1"}))
    other = await conn.request(subscribe("o2", symbol, filter={"bots": ["momo-1"]}))
    assert one["sub"] == other["sub"] and other["replaced"] and one["filter"] == {"bots": ["momo-1"]}


async def test_empty_lists_mean_none_of_that_kind(harness: Harness, connect: Connect) -> None:
    symbol = harness.symbol()
    conn = await connect(harness.ws_url)
    nothing = await conn.request(subscribe("n", symbol, filter={"kinds": []}))
    no_bots = await conn.request(subscribe("b", symbol, filter={"bots": []}))
    assert no_bots["filter"] == {"kinds": ["alert", "candle"]}  # alerts carry no bot field
    await harness.signals(symbol, 2)
    await harness.candles(symbol, 2)
    await conn.expect(lambda f: f["op"] == "events" and f["sub"] == no_bots["sub"] and f["to_seq"] == 4)
    kinds = {item["kind"] for f in conn.of(no_bots["sub"], "events") for item in f["items"]}
    assert kinds == {"candle"}
    assert all(not f["items"] for f in conn.of(nothing["sub"], "events"))


async def test_resume_wins_over_history(harness: Harness, connect: Connect) -> None:
    symbol = harness.symbol()
    await harness.signals(symbol, 10)
    first = await (await connect(harness.ws_url)).request(subscribe("1", symbol))
    second = await connect(harness.ws_url)
    resumed = await second.request(
        subscribe("2", symbol, history={"minutes": 60}, resume={"epoch": first["epoch"], "seq": 4})
    )
    await second.expect(
        lambda f: f["op"] == "events" and f.get("sub") == resumed["sub"] and f["to_seq"] == 10
    )
    assert not second.of(resumed["sub"], "history")
    assert [i["seq"] for f in second.of(resumed["sub"], "events") for i in f["items"]] == list(range(5, 11))


async def test_no_frame_is_larger_than_the_bound_history_comes_in_chunks(
    harness: Harness, connect: Connect
) -> None:
    symbol, padded = harness.symbol(), harness.symbol()
    long_bot, long_strategy = "b" * 60, "s" * 60
    seqs = await harness.signals(symbol, 7000, bot=long_bot, strategy=long_strategy)  # ~1.2 MB history
    conn = await connect(harness.ws_url)
    reply = await conn.request(subscribe("h", symbol, history={"minutes": 60}))
    history = await conn.expect(lambda f: f["op"] == "history" and f["sub"] == reply["sub"], timeout=60)
    assert history["data"]["signal"]["seq"] == seqs and history["to_seq"] == seqs[-1]
    assert set(history["data"]["signal"]["bot"]) == {long_bot}
    assert conn.chunks >= 2 and max(conn.sizes) <= 1_000_000 < RECEIVE_LIMIT
    # A resume over large events (4 KiB of meta each): catch-up frames stay under the bound too.
    big = await harness.signals(padded, 400, pad=3500)
    other = await connect(harness.ws_url)
    start = {"epoch": None, "seq": 0}
    resumed = await other.request(subscribe("r", padded, resume=start))
    sub = resumed["sub"]
    await other.expect(lambda f: f["op"] == "events" and f.get("sub") == sub and f["to_seq"] == 400)
    assert other.chunks >= 2 and max(other.sizes) <= 1_000_000
    assert [i["seq"] for f in other.of(sub, "events") for i in f["items"]] == big


async def test_rows_of_older_epochs_have_no_seq(harness: Harness, connect: Connect) -> None:
    symbol = harness.symbol()
    old = await harness.signals(symbol, 6, t0=int(time.time() * 1000) - 120_000)
    await harness.wait_recorded(symbol, len(old))
    await harness.lose_state(symbol)  # Redis lost the symbol: the next publish starts a new epoch
    new = await harness.signals(symbol, 3)
    conn = await connect(harness.ws_url)
    reply = await conn.request(subscribe("h", symbol, history={"minutes": 60}))
    history = await conn.expect(lambda f: f["op"] == "history" and f["sub"] == reply["sub"])
    column = history["data"]["signal"]["seq"]
    assert len(column) == len(old) + len(new)
    assert column[: len(old)] == [None] * len(old) and column[len(old) :] == new
    assert all(seq <= history["to_seq"] for seq in column if seq is not None)


async def test_a_subscribe_fails_fast_while_the_bus_is_down_and_blocks_nothing(
    own_harness: tuple[Harness, Any], connect: Connect
) -> None:
    harness, redis_server = own_harness
    conn = await connect(harness.ws_url)
    redis_server.stop()
    await conn.expect(lambda f: f["op"] == "status" and f["bus"] == "down", timeout=20)
    started = len(conn.frames)
    await conn.send(subscribe("s", harness.symbol()))
    await conn.send({"op": "ping", "ref": "p"})
    # At once: before, the subscribe waited 10 s for a confirmation from Redis, and the ping
    # behind it as long.
    refused = await conn.expect(lambda f: f.get("ref") == "s", start=started, timeout=8)
    pong = await conn.expect(lambda f: f.get("ref") == "p", start=started, timeout=8)
    assert refused["op"] == "error" and refused["code"] == "internal" and pong["op"] == "pong"
    redis_server.start()
    await conn.expect(lambda f: f["op"] == "status" and f["bus"] == "up", timeout=20)
    back = await conn.request(subscribe("t", harness.symbol()))
    assert back["op"] == "subscribed"


async def test_unsubscribed_then_nothing_more_for_that_sub(harness: Harness, connect: Connect) -> None:
    symbol = harness.symbol()
    conn = await connect(harness.ws_url)
    reply = await conn.request(subscribe("s", symbol))
    await harness.signals(symbol, 2)
    await conn.expect(lambda f: f["op"] == "events" and f.get("sub") == reply["sub"] and f["to_seq"] == 2)
    gone = await conn.request({"op": "unsubscribe", "ref": 9, "sub": reply["sub"]})
    assert gone == {"op": "unsubscribed", "ref": 9, "sub": reply["sub"]}
    after = len(conn.frames)
    await harness.signals(symbol, 3)
    await conn.request({"op": "ping", "ref": "later"})  # the server has handled everything before it
    assert not [f for f in conn.frames[after:] if f.get("sub") == reply["sub"]]


async def test_binary_and_oversized_frames_close_with_their_codes(harness: Harness, connect: Connect) -> None:
    binary = await connect(harness.ws_url)
    await binary.send_binary(b"\x00\x01")
    await asyncio.wait_for(binary.closed.wait(), 10)
    assert binary.close_code == 1003
    oversized = await connect(harness.ws_url)
    await oversized.send({"op": "ping", "ref": "x" * 70_000})  # past server.max_frame_bytes (64 KiB)
    await asyncio.wait_for(oversized.closed.wait(), 10)
    assert oversized.close_code == 1009


async def test_bad_frames_get_errors_naming_the_field_and_the_connection_stays(
    harness: Harness, connect: Connect
) -> None:
    conn = await connect(harness.ws_url)
    cases = [
        ("not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ({"op": "launch", "ref": 1}, "op: unknown op"),
        (subscribe(2, "BTC USDT"), "symbol:"),
        (subscribe(3, "BTCUSDT\n"), "symbol:"),
        (subscribe(4, "BTCÜSDT"), "symbol:"),  # symbols are ASCII
        (subscribe(5, "X", filter={"min_confidence": 2}), "filter.min_confidence:"),
        (subscribe(6, "X", resume={"epoch": 5, "seq": 1}), "resume.epoch:"),
    ]
    for frame, says in cases:
        start = len(conn.frames)
        await conn.send(frame)
        error = await conn.expect(lambda f: f["op"] == "error", start=start)
        assert error["code"] == "bad_request" and says in error["message"], (frame, error)
        if isinstance(frame, dict):
            assert error["ref"] == frame["ref"]
    assert (await conn.request({"op": "ping", "ref": "still"}))["op"] == "pong"
