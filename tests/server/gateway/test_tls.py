"""Publisher and gateway over TLS (rediss://) to a Redis 7 with a test CA."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from publishers import Publisher
from server.cli.embedded import free_port
from tests.support import async_wait_until, wait_until
from tests.support.gateway import WsClient, running_gateway

SYSTEM_REDIS = "/usr/bin/redis-server"


def _supports_tls() -> bool:
    if not Path(SYSTEM_REDIS).exists() or shutil.which("openssl") is None:
        return False
    result = subprocess.run([SYSTEM_REDIS, "--version"], capture_output=True, text=True)
    return result.returncode == 0 and "v=6" not in result.stdout


pytestmark = pytest.mark.skipif(
    not _supports_tls(), reason="needs /usr/bin/redis-server 7 built with TLS and openssl"
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=signalpush-test-ca",
        cwd=tmp_path,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=tmp_path,
    )
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=tmp_path,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            SYSTEM_REDIS,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.crt'}"

    def answers() -> bool:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    try:
        wait_until(answers, 10, what="the TLS redis-server")
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_publish_and_serve_over_tls(tls_redis: str, symbol: str) -> None:
    async with running_gateway(tls_redis) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        async with Publisher(tls_redis, bot="b", strategy="s") as pub:
            for _ in range(3):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
        await async_wait_until(lambda: client.position(sub) == 3, what="3 events over TLS")
        await client.close()
