"""`signalpush serve` (or another subcommand) as a real child process, for kill and restart drills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from server.cli.embedded import die_with_parent_hook, free_port
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    """A ``python -m server.cli.main <command>`` child with its own port and environment."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = args
        # Each server gets its own history database unless the test gives one.
        self._scratch = tempfile.mkdtemp(prefix="signalpush-serve-")
        defaults = {"SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{self._scratch}/history.db"}
        self.env = {**os.environ, **defaults, **(env or {})}
        # Logs go to a file next to the database: a failing test can point at it.
        self.log_path = log_path or Path(self._scratch) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server.cli.main",
                    *self.args,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent_hook(),
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        wait_until(self.healthy, timeout, what=f"{' '.join(self.args)} on port {self.port} to be healthy")
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with code {self.process.returncode}")
        try:
            with urlopen(f"{self.http_url}/healthz", timeout=2) as response:
                return bool(json.loads(response.read())["status"] == "ok")
        except (URLError, OSError, ValueError):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
