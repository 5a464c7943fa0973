from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from publishers import keys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "publish"):
        assert command in result.stdout


#: What `--help` and `publish` must not load (docs/design.md: analytics, charts and the bench are
#: loaded only by the commands or requests that need them).
HEAVY = ("pandas", "plotly", "sqlalchemy", "server.bench", "server.analytics", "server.charts")
LOADED = f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"


def heavy_modules_after(*args: str) -> list[str]:
    code = (
        "import contextlib, sys\n"
        "from server.cli.main import main\n"
        f"with contextlib.suppress(SystemExit): main({list(args)!r})\n"
        f"{LOADED}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("loaded:"), result.stdout
    return [m for m in line.removeprefix("loaded:").split(",") if m]


def test_help_and_publish_load_no_pandas_plotly_sqlalchemy_or_bench(redis_url: str, symbol: str) -> None:
    assert heavy_modules_after("--help") == []
    published = (
        "publish",
        "signal",
        symbol,
        "type=buy",
        "price=1",
        "confidence=0.5",
        "--redis-url",
        redis_url,
    )
    assert heavy_modules_after(*published) == []
    assert "server.bench" in heavy_modules_after("bench", "--help"), "bench loads when asked"
    assert "server.bench" in heavy_modules_after("--config", "none.yaml", "bench", "fanout", "--help")


def test_serve_starts_without_pandas_plotly_or_alembic() -> None:
    """They load when a figure, analytics request or migration needs them, not at every start."""
    code = "import sys, server.cli.runner; print(sorted({'pandas', 'plotly', 'alembic'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_publish_one_event_from_the_command_line(redis_url: str, symbol: str) -> None:
    result = run_cli(
        "publish",
        "signal",
        symbol,
        "type=buy",
        "price=50123.5",
        "confidence=0.8",
        "bot=momo-1",
        "--redis-url",
        redis_url,
    )
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


def test_import_a_csv_of_candles(redis_url: str, symbol: str, tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-11-25T00:00:00Z,1,2,0.5,1.5,10\n"
        "2024-11-25T00:01:00Z,1.5,2.5,1,2,12\n"
    )
    result = run_cli("import", str(path), "--symbol", symbol, "--redis-url", redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"imported 2 events from {path} on {symbol} (seqs 1..2)")
    client = redis.Redis.from_url(redis_url)
    events = [json.loads(fields[b"e"]) for _, fields in client.xrange(keys.log_key(symbol))]
    assert [(e["kind"], e["ts"], e["close"]) for e in events] == [
        ("candle", 1732492800000, 1.5),
        ("candle", 1732492860000, 2.0),
    ]
    client.close()


def test_import_refuses_a_bad_row_before_publishing(redis_url: str, symbol: str, tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_text("ts,type,price,confidence\n1732492800000,buy,1,0.5\n1732492860000,buy,1,7\n")
    result = run_cli(
        "import", str(path), "--symbol", symbol, "--bot", "b", "--strategy", "s", "--redis-url", redis_url
    )
    assert result.returncode == 2
    assert "confidence: row 1:" in result.stderr
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(keys.log_key(symbol))
    client.close()
