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
import gc
import json
import signal
import sys
from typing import Any, Final

from server.cli.child import ChildExited, ChildProcess, child_env
from server.settings import ENV_PREFIX, Settings

REPORT_EVERY_S: Final = 0.5
MAX_REPORT_BYTES: Final = 1 << 16


class AlertsExited(ChildExited):
    """The alerts child ended while it should run (the supervisor restarts it)."""


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


class AlertsChild(ChildProcess):
    """The evaluator child run by :meth:`run` until ``stop`` (then SIGTERM: it checkpoints and
    lets the lease go); :meth:`stats` is its last report."""

    name = "alerts"
    exited = AlertsExited
    max_report_bytes = MAX_REPORT_BYTES

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "server.cli.alerts_child"]

    def env(self) -> dict[str, str]:
        extra = {
            f"{ENV_PREFIX}REDIS_LOG_MAXLEN": str(self.settings.redis.log_maxlen),
            # Gaps the recorder trimmed before the evaluator read them are read back from SQL.
            f"{ENV_PREFIX}DATABASE_URL": self.settings.database.url,
        }
        return child_env(self.settings, self.redis_url, "alerts", extra)

    def parse_report(self, line: bytes) -> dict[str, Any] | None:
        return parse_report(line)

    def stop_timeout_s(self) -> float:
        return 10.0

    def nice(self) -> int:
        return self.settings.alerts.nice

    def stats(self) -> dict[str, Any]:
        return {**self._report, "process_exits": self.exits, "bad_reports": self.bad_reports}


async def _serve_alerts(settings: Settings) -> None:
    from server.alerts.rules import parse_alerts
    from server.gateway.alerting import AlertEvaluator

    evaluator = AlertEvaluator(
        settings.redis.effective_url,
        parse_alerts(settings.alerts.rules, settings.alerts.routes),
        settings.alerts,
        log_maxlen=settings.redis.log_maxlen,
        database_url=settings.database.url,
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
    # What start-up allocated lives as long as the process: out of the collector's full passes,
    # which a flood's many short-lived reply lists would otherwise set off (as in the gateway).
    gc.freeze()
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
