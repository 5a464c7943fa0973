"""``bench hostile``'s attacks through Redis: what a holder of a publisher credential can write.

Each runs as a ``publisher`` ACL user (``signalpush acl publisher``) first; when Redis refuses
that user the command, the attack says so and runs as the bench's admin connection (a key
of the wrong type may also come from a mistake or another application).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from publishers import keys
from publishers.connection import async_client
from publishers.events import Signal
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, build_call
from server.bench.attack import Attack, AttackContext, Outcome, repeat_until

T = TypeVar("T")

#: Live messages per second for the attacks that repeat one.
_LIVE_EVERY_S = 0.05


class Credential:
    """The attacker's Redis connection: the publisher user, or the admin once Redis refused that user."""

    def __init__(self, ctx: AttackContext) -> None:
        self.ctx = ctx
        self.client: aioredis.Redis = async_client(ctx.attacker_url, name="signalpush-bench-attacker")
        self.refused: list[str] = []

    async def __aenter__(self) -> Credential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def run(self, what: str, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        try:
            return await operation(self.client)
        except (redis.exceptions.NoPermissionError, redis.exceptions.ResponseError) as exc:
            text = str(exc)
            if not any(refusal in text for refusal in ("NOPERM", "no permissions", "script can't")):
                raise
        self.refused.append(what)
        await self.client.aclose()
        self.client = async_client(self.ctx.redis_url, name="signalpush-bench-attacker")
        return await operation(self.client)

    def note(self, text: str) -> str:
        if not self.refused:
            return f"{text} (as the publisher user)"
        return f"{text} (publisher user refused {', '.join(sorted(set(self.refused)))} by ACL: as admin)"


async def _meta(client: aioredis.Redis, symbol: str) -> tuple[str, int]:
    epoch = await client.hget(keys.meta_key(symbol), keys.META_EPOCH)
    seq = await client.hget(keys.meta_key(symbol), keys.META_SEQ)
    text = epoch.decode() if isinstance(epoch, bytes) else str(epoch or "0")
    return text, int(seq or 0)


def forged_event(symbol: str, seq: int) -> str:
    """A well-formed signal no honest publisher sent (its ``meta.t`` is 1: no honest stamp)."""
    body = Signal(
        symbol=symbol, ts=int(time.time() * 1000), bot="forger", strategy="forged", type="buy",
        price=1.0, confidence=0.99, meta={"t": 1},
    ).body()  # fmt: skip
    return f'{{"seq":{seq},{body}'


def _live(payload: Callable[[str, str, int], bytes | str]) -> Callable[[AttackContext], Awaitable[Outcome]]:
    """An attack publishing ``payload(symbol, epoch, seq)`` on the first symbol's live channel, 20 times a
    second (``epoch`` and ``seq`` are the symbol's now, read from its meta as the publisher user may)."""

    async def run(ctx: AttackContext) -> Outcome:
        symbol = ctx.symbols[0]
        async with Credential(ctx) as attacker:

            async def once() -> None:
                epoch, seq = await attacker.run("HGET", lambda c: _meta(c, symbol))
                message = payload(symbol, epoch, seq)
                await attacker.run("PUBLISH", lambda c: c.publish(keys.live_channel(symbol), message))

            sent = await repeat_until(time.monotonic() + ctx.seconds, _LIVE_EVERY_S, once)
            return Outcome(attacker.note(f"{sent} messages on {symbol}"))

    return run


def _now_ms() -> int:
    return int(time.time() * 1000)


async def forged_jump(ctx: AttackContext) -> Outcome:
    """One well-formed message at seq + 2,000,000 (the right epoch), then the honest feed goes on."""
    symbol = ctx.symbols[0]
    async with Credential(ctx) as attacker:
        epoch, seq = await attacker.run("HGET", lambda c: _meta(c, symbol))
        message = f"{epoch} {seq + 2_000_000} {_now_ms()} {forged_event(symbol, seq + 2_000_000)}"
        await attacker.run("PUBLISH", lambda c: c.publish(keys.live_channel(symbol), message))
        return Outcome(attacker.note(f"1 message at seq {seq + 2_000_000:,} on {symbol}"))


def _forged_epoch(symbol: str, epoch: str, seq: int) -> str:
    return f"f0rged{secrets.token_hex(3)} {seq + 1} {_now_ms()} {forged_event(symbol, seq + 1)}"


async def bad_name(ctx: AttackContext) -> Outcome:
    async with Credential(ctx) as attacker:
        await attacker.run("SADD", lambda c: c.sadd(keys.SYMBOLS_KEY, b"\xff\xfeBAD"))
        return Outcome(attacker.note("SADD sp:symbols \\xff\\xfeBAD"))


async def undo_bad_name(ctx: AttackContext) -> None:
    await _admin(ctx, lambda c: c.srem(keys.SYMBOLS_KEY, b"\xff\xfeBAD"))


def _poison(ctx: AttackContext) -> str:
    return f"P{ctx.tag}POISON"


async def wrong_type(ctx: AttackContext) -> Outcome:
    name = _poison(ctx)
    async with Credential(ctx) as attacker:
        await attacker.run("HSET", lambda c: c.hset(keys.log_key(name), "a", "b"))
        await attacker.run("SADD", lambda c: c.sadd(keys.SYMBOLS_KEY, name))
        return Outcome(attacker.note(f"HSET {keys.log_key(name)} (a hash) + SADD sp:symbols {name}"))


async def undo_wrong_type(ctx: AttackContext) -> None:
    name = _poison(ctx)
    await _admin(ctx, lambda c: c.delete(keys.log_key(name), keys.meta_key(name)))
    await _admin(ctx, lambda c: c.srem(keys.SYMBOLS_KEY, name))


_FAR_AHEAD = "99999999999-0"


async def xadd_ahead(ctx: AttackContext) -> Outcome:
    symbol = ctx.symbols[-1]
    async with Credential(ctx) as attacker:
        await attacker.run("XADD", lambda c: c.xadd(keys.log_key(symbol), {"e": "x"}, id=_FAR_AHEAD))
        return Outcome(attacker.note(f"XADD {keys.log_key(symbol)} {_FAR_AHEAD}"))


async def undo_xadd_ahead(ctx: AttackContext) -> None:
    """Remove the entry and move the log's last id back to its real top (else every publish fails)."""
    log = keys.log_key(ctx.symbols[-1])

    async def clean(client: aioredis.Redis) -> None:
        await client.xdel(log, _FAR_AHEAD)
        top = await client.xrevrange(log, count=1)
        ctx.scratch["top"] = top[0][0] if top else b"0-1"
        await client.execute_command("XSETID", log, ctx.scratch["top"])  # type: ignore[no-untyped-call]

    await _admin(ctx, clean)


async def repair_xadd_ahead(ctx: AttackContext) -> None:
    """The recorders' consumer group delivered the far entry, so its cursor is past every later
    honest entry: move it back to where the log's top was when the entry was removed."""
    log = keys.log_key(ctx.symbols[-1])

    async def rewind(client: aioredis.Redis) -> None:
        try:
            await client.xgroup_setid(log, keys.RECORDER_GROUP, ctx.scratch.get("top", b"0-1"))
        except redis.exceptions.ResponseError:
            pass  # no group (nothing recorded yet): nothing to rewind

    await _admin(ctx, rewind)


async def script_body(ctx: AttackContext) -> Outcome:
    """The publish script itself, called with a body that is not JSON (each call takes a real seq)."""
    symbol = ctx.symbols[1 % len(ctx.symbols)]
    calls = 0
    async with Credential(ctx) as attacker:
        await attacker.run("SCRIPT LOAD", lambda c: c.script_load(PUBLISH_SCRIPT))

        async def once() -> None:
            nonlocal calls
            calls += 1
            call = build_call(
                symbol, ["garbage, not json}"], publisher_id="", call_number=calls, log_maxlen=1_000_000
            )
            await attacker.run(
                "EVALSHA", lambda c: c.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
            )

        sent = await repeat_until(time.monotonic() + ctx.seconds, 0.5, once)
        return Outcome(attacker.note(f"{sent} script calls with a non-JSON body on {symbol}"))


async def _admin(ctx: AttackContext, operation: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
    client = async_client(ctx.redis_url, name="signalpush-bench-attacker")
    try:
        return await operation(client)
    finally:
        await client.aclose()


BUS_ATTACKS: tuple[Attack, ...] = (
    Attack("live: garbage", _live(lambda symbol, epoch, seq: "garbage")),
    Attack("live: non-UTF-8", _live(lambda symbol, epoch, seq: b"\xff\xfe\x00\x80 bad")),
    Attack(
        "live: body not JSON", _live(lambda symbol, epoch, seq: f"{epoch} {seq + 1} {_now_ms()} not json")
    ),
    Attack(
        "live: body a JSON array", _live(lambda symbol, epoch, seq: f"{epoch} {seq + 1} {_now_ms()} [1,2,3]")
    ),
    Attack("live: forged seq +2,000,000", forged_jump),
    Attack("live: forged epoch", _live(_forged_epoch)),
    Attack("sp:symbols: bad name", bad_name, undo_bad_name),
    Attack("sp:symbols: wrong-type key", wrong_type, undo_wrong_type),
    Attack("log: XADD far ahead", xadd_ahead, undo_xadd_ahead, repair_xadd_ahead),
    Attack("script: body not JSON", script_body),
)
