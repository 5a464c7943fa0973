"""A child process of ``serve`` supervised as one of its tasks (the recorder, the alert evaluator).

:meth:`ChildProcess.run` is one life of the child: it starts it, reads the JSON report lines it
writes on its stdout (the last good one is kept for ``/metrics``), and at ``stop`` sends it
SIGTERM (killed if it does not end in time). A child that ends before ``stop`` raises the
subclass's :attr:`ChildProcess.exited`, so the runner's supervisor restarts it with backoff and
``/healthz`` names the task while it is down. A cancelled run never leaves the child behind.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from server.cli.embedded import die_with_parent_hook
from server.settings import ENV_PREFIX, Settings


class ChildExited(RuntimeError):
    """A child process ended while it should run (the supervisor restarts it)."""


def child_env(settings: Settings, redis_url: str, section: str, extra: dict[str, str]) -> dict[str, str]:
    """The child's environment: ours, with the settings it uses (they may come from overrides):
    the Redis URL, ``extra``, every field of the settings' ``section`` and the logging."""
    env = dict(os.environ)
    env[f"{ENV_PREFIX}REDIS_URL"] = redis_url
    env.update(extra)
    values = getattr(settings, section)
    for field in dataclasses.fields(values):
        value = getattr(values, field.name)
        if isinstance(value, tuple):
            text = json.dumps(list(value))
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"{ENV_PREFIX}{section.upper()}_{field.name.upper()}"] = text
    env[f"{ENV_PREFIX}LOG_LEVEL"] = settings.log_level
    env[f"{ENV_PREFIX}LOG_FORMAT"] = settings.log_format
    env.pop("SIGNALPUSH_WORKER_INDEX", None)
    return env


class ChildProcess(abc.ABC):
    """One kind of child: run by :meth:`run` until ``stop``; its last report in ``_report``."""

    #: The child's name in logs, task names and errors ("recorder", "alerts").
    name: ClassVar[str]
    #: Raised when the child ends before ``stop``.
    exited: ClassVar[type[ChildExited]]
    #: A report line longer than this is dropped, not parsed.
    max_report_bytes: ClassVar[int]

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.pid: int | None = None
        self.exits = 0
        self.bad_reports = 0
        self._report: dict[str, Any] = {}
        # The subclass's module logs its child (the logger names stay those of the modules).
        self._log = logging.getLogger(type(self).__module__)

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The child's command line."""

    @abc.abstractmethod
    def env(self) -> dict[str, str]:
        """The child's environment (:func:`child_env`)."""

    @abc.abstractmethod
    def parse_report(self, line: bytes) -> dict[str, Any] | None:
        """A report line as the child wrote it, or None if it is not one (dropped)."""

    @abc.abstractmethod
    def stop_timeout_s(self) -> float:
        """How long the child has to end after SIGTERM before it is killed."""

    def nice(self) -> int:
        """How much lower the child's CPU priority is than its parent's (0: the same)."""
        return 0

    def preexec(self) -> Callable[[], None] | None:
        """What runs in the child before its program: it dies with its parent and takes its
        :meth:`nice` (Linux)."""
        if sys.platform != "linux":
            return None
        die, nice = die_with_parent_hook(), self.nice()

        def prepare() -> None:
            die()
            if nice:
                os.nice(nice)

        return prepare

    def started_extra(self) -> dict[str, Any]:
        """The fields of the "process started" log line."""
        return {"pid": self.pid, "nice": self.nice()}

    async def run(self, stop: asyncio.Event) -> None:
        """Run the child until ``stop`` (then SIGTERM); raises :attr:`exited` if it ends before."""
        name = self.name
        process = await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=self.env(),
            preexec_fn=self.preexec(),
            limit=self.max_report_bytes,
        )
        self.pid = process.pid
        self._log.info(f"{name} process started", extra=self.started_extra())
        reader = asyncio.create_task(self._read_reports(process), name=f"signalpush-{name}-reports")
        stopping = asyncio.create_task(stop.wait(), name=f"signalpush-{name}-stop")
        exited = asyncio.create_task(process.wait(), name=f"signalpush-{name}-wait")
        try:
            await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(process)
                return
            self.exits += 1
            raise self.exited(f"the {name} process {process.pid} exited with code {process.returncode}")
        finally:
            for task in (reader, stopping, exited):
                task.cancel()
            if process.returncode is None:  # cancelled: never leave it behind
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout_s())
        except TimeoutError:
            self._log.warning(
                f"the {self.name} process did not stop in time; killing it", extra={"pid": process.pid}
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _read_reports(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than max_report_bytes: the rest of it is skipped
                self.bad_reports += 1
                continue
            if not line:
                return
            report = self.parse_report(line)
            if report is None:
                self.bad_reports += 1
                continue
            self._report = report
