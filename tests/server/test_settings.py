from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from publishers.errors import ConfigError
from server.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_config_yaml_holds_exactly_the_built_in_defaults() -> None:
    assert load_settings(REPO / "config.yaml", env={}) == Settings()


def test_defaults_use_the_embedded_redis_and_sqlite_under_data() -> None:
    settings = load_settings(env={})
    assert settings.redis.is_embedded
    assert settings.redis.effective_url == "redis://127.0.0.1:6399/0"
    assert settings.database.url == "sqlite+aiosqlite:///./data/signalpush.db"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8765)


def test_environment_overrides_every_section(tmp_path: Path) -> None:
    env = {
        "SIGNALPUSH_REDIS_URL": "redis://127.0.0.1:6379/2",
        "SIGNALPUSH_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/test",
        "SIGNALPUSH_SERVER_PORT": "9000",
        "SIGNALPUSH_SERVER_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "SIGNALPUSH_SERVER_COMPRESSION": "yes",
        "SIGNALPUSH_HISTORY_MAX_POINTS": "500",
        "SIGNALPUSH_LOG_LEVEL": "debug",
    }
    settings = load_settings(env=env)
    assert settings.redis.effective_url == "redis://127.0.0.1:6379/2"
    assert not settings.redis.is_embedded
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.server.port == 9000
    assert settings.server.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.server.compression is True
    assert settings.history.max_points == 500
    assert settings.log_level == "debug"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"server": {"port": 1111, "host": "0.0.0.0"}}))
    assert load_settings(path, env={}).server.port == 1111
    assert load_settings(path, env={"SIGNALPUSH_SERVER_PORT": "2222"}).server.port == 2222
    overridden = load_settings(
        path, env={"SIGNALPUSH_SERVER_PORT": "2222"}, overrides={"server": {"port": 3333}}
    )
    assert overridden.server.port == 3333
    assert overridden.server.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("content", "env", "key", "hint"),
    [
        ({"server": {"port": 70000}}, {}, "server.port", "at most 65535"),
        ({"server": {"port": "eighty"}}, {}, "server.port", "whole number"),
        ({}, {"SIGNALPUSH_SERVER_PORT": "x"}, "server.port", "whole number"),
        ({"server": {"prot": 1}}, {}, "server.prot", "unknown key"),
        ({"serverr": {}}, {}, "serverr", "unknown key"),
        ({"redis": {"url": "http://x"}}, {}, "redis.url", "does not match"),
        ({"redis": {"embedded_host": "0.0.0.0"}}, {}, "redis.embedded_host", "one of"),
        ({"database": {"url": "mysql://x"}}, {}, "database.url", "does not match"),
        ({"server": {"compression": "maybe"}}, {}, "server.compression", "true or false"),
        ({"history": {"max_points": 1}}, {}, "history.max_points", "at least 10"),
        ({"log_level": "loud"}, {}, "log_level", "one of"),
        ({"auth": {"tokens": [{"name": "w", "token": "short"}]}}, {}, "auth.tokens[0].token", "16"),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_allowed(
    tmp_path: Path, content: dict[str, object], env: dict[str, str], key: str, hint: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    assert caught.value.key == key
    assert hint in str(caught.value)
    assert str(caught.value).startswith(f"config {key}:")


def test_reprs_never_show_passwords() -> None:
    settings = load_settings(
        env={
            "SIGNALPUSH_REDIS_URL": "redis://gw:s3cret@127.0.0.1:6379/0",
            "SIGNALPUSH_AUTH_JWT_SECRET": "topsecret",
        }
    )
    text = repr(settings)
    assert "s3cret" not in text
    assert "topsecret" not in text
    assert "gw:***@127.0.0.1" in text


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]
    assert settings.replace("server", port=1).server.port == 1
    with pytest.raises(ConfigError, match="server.port"):
        settings.replace("server", port=-5)


def test_the_walls_section_and_admin_tokens() -> None:
    settings = load_settings(
        env={
            "SIGNALPUSH_WALLS_STALE_S": "5",
            "SIGNALPUSH_AUTH_TOKENS": '[{"name": "ops", "token": "a-token-of-16-chars", "admin": true}]',
        }
    )
    assert settings.walls.stale_s == 5.0 and settings.auth.tokens[0].admin is True
    with pytest.raises(ConfigError, match="walls.dead_s"):
        load_settings(env={"SIGNALPUSH_WALLS_DEAD_S": "0"})
    with pytest.raises(ConfigError, match=r"auth.tokens\[0\].admin"):
        load_settings(
            env={
                "SIGNALPUSH_AUTH_TOKENS": '[{"name": "x", "token": "a-token-of-16-chars", "admin": "maybe"}]'
            }
        )
