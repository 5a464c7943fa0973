"""Typed, frozen configuration: defaults < config.yaml < environment < command line.

Every key can be overridden by an environment variable named
``SIGNALPUSH_<SECTION>_<KEY>`` (``SIGNALPUSH_REDIS_URL``, ``SIGNALPUSH_SERVER_PORT``,
``SIGNALPUSH_SERVER_ALLOWED_ORIGINS=a,b`` ...). A bad value stops start-up with a
:class:`~publishers.errors.ConfigError` naming the key and what is allowed.

This is the server's configuration. A bot reads none of it: its publisher takes the
Redis address given, or ``$SIGNALPUSH_REDIS_URL``, or the embedded default, and reads the
``redis`` section of a file only when asked (:meth:`publishers.Publisher.from_config`,
which applies the same keys and rules as :class:`RedisSettings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from publishers.errors import ConfigError
from publishers.options import EMBEDDED_HOST, EMBEDDED_PORT, PublisherOptions, redact_url

ENV_PREFIX: Final = "SIGNALPUSH_"
CONFIG_ENV: Final = "SIGNALPUSH_CONFIG"
DEFAULT_CONFIG_NAME: Final = "config.yaml"
LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "::1")


def _rule(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """Where the bus and replay log live. An empty ``url`` means the embedded redis-server."""

    url: str = field(
        default="", repr=False, metadata=_rule(pattern=r"^(|rediss?://.*|rediss?\+cluster://.*|unix://.*)$")
    )
    embedded_host: str = field(default=EMBEDDED_HOST, metadata=_rule(choices=LOOPBACK_HOSTS))
    embedded_port: int = field(default=EMBEDDED_PORT, metadata=_rule(min=1, max=65535))
    embedded_dir: str = "./data/redis"
    log_maxlen: int = field(default=1_000_000, metadata=_rule(min=100))
    publish_retry_attempts: int = field(default=5, metadata=_rule(min=0, max=100))
    publish_retry_timeout_s: float = field(default=10.0, metadata=_rule(min=0.0))
    socket_timeout_s: float = field(default=5.0, metadata=_rule(min=0.1))

    @property
    def is_embedded(self) -> bool:
        return not self.url

    @property
    def effective_url(self) -> str:
        """The URL clients connect to: ``url``, or the embedded server's address."""
        return self.url or f"redis://{self.embedded_host}:{self.embedded_port}/0"

    def publisher_options(self) -> PublisherOptions:
        """The options of a publisher connecting where this server does (``signalpush publish``, the demo)."""
        return PublisherOptions(
            url=self.effective_url,
            retry_attempts=self.publish_retry_attempts,
            retry_timeout_s=self.publish_retry_timeout_s,
            socket_timeout_s=self.socket_timeout_s,
            log_maxlen=self.log_maxlen,
        )

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={redact_url(self.effective_url)!r}, embedded={self.is_embedded}, "
            f"log_maxlen={self.log_maxlen})"
        )


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The history store (SQLAlchemy async URL)."""

    url: str = field(
        default="sqlite+aiosqlite:///./data/signalpush.db",
        metadata=_rule(pattern=r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://.*$"),
    )
    echo: bool = False
    #: A read (analytics, the seed API, get_session) that takes longer is reported as the database
    #: being down (StoreError), so a hanging database degrades within this bound.
    query_timeout_s: float = field(default=3.0, metadata=_rule(min=0.05, max=600))

    def __repr__(self) -> str:
        return f"DatabaseSettings(url={redact_url(self.url)!r})"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """The websocket gateway and its HTTP routes."""

    host: str = "127.0.0.1"
    port: int = field(default=8765, metadata=_rule(min=0, max=65535))
    #: Browser origins allowed besides the gateway's own (``*``: any). Empty: its own only.
    allowed_origins: tuple[str, ...] = ()
    #: Names the gateway answers to besides IP literals, localhost and ``host`` (``*``: any).
    public_hosts: tuple[str, ...] = ()
    heartbeat_s: float = field(default=20.0, metadata=_rule(min=0.5))
    max_frame_bytes: int = field(default=65_536, metadata=_rule(min=512))
    #: No server frame is larger: a bigger one (a long history) goes out as ``chunk`` frames
    #: (docs/protocol.md, "Frame size"), under the 1 MiB receive limit of common client libraries.
    max_send_frame_bytes: int = field(default=1_000_000, metadata=_rule(min=4096))
    max_buffer_bytes: int = field(default=1_048_576, metadata=_rule(min=4096))
    slow_client_timeout_s: float = field(default=30.0, metadata=_rule(min=0.1))
    max_subscriptions: int = field(default=100, metadata=_rule(min=1))
    message_rate: float = field(default=50.0, metadata=_rule(min=1.0))
    message_burst: int = field(default=200, metadata=_rule(min=1))
    max_connections: int = field(default=15_000, metadata=_rule(min=1))
    max_connections_per_ip: int = field(default=0, metadata=_rule(min=0))
    #: Pending TCP connections the kernel queues before accepting (capped by net.core.somaxconn).
    #: After a restart every wall reconnects at once: asyncio's default of 100 drops the rest's
    #: SYNs, and each waits 1 s, 3 s, 7 s for the retransmit.
    listen_backlog: int = field(default=4096, metadata=_rule(min=16, max=65535))
    batch_ms: float = field(default=0.0, metadata=_rule(min=0.0, max=1000.0))
    #: Check every live batch against the symbol's meta and log before sending it (what is
    #: sent is the log's events); off: only what looks wrong is checked (docs/protocol.md).
    confirm_live: bool = False
    compression: bool = False
    shutdown_timeout_s: float = field(default=5.0, metadata=_rule(min=0.0))


@dataclass(frozen=True, kw_only=True)
class HistorySettings:
    """Backfill defaults and caps."""

    default_minutes: int = field(default=360, metadata=_rule(min=1))
    max_minutes: int = field(default=43_200, metadata=_rule(min=1))
    max_points: int = field(default=2000, metadata=_rule(min=10))
    max_events: int = field(default=20_000, metadata=_rule(min=10))
    #: Processes building history windows and figures (0: on the gateway's own loop; tests only).
    workers: int = field(default=1, metadata=_rule(min=0, max=32))
    #: History requests that may wait for a build; later ones get ``error busy`` (HTTP 503).
    max_waiting: int = field(default=256, metadata=_rule(min=1))
    #: History frames built and not yet sent, in bytes: no build starts above it.
    max_bytes_in_flight: int = field(default=67_108_864, metadata=_rule(min=1_048_576))


@dataclass(frozen=True, kw_only=True)
class RecorderSettings:
    """The recorder that copies every symbol's log into SQL."""

    enabled: bool = True
    #: Record in a child process of ``serve`` (``signalpush record``), off the gateway's core and GIL.
    process: bool = True
    #: Niceness of that child (0-19): higher yields the CPU to the gateway under load.
    nice: int = field(default=0, metadata=_rule(min=0, max=19))
    #: A batch is committed when it holds ``batch_size`` events or its first is ``batch_wait_ms`` old.
    batch_size: int = field(default=1000, metadata=_rule(min=1))
    batch_wait_ms: int = field(default=200, metadata=_rule(min=0, max=10_000))
    block_ms: int = field(default=200, metadata=_rule(min=1))
    trim: bool = True
    #: Entries pending this long on another recorder (a dead one) are claimed and recorded.
    claim_idle_ms: int = field(default=30_000, metadata=_rule(min=100))


@dataclass(frozen=True, kw_only=True)
class TokenSpec:
    """A static subscriber token: its name, the symbol patterns it may read, an expiry."""

    name: str
    token: str = field(repr=False)
    symbols: tuple[str, ...] = ("*",)
    expires: str | None = None
    #: May steer walls (``POST /api/walls/{id}/command``, saving views): docs/security.md.
    admin: bool = False


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Subscriber authentication (off in the demo)."""

    enabled: bool = False
    jwt_secret: str = field(default="", repr=False)
    tokens: tuple[TokenSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class WallsSettings:
    """The wall fleet (docs/walls.md): when a display counts as stale or dead, how long it stays listed."""

    stale_s: float = field(default=15.0, metadata=_rule(min=1.0))
    dead_s: float = field(default=60.0, metadata=_rule(min=1.0))
    #: Below this many frames a second a display's render loop counts as stalled ("not drawing").
    min_fps: float = field(default=1.0, metadata=_rule(min=0.0))
    #: A display without a heartbeat for this long is forgotten (its Redis record expires).
    forget_after_s: float = field(default=86_400.0, metadata=_rule(min=60.0))
    #: Most displays /api/walls lists (the most recently heard from).
    max_displays: int = field(default=2000, metadata=_rule(min=1, max=100_000))


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """What `signalpush demo` simulates."""

    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
    timeframe: str = field(default="1m", metadata=_rule(pattern=r"^[1-9][0-9]{0,3}[smhdw]$"))
    tick_s: float = field(default=1.0, metadata=_rule(min=0.01))
    seed_hours: float = field(default=6.0, metadata=_rule(min=0.0, max=720.0))
    seed: int = 7


@dataclass(frozen=True, kw_only=True)
class AlertSettings:
    """Alert rules and routes (docs/alerts.md); ``rules`` and ``routes`` are validated by
    ``server.alerts.rules.parse_alerts`` at start (errors name the rule and the key)."""

    enabled: bool = True
    #: Evaluate in a child process of ``serve`` (server/cli/alerts_child.py), off the gateway's GIL.
    process: bool = True
    #: The evaluator child's CPU priority below the gateway's (``nice``; e.g. 10: under overload
    #: the fan-out keeps the CPU and alerts lag; none is lost, trimmed gaps are read from SQL).
    nice: int = field(default=0, metadata=_rule(min=0, max=19))
    #: How often timer conditions (silence, no candle, bus down) are evaluated.
    tick_ms: int = field(default=250, metadata=_rule(min=10, max=60_000))
    #: The evaluator's lease: another process takes over this long after its holder died.
    lease_ms: int = field(default=5000, metadata=_rule(min=200, max=600_000))
    #: Webhook/Telegram deliveries: attempts, the first backoff (doubling), a request's timeout.
    delivery_attempts: int = field(default=5, metadata=_rule(min=1, max=100))
    delivery_backoff_s: float = field(default=0.5, metadata=_rule(min=0.0, max=600.0))
    delivery_timeout_s: float = field(default=5.0, metadata=_rule(min=0.1, max=120.0))
    #: Deliveries waiting at most (more are dead letters, counted).
    delivery_queue: int = field(default=1000, metadata=_rule(min=1, max=1_000_000))
    routes: tuple[dict[str, Any], ...] = ()
    rules: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All configuration, one frozen object."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    recorder: RecorderSettings = field(default_factory=RecorderSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    walls: WallsSettings = field(default_factory=WallsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    log_level: str = field(default="info", metadata=_rule(choices=("debug", "info", "warning", "error")))
    log_format: str = field(default="text", metadata=_rule(choices=("text", "json")))

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some keys of one section changed (validated like the file)."""
        current = getattr(self, section)
        updated = dataclasses.replace(current, **changes)
        _validate_section(section, updated)
        return dataclasses.replace(self, **{section: updated})


_SECTIONS: Final = ("redis", "database", "server", "history", "recorder", "auth", "demo", "walls", "alerts")


def find_config_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Load settings: defaults, then the YAML file, then ``SIGNALPUSH_*`` env vars, then overrides.

    The file is ``path``, else ``$SIGNALPUSH_CONFIG``, else ``./config.yaml`` if present.
    """
    environ = os.environ if env is None else env
    raw: dict[str, Any] = {}
    config_path = find_config_file(path, environ)
    if config_path is not None:
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(str(config_path), f"cannot read the config file: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(config_path), f"is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(str(config_path), "must hold a mapping of sections")
        raw = loaded
    top_hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}
    for key in raw:
        if key not in top_hints:
            raise ConfigError(key, f"unknown key; known: {', '.join(top_hints)}")
    for section in _SECTIONS:
        section_raw = raw.get(section) or {}
        if not isinstance(section_raw, dict):
            raise ConfigError(section, "must be a mapping of keys")
        section_overrides = dict((overrides or {}).get(section, {}))
        values[section] = _build_section(section, top_hints[section], section_raw, environ, section_overrides)
    for key in ("log_level", "log_format"):
        env_name = f"{ENV_PREFIX}{key.upper()}"
        if env_name in environ:
            values[key] = _coerce(key, str, environ[env_name], from_env=True)
        elif key in raw:
            values[key] = _coerce(key, str, raw[key], from_env=False)
    settings = Settings(**values)
    for key in ("log_level", "log_format"):
        _check_rules(key, getattr(settings, key), Settings.__dataclass_fields__[key].metadata)
    return settings


def _build_section(
    section: str,
    cls: type[Any],
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> Any:
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in hints:
            raise ConfigError(f"{section}.{key}", f"unknown key; known: {', '.join(hints)}")
    kwargs: dict[str, Any] = {}
    for name, hint in hints.items():
        dotted = f"{section}.{name}"
        env_name = f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
        if name in overrides and overrides[name] is not None:
            kwargs[name] = _coerce(dotted, hint, overrides[name], from_env=False)
        elif env_name in env:
            kwargs[name] = _coerce(dotted, hint, env[env_name], from_env=True)
        elif name in raw:
            kwargs[name] = _coerce(dotted, hint, raw[name], from_env=False)
    try:
        built = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(section, str(exc)) from None
    _validate_section(section, built)
    return built


def _validate_section(section: str, value: Any) -> None:
    for spec in dataclasses.fields(value):
        _check_rules(f"{section}.{spec.name}", getattr(value, spec.name), spec.metadata)


def _check_rules(key: str, value: Any, rules: Mapping[str, Any]) -> None:
    if "min" in rules and value < rules["min"]:
        raise ConfigError(key, f"must be at least {rules['min']}, got {value!r}")
    if "max" in rules and value > rules["max"]:
        raise ConfigError(key, f"must be at most {rules['max']}, got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(key, f"must be one of {', '.join(map(str, rules['choices']))}; got {value!r}")
    if "pattern" in rules and not re.match(rules["pattern"], value):
        raise ConfigError(key, f"{value!r} does not match {rules['pattern']}")


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off", "")


def _coerce(key: str, hint: Any, value: Any, *, from_env: bool) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return _coerce(key, inner[0], value, from_env=from_env)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, f"must be a string, got {value!r}")
    if origin is tuple and args and args[0] is TokenSpec:
        return _coerce_tokens(key, value, from_env=from_env)
    if origin is tuple and args and typing.get_origin(args[0]) is dict:
        return _coerce_mappings(key, value, from_env=from_env)
    if origin is tuple:
        if isinstance(value, str):
            items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        elif value is None:
            items = []
        else:
            raise ConfigError(key, f"must be a list (or a comma-separated string), got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", args[0], item, from_env=from_env) for i, item in enumerate(items))
    raise ConfigError(key, f"unsupported type {hint!r}")  # pragma: no cover - a programming error


def _coerce_tokens(key: str, value: Any, *, from_env: bool) -> tuple[TokenSpec, ...]:
    if from_env and isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ConfigError(key, f"must be a JSON list of tokens: {exc}") from None
    if not isinstance(value, list):
        raise ConfigError(key, "must be a list of {name, token, symbols, expires}")
    tokens = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(where, "must be a mapping with a string 'name'")
        if not isinstance(item.get("token"), str) or len(item["token"]) < 16:
            raise ConfigError(f"{where}.token", "must be a string of at least 16 characters")
        unknown = set(item) - {"name", "token", "symbols", "expires", "admin"}
        if unknown:
            raise ConfigError(
                where, f"unknown keys {sorted(unknown)}; known: name, token, symbols, expires, admin"
            )
        admin = _coerce(f"{where}.admin", bool, item.get("admin", False), from_env=False)
        symbols = _coerce(f"{where}.symbols", tuple[str, ...], item.get("symbols", ["*"]), from_env=False)
        expires = item.get("expires")
        tokens.append(
            TokenSpec(
                name=item["name"],
                token=item["token"],
                symbols=symbols,
                expires=None if expires is None else str(expires),
                admin=admin,
            )
        )
    return tuple(tokens)


def _coerce_mappings(key: str, value: Any, *, from_env: bool) -> tuple[dict[str, Any], ...]:
    """A list of mappings (alert rules, routes), checked in depth where it is used."""
    if from_env and isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ConfigError(key, f"must be a JSON list of mappings: {exc}") from None
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(key, "must be a list of mappings")
    return tuple(dict(item) for item in value)


def default_settings() -> Settings:
    """The built-in defaults, ignoring config files and the environment."""
    return Settings()
