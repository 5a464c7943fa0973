"""``signalpush alerts``: ``run`` an evaluator alone, ``test RULE`` against the recorded history."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from server.alerts.decisions import Decision
from server.alerts.engine import Engine
from server.alerts.rules import AlertConfig, parse_alerts
from server.cli.args import settings_from_args
from server.settings import Settings


def alert_config(settings: Settings) -> AlertConfig:
    """``alerts.rules`` and ``alerts.routes`` validated (a ConfigError names the rule and key)."""
    return parse_alerts(settings.alerts.rules, settings.alerts.routes)


def cmd_run(args: argparse.Namespace) -> int:
    from server.gateway.alerting import AlertEvaluator

    settings = settings_from_args(args)
    evaluator = AlertEvaluator(
        settings.redis.effective_url,
        alert_config(settings),
        settings.alerts,
        log_maxlen=settings.redis.log_maxlen,
        owner=args.owner,
        database_url=settings.database.url,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await evaluator.run(stop)

    asyncio.run(main())
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = alert_config(settings)
    try:
        rule = config.rule(args.rule)
    except KeyError:
        known = ", ".join(r.name for r in config.rules) or "none"
        raise ValueError(f"no rule {args.rule!r} in alerts.rules (known: {known})") from None
    since = int((time.time() - args.days * 86_400) * 1000)
    events = asyncio.run(_recorded(settings.database.url, since))
    engine = Engine(AlertConfig((rule,), config.routes))
    fired = resolved = 0
    for decision in replay(engine, events, end_ms=int(time.time() * 1000)):
        fired += decision.action == "fire"
        resolved += decision.action == "resolve"
        when = datetime.fromtimestamp(decision.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        label = "FIRE   " if decision.action == "fire" else "RESOLVE"
        print(f"{when}Z  {label} {decision.scope:<24} {decision.message}")
    print(
        f"{rule.name}: {fired} fires, {resolved} resolutions over {len(events)} events in {args.days:g} days"
    )
    return 0


def replay(engine: Engine, events: list[dict[str, Any]], *, end_ms: int) -> Iterator[Decision]:
    """The decisions ``engine`` makes over ``events`` (by ts), the clock being the events' ts;
    timer conditions are ticked in between at a quarter of their shortest period."""
    timers = [r.condition.seconds for r in engine.rules if r.condition.seconds > 0]
    step = int(max(1.0, min(timers) / 4) * 1000) if timers else 0
    clock = events[0]["ts"] if events else end_ms
    for event in [*events, None]:
        until = end_ms if event is None else int(event["ts"])
        if step:
            while clock + step <= until:
                clock += step
                yield from engine.tick(clock)
        clock = max(clock, until)
        if event is not None:
            yield from engine.observe(event, clock)
            yield from engine.tick(clock)


async def _recorded(url: str, since_ms: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from server.history.engine import create_engine
    from server.history.models import TABLES

    engine = create_engine(url)
    events: list[dict[str, Any]] = []
    try:
        async with engine.connect() as connection:
            for kind, table in TABLES.items():
                if kind == "alert":
                    continue
                rows = await connection.execute(select(table).where(table.c.ts >= since_ms))
                events += [{"kind": kind, **row._mapping} for row in rows]
    finally:
        await engine.dispose()
    events.sort(key=lambda e: (e["ts"], e["seq"]))
    return events


def register(commands: Any) -> None:
    """Add ``signalpush alerts run`` and ``signalpush alerts test RULE``."""
    alerts = commands.add_parser("alerts", help="alert rules: run an evaluator, test a rule on history")
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run an alert evaluator alone (serve runs one; the lease lets one evaluate at a time)",
    )
    run.add_argument("--redis-url", help="Redis to use (default: redis.url)")
    run.add_argument("--owner", help="this evaluator's name in the lease (default: host-pid-random)")
    run.set_defaults(handler=cmd_run)
    test = actions.add_parser(
        "test",
        help="print when RULE would have fired on the recorded history",
        description="Replay the recorded history (the events' timestamps are the clock) through one rule "
        "of alerts.rules and print each fire and resolution, to tune thresholds.",
    )
    test.add_argument("rule", help="the rule's name")
    test.add_argument("--days", type=float, default=1.0, help="history to replay, ending now (default 1)")
    test.add_argument("--database-url", help="history database (default: database.url)")
    test.set_defaults(handler=cmd_test)
