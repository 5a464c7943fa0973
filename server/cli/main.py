"""The ``signalpush`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from publishers.errors import SignalpushError
from server import __version__
from server.cli import db as store_commands
from server.cli import importer as import_cli
from server.cli import replay as replay_cli
from server.cli import stats as stats_cli
from server.cli.acl import ROLES
from server.cli.args import settings_from_args
from server.cli.listen import early_listener


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_publish(args: argparse.Namespace) -> int:
    from publishers.events import event_from_dict, now_ms
    from publishers.sync_publisher import SyncPublisher

    settings = settings_from_args(args)
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
    with SyncPublisher(options=settings.redis.publisher_options()) as publisher:
        seq = publisher.publish(event)
    print(f"published {event.kind} on {event.symbol}: seq {seq}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from server.cli.runner import run_demo

    settings = settings_from_args(args, host=args.host, port=args.port)
    return asyncio.run(_until_signalled(run_demo(settings)))


def cmd_token_create(args: argparse.Namespace) -> int:
    from server.gateway.auth import create_jwt

    settings = settings_from_args(args)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise SystemExit("signalpush token create: --symbols needs at least one pattern")
    ttl = None if args.days is None else args.days * 86_400
    print(create_jwt(settings.auth.jwt_secret, name=args.name, symbols=symbols, ttl_s=ttl, admin=args.admin))
    return 0


def cmd_acl(args: argparse.Namespace) -> int:
    import secrets

    from server.cli.acl import render

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    password = args.password or secrets.token_urlsafe(24)
    try:
        line = render(args.role, args.username, password, redis_major=args.redis_major, symbols=symbols)
    except ValueError as exc:
        raise SystemExit(f"signalpush acl: {exc}") from None
    if not args.password:
        print(f"# generated password for {args.username}: {password}")
    print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, host=args.host, port=args.port)
    if args.workers < 1:
        raise SystemExit("signalpush serve: --workers must be at least 1")
    if args.workers > 1 and settings.server.port == 0:
        raise SystemExit("signalpush serve: --workers needs a fixed --port (the workers share it)")
    sock = None
    if args.workers == 1 and not args.worker:
        # Before the heavy imports below: connections queue while the process starts.
        try:
            sock = early_listener(settings)
        except OSError as exc:
            raise SystemExit(f"signalpush serve: {exc.strerror}") from None
    from server.cli.runner import run_serve

    serving = run_serve(
        settings, workers=args.workers, worker=args.worker, config_path=args.config, sock=sock
    )
    return asyncio.run(_until_signalled(serving))


async def _until_signalled(main: Any) -> int:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def build_parser(*, with_bench: bool = True) -> argparse.ArgumentParser:
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
        description="Start the embedded Redis, the gateway and the demo bots (a simulated trading floor), "
        "and print the wall URL.",
    )
    demo.add_argument("--host", help="address to listen on (default: server.host)")
    demo.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    demo.set_defaults(handler=cmd_demo)

    serve = commands.add_parser(
        "serve",
        help="run the gateway (websocket /ws + HTTP) against redis.url / database.url",
        description="Run the websocket gateway and its HTTP routes until SIGINT/SIGTERM "
        "(connections are closed with 1012 so clients resume).",
    )
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument("--redis-url", help="Redis to use (default: redis.url, else the embedded one)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes sharing the port (SO_REUSEPORT), supervised (default 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

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

    token = commands.add_parser("token", help="create subscriber tokens (JWT, HS256 with auth.jwt_secret)")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser(
        "create",
        help="print a JWT for a wall or an app",
        description="Print an HS256 JWT signed with auth.jwt_secret (SIGNALPUSH_AUTH_JWT_SECRET). "
        "Example: signalpush token create --name wall-3 --symbols 'BTC*,ETH*' --days 90",
    )
    create.add_argument("--name", required=True, help="who the token is for (shown in logs as the principal)")
    create.add_argument(
        "--symbols", required=True, help="comma-separated symbol patterns, e.g. 'BTC*,ETHUSDT'"
    )
    create.add_argument("--days", type=float, help="lifetime in days (default: no expiry)")
    create.add_argument(
        "--admin",
        action="store_true",
        help="may steer walls: /api/walls commands, saved views (docs/walls.md)",
    )
    create.set_defaults(handler=cmd_token_create)

    acl = commands.add_parser(
        "acl",
        help="print the Redis ACL SETUSER line for a least-privilege user",
        description="Print an ACL SETUSER command for a publisher (the publish script's commands), "
        "gateway (read and subscribe only), recorder (the recorder script's commands) or serve (gateway "
        "and recorder in one process) user, limited to signalpush's keys. See docs/security.md.",
    )
    acl.add_argument("role", choices=sorted(ROLES))
    acl.add_argument("username")
    acl.add_argument("--password", help="the user's password (default: a generated one, printed)")
    acl.add_argument(
        "--redis-major",
        type=int,
        default=7,
        help="Redis major version: 7 renders one ACL selector per grant; 6 has no selectors (weaker)",
    )
    acl.add_argument(
        "--symbols",
        default="*",
        help="comma-separated symbol patterns the user's per-symbol keys are limited to (e.g. 'BTC*,ETH*')",
    )
    acl.set_defaults(handler=cmd_acl)

    # Each capability registers its own subcommands (one line each here).
    # bench sits above the command line (it drives serve, Redis and browsers as a user would):
    # loaded by name so the layers stay one-way (tests/test_layers.py), and only for
    # `signalpush bench ...`: its scenarios import pandas, SQLAlchemy and browsers' drivers.
    if with_bench:
        importlib.import_module("server.bench").register(commands)
    else:
        commands.add_parser("bench", help="run a benchmark scenario (`signalpush bench --help` lists them)")
    stats_cli.register(commands)
    import_cli.register(commands)
    store_commands.register(commands)
    replay_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # Anywhere on the line: global options (--config FILE) may come before the command.
    parser = build_parser(with_bench="bench" in arguments)
    args = parser.parse_args(arguments)
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
