"""``signalpush replay SYMBOL --from ... --to ...``: the recorded events of a window, for post-mortems.

Reads what a replaying gateway reads (the history database, then the Redis log's tail:
server/history/replay_store.py and replay_cursor.py), in seq order, across epochs, paced by the
recorded times × ``--speed`` (or at once with ``--speed max``). ``--jsonl`` prints each event's stored
JSON on its own line (and a ``{"op":"reset",...}`` line where the epoch changed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from server.core.filters import parse_filter
from server.core.replay import ReplayClock, parse_speed, parse_time
from server.errors import ProtocolError


def _summary(raw: str) -> str:
    event = json.loads(raw)
    moment = datetime.fromtimestamp(event["ts"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    kind = event["kind"]
    if kind == "candle":
        what = " ".join(f"{name[0]}={event[name]:g}" for name in ("open", "high", "low", "close", "volume"))
    elif kind == "signal":
        what = f"{event['bot']} {event['type']} @{event['price']:g} conf={event['confidence']:g}"
    elif kind == "trade":
        what = f"{event['bot']} {event['side']} {event['action']} {event['qty']:g} @{event['price']:g}"
    else:
        what = f"{event['bot']} {event['status']}"
    return f"{event['seq']:>8}  {moment}Z  {kind:<6}  {what}"


async def replay_window(
    database_url: str,
    redis_url: str,
    symbol: str,
    *,
    flt: Any,
    from_ms: int,
    to_ms: int,
    speed: float | str,
    jsonl: bool,
    out: TextIO,
) -> int:
    """Print the window's events; returns how many were printed."""
    from publishers.connection import async_client
    from server.history.engine import create_engine
    from server.history.replay_cursor import End, Events, LiveEdge, ReplayCursor
    from server.history.replay_store import NewEpoch, ReplayStore

    engine = create_engine(database_url)
    redis = async_client(redis_url, name="signalpush-replay")
    printed = 0
    try:
        store = ReplayStore(engine, redis)
        start = await store.locate(symbol, from_ms)
        end = await store.end_mark(symbol, to_ms)
        cursor = ReplayCursor(store, symbol, flt, start, end)
        clock = ReplayClock(from_ms, "max" if speed == "max" else float(speed), time.monotonic())
        while True:
            step = await cursor.next()
            if isinstance(step, End | LiveEdge):
                return printed
            if isinstance(step, NewEpoch):
                line = json.dumps({"op": "reset", "epoch": step.epoch, "ts": step.ts})
                out.write(line + "\n" if jsonl else f"--- reset: epoch {step.epoch} ---\n")
                continue
            assert isinstance(step, Events)
            for _seq, ts, raw in step.items:
                wait = clock.wait_s(ts, time.monotonic())
                if wait > 0:
                    out.flush()
                    await asyncio.sleep(wait)
                out.write(raw + "\n" if jsonl else _summary(raw) + "\n")
                printed += 1
            out.flush()
    finally:
        await redis.aclose()
        await engine.dispose()


def cmd_replay(args: argparse.Namespace) -> int:
    from server.cli.args import settings_from_args

    settings = settings_from_args(args)
    try:
        from_ms = parse_time(args.from_, "--from")
        to_ms = parse_time(args.to, "--to") if args.to else int(time.time() * 1000)
        speed = parse_speed(args.speed if args.speed == "max" else float(args.speed), "--speed")
        flt = parse_filter(json.loads(args.filter) if args.filter else None)
    except (ProtocolError, ValueError) as exc:
        raise SystemExit(f"signalpush replay: {exc}") from None
    if to_ms < from_ms:
        raise SystemExit("signalpush replay: --to is before --from")
    count = asyncio.run(
        replay_window(
            settings.database.url,
            settings.redis.effective_url,
            args.symbol,
            flt=flt,
            from_ms=from_ms,
            to_ms=to_ms,
            speed=speed,
            jsonl=args.jsonl,
            out=sys.stdout,
        )
    )
    print(f"{count} events", file=sys.stderr)
    return 0


def _time(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def register(commands: Any) -> None:
    """Add ``signalpush replay``."""
    replay = commands.add_parser(
        "replay",
        help="print the recorded events of a past window (the flight recorder)",
        description="Print a symbol's recorded events between --from and --to (milliseconds or ISO 8601, "
        "e.g. 2026-12-03T03:00:00Z) in seq order, from the history database and the Redis log, "
        "paced by their recorded times × --speed (default max: at once).",
    )
    replay.add_argument("symbol")
    replay.add_argument("--from", dest="from_", required=True, type=_time, help="start (ms or ISO 8601)")
    replay.add_argument("--to", type=_time, help="end, inclusive (ms or ISO 8601; default now)")
    replay.add_argument("--speed", default="max", help='0.1..1000, or "max" (default)')
    replay.add_argument("--filter", help='a subscription filter as JSON, e.g. \'{"kinds":["signal"]}\'')
    replay.add_argument("--jsonl", action="store_true", help="print each event's JSON on its own line")
    replay.add_argument("--redis-url", help="Redis (default: redis.url)")
    replay.add_argument("--database-url", help="history database (default: database.url)")
    replay.set_defaults(handler=cmd_replay)
