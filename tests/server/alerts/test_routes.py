from __future__ import annotations

from server.alerts.routes import request_for, wants
from server.alerts.rules import Route

ALERT = {
    "kind": "alert",
    "symbol": "BTCUSDT",
    "alert_id": "abc",
    "rule": "dd",
    "state": "firing",
    "severity": "critical",
    "message": "bot a drawdown 5",
    "seq": 3,
}


def test_templates() -> None:
    url, body = request_for(Route(name="h", type="webhook", url="http://h/x"), ALERT)
    assert url == "http://h/x" and body["alert"]["alert_id"] == "abc" and "dd" in body["text"]
    assert set(request_for(Route(name="s", type="webhook", url="http://h", template="slack"), ALERT)[1]) == {
        "text"
    }
    assert (
        "content"
        in request_for(Route(name="d", type="webhook", url="http://h", template="discord"), ALERT)[1]
    )
    url, body = request_for(
        Route(name="t", type="telegram", token="1:x", chat_id="9", base_url="http://s"), ALERT
    )
    assert url == "http://s/bot1:x/sendMessage" and body["chat_id"] == "9" and "CRITICAL" in body["text"]


def test_resolutions_only_when_asked() -> None:
    resolved = {**ALERT, "state": "resolved"}
    assert wants(Route(name="h", type="webhook", url="http://h"), resolved)
    assert not wants(Route(name="h", type="webhook", url="http://h", send_resolved=False), resolved)
    assert not wants(Route(name="h", type="webhook", url="http://h"), {**ALERT, "state": "acked"})
