from __future__ import annotations

from typing import Any

import pytest

from publishers.errors import ConfigError
from server.alerts.rules import parse_alerts


def _rule(**more: Any) -> dict[str, Any]:
    return {"name": "r1", "condition": {"type": "silent", "seconds": 30}, **more}


def test_a_full_config_parses() -> None:
    config = parse_alerts(
        [
            _rule(
                scope={"bots": ["alpha*"], "symbols": "BTC*"},
                severity="critical",
                routes=["hook", "wall"],
                quiet_hours="22:00-07:30",
                for_s=5,
                cooldown_s=60,
            ),
            {"name": "dd", "condition": {"type": "drawdown", "of": "pnl", "abs": 100}},
            {"name": "sig", "condition": {"type": "signal", "min_confidence": 0.9, "types": ["buy"]}},
            {"name": "st", "condition": {"type": "status", "in": ["error"]}},
            {"name": "ls", "condition": {"type": "loss_streak", "count": 3}},
            {"name": "nc", "condition": {"type": "no_candle", "seconds": 120}},
            {"name": "bus", "condition": {"type": "bus_down", "seconds": 10}},
        ],
        [
            {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/x", "template": "slack"},
            {"name": "tg", "type": "telegram", "token": "123:abc", "chat_id": 42},
        ],
    )
    rule = config.rule("r1")
    assert rule.scope.admits("BTCUSDT", "alpha-1", "s") and not rule.scope.admits("ETHUSDT", "alpha-1", "s")
    assert rule.quiet_hours == (22 * 60, 7 * 60 + 30)
    assert rule.is_quiet(23 * 3_600_000) and not rule.is_quiet(12 * 3_600_000)
    assert config.route("tg") is not None and config.route("tg").chat_id == "42"  # type: ignore[union-attr]
    assert config.rule("sig").condition.instant


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        (_rule(condition={"type": "nope"}), "alerts.rules[r1].condition.type"),
        (_rule(condition={"type": "silent"}), "alerts.rules[r1].condition.seconds"),
        (_rule(condition={"type": "drawdown", "abs": 1, "pct": 2}), "alerts.rules[r1].condition.abs"),
        (_rule(condition={"type": "status", "in": ["sleepy"]}), "alerts.rules[r1].condition.in"),
        (
            _rule(condition={"type": "signal", "min_confidence": 2}),
            "alerts.rules[r1].condition.min_confidence",
        ),
        (_rule(severity="loud"), "alerts.rules[r1].severity"),
        (_rule(routes=["nowhere"]), "alerts.rules[r1].routes"),
        (_rule(quiet_hours="25:00-01:00"), "alerts.rules[r1].quiet_hours"),
        (_rule(colour="red"), "alerts.rules[r1].colour"),
        (_rule(scope={"bots": [""]}), "alerts.rules[r1].scope.bots"),
        ({"name": "bad name!"}, "alerts.rules[0].name"),
    ],
)
def test_errors_name_the_rule_and_the_key(rule: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_alerts([rule])
    assert caught.value.key == key


def test_duplicate_rule_names_and_bad_routes_are_refused() -> None:
    with pytest.raises(ConfigError, match="another rule"):
        parse_alerts([_rule(), _rule()])
    with pytest.raises(ConfigError) as caught:
        parse_alerts([], [{"name": "h", "type": "webhook", "url": "ftp://x"}])
    assert caught.value.key == "alerts.routes[h].url"
    with pytest.raises(ConfigError, match="taken"):
        parse_alerts([], [{"name": "wall", "type": "webhook", "url": "http://x"}])
