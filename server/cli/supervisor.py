"""``signalpush serve --workers N``: N gateway processes sharing one port (SO_REUSEPORT), supervised.

The supervisor owns the embedded Redis (when no redis.url is set) and the one recorder
(``recorder.process``: a ``signalpush record`` child, restarted with backoff; the workers
then run none), starts the workers
with the resolved Redis URL, restarts a worker that dies (with backoff, so a crash loop
does not spin), and on SIGTERM/SIGINT passes SIGTERM on and waits for them to close
their connections with 1012. The kernel spreads new connections over the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Final

from publishers.backoff import Backoff, Retries
from server.cli.embedded import die_with_parent_hook
from server.cli.recorder_child import RecorderChild, serve_consumer
from server.gateway.tasks import SupervisedTask
from server.settings import Settings

log = logging.getLogger(__name__)


#: Waits before restarting a worker that died: from 0.5 s doubling to 30 s, full jitter.
RESTART_BACKOFF: Final = Backoff(first_s=0.5, max_s=30.0)


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    retries: Retries = field(default_factory=lambda: Retries(RESTART_BACKOFF))
    history: list[float] = field(default_factory=list)


class Supervisor:
    """Run and keep running ``count`` gateway workers on one port."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_url: str,
        count: int,
        host: str,
        port: int,
        config_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.workers = [Worker(i) for i in range(count)]
        self.host = host
        self.port = port
        self.config_path = config_path
        self._stopping = False
        #: The one recorder of this host, a child of the supervisor (``recorder.process``).
        self.recorder: RecorderChild | None = None
        self.recording: SupervisedTask | None = None

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "server.cli.main"]
        if self.config_path:
            command += ["--config", self.config_path]
        return [
            *command,
            "serve",
            "--worker",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--redis-url",
            self.redis_url,
        ]

    @property
    def records_here(self) -> bool:
        """The one recorder runs as this supervisor's child (``recorder.process``), not in the workers."""
        return self.settings.recorder.enabled and self.settings.recorder.process

    async def _spawn(self, worker: Worker) -> None:
        env = {**os.environ, "SIGNALPUSH_WORKER_INDEX": str(worker.index)}
        if self.records_here:
            env["SIGNALPUSH_RECORDER_ENABLED"] = "false"
        worker.process = await asyncio.create_subprocess_exec(
            *self._command(), env=env, preexec_fn=die_with_parent_hook() if sys.platform == "linux" else None
        )
        worker.started_at = time.monotonic()
        log.info("worker started", extra={"worker": worker.index, "pid": worker.process.pid})

    async def _watch(self, worker: Worker) -> None:
        while not self.stopping():
            await self._spawn(worker)
            assert worker.process is not None
            code = await worker.process.wait()
            if self.stopping():
                return
            lived = time.monotonic() - worker.started_at
            if lived > 30:
                worker.retries.succeeded()  # it ran well: a new crash starts from the first delay
            delay = worker.retries.next_delay()
            worker.restarts += 1
            log.warning(
                "worker died; restarting",
                extra={"worker": worker.index, "code": code, "in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)

    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        """Until cancelled; then SIGTERM every worker and wait for them (bounded)."""
        stop_recording = asyncio.Event()
        if self.records_here:
            consumer = serve_consumer(self.port)
            recorder = self.recorder = RecorderChild(self.settings, self.redis_url, consumer=consumer)
            self.recording = SupervisedTask("recorder", lambda: recorder.run(stop_recording))
            self.recording.start()
        watchers = [asyncio.create_task(self._watch(w), name=f"worker-{w.index}") for w in self.workers]
        try:
            await asyncio.gather(*watchers)
        finally:
            self._stopping = True
            stop_recording.set()
            await self._terminate_all()
            for watcher in watchers:
                watcher.cancel()
            if self.recording is not None:
                await self.recording.stop(timeout_s=15)

    async def _terminate_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = self.settings.server.shutdown_timeout_s + 5
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), deadline)
        except TimeoutError:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
