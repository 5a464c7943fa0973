"""The ``signalpush`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from publishers.config import Settings, load_settings
from publishers.errors import SignalpushError
from server import __version__, bench
from server.logs import configure_logging
from server.store import commands as store_commands


def _settings(args: argparse.Namespace, **server_overrides: Any) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    if server_overrides:
        overrides["server"] = {k: v for k, v in server_overrides.items() if v is not None}
    if getattr(args, "redis_url", None):
        overrides["redis"] = {"url": args.redis_url}
    if getattr(args, "database_url", None):
        overrides["database"] = {"url": args.database_url}
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_publish(args: argparse.Namespace) -> int:
    from publishers.events import event_from_dict, now_ms
    from publishers.publisher import SyncPublisher

    settings = _settings(args)
    fields: dict[str, Any] = {"kind": args.kind, "symbol": args.symbol, "ts": now_ms()}
    for pair in args.fields:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"signalpush publish: expected key=value, got {pair!r}")
        fields[key] = _parse_value(value)
    if args.kind != "candle":
        fields.setdefault("bot", "cli")
        fields.setdefault("strategy", "manual")
    event = event_from_dict(fields)
    with SyncPublisher(settings.redis.effective_url) as publisher:
        seq = publisher.publish(event)
    print(f"published {event.kind} on {event.symbol}: seq {seq}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from server.runner import run_demo

    settings = _settings(args, host=args.host, port=args.port)
    return asyncio.run(_until_signalled(run_demo(settings)))


async def _until_signalled(main: Any) -> int:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signalpush",
        description="Streaming push server for live trading-bot monitoring.",
        epilog="Configuration: config.yaml (or --config / $SIGNALPUSH_CONFIG), overridden by "
        "SIGNALPUSH_<SECTION>_<KEY> environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"signalpush {__version__}")
    parser.add_argument("--config", help="path of the config file (default: ./config.yaml if present)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run everything on this machine with demo bots (embedded Redis, SQLite)",
        description="Start the embedded Redis and the demo bots (a simulated trading floor).",
    )
    demo.add_argument("--host", help="address to listen on (default: server.host)")
    demo.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    demo.set_defaults(handler=cmd_demo)

    publish = commands.add_parser(
        "publish",
        help="publish one event (for scripts and smoke tests)",
        description="Publish one event. Fields as key=value (values parsed as JSON when they can be). "
        "Example: signalpush publish signal BTCUSDT type=buy price=50123.5 confidence=0.8 bot=momo-1",
    )
    publish.add_argument("kind", choices=["signal", "trade", "candle", "bot"])
    publish.add_argument("symbol")
    publish.add_argument("fields", nargs="*", metavar="key=value")
    publish.add_argument(
        "--redis-url", help="Redis to publish to (default: redis.url, else the embedded one)"
    )
    publish.set_defaults(handler=cmd_publish)

    # Each capability registers its own subcommands (one line each here).
    bench.register(commands)
    store_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except SignalpushError as exc:
        print(f"signalpush: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"signalpush: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
