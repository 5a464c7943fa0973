"""A real Redis Cluster on loopback from the machine's redis-server 7 (3 masters, optional replicas)."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from server.cli.embedded import port_is_free
from tests.support import wait_until

SYSTEM_REDIS = "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cluster_available() -> bool:
    if not Path(SYSTEM_REDIS).exists() or not Path(REDIS_CLI).exists():
        return False
    version = subprocess.run([SYSTEM_REDIS, "--version"], capture_output=True, text=True).stdout
    return "v=7." in version or "v=8." in version


@dataclass
class LocalCluster:
    root: Path
    masters: int = 3
    replicas: int = 0
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.masters])

    def start_node(self, port: int) -> None:
        directory = self.root / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                SYSTEM_REDIS,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(directory),
                "--cluster-replica-validity-factor",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _answers(port), 10, what=f"cluster node {port}")

    def start(self) -> LocalCluster:
        self.ports = cluster_ports(self.masters * (1 + self.replicas))
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(self.healthy, 30, what="the cluster to be ok on every node")
        return self

    def healthy(self) -> bool:
        for port in self.ports:
            if port not in self.processes or self.processes[port].poll() is not None:
                continue
            try:
                info = redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER", "INFO")
            except redis.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def alive_port(self) -> int:
        return next(port for port in self.ports if port in self.processes)

    def master_of(self, key: str) -> int:
        client = redis.Redis(port=self.alive_port(), socket_timeout=2)
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"no master for slot {slot}")

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait(10)
        self.processes.clear()


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster-bus twins (port + 10000) are free too: below the ephemeral range."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 30_000)
        if port not in ports and port_is_free("127.0.0.1", port) and port_is_free("127.0.0.1", port + 10_000):
            ports.append(port)
    return ports


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_cluster_ok(cluster: LocalCluster, timeout: float = 30) -> None:
    started = time.monotonic()
    wait_until(cluster.healthy, timeout, what=f"cluster ok (after {time.monotonic() - started:.1f}s)")
