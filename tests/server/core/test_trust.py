"""The one validation of what is read from Redis (pure): envelopes, events, names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from publishers.events import BotStatus, Candle, InvalidEventError, Signal, Trade, event_from_dict
from server.core.trust import MAX_EVENT_CHARS, REASONS, check_event, parse_envelope, symbol_name

TS = 1_732_560_000_000


def stored(event: Any, seq: int) -> str:
    """The event as the publish script stores it."""
    return '{"seq":' + str(seq) + "," + event.body()


SIGNAL = Signal(symbol="BTC", ts=TS, bot="b", strategy="s", type="buy", price=1.5, confidence=0.5)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"abc123 7 1732560000000 {}", ("abc123", 7, 1732560000000, "{}")),
        ("k3f9 1 5 x y z", ("k3f9", 1, 5, "x y z")),
        (b"garbage", "envelope"),
        (b"\xff\xfe 1 2 {}", "envelope"),
        ("e 0 1 {}", "envelope"),  # seqs start at 1
        ("e -1 1 {}", "envelope"),
        ("e 9007199254740992 1 {}", "envelope"),  # 2**53
        ("e ١ 1 {}", "envelope"),  # a digit, but not ASCII
        ("e 1 1.5 {}", "envelope"),
        ("bad\tepoch 1 1 {}", "envelope"),
        ("e" * 33 + " 1 1 {}", "envelope"),
        ("e 1 1", "envelope"),
    ],
)
def test_parse_envelope(payload: bytes | str, expected: object) -> None:
    assert parse_envelope(payload) == expected


@pytest.mark.parametrize(
    ("text", "seq", "reason"),
    [
        ("x" * (MAX_EVENT_CHARS + 1), 1, "too_large"),
        ("not json", 1, "json"),
        ("[1,2,3]", 1, "json"),
        ('{"seq":1, "kind":"signal"}', 2, "seq"),
        ('{"seq":2,"kind":"signal","seq":3}', 2, "seq"),  # a second key overrides the first
        ('{"seq":2,"kind":"signal"', 2, "json"),
        ('{"seq":2,"kind":"signal"} trailing', 2, "json"),
        ('{"seq":2,"kind":"meteor","symbol":"BTC"}', 2, "kind"),
        ('{"seq":2,"kind":"signal","symbol":"ETH"}', 2, "symbol"),
        ('{"seq":2,"kind":"signal","symbol":"BTC"}', 2, "fields"),
        (stored(SIGNAL, 2).replace("1.5", "NaN"), 2, "json"),
        (stored(SIGNAL, 2).replace("1.5", "Infinity"), 2, "json"),
        (stored(SIGNAL, 2).replace("1.5", "1" + "0" * 400), 2, "fields"),
        (stored(SIGNAL, 2).replace("1.5", "true"), 2, "fields"),
        (stored(SIGNAL, 2).replace(str(TS), str(TS // 1000)), 2, "fields"),  # seconds by mistake
        (stored(SIGNAL, 2).replace(str(TS), f"{TS}.0"), 2, "fields"),  # whole ms only
        (stored(SIGNAL, 2).replace('"b"', '"b\\n"'), 2, "fields"),
        (stored(SIGNAL, 2).replace('"meta":{}', '"meta":[]'), 2, "fields"),
        (stored(SIGNAL, 2).replace('"meta":{}', '"meta":{"a":"%s"}' % ("ü" * 700)), 2, "fields"),
        ("[" * 5000 + "]" * 5000, 2, "json"),
        ('{"seq":2,' + '"a":' * 3000 + "1" + "}" * 3001, 2, "json"),
    ],
)
def test_check_event_names_the_reason(text: str, seq: int, reason: str) -> None:
    assert reason in REASONS
    assert check_event(text, seq, "BTC") == reason


def test_names_and_timeframes_with_a_trailing_newline_are_refused_by_publishers_too() -> None:
    # The patterns end in $, which matches before a final newline: both sides use a full match.
    with pytest.raises(InvalidEventError):
        Signal(symbol="BTC", ts=TS, bot="b\n", strategy="s", type="buy", price=1, confidence=1)
    with pytest.raises(InvalidEventError):
        Candle(symbol="BTC", ts=TS, tf="1m\n", open=1, high=1, low=1, close=1, volume=1)


def test_check_event_returns_the_event() -> None:
    assert check_event(stored(SIGNAL, 9), 9, "BTC") == SIGNAL.to_dict(9)
    big = Signal(symbol="BTC", ts=TS, bot="b", strategy="s", type="buy", price=1, confidence=0,
                 meta={"a": "ü" * 670})  # fmt: skip
    assert isinstance(check_event(stored(big, 1), 1, "BTC"), dict)  # 4,034 bytes encoded: fits


names = st.text(min_size=1, max_size=64).filter(lambda s: s.strip() != "")
numbers = st.floats(min_value=0.01, max_value=1e9, allow_nan=False)


@st.composite
def published(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["signal", "trade", "candle", "bot"]))
    common = {"symbol": "BTC", "ts": draw(st.integers(946_684_800_000, 4_102_444_799_999))}
    meta = draw(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3))
    try:
        if kind == "signal":
            return Signal(**common, bot=draw(names), strategy=draw(names), type="hold", price=draw(numbers),
                          confidence=draw(st.floats(0, 1)), meta=meta)  # fmt: skip
        if kind == "trade":
            return Trade(**common, bot=draw(names), strategy=draw(names), side="sell", action="exit",
                         price=draw(numbers), qty=draw(numbers), position=draw(names),
                         pnl=draw(st.none() | numbers), meta=meta)  # fmt: skip
        if kind == "candle":
            low, high = sorted((draw(numbers), draw(numbers)))
            return Candle(**common, tf="5m", open=low, high=high, low=low, close=high, volume=draw(numbers))
        return BotStatus(**common, bot=draw(names), strategy=draw(names), status="paused",
                         equity=draw(st.none() | numbers), meta=meta)  # fmt: skip
    except InvalidEventError:
        return None  # a name the publisher refuses (e.g. a trailing newline): not publishable


@settings(max_examples=300, deadline=None)
@example(
    event=Signal(symbol="BTC", ts=TS, bot="b\u00a0é", strategy="s ", type="buy", price=1, confidence=1), seq=1
)
@given(event=published(), seq=st.integers(1, 2**53 - 1))
def test_every_event_a_publisher_can_publish_passes(event: Any, seq: int) -> None:
    if event is not None:
        assert check_event(stored(event, seq), seq, "BTC") == json.loads(stored(event, seq))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(event=published(), changes=st.dictionaries(st.sampled_from(
    ["kind", "symbol", "ts", "bot", "strategy", "type", "price", "confidence", "side", "action", "qty",
     "position", "fee", "pnl", "tf", "open", "high", "low", "close", "volume", "status", "equity", "meta"]),
    JSON_VALUES, max_size=3), drop=st.sampled_from([None, "price", "ts", "bot", "meta", "pnl"]))  # fmt: skip
def test_what_check_event_accepts_the_publishers_validation_accepts(
    event: Any, changes: dict[str, Any], drop: str | None
) -> None:
    """Soundness: an accepted event has every field the SQL tables and history need, valid."""
    if event is None:
        return
    fields = {**event.to_dict(5), **changes}
    fields.pop(drop or "", None)
    checked = check_event(json.dumps(fields, separators=(",", ":")), 5, "BTC")
    if isinstance(checked, dict):
        event_from_dict(checked)  # raises if check_event let through something invalid


@pytest.mark.parametrize(
    ("raw", "name"),
    [(b"BTCUSDT", "BTCUSDT"), ("ETH/USD:1", "ETH/USD:1"), (b"\xff\xfeBAD", None), (b"BTCUSDT\n", None),
     ("a b", None), ("x" * 33, None), ("", None), ('x"}', None)],
)  # fmt: skip
def test_symbol_name_is_strict(raw: bytes | str, name: str | None) -> None:
    assert symbol_name(raw) == name


def test_check_run_sorts_keeps_valid_events_and_drops_clashes() -> None:
    from server.core.trust import check_run

    def live(seq: int, text: str) -> tuple[str, int, int, str]:
        return ("E", seq, 0, text)

    one, two, three = (stored(SIGNAL, seq) for seq in (1, 2, 3))
    other_two = stored(
        Signal(symbol="BTC", ts=TS, bot="x", strategy="s", type="buy", price=1, confidence=0), 2
    )
    run = [live(3, three), live(1, one), live(2, two), live(2, other_two), live(4, "junk"), live(1, one)]
    checked = check_run("BTC", run)
    assert checked.pending == [(1, one), (3, three)], "sorted; an identical repeat is kept once"
    assert checked.events is not None and sorted(checked.events) == [1, 2, 3]
    assert sorted(checked.rejected) == [("diverged", 2), ("diverged", 2), ("json", 4)]
    assert checked.tail == 4
    unchecked = check_run("BTC", [live(2, "junk"), live(1, one)], decode=False)
    assert unchecked.pending == [(1, one), (2, "junk")] and unchecked.events is None
