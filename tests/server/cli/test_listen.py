"""The early listening socket: connections queue while serve starts, a taken port is named."""

from __future__ import annotations

import socket

import pytest

from server.cli.listen import early_listener
from tests.support.gateway import gateway_settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connections_queue_on_the_early_socket_before_anything_accepts_them() -> None:
    port = _free_port()
    listener = early_listener(gateway_settings(server={"port": port}))
    assert listener is not None
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(200)]
        for client in clients:  # more than asyncio's default backlog of 100, none refused
            client.close()
    finally:
        listener.close()


def test_port_zero_binds_later_and_a_taken_port_names_the_address() -> None:
    assert early_listener(gateway_settings(server={"port": 0})) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            early_listener(gateway_settings(server={"port": port}))
