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
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Final

from server.cli.embedded import die_with_parent_hook
from server.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

#: How often the child reports its counters.
REPORT_EVERY_S: Final = 0.5
#: A report longer than this (a registry of very many symbols) is dropped, not parsed.
MAX_REPORT_BYTES: Final = 16 << 20


class RecorderExited(RuntimeError):
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


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The child's environment: ours, with the settings it uses (they may come from overrides)."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}REDIS_URL"] = redis_url
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.database.url
    for field in dataclasses.fields(settings.recorder):
        value = getattr(settings.recorder, field.name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"{ENV_PREFIX}RECORDER_{field.name.upper()}"] = text
    env[f"{ENV_PREFIX}LOG_LEVEL"] = settings.log_level
    env[f"{ENV_PREFIX}LOG_FORMAT"] = settings.log_format
    env.pop("SIGNALPUSH_WORKER_INDEX", None)
    return env


def serve_consumer(port: int) -> str | None:
    """The consumer name of a ``serve``'s recorder: the same after a restart on the same port, so
    the new child re-reads the entries the old one left pending at once (no claim wait)."""
    return f"{socket.gethostname()}-serve-{port}" if port else None


class RecorderChild:
    """``signalpush record --report`` run by :meth:`run` until ``stop``; its last report."""

    def __init__(self, settings: Settings, redis_url: str, *, consumer: str | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.consumer = consumer
        self.pid: int | None = None
        self.exits = 0
        self.bad_reports = 0
        self._report: dict[str, Any] = {}

    def argv(self) -> list[str]:
        """``signalpush record --report``, through this module's lean entry point (:func:`main`:
        the full command line imports every command's dependencies, pandas included)."""
        consumer = ["--consumer", self.consumer] if self.consumer else []
        return [sys.executable, "-m", "server.cli.recorder_child", "record", "--report", *consumer]

    # -- the in-process recorder's face (what /metrics reads) -------------------------------

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self._report.get("stats", {}))
        stats.update(pid=self.pid, process_exits=self.exits, bad_reports=self.bad_reports)
        return stats

    def lag(self) -> dict[str, int]:
        return dict(self._report.get("lag", {}))

    def unrecordable(self) -> dict[str, str]:
        return dict(self._report.get("unrecordable", {}))

    # -- one life of the child ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run the child until ``stop`` (then SIGTERM: it commits its batch and exits); raises
        :class:`RecorderExited` if it ends before."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(self.settings, self.redis_url),
            preexec_fn=self._preexec(),
            limit=MAX_REPORT_BYTES,
        )
        self.pid = process.pid
        log.info("recorder process started", extra={"pid": process.pid, "nice": self.settings.recorder.nice})
        reader = asyncio.create_task(self._read_reports(process), name="signalpush-recorder-reports")
        stopping = asyncio.create_task(stop.wait(), name="signalpush-recorder-stop")
        exited = asyncio.create_task(process.wait(), name="signalpush-recorder-wait")
        try:
            await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await _terminate(process, timeout_s=max(5.0, self.settings.server.shutdown_timeout_s))
                return
            self.exits += 1
            raise RecorderExited(f"the recorder process {process.pid} exited with code {process.returncode}")
        finally:
            for task in (reader, stopping, exited):
                task.cancel()
            if process.returncode is None:  # cancelled: never leave it behind
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)

    def _preexec(self) -> Callable[[], None] | None:
        if sys.platform != "linux":
            return None
        die = die_with_parent_hook()
        nice = self.settings.recorder.nice

        def prepare() -> None:
            die()
            if nice:
                os.nice(nice)

        return prepare

    async def _read_reports(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than MAX_REPORT_BYTES: the rest of it is skipped
                self.bad_reports += 1
                continue
            if not line:
                return
            report = parse_report(line)
            if report is None:
                self.bad_reports += 1
                continue
            self._report = report


async def _terminate(process: asyncio.subprocess.Process, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        log.warning("the recorder process did not stop in time; killing it", extra={"pid": process.pid})
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m server.cli.recorder_child record --report [--consumer NAME]``: the recorder
    child, configured by its environment (:func:`child_env`)."""
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
