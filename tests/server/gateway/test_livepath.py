"""No payload on the bus raises out of the live path, and nothing invalid reaches a frame.

The live path runs against a real Redis (its checks read the symbol's meta and log); the
fan-out core's output is captured instead of being written to sockets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publishers import Publisher, keys
from server.core.fanout import Fanout, Member, Outgoing
from server.core.filters import EVERYTHING, parse_filter
from server.core.trust import check_event
from server.gateway.livepath import LivePath
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import Outbox
from server.history.source import LogHistory

TS = 1_732_560_000_000
REAL_EPOCH = "<real>"  # replaced by the symbol's epoch when the payload is built


class CapturingOutbox(Outbox):
    """Keeps every frame the core built instead of writing it to sockets."""

    def __init__(self, fanout: Fanout, metrics: GatewayMetrics) -> None:
        super().__init__(metrics, 1 << 20, fanout.mark_lagging)
        self.texts: list[str] = []

    def write(self, out: Outgoing) -> None:
        self.texts += [batch.text for batch in out.broadcasts] + [send.text for send in out.sends]


def event_text(number: Any, changes: dict[str, Any] | None = None) -> str:
    event = {"seq": number, "kind": "signal", "symbol": "<sym>", "ts": TS, "bot": "x", "strategy": "s",
             "type": "buy", "price": 1.0, "confidence": 0.5, "meta": {}, **(changes or {})}  # fmt: skip
    return json.dumps(event, separators=(",", ":"))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
SEQS = st.one_of(
    st.integers(-2, 12), st.sampled_from([2**53, 2**63, 20_000_005]), st.integers(), st.just("1" * 30)
)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    """(channel symbol or "<same>", payload) — garbage bytes or envelopes around odd events."""
    if draw(st.booleans()):
        return "<same>", draw(st.binary(max_size=48))
    epoch = draw(st.sampled_from([REAL_EPOCH, REAL_EPOCH, "f0f0f0f0", "", "a b"]) | st.text(max_size=6))
    seq = draw(SEQS)
    ms = draw(st.sampled_from(["1732560000000", "-5", "x", ""]) | st.integers().map(str))
    body = draw(
        st.one_of(
            st.builds(event_text, st.just(seq)),
            st.builds(
                lambda s, k, v: event_text(s, {k: v}),
                st.just(seq),
                st.sampled_from(["seq", "kind", "symbol", "ts", "price", "confidence", "meta", "bot"]),
                JSON_VALUES,
            ),
            JSON_VALUES.map(lambda v: json.dumps(v)),
            st.text(max_size=30),
            st.just('{"seq":' + str(seq) + ',"kind":"candle","symbol":"<sym>"}'),
        )
    )
    return "<same>", f"{epoch} {seq} {ms} {body}".encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("confirm", [False, True], ids=["checks", "confirm-live"])
async def test_no_payload_raises_out_of_the_live_path_nor_reaches_a_frame_invalid(
    redis_url: str, symbol: str, confirm: bool
) -> None:
    batches: list[list[tuple[str, bytes]]] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(payloads(), min_size=1, max_size=6))
    def collect(batch: list[tuple[str, bytes]]) -> None:
        batches.append(batch)

    collect()
    async with Publisher(redis_url, bot="b1", strategy="s1") as pub:
        for i in range(5):
            await pub.signal(symbol, "buy", price=1 + i, confidence=0.5, ts=TS)
    client = aioredis.Redis.from_url(redis_url)
    plain = redis.Redis.from_url(redis_url)
    epoch = plain.hget(keys.meta_key(symbol), "epoch").decode()
    fanout, metrics = Fanout(), GatewayMetrics()
    outbox = CapturingOutbox(fanout, metrics)
    resets: list[str] = []

    def restart(member: Member, reason: str) -> None:
        resets.append(reason)
        fanout.finish_loading(member, fanout.symbols[symbol].last_seq or 0, member.generation)

    live = LivePath(
        fanout=fanout,
        history=LogHistory(client),
        redis=client,
        metrics=metrics,
        outbox=outbox,
        restart_member=restart,
        announce=lambda up: None,
        confirm_every_batch=confirm,
    )
    for conn, flt in (("all", EVERYTHING), ("sells", parse_filter({"signal_types": ["sell"]}))):
        member, new = fanout.join(conn, symbol, flt)

        async def subscribe(name: str) -> None:
            return None

        await live.ensure_primed(symbol, new, subscribe, 5.0)
        assert fanout.finish_loading(member, 5, member.generation) is not None
    channel = keys.live_channel(symbol).encode()
    try:
        for batch in batches:
            built = [
                (
                    channel,
                    payload.replace(REAL_EPOCH.encode(), epoch.encode()).replace(b"<sym>", symbol.encode()),
                )
                for _, payload in batch
            ]
            await live.on_batch(built)  # must not raise
            state = fanout.symbols[symbol]
            meta_seq = int(plain.hget(keys.meta_key(symbol), "seq"))
            assert state.epoch == epoch
            # With confirm_live only what the meta holds is sent; without it, a valid event under
            # the next seq is sent before any check (by design, see below), so a forged one the
            # examples drew (real epoch, seq 6) may take the position one past the meta.
            assert (state.last_seq or 0) <= meta_seq or not confirm, "only what the meta holds"
        # Real events still flow after all of it.
        async with Publisher(redis_url, bot="b1", strategy="s1") as pub:
            seq = await pub.signal(symbol, "sell", price=9, confidence=0.9, ts=TS)
        entries = plain.xrange(keys.log_key(symbol), min=f"{seq}-0", max=f"{seq}-0")
        real = f"{epoch} {seq} 1732560000000 ".encode() + entries[0][1][b"e"]
        await live.on_batch([(channel, real)])
        assert fanout.symbols[symbol].last_seq == seq
    finally:
        await client.aclose()
        plain.close()
    assert metrics.bus_rejected["error"] == 0, "nothing raised inside either"
    for text in outbox.texts:
        frame = json.loads(text)
        for item in frame["items"]:
            assert isinstance(check_event(json.dumps(item, separators=(",", ":")), item["seq"], symbol), dict)
            # Without confirm_live a valid event under the next seq is sent before any check.
            assert item["bot"] == "b1" or not confirm, "with confirm_live only the log's events are sent"
    assert any(item["seq"] == seq for t in outbox.texts for item in json.loads(t)["items"])
