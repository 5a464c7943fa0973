"""The perf op's frames: parsing (hostile input named) and the frame (no NaN on the wire)."""

from __future__ import annotations

import json

import pytest

from server.core.perfwire import PerfSubscribe, perf_frame
from server.core.protocol import parse_client_frame
from server.errors import ProtocolError


def test_perf_is_parsed_with_its_filter() -> None:
    message = parse_client_frame('{"op": "perf", "ref": 7, "bots": ["b2", "b1"]}')
    assert message == PerfSubscribe(7, ("b1", "b2"), None)
    assert isinstance(message, PerfSubscribe)
    assert message.wants("b1", "any") and not message.wants("b3", "any")


@pytest.mark.parametrize(
    ("frame", "names"),
    [
        ('{"op": "perf", "symbol": "X"}', "symbol"),
        ('{"op": "perf", "bots": [5]}', "bots"),
        ('{"op": "perf", "strategies": {"a": 1}}', "strategies"),
    ],
)
def test_a_bad_perf_names_its_key(frame: str, names: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(frame)
    assert caught.value.code == "bad_request" and names in caught.value.message


def test_a_perf_frame_carries_no_nan() -> None:
    text = perf_frame(
        [{"bot": "b", "sharpe": float("nan"), "rows": [float("inf"), 1.5]}], full=True, now_ms=5, ref="r"
    )
    assert json.loads(text) == {
        "op": "perf",
        "sub": "perf",
        "full": True,
        "time": 5,
        "rows": [{"bot": "b", "sharpe": None, "rows": [None, 1.5]}],
        "ref": "r",
    }
