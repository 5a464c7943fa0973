"""The recorder as a child process of ``serve`` (``recorder.process``, the default).

Recording is SQL inserts and Redis scripts: in the gateway's process it competed with the
fan-out for the event loop and the GIL (aiosqlite's thread included). As a child
(``signalpush record --report``) it has its own interpreter and, on a multi-core machine,
its own core. :class:`RecorderChild` has the in-process recorder's face
(``run(stop)``, ``stats()``, ``lag()``, ``committed()``, ``unrecordable()``): the runner
supervises it as the ``recorder`` task (restarted with backoff when the child dies, so
``/healthz`` names it while it is down) and ``/metrics`` shows the counters the child
reports, one JSON line on its stdout every ``REPORT_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any, Final

from server.cli.child import ChildExited, ChildProcess, child_env
from server.settings import ENV_PREFIX, Settings

#: How often the child reports its counters.
REPORT_EVERY_S: Final = 0.5
#: A report longer than this (a registry of very many symbols) is dropped, not parsed.
MAX_REPORT_BYTES: Final = 16 << 20


class RecorderExited(ChildExited):
    """The recorder child process ended while it should run (the supervisor restarts it)."""


def report_line(stats: dict[str, Any], lag: dict[str, int], unrecordable: dict[str, str]) -> bytes:
    """What the child writes on its stdout (``signalpush record --report``)."""
    return json.dumps({"stats": stats, "lag": lag, "unrecordable": unrecordable}).encode() + b"\n"


def parse_report(line: bytes) -> dict[str, Any] | None:
    """A report line as the child wrote it, or None if it is not one (dropped)."""
    try:
        report = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(report, dict):
        return None
    stats, lag, unrecordable = report.get("stats"), report.get("lag"), report.get("unrecordable")
    if not (isinstance(stats, dict) and isinstance(lag, dict) and isinstance(unrecordable, dict)):
        return None
    if not all(isinstance(k, str) and type(v) is int for k, v in lag.items()):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in unrecordable.items()):
        return None
    return report


def serve_consumer(port: int) -> str | None:
    """The consumer name of a ``serve``'s recorder: the same after a restart on the same port, so
    the new child re-reads the entries the old one left pending at once (no claim wait)."""
    return f"{socket.gethostname()}-serve-{port}" if port else None


class RecorderChild(ChildProcess):
    """``signalpush record --report`` run by :meth:`run` until ``stop`` (then SIGTERM: it commits
    its batch and exits); its last report."""

    name = "recorder"
    exited = RecorderExited
    max_report_bytes = MAX_REPORT_BYTES

    def __init__(self, settings: Settings, redis_url: str, *, consumer: str | None = None) -> None:
        super().__init__(settings, redis_url)
        self.consumer = consumer

    def argv(self) -> list[str]:
        """``signalpush record --report``, through this module's lean entry point (:func:`main`:
        the full command line imports every command's dependencies, pandas included)."""
        consumer = ["--consumer", self.consumer] if self.consumer else []
        return [sys.executable, "-m", "server.cli.recorder_child", "record", "--report", *consumer]

    def env(self) -> dict[str, str]:
        database = {f"{ENV_PREFIX}DATABASE_URL": self.settings.database.url}
        return child_env(self.settings, self.redis_url, "recorder", database)

    def parse_report(self, line: bytes) -> dict[str, Any] | None:
        return parse_report(line)

    def stop_timeout_s(self) -> float:
        return max(5.0, self.settings.server.shutdown_timeout_s)

    def nice(self) -> int:
        return self.settings.recorder.nice

    # -- the in-process recorder's face (what /metrics reads) -------------------------------

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self._report.get("stats", {}))
        stats.update(pid=self.pid, process_exits=self.exits, bad_reports=self.bad_reports)
        return stats

    def lag(self) -> dict[str, int]:
        return dict(self._report.get("lag", {}))

    def unrecordable(self) -> dict[str, str]:
        return dict(self._report.get("unrecordable", {}))


def main(argv: list[str] | None = None) -> int:
    """``python -m server.cli.recorder_child record --report [--consumer NAME]``: the recorder
    child, configured by its environment (:meth:`RecorderChild.env`)."""
    import argparse

    from server.cli.db import _record
    from server.logs import configure_logging
    from server.settings import load_settings

    parser = argparse.ArgumentParser(prog="signalpush record (serve's recorder)")
    parser.add_argument("command", choices=["record"])
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--consumer")
    args = parser.parse_args(argv)
    args.symbols, args.claim_idle_ms = None, None
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(_record(settings, args))


if __name__ == "__main__":
    sys.exit(main())
