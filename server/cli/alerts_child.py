"""The alert evaluator as a child process of ``serve`` (``alerts.process``, the default).

The lease holder reads and checks every event of every symbol: at saturation that is the
recorder's read load again, and in the gateway's process it took the event loop and the GIL
from the fan-out (``bench alerts``: 0.55x saturation with 50 rules in-process; docs/design.md).
As a child (``python -m server.cli.alerts_child``, configured by its environment) it is a
member of the evaluator group like any other; ``serve`` supervises it as the task
``alerts`` (restarted with backoff when it dies) and shows on ``/metrics`` the counters it
reports on its stdout, one JSON line every ``REPORT_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Any, Final

from server.cli.embedded import die_with_parent_hook
from server.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

REPORT_EVERY_S: Final = 0.5
MAX_REPORT_BYTES: Final = 1 << 16


class AlertsExited(RuntimeError):
    """The alerts child ended while it should run (the supervisor restarts it)."""


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The child's environment: ours, with the settings it uses (they may come from overrides)."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}REDIS_URL"] = redis_url
    env[f"{ENV_PREFIX}REDIS_LOG_MAXLEN"] = str(settings.redis.log_maxlen)
    for field in dataclasses.fields(settings.alerts):
        value = getattr(settings.alerts, field.name)
        if isinstance(value, tuple):
            text = json.dumps(list(value))
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"{ENV_PREFIX}ALERTS_{field.name.upper()}"] = text
    env[f"{ENV_PREFIX}LOG_LEVEL"] = settings.log_level
    env[f"{ENV_PREFIX}LOG_FORMAT"] = settings.log_format
    env.pop("SIGNALPUSH_WORKER_INDEX", None)
    return env


def parse_report(line: bytes) -> dict[str, Any] | None:
    """A report line as the child wrote it (counters: name -> int), or None (dropped)."""
    try:
        report = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(report, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in report.items()
    ):
        return None
    return report


class AlertsChild:
    """The evaluator child run by :meth:`run` until ``stop``; :meth:`stats` is its last report."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.pid: int | None = None
        self.exits = 0
        self.bad_reports = 0
        self._report: dict[str, Any] = {}

    def stats(self) -> dict[str, Any]:
        return {**self._report, "process_exits": self.exits, "bad_reports": self.bad_reports}

    async def run(self, stop: asyncio.Event) -> None:
        """Run the child until ``stop`` (then SIGTERM: it checkpoints and lets the lease go)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli.alerts_child",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(self.settings, self.redis_url),
            preexec_fn=die_with_parent_hook() if sys.platform == "linux" else None,
            limit=MAX_REPORT_BYTES,
        )
        self.pid = process.pid
        log.info("alerts process started", extra={"pid": process.pid})
        reader = asyncio.create_task(self._read_reports(process), name="signalpush-alerts-reports")
        stopping = asyncio.create_task(stop.wait(), name="signalpush-alerts-stop")
        exited = asyncio.create_task(process.wait(), name="signalpush-alerts-wait")
        try:
            await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                return
            self.exits += 1
            raise AlertsExited(f"the alerts process {process.pid} exited with code {process.returncode}")
        finally:
            for task in (reader, stopping, exited):
                task.cancel()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)

    async def _read_reports(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                self.bad_reports += 1
                continue
            if not line:
                return
            report = parse_report(line)
            if report is None:
                self.bad_reports += 1
            else:
                self._report = report


async def _serve_alerts(settings: Settings) -> None:
    from server.alerts.rules import parse_alerts
    from server.gateway.alerting import AlertEvaluator

    evaluator = AlertEvaluator(
        settings.redis.effective_url,
        parse_alerts(settings.alerts.rules, settings.alerts.routes),
        settings.alerts,
        log_maxlen=settings.redis.log_maxlen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def report() -> None:
        while True:
            stats = {k: int(v) for k, v in evaluator.stats().items()}
            sys.stdout.write(json.dumps(stats) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(REPORT_EVERY_S)

    reporter = asyncio.create_task(report())
    try:
        await evaluator.run(stop)
    finally:
        reporter.cancel()


def main() -> int:
    """``python -m server.cli.alerts_child``: the evaluator, configured by its environment."""
    from server.logs import configure_logging
    from server.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_serve_alerts(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
