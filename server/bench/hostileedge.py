"""``bench hostile``'s attacks on the HTTP and websocket edge: what anyone who reaches the port can send.

Requests are written by hand (duplicate headers, a foreign ``Host``) on raw connections;
websocket attacks use the bench's raw client with extra handshake headers. Each attack tallies
what came back and lists the answers that break the rules of issue 15: no 5xx and no dropped
connection for a malformed request or frame (4xx or an ``error`` frame instead), browser
handshakes and API calls only from the gateway's own origin and host by default, a flooding
connection closed with 1008.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.bench.attack import Attack, AttackContext, Outcome, poll, repeat_until
from server.bench.wsclient import HandshakeError, open_websocket

_EVERY_S = 0.1
_HUGE = "9" * 5000


async def http_status(
    ctx: AttackContext, path: str, headers: Sequence[tuple[str, str]] = (), timeout_s: float = 5.0
) -> int:
    """Status of a hand-written GET (``Host`` in ``headers`` replaces the default); 0: no answer."""
    host = next((v for k, v in headers if k.lower() == "host"), f"{ctx.host}:{ctx.port}")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "host"]
    request = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("utf-8", "surrogateescape")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ctx.host, ctx.port), timeout_s)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout_s)
        parts = status_line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    except (OSError, TimeoutError, ValueError):
        return 0
    finally:
        writer.close()


@dataclass
class WsExchange:
    """A websocket session of an attack: the handshake's answer, the frames back, the close."""

    handshake: str = ""
    replies: list[dict[str, Any]] = field(default_factory=list)
    unparseable: int = 0
    close_code: int | None = None
    closed: bool = False

    def on_message(self, payload: bytes, received_ns: int) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            self.unparseable += 1
            return
        if isinstance(message, dict):
            self.replies.append(message)

    def on_close(self, code: int | None) -> None:
        self.closed, self.close_code = True, code

    def answered(self, op: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r.get("op") == op]


async def ws_session(
    ctx: AttackContext,
    frames: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    path: str = "/ws",
    linger_s: float = 1.0,
) -> WsExchange:
    """Handshake (with ``headers``), send ``frames`` after ``hello``, collect replies for ``linger_s``."""
    exchange = WsExchange()
    try:
        ws = await open_websocket(
            ctx.host, ctx.port, path, exchange.on_message, exchange.on_close, 5.0, headers=headers
        )
    except HandshakeError as exc:
        exchange.handshake = str(exc).split(" ", 2)[1] if len(str(exc).split()) > 1 else str(exc)
        return exchange
    except (OSError, TimeoutError, ConnectionError) as exc:
        exchange.handshake = type(exc).__name__
        return exchange
    exchange.handshake = "101"
    await poll(lambda: bool(exchange.answered("hello")) or exchange.closed, 3.0)
    for frame in frames:
        ws.send_text(frame)
    await poll(lambda: exchange.closed, linger_s)
    ws.close()
    return exchange


def _tally(statuses: Counter[int]) -> str:
    return " ".join(f"{code or 'none'}×{count}" for code, count in sorted(statuses.items()))


def _server_errors(statuses: Counter[int], what: str) -> list[str]:
    bad = sum(count for code, count in statuses.items() if code >= 500 or code == 0)
    return [f"{what}: {bad} answered 5xx or not at all"] if bad else []


def _with_token(ctx: AttackContext, path: str) -> str:
    if ctx.token is None:
        return path
    return f"{path}{'&' if '?' in path else '?'}token={ctx.token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def deep_jwt(ctx: AttackContext) -> Outcome:
    token = f"{_b64(b'[' * 1500)}.{_b64(b'{}')}.{_b64(b'sig')}"
    statuses: Counter[int] = Counter()
    log_before = ctx.serve_log.stat().st_size

    async def once() -> None:
        statuses[await http_status(ctx, "/api/symbols", [("Authorization", f"Bearer {token}")])] += 1
        statuses[await http_status(ctx, f"/api/bots?token={token}")] += 1
        exchange = await ws_session(ctx, path=f"/ws?token={token}", linger_s=0)
        statuses[int(exchange.handshake) if exchange.handshake.isdigit() else 0] += 1

    await repeat_until(time.monotonic() + ctx.seconds, _EVERY_S, once)
    logged = (ctx.serve_log.stat().st_size - log_before) / 1024
    note = f"{_tally(statuses)}; serve log +{logged:,.0f} KiB"
    return Outcome(note, _server_errors(statuses, "nested JWT header"))


async def duplicate_headers(ctx: AttackContext) -> Outcome:
    own = f"http://{ctx.host}:{ctx.port}"
    statuses: Counter[int] = Counter()

    async def once() -> None:
        auth = [("Authorization", "Bearer a-token-one"), ("Authorization", "Bearer a-token-two")]
        statuses[await http_status(ctx, _with_token(ctx, "/api/symbols"), auth)] += 1
        origins = [("Origin", own), ("Origin", "http://evil.example")]
        statuses[await http_status(ctx, _with_token(ctx, "/api/symbols"), origins)] += 1
        exchange = await ws_session(ctx, path=_with_token(ctx, "/ws"), headers=origins, linger_s=0)
        statuses[int(exchange.handshake) if exchange.handshake.isdigit() else 0] += 1

    await repeat_until(time.monotonic() + ctx.seconds, _EVERY_S, once)
    return Outcome(_tally(statuses), _server_errors(statuses, "duplicate headers"))


async def _frame_answers(ctx: AttackContext, frames: Sequence[str], what: str) -> tuple[str, list[str]]:
    """Send each frame on its own connection: each must get an ``error`` frame and keep its connection."""
    answers: Counter[str] = Counter()
    failures: list[str] = []
    for frame in frames:
        exchange = await ws_session(ctx, [frame], path=_with_token(ctx, "/ws"), linger_s=1.0)
        errors = exchange.answered("error")
        if exchange.closed:
            answers[f"closed {exchange.close_code}"] += 1
            failures.append(f"{what}: connection closed ({exchange.close_code})")
        elif errors:
            answers[f"error {errors[0].get('code')}"] += 1
        elif exchange.answered("pong"):
            answers["pong"] += 1
        else:
            answers["no answer"] += 1
            failures.append(f"{what}: no error frame")
    return " ".join(f"{k}×{v}" for k, v in sorted(answers.items())), sorted(set(failures))


async def huge_ints(ctx: AttackContext) -> Outcome:
    statuses: Counter[int] = Counter()
    symbol = ctx.symbols[0]

    async def once() -> None:
        for path in (
            "/api/performance?bot_ids=99999999999999999999999",
            f"/api/history?symbol={symbol}&minutes={_HUGE}",
            f"/api/figure?symbol={symbol}&minutes=99999999999999999999999",
        ):
            statuses[await http_status(ctx, _with_token(ctx, path))] += 1

    await repeat_until(time.monotonic() + ctx.seconds, _EVERY_S * 5, once)
    frames = [
        f'{{"op":"subscribe","ref":"1","symbol":"{symbol}","history":{{"minutes":{_HUGE}}}}}',
        f'{{"op":"ping","ref":{_HUGE}}}',
        f'{{"op":"subscribe","ref":"2","symbol":"{symbol}","resume":{{"epoch":"x","seq":{_HUGE}}}}}',
    ]
    answers, failures = await _frame_answers(ctx, frames, "huge int in a frame")
    return Outcome(
        f"HTTP {_tally(statuses)}; frames: {answers}", _server_errors(statuses, "huge ints") + failures
    )


async def surrogate_refs(ctx: AttackContext) -> Outcome:
    frames = ['{"op":"ping","ref":"\\ud800"}', '{"op":"subscribe","ref":"\\udfff","symbol":"X"}']
    deadline = time.monotonic() + ctx.seconds
    answers: list[str] = []
    failures: set[str] = set()
    while True:
        note, broken = await _frame_answers(ctx, frames, "lone surrogate in ref")
        answers.append(note)
        failures.update(broken)
        if time.monotonic() >= deadline:
            break
    return Outcome(answers[-1], sorted(failures))


async def cross_origin(ctx: AttackContext) -> Outcome:
    """A page on another site opens the gateway's websocket (cross-site websocket hijacking)."""
    evil = [("Origin", "http://evil.example")]
    symbol = ctx.symbols[0]
    subscribe = json.dumps({"op": "subscribe", "ref": "x", "symbol": symbol})
    exchange = await ws_session(ctx, [subscribe], headers=evil, linger_s=min(ctx.seconds, 2.0))
    api = await http_status(ctx, "/api/symbols", evil)
    events = sum(len(r.get("items", ())) for r in exchange.answered("events"))
    failures = []
    if exchange.handshake == "101":
        failures.append(f"cross-origin handshake accepted (read {events} events)")
    if 200 <= api < 300:
        failures.append(f"cross-origin API call answered {api}")
    return Outcome(f"handshake {exchange.handshake}, {events} events read; /api/symbols {api}", failures)


async def rebinding(ctx: AttackContext) -> Outcome:
    """DNS rebinding: the page's own origin, but a host name that is not the gateway's."""
    host = f"rebind.example:{ctx.port}"
    headers = [("Host", host), ("Origin", f"http://{host}")]
    exchange = await ws_session(ctx, headers=headers, linger_s=0)
    api = await http_status(ctx, "/api/symbols", headers)
    failures = []
    if exchange.handshake == "101":
        failures.append("handshake with a foreign Host accepted")
    if 200 <= api < 300:
        failures.append(f"API call with a foreign Host answered {api}")
    return Outcome(f"handshake {exchange.handshake}; /api/symbols {api}", failures)


async def flood(ctx: AttackContext) -> Outcome:
    command = {"cmd": "flood", "host": ctx.host, "port": ctx.port, "path": _with_token(ctx, "/ws")}
    reply = await asyncio.to_thread(ctx.load.request, {**command, "seconds": ctx.seconds}, ctx.seconds + 30)
    faults = await asyncio.to_thread(ctx.load.request, {"cmd": "faults"}, 30)
    code = faults.get("flooding", {}).get("close_code")
    failures = [] if reply.get("closed_by_server") else ["the flooding connection was not closed"]
    return Outcome(f"{reply.get('sent', 0):,} pings sent; closed by the server: {code}", failures)


async def history_pulls(ctx: AttackContext, clients: int = 20) -> Outcome:
    request = {
        "op": "subscribe",
        "symbol": ctx.history_symbol,
        "history": {"minutes": 43_200, "figure": True},
    }
    deadline = time.monotonic() + ctx.seconds
    rounds, ok, failed, slowest = 0, 0, 0, 0.0
    while True:
        reply = await asyncio.to_thread(
            ctx.load.request,
            {"cmd": "connect", "host": ctx.host, "port": ctx.port, "path": _with_token(ctx, "/ws"),
             "conns": [[ctx.history_symbol, request]] * clients, "expect_history": True,
             "timeout_s": 60, "concurrency": clients},
            120,
        )  # fmt: skip
        rounds += 1
        ok, failed = ok + int(reply["ok"]), failed + int(reply["failed"])
        slowest = max(slowest, float(reply.get("max_s") or 0.0))
        if time.monotonic() >= deadline:
            break
    await asyncio.to_thread(ctx.load.request, {"cmd": "churn", "retire": rounds * clients}, 30)
    failures = [f"{failed} history requests failed"] if failed else []
    note = f"{rounds} rounds of {clients}: {ok} histories of 30 days with figures, slowest {slowest:.1f}s"
    return Outcome(note, failures)


EDGE_ATTACKS: tuple[Attack, ...] = (
    Attack("http: deep-nested JWT header", deep_jwt),
    Attack("http: duplicate headers", duplicate_headers),
    Attack("huge ints (query, frames)", huge_ints),
    Attack("ws: lone surrogate refs", surrogate_refs),
    Attack("ws: cross-origin handshake", cross_origin),
    Attack("ws: rebinding Host", rebinding),
    Attack("ws: message flood", flood),
    Attack("20 × 30-day histories + figures", history_pulls, p99_target_ms=50.0, rss_return_mib=64.0),
)
