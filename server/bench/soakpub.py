"""The soak's publisher: the project's own :class:`~publishers.Publisher` at a steady rate.

Run as ``python -m server.bench.soakpub ...``. Unlike the bench's raw publisher it goes
through the public API, retries included, so a Redis restart during the soak is ridden out
the way a bot rides it out (a retried call is applied once: the publish script dedups by
publisher id and call number). Events are signals, trades and bot status in turn, never
candles: those collapse by design and would not be counted one for one. Each carries
``meta.t`` (ns) for publish→receive latency.

Prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from publishers import Publisher
from publishers.errors import PublishError

_SIGNAL_TYPES = ("buy", "sell", "hold")


async def publish_one(
    publisher: Publisher, symbol: str, index: int, ts_ms: int | None = None, stamp_ns: int | None = None
) -> int:
    """The ``index``-th event of ``symbol``: 8 signals, then a trade (entry or exit), then a bot status.

    ``meta.t`` is ``stamp_ns`` when given (``bench hostile`` identifies events by it), else now.
    """
    meta = {"t": stamp_ns if stamp_ns is not None else time.time_ns()}
    price = 100.0 + (index % 500) / 4
    step = index % 10
    if step == 8:
        entry = index // 10 % 2 == 0
        return await publisher.trade(
            symbol,
            side="buy" if entry else "sell",
            action="entry" if entry else "exit",
            price=price,
            qty=0.01,
            position=f"p-{index // 20}",
            pnl=None if entry else round((index % 7 - 3) * 0.5, 2),
            ts=ts_ms,
            meta=meta,
        )
    if step == 9:
        # Status has no ts of its own (it is the bot's state now): the seed's history is signals and trades.
        return await publisher.status("active", symbol=symbol, equity=10_000.0 + index % 100, meta=meta)
    return await publisher.signal(
        symbol, _SIGNAL_TYPES[index % 3], price=price, confidence=0.5 + index % 50 / 100, ts=ts_ms, meta=meta
    )


async def seed(publisher: Publisher, symbols: list[str], minutes: float, rate: float) -> int:
    """``minutes`` of history at ``rate``, time-stamped over the last ``minutes``, as fast as it goes:
    the window a client asks for is full from the first subscribe, so memory is judged at steady state."""
    total = int(minutes * 60 * rate)
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - int(minutes * 60_000)
    for first in range(0, total, 500):
        await asyncio.gather(
            *(
                publish_one(
                    publisher, symbols[k % len(symbols)], k // len(symbols), start_ms + int(k * 1000 / rate)
                )
                for k in range(first, min(total, first + 500))
            )
        )
    return total


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    symbols = args.symbols.split(",")
    failed = 0
    published = 0
    last_seq: dict[str, int] = {}
    async with Publisher(
        args.redis_url, bot="soak-bot", strategy="soak", retry_attempts=10_000, retry_timeout_s=args.retry_s
    ) as publisher:
        seeded = await seed(publisher, symbols, args.seed_minutes, args.rate) if args.seed_minutes else 0
        start = time.monotonic()
        total = int(args.seconds * args.rate)
        for k in range(total):
            delay = start + k / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            symbol = symbols[k % len(symbols)]
            try:
                last_seq[symbol] = await publish_one(publisher, symbol, k // len(symbols))
                published += 1
            except PublishError as exc:
                failed += 1
                print(f"publish failed after retries: {exc}", file=sys.stderr, flush=True)
    return {"events": published, "seeded": seeded, "failed": failed, "last_seq": last_seq}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench.soakpub", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--symbols", required=True, help="comma-separated symbols, published in turn")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=40.0, help="events/s over all symbols")
    parser.add_argument("--retry-s", type=float, default=60.0, help="how long one publish is retried")
    parser.add_argument("--seed-minutes", type=float, default=0.0, help="history to publish first (minutes)")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
