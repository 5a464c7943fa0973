"""``signalpush db upgrade|current`` and ``signalpush record``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from publishers.options import redact_url
from server.cli.args import settings_from_args
from server.settings import Settings


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server.history.migrate import current_revision, head_revision, upgrade_database

    settings = settings_from_args(args)
    url = settings.database.url
    started = time.monotonic()
    before = asyncio.run(current_revision(url))
    print(
        f"upgrading {redact_url(url)} from {before or 'an empty schema'} to {head_revision()} ...",
        file=sys.stderr,
    )
    asyncio.run(upgrade_database(url))
    after = asyncio.run(current_revision(url))
    change = "already up to date" if before == after else f"upgraded from {before or 'nothing'}"
    print(f"database {redact_url(url)}: revision {after} ({change}) in {time.monotonic() - started:.1f}s")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from server.history.migrate import current_revision, head_revision

    settings = settings_from_args(args)
    current = asyncio.run(current_revision(settings.database.url))
    head = head_revision()
    if current is None:
        print(f"none (not migrated yet; run `signalpush db upgrade` to reach {head})")
    elif current == head:
        print(f"{current} (head)")
    else:
        print(f"{current} (head is {head}: run `signalpush db upgrade`)")
    return 0


async def _record(settings: Settings, args: argparse.Namespace) -> int:
    from server.history.migrate import upgrade_database
    from server.history.recorder import Recorder

    await upgrade_database(settings.database.url)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    recorder = Recorder(
        settings.redis.effective_url,
        settings.database.url,
        settings.recorder,
        consumer=args.consumer,
        claim_idle_ms=args.claim_idle_ms or settings.recorder.claim_idle_ms,
        symbols=symbols,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    source, target = redact_url(settings.redis.effective_url), redact_url(settings.database.url)
    # With --report, stdout carries the reports (the parent reads them): the rest goes to stderr.
    out = sys.stderr if args.report else sys.stdout
    print(
        f"signalpush record: {source} -> {target} as {recorder.consumer}; Ctrl-C to stop",
        file=out,
        flush=True,
    )
    reporting = asyncio.create_task(_report(recorder, stop)) if args.report else None
    try:
        await recorder.run(stop)
    finally:
        if reporting is not None:
            reporting.cancel()
    stats = recorder.stats()
    batches = stats["batches"]
    print(
        f"recorded {stats['events_recorded']} events in {batches} batch{'' if batches == 1 else 'es'}",
        file=out,
        flush=True,
    )
    return 0


async def _report(recorder: Any, stop: asyncio.Event) -> None:
    """Every REPORT_EVERY_S, the recorder's counters as one JSON line on stdout (for ``serve``)."""
    from server.cli.recorder_child import REPORT_EVERY_S, report_line

    while not stop.is_set():
        line = report_line(recorder.stats(), recorder.lag(), recorder.unrecordable())
        try:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
        except (BrokenPipeError, ValueError):  # the parent went away: it stops us too
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REPORT_EVERY_S)


def cmd_record(args: argparse.Namespace) -> int:
    return asyncio.run(_record(settings_from_args(args), args))


def register(commands: Any) -> None:
    """Add ``db`` and ``record`` to the CLI."""
    db = commands.add_parser(
        "db",
        help="the history database schema (upgrade, current)",
        description="Alembic migrations of the history database (database.url / SIGNALPUSH_DATABASE_URL).",
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="create or upgrade the schema to the newest revision")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = actions.add_parser("current", help="print the schema's revision")
    current.set_defaults(handler=cmd_db_current)
    for action in (upgrade, current):
        action.add_argument("--database-url", help="database to use (default: database.url)")

    record = commands.add_parser(
        "record",
        help="run a recorder alone: copy every symbol's Redis log into SQL",
        description="Copy every symbol's Redis log into the history database, exactly once, and trim the log "
        "behind what is committed. Several recorders may run at once. Stops on SIGINT/SIGTERM.",
    )
    record.add_argument("--redis-url", help="Redis to read (default: redis.url, else the embedded address)")
    record.add_argument("--database-url", help="database to write (default: database.url)")
    record.add_argument("--consumer", help="consumer name in the group (default: host-pid-random)")
    record.add_argument(
        "--claim-idle-ms",
        type=int,
        default=None,
        help="claim entries another recorder left pending this long (default: recorder.claim_idle_ms, 30000)",
    )
    record.add_argument("--symbols", help="comma-separated symbols to record (default: every symbol)")
    record.add_argument(
        "--report",
        action="store_true",
        help="write the counters as a JSON line on stdout every 0.5 s (how `serve` runs its recorder)",
    )
    record.set_defaults(handler=cmd_record)
