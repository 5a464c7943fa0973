"""Where a publisher connects and how hard it tries: :class:`PublisherOptions`.

A publisher reads no file unless asked. Its Redis address is the one given, else
``$SIGNALPUSH_REDIS_URL``, else the embedded server's default address (what
``signalpush serve`` starts when its config has no ``redis.url``).
:meth:`PublisherOptions.from_config` reads the ``redis`` section of a signalpush
config.yaml (the other sections are the server's and are not looked at), with the
``SIGNALPUSH_REDIS_*`` environment variables over it, as the server reads it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from publishers.errors import ConfigError

#: The environment variable holding the Redis address (also the server's ``redis.url``).
URL_ENV: Final = "SIGNALPUSH_REDIS_URL"
#: The embedded redis-server's address (``redis.embedded_host``/``embedded_port`` defaults).
EMBEDDED_HOST: Final = "127.0.0.1"
EMBEDDED_PORT: Final = 6399
DEFAULT_URL: Final = f"redis://{EMBEDDED_HOST}:{EMBEDDED_PORT}/0"

_ENV_PREFIX: Final = "SIGNALPUSH_REDIS_"
_URL_SCHEMES: Final = ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix")
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def default_url(env: Mapping[str, str] | None = None) -> str:
    """``$SIGNALPUSH_REDIS_URL`` if set and not empty, else the embedded server's address."""
    return (os.environ if env is None else env).get(URL_ENV) or DEFAULT_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherOptions:
    """How a publisher reaches Redis (all keyword-only; the repr hides any password).

    ``url`` defaults to ``$SIGNALPUSH_REDIS_URL``, else the embedded server's address.
    A failed publish is retried at most ``retry_attempts`` times within ``retry_timeout_s``;
    ``log_maxlen`` caps each symbol's log (it must match the server's ``redis.log_maxlen``).
    """

    url: str = field(default_factory=default_url)
    retry_attempts: int = 5
    retry_timeout_s: float = 10.0
    socket_timeout_s: float = 5.0
    log_maxlen: int = 1_000_000

    def __post_init__(self) -> None:
        # Sanity only: a config file's keys have the server's tighter rules (REDIS_SECTION).
        _check_url("url", self.url)
        _check_number("retry_attempts", self.retry_attempts, int, 0, None)
        _check_number("retry_timeout_s", self.retry_timeout_s, float, 0.0, None)
        _check_number("socket_timeout_s", self.socket_timeout_s, float, 0.001, None)
        _check_number("log_maxlen", self.log_maxlen, int, 1, None)

    def __repr__(self) -> str:
        return (
            f"PublisherOptions(url={redact_url(self.url)!r}, retry_attempts={self.retry_attempts}, "
            f"retry_timeout_s={self.retry_timeout_s:g}, socket_timeout_s={self.socket_timeout_s:g}, "
            f"log_maxlen={self.log_maxlen})"
        )

    def replace(self, **changes: Any) -> PublisherOptions:
        """A copy with some options changed (``None`` values are ignored)."""
        given = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, **given) if given else self

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> PublisherOptions:
        """The options in the ``redis`` section of a signalpush config file.

        Keys: ``url`` (empty: the embedded server at ``embedded_host:embedded_port``),
        ``publish_retry_attempts``, ``publish_retry_timeout_s``, ``socket_timeout_s``,
        ``log_maxlen``; ``SIGNALPUSH_REDIS_<KEY>`` environment variables override them.
        A bad value raises :class:`~publishers.errors.ConfigError` naming the key.
        """
        section = _redis_section(Path(path))
        values = _section_values(section, os.environ if env is None else env)
        url = values["url"] or f"redis://{values['embedded_host']}:{values['embedded_port']}/0"
        return cls(
            url=url,
            retry_attempts=values["publish_retry_attempts"],
            retry_timeout_s=values["publish_retry_timeout_s"],
            socket_timeout_s=values["socket_timeout_s"],
            log_maxlen=values["log_maxlen"],
        )


#: The keys of the config's ``redis`` section: type, default, lower and upper bound.
#: server/settings.py's RedisSettings has the same keys and rules (tests/publishers/test_options.py).
REDIS_SECTION: Final[dict[str, tuple[type, Any, float | None, float | None]]] = {
    "url": (str, "", None, None),
    "embedded_host": (str, EMBEDDED_HOST, None, None),
    "embedded_port": (int, EMBEDDED_PORT, 1, 65535),
    "embedded_dir": (str, "./data/redis", None, None),  # the server's; not used by a publisher
    "log_maxlen": (int, 1_000_000, 100, None),
    "publish_retry_attempts": (int, 5, 0, 100),
    "publish_retry_timeout_s": (float, 10.0, 0.0, None),
    "socket_timeout_s": (float, 5.0, 0.1, None),
}


def _redis_section(path: Path) -> Mapping[str, Any]:
    import yaml  # only when a file is asked for

    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the config file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(str(path), "must hold a mapping of sections")
    section = loaded.get("redis") or {}
    if not isinstance(section, dict):
        raise ConfigError("redis", "must be a mapping of keys")
    return section


def _section_values(section: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for key in section:
        if key not in REDIS_SECTION:
            raise ConfigError(f"redis.{key}", f"unknown key; known: {', '.join(REDIS_SECTION)}")
    values: dict[str, Any] = {}
    for key, (kind, default, low, high) in REDIS_SECTION.items():
        dotted = f"redis.{key}"
        env_name = _ENV_PREFIX + key.upper()
        if env_name in env:
            value = _from_text(dotted, kind, env[env_name])
        elif key in section:
            value = _from_yaml(dotted, kind, section[key])
        else:
            value = default
        if kind is not str:
            _check_number(dotted, value, kind, low, high)
        values[key] = value
    _check_url("redis.url", values["url"], allow_empty=True)
    if values["embedded_host"] not in _LOOPBACK:
        raise ConfigError(
            "redis.embedded_host", f"must be one of {', '.join(_LOOPBACK)}; got {values['embedded_host']!r}"
        )
    return values


def _from_text(key: str, kind: type, text: str) -> Any:
    if kind is str:
        return text
    try:
        return kind(text.strip().replace("_", "") if kind is int else text.strip())
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(key, f"must be {noun}, got {text!r}") from None


def _from_yaml(key: str, kind: type, value: Any) -> Any:
    if isinstance(value, str):
        return _from_text(key, kind, value)
    if kind is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, f"must be a string, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be {'a whole number' if kind is int else 'a number'}, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    return kind(value)


def _check_number(key: str, value: Any, kind: type, low: float | None, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float):
        raise ConfigError(key, f"must be {'a whole number' if kind is int else 'a number'}, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(key, f"must be at least {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(key, f"must be at most {high}, got {value!r}")


def _check_url(key: str, url: object, *, allow_empty: bool = False) -> None:
    if not isinstance(url, str):
        raise ConfigError(key, f"must be a string, got {url!r}")
    if allow_empty and url == "":
        return
    if url.split("://", 1)[0] not in _URL_SCHEMES or "://" not in url:
        raise ConfigError(
            key, f"{redact_url(url)!r} is not a redis://, rediss://, redis+cluster:// or unix:// URL"
        )
