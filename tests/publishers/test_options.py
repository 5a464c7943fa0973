"""A publisher's options: explicit, else $SIGNALPUSH_REDIS_URL, else the embedded default;
a config file only when asked (from_config)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from publishers import ConfigError, Publisher, PublisherOptions, SyncPublisher, keys
from publishers.options import DEFAULT_URL, REDIS_SECTION
from server.settings import RedisSettings, load_settings

SERVER_CONFIG = """\
server: {port: 9999, allowed_origins: [https://wall.example]}
auth: {enabled: true, jwt_secret: not-a-bot-s-business}
redis: {url: "redis://:s3cret@127.0.0.1:6390/2", publish_retry_attempts: 7, log_maxlen: 5000}
"""


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter in ``cwd`` (the project on its path); its stdout."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALPUSH_")}
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_defaults_environment_and_explicit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALPUSH_REDIS_URL", raising=False)
    assert PublisherOptions().url == DEFAULT_URL == "redis://127.0.0.1:6399/0"
    monkeypatch.setenv("SIGNALPUSH_REDIS_URL", "redis://127.0.0.1:6380/3")
    assert PublisherOptions().url == "redis://127.0.0.1:6380/3"
    assert Publisher().url == SyncPublisher().url == "redis://127.0.0.1:6380/3"
    assert Publisher("redis://127.0.0.1:1/0").url == "redis://127.0.0.1:1/0"
    given = PublisherOptions(url="redis://127.0.0.1:2/0", retry_attempts=1)
    assert Publisher(options=given).options == given
    # Arguments given to the publisher override its options.
    chosen = Publisher("redis://127.0.0.1:3/0", options=given, retry_timeout_s=2.5).options
    assert (chosen.url, chosen.retry_attempts, chosen.retry_timeout_s) == ("redis://127.0.0.1:3/0", 1, 2.5)


def test_options_are_frozen_keyword_only_checked_and_hide_the_password() -> None:
    options = PublisherOptions(url="redis://user:hunter2@127.0.0.1:6390/0", retry_timeout_s=3)
    assert repr(options) == (
        "PublisherOptions(url='redis://user:***@127.0.0.1:6390/0', retry_attempts=5, "
        "retry_timeout_s=3, socket_timeout_s=5, log_maxlen=1000000)"
    )
    assert "hunter2" not in repr(Publisher(options=options)) + repr(SyncPublisher(options=options))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.url = "redis://x:1/0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        PublisherOptions("redis://127.0.0.1:1/0")  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"^config retry_attempts: must be at least 0"):
        PublisherOptions(retry_attempts=-1)
    assert PublisherOptions(retry_attempts=10_000).retry_attempts == 10_000  # a bench's "forever"
    with pytest.raises(ConfigError, match=r"^config url: 'http://x' is not a redis"):
        PublisherOptions(url="http://x")


def test_from_config_reads_only_the_redis_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALPUSH_REDIS_URL", raising=False)
    path = tmp_path / "server.yaml"
    path.write_text(SERVER_CONFIG + "something_else: {any: thing}\n")
    options = PublisherOptions.from_config(path)
    assert options == PublisherOptions(
        url="redis://:s3cret@127.0.0.1:6390/2", retry_attempts=7, log_maxlen=5000
    )
    assert Publisher.from_config(path, bot="b").options == options
    assert SyncPublisher.from_config(path, strategy="s").options == options
    # An empty url is the embedded server of that config; the environment goes over the file.
    path.write_text("redis: {url: '', embedded_port: 6401}\n")
    assert PublisherOptions.from_config(path).url == "redis://127.0.0.1:6401/0"
    monkeypatch.setenv("SIGNALPUSH_REDIS_URL", "redis://127.0.0.1:6402/0")
    monkeypatch.setenv("SIGNALPUSH_REDIS_PUBLISH_RETRY_TIMEOUT_S", "1.5")
    assert PublisherOptions.from_config(path) == PublisherOptions(
        url="redis://127.0.0.1:6402/0", retry_timeout_s=1.5
    )


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("redis: {log_maxlen: 10}", "redis.log_maxlen", "must be at least 100"),
        ("redis: {publish_retry_attempts: lots}", "redis.publish_retry_attempts", "must be a whole number"),
        ("redis: {socket_timeout_s: true}", "redis.socket_timeout_s", "must be a number"),
        ("redis: {url: 'http://nope'}", "redis.url", "is not a redis"),
        ("redis: {embedded_host: 10.0.0.1}", "redis.embedded_host", "must be one of"),
        ("redis: {ur: 'redis://x:1/0'}", "redis.ur", "unknown key; known: url, "),
        ("redis: [1, 2]", "redis", "must be a mapping"),
        ("[1, 2]", "@", "must hold a mapping of sections"),
        ("redis: {url: [", "@", "is not valid YAML"),
    ],
)
def test_from_config_errors_name_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    key = str(path) if key == "@" else key
    with pytest.raises(ConfigError, match=message) as caught:
        PublisherOptions.from_config(path)
    assert caught.value.key == key
    with pytest.raises(ConfigError):
        PublisherOptions.from_config(tmp_path / "missing.yaml")


def test_the_redis_section_is_read_as_the_server_reads_it(tmp_path: Path) -> None:
    server_fields = {f.name: f for f in dataclasses.fields(RedisSettings)}
    assert list(REDIS_SECTION) == list(server_fields)
    for name, (kind, default, low, high) in REDIS_SECTION.items():
        spec = server_fields[name]
        assert (spec.type, spec.default) == (kind.__name__, default), name
        assert (spec.metadata.get("min"), spec.metadata.get("max")) == (low, high), name
    path = tmp_path / "config.yaml"
    for text in (SERVER_CONFIG, "redis: {embedded_port: 6500, socket_timeout_s: 0.5}\n", ""):
        path.write_text(text)
        settings = load_settings(path, env={})
        assert PublisherOptions.from_config(path, env={}) == settings.redis.publisher_options()
    for bad in ("redis: {log_maxlen: 10}", "redis: {publish_retry_timeout_s: -1}", "redis: {nope: 1}"):
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError) as by_server:
            load_settings(path, env={})
        with pytest.raises(ConfigError) as by_publisher:
            PublisherOptions.from_config(path, env={})
        assert by_server.value.key == by_publisher.value.key


def test_a_bot_in_a_folder_with_an_unrelated_config_yaml_publishes(
    tmp_path: Path, redis_url: str, symbol: str
) -> None:
    # Somebody else's config.yaml: every key unknown to signalpush, and a redis address that
    # does not exist. The bot never looks at it.
    (tmp_path / "config.yaml").write_text("database: [not, ours]\nredis: {url: 'redis://10.255.255.1:1/0'}\n")
    out = run_python(
        f"""
        import sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
        from publishers import Publisher, SyncPublisher
        with SyncPublisher(bot="b", strategy="s") as pub:
            print(pub.url, pub.signal({symbol!r}, "buy", price=1.0, confidence=0.5))
        import asyncio
        async def main():
            async with Publisher(bot="b", strategy="s") as pub:
                return await pub.signal({symbol!r}, "sell", price=1.0, confidence=0.5)
        print(asyncio.run(main()))
        print([name for name in opened if name.endswith((".yaml", ".yml"))])
        """,
        tmp_path,
        env={"SIGNALPUSH_REDIS_URL": redis_url, "SIGNALPUSH_CONFIG": str(tmp_path / "config.yaml")},
    )
    assert out.split("\n")[:3] == [f"{redis_url} 1", "2", "[]"]
    client = redis.Redis.from_url(redis_url)
    assert client.hget(keys.meta_key(symbol), keys.META_SEQ) == b"2"
    client.close()


def test_publishers_import_nothing_from_the_server(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys
        import publishers, publishers.transport, publishers.backoff
        from publishers import Publisher, SyncPublisher
        Publisher(bot="b", strategy="s"); SyncPublisher().close()
        print(sorted(m for m in ("yaml", "pandas", "sqlalchemy") if m in sys.modules))
        import publishers.frames  # publish_frame's (pandas)
        print(sorted(m for m in sys.modules if m == "server" or m.startswith("server.")))
        """,
        tmp_path,
    )
    assert out.split("\n")[:2] == ["[]", "[]"]
