"""`signalpush alerts run` as real processes (SIGKILL mid-incident) and `alerts test` on history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from publishers import keys
from publishers.events import BotStatus
from publishers.sync_publisher import SyncPublisher
from server.cli.embedded import EmbeddedRedis, die_with_parent_hook
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[3]
RULES = [{"name": "bot-error", "condition": {"type": "status", "in": ["error"]}}]


def alert_states(client: redis.Redis, symbol: str) -> list[str]:
    events = [json.loads(fields[b"e"]) for _, fields in client.xrange(keys.log_key(symbol))]
    return [e["state"] for e in events if e["kind"] == "alert"]


@pytest.fixture
def evaluators(own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "SIGNALPUSH_REDIS_URL": own_redis.url,
        "SIGNALPUSH_ALERTS_RULES": json.dumps(RULES),
        "SIGNALPUSH_ALERTS_LEASE_MS": "1000",
        "SIGNALPUSH_ALERTS_TICK_MS": "50",
    }
    processes = {}
    for owner in ("A", "B"):
        log = open(tmp_path / f"{owner}.log", "wb")  # noqa: SIM115 - the child holds it
        processes[owner] = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", "alerts", "run", "--owner", owner],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent_hook(),
        )
        log.close()
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_two_evaluators_and_a_sigkill_mid_incident_fire_once_and_resolve_once(
    own_redis: EmbeddedRedis, evaluators: dict[str, subprocess.Popen[bytes]], symbol: str
) -> None:
    client = redis.Redis.from_url(own_redis.url)
    holder = wait_until(
        lambda: client.get(keys.ALERTS_LEASE_KEY), what="an evaluator to hold the lease"
    ).decode()
    with SyncPublisher(own_redis.url) as publisher:
        publisher.publish(
            BotStatus(symbol=symbol, ts=1_760_000_000_000, bot="b", strategy="s", status="active")
        )
        publisher.publish(
            BotStatus(symbol=symbol, ts=1_760_000_000_000, bot="b", strategy="s", status="error")
        )
        wait_until(lambda: alert_states(client, symbol), what="the fire")
        evaluators[holder].kill()  # SIGKILL: no checkpoint, no release of the lease
        evaluators[holder].wait(10)
        other = "B" if holder == "A" else "A"
        wait_until(
            lambda: client.get(keys.ALERTS_LEASE_KEY) == other.encode(), timeout=30, what="the takeover"
        )
        publisher.publish(
            BotStatus(symbol=symbol, ts=1_760_000_000_000, bot="b", strategy="s", status="active")
        )
        wait_until(lambda: len(alert_states(client, symbol)) >= 2, timeout=30, what="the resolution")
    assert alert_states(client, symbol) == ["firing", "resolved"]
    wait_until(lambda: client.hlen(keys.ALERTS_ACTIVE_KEY) == 0, what="the active list to empty")


def test_alerts_test_prints_when_a_rule_would_have_fired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from server.cli.main import main
    from tests.support.analytics_data import fresh_store_sync, status

    now = int(time.time() * 1000)
    database = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    fresh_store_sync(
        database,
        [
            status(now - 60_000, "x", "active"),
            status(now - 50_000, "x", "error"),
            status(now - 40_000, "x", "active"),
        ],
    )
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"alerts": {"rules": RULES}}))
    assert main(["--config", str(config), "alerts", "test", "bot-error", "--database-url", database]) == 0
    out = capsys.readouterr().out
    assert "FIRE" in out and "RESOLVE" in out and "bot-error: 1 fires, 1 resolutions" in out
    assert main(["--config", str(config), "alerts", "test", "nope", "--database-url", database]) == 2
