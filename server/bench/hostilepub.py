"""``bench hostile``'s honest publisher: the project's :class:`~publishers.Publisher`, one task per symbol.

Run as ``python -m server.bench.hostilepub --redis-url URL --symbols A,B,C --rate R --record FILE``.
Each symbol is published at ``rate / len(symbols)`` events/s on its own schedule (an attack
that makes one symbol's publishes fail does not slow the others), with the soak's events
(:func:`server.bench.soakpub.publish_one`) stamped with a strictly increasing ``meta.t``.
Every publish is appended to the record file as it returns (``symbol seq stamp ok|failed``,
see :class:`server.bench.honest.HonestEvent`). Runs until SIGTERM or ``--seconds``; prints
one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from publishers import Publisher
from publishers.errors import PublishError
from server.bench.honest import HonestEvent
from server.bench.soakpub import publish_one


class Stamps:
    """``time.time_ns()``, strictly increasing: an honest event's identity."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


async def publish_symbol(
    url: str,
    retry_s: float,
    symbol: str,
    rate: float,
    stop: asyncio.Event,
    record: IO[str],
    stamps: Stamps,
    counts: dict[str, int],
) -> None:
    # A publisher per symbol: a call that fails fails its whole pipeline batch, and one
    # symbol's attack must not turn another symbol's applied publishes into failures.
    async with Publisher(
        url, bot="honest-bot", strategy="honest", retry_attempts=3, retry_timeout_s=retry_s
    ) as pub:
        await _publish_loop(pub, symbol, rate, stop, record, stamps, counts)


async def _publish_loop(
    publisher: Publisher,
    symbol: str,
    rate: float,
    stop: asyncio.Event,
    record: IO[str],
    stamps: Stamps,
    counts: dict[str, int],
) -> None:
    start = time.monotonic()
    index = 0
    while not stop.is_set():
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
        stamp = stamps.next()
        try:
            seq = await publish_one(publisher, symbol, index, stamp_ns=stamp)
            event = HonestEvent(symbol, seq, stamp, True)
            counts["ok"] += 1
        except PublishError as exc:
            event = HonestEvent(symbol, 0, stamp, False)
            counts["failed"] += 1
            if counts["failed"] <= 20:
                print(f"publish on {symbol} failed: {exc}", file=sys.stderr, flush=True)
        record.write(event.line())
        record.flush()
        index += 1


async def main_async(args: argparse.Namespace, record: IO[str]) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(args.seconds, stop.set)
    symbols = args.symbols.split(",")
    counts = {"ok": 0, "failed": 0}
    stamps = Stamps()
    rate = args.rate / len(symbols)
    await asyncio.gather(
        *(
            publish_symbol(args.redis_url, args.retry_s, s, rate, stop, record, stamps, counts)
            for s in symbols
        )
    )
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench.hostilepub", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--symbols", required=True, help="comma-separated symbols")
    parser.add_argument("--rate", type=float, default=30.0, help="events/s over all symbols")
    parser.add_argument("--record", required=True, help="file the publishes are appended to")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long at the latest")
    parser.add_argument("--retry-s", type=float, default=2.0, help="how long one publish is retried")
    args = parser.parse_args(argv)
    with open(args.record, "a", encoding="utf-8") as record:
        counts = asyncio.run(main_async(args, record))
    sys.stdout.write(json.dumps(counts) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
