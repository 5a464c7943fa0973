from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import redis

from server.cli.embedded import EmbeddedRedis, free_port
from server.errors import EmbeddedRedisError
from tests.support import wait_until


def test_starts_answers_persists_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path)
    with server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
        pid = server.pid
    assert pid is not None and not psutil.pid_exists(pid)
    with server:  # the append-only file brings the data back
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()


def test_a_taken_port_is_reported_clearly(tmp_path: Path) -> None:
    with EmbeddedRedis(port=free_port(), data_dir=tmp_path / "a") as first:
        second = EmbeddedRedis(port=first.port, data_dir=tmp_path / "b")
        with pytest.raises(EmbeddedRedisError, match=rf"127.0.0.1:{first.port} is already in use"):
            second.start()


def test_a_missing_binary_is_reported_clearly(tmp_path: Path) -> None:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path, binary=str(tmp_path / "no-redis-server"))
    with pytest.raises(EmbeddedRedisError, match="cannot run"):
        server.start()


def test_killing_the_parent_leaves_no_redis_server(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from server.cli.embedded import EmbeddedRedis
        server = EmbeddedRedis(port={free_port()}, data_dir={str(tmp_path)!r})
        server.start()
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert parent.stdout is not None
    redis_pid = int(parent.stdout.readline())
    assert psutil.Process(redis_pid).name().startswith("redis-server")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()

    def gone() -> bool:
        try:
            return psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, timeout=10, what="redis-server to exit after its parent was killed")
