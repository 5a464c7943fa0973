"""Processes a bench run starts and measures: Redis, the servers, load and publisher processes.

Everything listens on 127.0.0.1, is started by the bench and stopped by it (by its own
pid, never by name). CPU time and memory are read from ``/proc`` (Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.error import URLError
from urllib.request import urlopen

from publishers.connection import sync_client
from publishers.errors import SignalpushError
from server.cli.embedded import EmbeddedRedis, die_with_parent_hook, free_port

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(SignalpushError):
    """A bench run could not go on (a process died or did not answer in time)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(child) for child in text]
    except OSError:
        pass
    return found


def is_recorder(pid: int) -> bool:
    """A ``signalpush record`` process (the recorder child of ``serve``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"record" in argv


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process in KiB; empty if it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_busy_seconds() -> tuple[float, float]:
    """(CPU time the whole machine used so far, of which serving interrupts), all cores, from /proc/stat.

    Loopback TCP is mostly processed in softirq context, charged to no process of ours.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS, (irq + softirq) / _CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU used by a set of processes between :meth:`start` and :meth:`stop`."""

    pids: Sequence[int]
    started_at: float = 0.0
    _before: float = 0.0
    seconds: float = 0.0
    wall_s: float = 0.0

    def start(self) -> CpuMeter:
        self.started_at = time.monotonic()
        self._before = sum(cpu_seconds(p) for p in self.pids)
        return self

    def stop(self) -> CpuMeter:
        self.seconds = sum(cpu_seconds(p) for p in self.pids) - self._before
        self.wall_s = time.monotonic() - self.started_at
        return self

    @property
    def percent(self) -> float:
        """Percent of one core over the interval (200 = both cores of a 2-core machine)."""
        return round(100 * self.seconds / self.wall_s, 1) if self.wall_s > 0 else 0.0


class JsonChild:
    """A child process that answers JSON-line requests on its stdin/stdout."""

    def __init__(self, argv: Sequence[str], *, name: str, cwd: Path, log_path: Path) -> None:
        self.name = name
        log = log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=cwd,
                env=child_env(),
            )
        finally:
            log.close()
        self.log_path = log_path
        self._pending = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"{self.name} exited: {self.log_tail()}") from None

    def receive(self, timeout_s: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.name} did not answer within {timeout_s:g}s")
            ready, _, _ = select.select([stdout], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(stdout.fileno(), 1 << 20)
                if not chunk:
                    raise BenchError(f"{self.name} exited: {self.log_tail()}")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {reply['error']}")
        return reply

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.send(message)
        return self.receive(timeout_s)

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        stop_process(self.process, timeout_s)


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    for stream in (process.stdout, process.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.setdefault("SIGNALPUSH_LOG_LEVEL", "warning")
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class ServerChild:
    """A server under test (``signalpush serve`` or the baseline) on its own port."""

    def __init__(
        self,
        kind: str,
        redis_url: str,
        workdir: Path,
        port: int | None = None,
        profile_dir: Path | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        #: What the bench calls it (the profile's file name).
        self.name = kind
        #: Extra environment (config overrides, e.g. ``SIGNALPUSH_RECORDER_ENABLED``).
        self.env = dict(env or {})
        #: ``signalpush serve --workers N``: N gateway processes under a supervisor.
        self.workers = workers
        self.profile_dir = profile_dir
        self.profilers: list[subprocess.Popen[bytes]] = []
        self.redis_url = redis_url
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{kind}-{self.port}.log"
        self.started_at = 0.0
        #: It runs a recorder (the bench registers its symbols), into this database.
        self.records = False
        self.database_url: str | None = None

    def argv(self) -> list[str]:
        if self.kind == "baseline":
            return python_module(
                "server.bench.baseline", "--redis-url", self.redis_url, "--port", str(self.port)
            )
        workers = ["--workers", str(self.workers)] if self.workers > 1 else []
        return python_module(
            "server.cli.main",
            "serve",
            "--redis-url",
            self.redis_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *workers,
        )

    def spawn(self) -> None:
        log: IO[bytes] = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=child_env(**self.env),
                # A bench killed before its cleanup runs must not leave a `serve` behind.
                preexec_fn=die_with_parent_hook() if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        self.started_at = time.monotonic()
        if self.profile_dir is not None:
            self._profile(self.profile_dir)

    def _profile(self, directory: Path) -> None:
        """Sample the server with py-spy (``pip install py-spy``) until it exits: flamegraph text."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / f"{self.name.replace(' ', '-')}-{self.pid}.txt"
        self.profilers.append(
            subprocess.Popen(
                [spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "200", "--nonblocking",
                 "--output", str(output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip

    def start(self, timeout_s: float = 30.0) -> ServerChild:
        self.spawn()
        self.wait_healthy(timeout_s)
        return self

    def wait_healthy(self, timeout_s: float = 30.0) -> float:
        """Block until ``/healthz`` says ok; returns the seconds since spawn."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.kind} did not become healthy within {timeout_s:g}s: {self.log_tail()}"
                )
            time.sleep(0.02)
        return time.monotonic() - self.started_at

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BenchError(f"{self.kind} exited with code {self.process.returncode}: {self.log_tail()}")
        try:
            with urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return bool(json.loads(response.read()).get("status") == "ok")
        except (URLError, OSError, ValueError):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The gateway's processes: itself and, with workers, its worker children (not the recorder)."""
        children = children_of(self.pid) if self.workers > 1 else []
        return [self.pid, *(p for p in children if not is_recorder(p))]

    def recorder_pids(self) -> list[int]:
        """The recorder child of ``serve`` (``recorder.process``), if it runs one."""
        return [p for p in children_of(self.pid) if is_recorder(p)]

    def peak_rss_kib(self) -> int:
        """Peak RSS summed over the gateway's processes (workers each count; not the recorder)."""
        return sum(memory_kib(pid).get("VmHWM", 0) for pid in self.pids())

    def kill(self) -> None:
        """SIGKILL (the reconnect drill)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10.0)
        for profiler in self.profilers:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(profiler)

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def bench_redis(url: str | None, workdir: Path) -> Iterator[tuple[str, int | None]]:
    """The Redis of a run: ``url`` if given, else an embedded one (yields its URL and pid)."""
    if url:
        yield url, None
        return
    server = EmbeddedRedis(port=free_port(), data_dir=workdir / "redis", appendonly=False)
    server.start()
    try:
        yield server.url, server.pid
    finally:
        server.stop()


def redis_cpu_seconds(url: str) -> float:
    """CPU Redis used so far (from INFO, so it works for a Redis the bench did not start)."""
    client = sync_client(url, name="signalpush-bench")
    try:
        info: dict[str, Any] = client.info("cpu")
    finally:
        client.close()
    return float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0))


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    """A scratch directory for logs (kept when ``keep``, e.g. for a failed run)."""
    path = Path(tempfile.mkdtemp(prefix="signalpush-bench-"))
    try:
        yield path
    finally:
        if not keep:
            for child in sorted(path.rglob("*"), reverse=True):
                with contextlib.suppress(OSError):
                    child.unlink() if child.is_file() else child.rmdir()
            with contextlib.suppress(OSError):
                path.rmdir()
