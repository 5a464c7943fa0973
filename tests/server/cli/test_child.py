"""`serve`'s child processes (server/cli/child.py): each runs at the priority its settings give."""

from __future__ import annotations

import json

import psutil

from server.cli.embedded import EmbeddedRedis
from tests.support import wait_until
from tests.support.process import ServerProcess

RULE = {"name": "error", "condition": {"type": "status", "in": ["error"]}}


def _child(pid: int, marker: str) -> psutil.Process | None:
    for child in psutil.Process(pid).children():
        try:
            if any(marker in part for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_the_recorder_and_the_alert_evaluator_run_at_their_nice(own_redis: EmbeddedRedis) -> None:
    env = {
        "SIGNALPUSH_ALERTS_RULES": json.dumps([RULE]),
        "SIGNALPUSH_ALERTS_NICE": "7",
        "SIGNALPUSH_RECORDER_NICE": "3",
    }
    with ServerProcess("serve", "--redis-url", own_redis.url, env=env) as server:
        own = psutil.Process(server.pid).nice()
        alerts = wait_until(lambda: _child(server.pid, "alerts_child"), what="the alerts child")
        recorder = wait_until(lambda: _child(server.pid, "recorder_child"), what="the recorder child")
        assert alerts.nice() == min(19, own + 7)
        assert recorder.nice() == min(19, own + 3)
