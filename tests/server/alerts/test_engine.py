"""The pure evaluator: every condition, the window, dedupe, cooldown, resolution and checkpoints."""

from __future__ import annotations

import json
from typing import Any

from server.alerts.decisions import Decision
from server.alerts.engine import Engine
from server.alerts.rules import parse_alerts

T0 = 1_760_000_000_000
_seq = iter(range(1, 10**9))


def engine(condition: dict[str, Any], **rule: Any) -> Engine:
    return Engine(parse_alerts([{"name": "r", "condition": condition, **rule}]))


def bot(
    name: str = "a", status: str = "active", equity: float | None = None, symbol: str = "BTC"
) -> dict[str, Any]:
    return {
        "kind": "bot",
        "seq": next(_seq),
        "symbol": symbol,
        "bot": name,
        "strategy": "s",
        "status": status,
        "equity": equity,
    }


def trade(pnl: float | None, name: str = "a", action: str = "exit") -> dict[str, Any]:
    return {
        "kind": "trade",
        "seq": next(_seq),
        "symbol": "BTC",
        "bot": name,
        "strategy": "s",
        "side": "sell",
        "action": action,
        "price": 1.0,
        "qty": 1.0,
        "position": "p",
        "pnl": pnl,
    }


def signal(confidence: float, type_: str = "buy", name: str = "a") -> dict[str, Any]:
    return {
        "kind": "signal",
        "seq": next(_seq),
        "symbol": "BTC",
        "bot": name,
        "strategy": "s",
        "type": type_,
        "price": 1.0,
        "confidence": confidence,
    }


def candle(symbol: str = "BTC") -> dict[str, Any]:
    return {"kind": "candle", "seq": next(_seq), "symbol": symbol, "tf": "1m"}


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


def test_silent_fires_once_after_n_seconds_and_resolves_on_the_next_event() -> None:
    e = engine({"type": "silent", "seconds": 30}, cooldown_s=0)
    assert e.observe(bot(), T0) == []
    assert e.tick(T0 + 29_000) == []
    fired = e.tick(T0 + 30_000)
    assert actions(fired) == ["fire"] and fired[0].scope == "a" and fired[0].symbol == "BTC"
    assert e.tick(T0 + 60_000) == []  # dedupe: still the same incident
    resolved = e.observe(trade(None, action="entry"), T0 + 61_000)
    assert actions(resolved) == ["resolve"] and resolved[0].alert_id == fired[0].alert_id
    assert resolved[0].message.startswith("recovered")


def test_silent_respects_scope() -> None:
    e = engine({"type": "silent", "seconds": 1}, scope={"bots": ["b*"]})
    e.observe(bot("a"), T0)
    e.observe(bot("b1"), T0)
    assert [d.scope for d in e.tick(T0 + 5_000)] == ["b1"]


def test_status_in_a_set() -> None:
    e = engine({"type": "status", "in": ["error", "stopped"]}, cooldown_s=0)
    assert e.observe(bot(status="active"), T0) == []
    assert actions(e.observe(bot(status="error"), T0 + 1)) == ["fire"]
    assert e.observe(bot(status="stopped"), T0 + 2) == []
    assert actions(e.observe(bot(status="active"), T0 + 3)) == ["resolve"]


def test_equity_drawdown_abs_and_pct() -> None:
    e = engine({"type": "drawdown", "pct": 5}, cooldown_s=0)
    assert e.observe(bot(equity=1000), T0) == []
    assert e.observe(bot(equity=960), T0 + 1) == []
    fired = e.observe(bot(equity=940), T0 + 2)
    assert actions(fired) == ["fire"] and fired[0].value == 60
    assert actions(e.observe(bot(equity=990), T0 + 3)) == ["resolve"]
    e = engine({"type": "drawdown", "abs": 50})
    e.observe(bot(equity=100), T0)
    assert actions(e.observe(bot(equity=49), T0 + 1)) == ["fire"]


def test_pnl_drawdown() -> None:
    e = engine({"type": "drawdown", "of": "pnl", "abs": 10})
    e.observe(trade(20), T0)
    assert e.observe(trade(-5), T0 + 1) == []
    assert actions(e.observe(trade(-6), T0 + 2)) == ["fire"]


def test_loss_streak_and_its_recovery() -> None:
    e = engine({"type": "loss_streak", "count": 3}, cooldown_s=0)
    for i in range(2):
        assert e.observe(trade(-1), T0 + i) == []
    assert e.observe(trade(None, action="entry"), T0 + 2) == []  # entries do not count
    fired = e.observe(trade(-1), T0 + 3)
    assert actions(fired) == ["fire"] and fired[0].value == 3
    assert e.observe(trade(-1), T0 + 4) == []
    assert actions(e.observe(trade(2), T0 + 5)) == ["resolve"]


def test_signal_confidence_with_types_and_cooldown() -> None:
    e = engine({"type": "signal", "min_confidence": 0.9, "types": ["buy"]}, cooldown_s=60)
    assert e.observe(signal(0.95, "sell"), T0) == []
    assert e.observe(signal(0.5), T0) == []
    first = e.observe(signal(0.95), T0)
    assert actions(first) == ["fire"] and first[0].scope == "BTC/a"
    assert e.observe(signal(0.99), T0 + 59_000) == []  # cooling down
    second = e.observe(signal(0.99), T0 + 60_000)
    assert actions(second) == ["fire"] and second[0].alert_id != first[0].alert_id


def test_no_candle() -> None:
    e = engine({"type": "no_candle", "seconds": 60}, scope={"symbols": ["BTC"]}, cooldown_s=0)
    e.observe(candle("BTC"), T0)
    e.observe(candle("ETH"), T0)
    fired = e.tick(T0 + 60_000)
    assert [(d.action, d.scope) for d in fired] == [("fire", "BTC")]
    assert actions(e.observe(candle("BTC"), T0 + 61_000)) == ["resolve"]


def test_bus_down() -> None:
    e = engine({"type": "bus_down", "seconds": 10})
    e.observe_bus("gw-1", False, T0, T0)
    assert e.tick(T0 + 9_999) == []
    fired = e.tick(T0 + 10_000)
    assert actions(fired) == ["fire"] and fired[0].symbol == "_alerts"
    assert actions(e.observe_bus("gw-1", True, T0 + 11_000, T0 + 11_000)) == ["resolve"]


def test_window_for_s_and_a_flap_inside_it() -> None:
    e = engine({"type": "status", "in": ["error"]}, for_s=10)
    assert e.observe(bot(status="error"), T0) == []
    assert e.tick(T0 + 5_000) == []
    assert e.observe(bot(status="active"), T0 + 6_000) == []  # recovered inside the window: nothing
    assert e.tick(T0 + 20_000) == []
    e.observe(bot(status="error"), T0 + 21_000)
    assert actions(e.tick(T0 + 31_000)) == ["fire"]


def test_cooldown_after_resolution_delays_the_next_fire() -> None:
    e = engine({"type": "status", "in": ["error"]}, cooldown_s=100)
    e.observe(bot(status="error"), T0)
    e.observe(bot(status="active"), T0 + 1_000)
    assert e.observe(bot(status="error"), T0 + 2_000) == []
    assert e.tick(T0 + 50_000) == []
    assert actions(e.tick(T0 + 101_000)) == ["fire"]


def test_quiet_hours_mark_the_decision() -> None:
    e = engine({"type": "status", "in": ["error"]}, quiet_hours="00:00-23:59")
    assert e.observe(bot(status="error"), T0)[0].quiet


def test_the_same_events_make_the_same_ids_and_a_checkpoint_round_trips() -> None:
    events = [bot(status="active", equity=100), bot(status="error", equity=50)]
    ids = []
    for _ in range(2):
        e = engine({"type": "status", "in": ["error"]})
        ids.append([d.alert_id for ev in events for d in e.observe(ev, T0 + 5)])
    assert ids[0] == ids[1] and len(ids[0]) == 1
    restored = engine({"type": "status", "in": ["error"]})
    assert restored.restore(json.loads(json.dumps(e.state())))
    assert list(restored.active()) == list(e.active())
    assert actions(restored.observe(bot(status="active"), T0 + 6)) == ["resolve"]


def test_a_bad_checkpoint_is_refused() -> None:
    e = engine({"type": "silent", "seconds": 1})
    for bad in (
        None,
        [],
        {"v": 99},
        {"v": 1, "bots": [], "candles": {}, "bus": {}, "incidents": {}},
        {"v": 1, "bots": {"a": {"seen": "x"}}, "candles": {}, "bus": {}, "incidents": {}},
    ):
        assert not e.restore(bad)


def test_alerts_and_unknown_kinds_are_not_inputs() -> None:
    e = engine({"type": "silent", "seconds": 1})
    assert e.observe({"kind": "alert", "symbol": "BTC", "seq": 1}, T0) == []
    assert e.observe({"kind": "zzz"}, T0) == []
    assert e.bots == {}
