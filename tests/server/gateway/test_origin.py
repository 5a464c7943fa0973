"""The Host and Origin rules (pure): which requests the gateway answers."""

from __future__ import annotations

import pytest

from server.errors import ProtocolError
from server.gateway.origin import OriginPolicy, split_host


def policy(
    host: str = "127.0.0.1", public: tuple[str, ...] = (), origins: tuple[str, ...] = ()
) -> OriginPolicy:
    return OriginPolicy(host, public, origins)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("Wall.Example", ("wall.example", None)),
        ("[::1]:8765", ("::1", 8765)),
        ("[::1]", ("::1", None)),
    ],
)
def test_host_headers_split_into_host_and_port(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize("value", ["", "a b", "evil.example/x", "user@host", "host:99999", "host:", "[::1"])
def test_malformed_host_headers_are_bad_requests(value: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        split_host(value)
    assert caught.value.code == "bad_request" and caught.value.message.startswith("Host:")


@pytest.mark.parametrize(
    "host", [None, "127.0.0.1:8765", "10.1.2.3", "[::1]:8765", "localhost:8765", "LOCALHOST", "[fe80::1]"]
)
def test_ip_literals_localhost_and_no_host_are_accepted_by_default(host: str | None) -> None:
    policy().check_host(host)


@pytest.mark.parametrize("host", ["evil.example:8765", "localhost.evil.example", "wall.example"])
def test_a_dns_name_is_misdirected_unless_configured(host: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        policy().check_host(host)
    assert caught.value.code == "misdirected"
    assert "server.public_hosts" in caught.value.message


def test_public_hosts_and_a_named_server_host_are_accepted() -> None:
    named = policy(host="gw.internal", public=("Wall.Example", "other.example:443"))
    for host in ("wall.example:8765", "other.example", "gw.internal:8765"):
        named.check_host(host)
    with pytest.raises(ProtocolError):
        named.check_host("evil.example")
    policy(public=("*",)).check_host("anything.example")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (None, "127.0.0.1:8765"),  # not a browser
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
        ("http://localhost:8765", "localhost:8765"),
        ("http://[::1]:8765", "[::1]:8765"),
        ("https://wall.example", "wall.example"),  # default ports on both sides
        ("https://wall.example:443", "wall.example"),
        ("http://wall.example", "wall.example:80"),
        ("HTTP://Wall.Example:8765", "wall.example:8765"),
    ],
)
def test_the_gateways_own_origin_is_accepted(origin: str | None, host: str) -> None:
    policy(public=("wall.example",)).check_origin(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "127.0.0.1:8765"),
        ("http://127.0.0.1:9999", "127.0.0.1:8765"),  # another port is another origin
        ("null", "127.0.0.1:8765"),  # sandboxed frames, file:// pages
        ("http://127.0.0.1:8765", None),
        ("http://127.0.0.1:8765/x", "127.0.0.1:8765"),
        ("http://127.0.0.1:notaport", "127.0.0.1:8765"),
    ],
)
def test_other_origins_are_forbidden_by_default(origin: str, host: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        policy().check_origin(origin, host)
    assert caught.value.code == "forbidden"
    assert "server.allowed_origins" in caught.value.message


def test_allowed_origins_add_to_the_own_origin_and_star_allows_any() -> None:
    listed = policy(origins=("https://Wall.Example/",))
    listed.check_origin("https://wall.example", "127.0.0.1:8765")
    listed.check_origin("http://127.0.0.1:8765", "127.0.0.1:8765")
    with pytest.raises(ProtocolError):
        listed.check_origin("https://evil.example", "127.0.0.1:8765")
    policy(origins=("*",)).check_origin("https://evil.example", "127.0.0.1:8765")


def test_a_malformed_public_host_stops_start_up_naming_the_key() -> None:
    from publishers.errors import ConfigError
    from server.cli.runner import compose_gateway
    from tests.support.gateway import gateway_settings

    settings = gateway_settings(server={"public_hosts": ["walls.example.com/x"]})
    with pytest.raises(ConfigError, match="server.public_hosts"):
        compose_gateway(settings, "redis://127.0.0.1:1/0")
