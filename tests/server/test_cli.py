from __future__ import annotations

import json
import subprocess
import sys

import redis

from publishers import keys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "publish"):
        assert command in result.stdout


def test_publish_one_event_from_the_command_line(redis_url: str, symbol: str) -> None:
    result = run_cli("publish", "signal", symbol, "type=buy", "price=50123.5", "confidence=0.8", "bot=momo-1",
                     "--redis-url", redis_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"published signal on {symbol}: seq 1"
    client = redis.Redis.from_url(redis_url)
    ((_, fields),) = client.xrange(keys.log_key(symbol))
    event = json.loads(fields[b"e"])
    assert (event["bot"], event["strategy"], event["confidence"]) == ("momo-1", "manual", 0.8)
    client.close()


def test_publish_rejects_a_bad_value_naming_the_field(redis_url: str, symbol: str) -> None:
    result = run_cli(
        "publish", "signal", symbol, "type=buy", "price=1", "confidence=3", "--redis-url", redis_url
    )
    assert result.returncode == 2
    assert "confidence: must be at most 1.0" in result.stderr
