"""The socket-free core: groups, filters, encode-once, member states, holes and epochs."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from publishers.events import Signal, Trade
from server.core.fanout import EpochChanged, Fanout, Hole, Member, MemberState, Outgoing
from server.core.filters import EVERYTHING, EventFilter, parse_filter

TS = 1_732_560_000_000


def signal(
    seq: int, *, bot: str = "b1", strategy: str = "s1", type: str = "buy", confidence: float = 0.5
) -> str:
    event = Signal(
        symbol="SYM", ts=TS + seq, bot=bot, strategy=strategy, type=type, price=1.0, confidence=confidence
    )
    return json.dumps(event.to_dict(seq), separators=(",", ":"))


def candle(seq: int, ts: int, close: float) -> str:
    return json.dumps(
        {
            "seq": seq,
            "kind": "candle",
            "symbol": "SYM",
            "ts": ts,
            "tf": "1m",
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": close,
            "volume": 1.0,
        }
    )


class Recorder:
    """Plays the I/O layer: applies Outgoing to per-connection frame lists."""

    def __init__(self) -> None:
        self.frames: dict[Any, list[dict[str, Any]]] = {}

    def apply(self, out: Outgoing, fanout: Fanout) -> None:
        for batch in out.broadcasts:
            recipients = batch.group.live if batch.recipients is None else batch.recipients & batch.group.live
            for conn in recipients:
                self.frames.setdefault(conn, []).append(json.loads(batch.text))
        for send in out.sends:
            self.frames.setdefault(send.member.conn, []).append(json.loads(send.text))


def live_member(fanout: Fanout, conn: str, flt: EventFilter = EVERYTHING, position: int = 0) -> Member:
    member, _ = fanout.join(conn, "SYM", flt)
    fanout.prime("SYM", "E", 0)
    out = fanout.finish_loading(member, position, member.generation)
    assert out is not None
    return member


def test_a_batch_is_encoded_once_per_group_whatever_the_members() -> None:
    fanout = Fanout()
    for i in range(500):
        live_member(fanout, f"c{i}")
    live_member(fanout, "only-sells", parse_filter({"signal_types": ["sell"]}))
    out = fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0)
    assert fanout.frames_encoded == 1  # the sells group had nothing: no frame
    assert len(out.broadcasts) == 1 and len(out.broadcasts[0].group.live) == 500
    frame = json.loads(out.broadcasts[0].text)
    assert (frame["from_seq"], frame["to_seq"], [e["seq"] for e in frame["items"]]) == (1, 2, [1, 2])


def test_frames_carry_the_stored_json_verbatim() -> None:
    fanout = Fanout()
    live_member(fanout, "c")
    raw = signal(1)
    out = fanout.ingest("SYM", "E", [(1, raw)], now=0.0)
    assert out.broadcasts[0].text.endswith(f'"items":[{raw}]}}')


def test_candles_with_the_same_ts_collapse_in_a_batch_but_signals_never() -> None:
    fanout = Fanout()
    live_member(fanout, "c")
    batch = [
        (1, candle(1, TS, 1.0)),
        (2, signal(2)),
        (3, candle(3, TS, 1.5)),
        (4, signal(4)),
        (5, candle(5, TS + 60_000, 2.0)),
    ]
    out = fanout.ingest("SYM", "E", batch, now=0.0)
    frame = json.loads(out.broadcasts[0].text)
    assert [e["seq"] for e in frame["items"]] == [2, 3, 4, 5]
    assert (frame["from_seq"], frame["to_seq"]) == (1, 5)


def test_check_reports_holes_duplicates_and_epoch_changes() -> None:
    fanout = Fanout()
    live_member(fanout, "c")
    fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0)
    assert fanout.check("SYM", "E", [(2, signal(2)), (3, signal(3))]) == [(3, signal(3))]
    assert fanout.check("SYM", "E", [(5, signal(5))]) == Hole(3, 4)
    assert fanout.check("SYM", "E", [(3, signal(3)), (5, signal(5))]) == Hole(4, 4)
    assert fanout.check("SYM", "F", [(1, signal(1))]) == EpochChanged("F")


def test_a_quiet_group_gets_an_empty_frame_at_most_once_per_heartbeat() -> None:
    fanout = Fanout()
    recorder = Recorder()
    live_member(fanout, "sells", parse_filter({"signal_types": ["sell"]}))
    recorder.apply(fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0), fanout)
    assert recorder.frames == {}
    recorder.apply(fanout.idle_frames(now=5.0, heartbeat_s=20.0), fanout)
    assert recorder.frames == {}
    recorder.apply(fanout.idle_frames(now=21.0, heartbeat_s=20.0), fanout)
    assert recorder.frames["sells"] == [
        {"op": "events", "sub": "g1", "symbol": "SYM", "epoch": "E", "from_seq": 1, "to_seq": 2, "items": []}
    ]
    recorder.apply(fanout.idle_frames(now=50.0, heartbeat_s=20.0), fanout)
    assert len(recorder.frames["sells"]) == 1, "nothing new: no frame"


def test_a_loading_member_gets_its_kept_batches_trimmed_after_its_backfill() -> None:
    fanout = Fanout()
    recorder = Recorder()
    live_member(fanout, "old")
    recorder.apply(fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0), fanout)
    newcomer, _ = fanout.join("new", "SYM", EVERYTHING)
    assert newcomer.state is MemberState.LOADING and newcomer.position == 2
    recorder.apply(fanout.ingest("SYM", "E", [(3, signal(3)), (4, signal(4))], now=0.0), fanout)
    recorder.apply(fanout.ingest("SYM", "E", [(5, signal(5))], now=0.0), fanout)
    assert "new" not in recorder.frames
    # its history covered up to seq 3 (read after it joined): it must get 4 and 5, once each
    out = fanout.finish_loading(newcomer, 3, newcomer.generation)
    assert out is not None
    recorder.apply(out, fanout)
    assert newcomer.state is MemberState.LIVE
    frames = recorder.frames["new"]
    assert [(f["from_seq"], f["to_seq"], [e["seq"] for e in f["items"]]) for f in frames] == [
        (4, 4, [4]),
        (5, 5, [5]),
    ]
    recorder.apply(fanout.ingest("SYM", "E", [(6, signal(6))], now=0.0), fanout)
    assert recorder.frames["new"][-1]["items"][0]["seq"] == 6


def test_a_member_whose_backfill_is_ahead_of_the_live_path_waits_for_it() -> None:
    fanout = Fanout()
    recorder = Recorder()
    member, _ = fanout.join("c", "SYM", EVERYTHING)
    fanout.prime("SYM", "E", 0)
    out = fanout.finish_loading(member, 3, member.generation)  # history read saw seqs 1..3 already
    assert out is not None and member.state is MemberState.WAITING
    recorder.apply(fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0), fanout)
    assert "c" not in recorder.frames
    recorder.apply(fanout.ingest("SYM", "E", [(3, signal(3)), (4, signal(4))], now=0.0), fanout)
    assert member.state is MemberState.LIVE
    assert [e["seq"] for f in recorder.frames["c"] for e in f["items"]] == [4]


def test_an_overflowing_buffer_makes_the_member_load_again() -> None:
    fanout = Fanout(max_buffered_batches=2)
    member, _ = fanout.join("c", "SYM", EVERYTHING)
    fanout.prime("SYM", "E", 0)
    for seq in range(1, 5):
        fanout.ingest("SYM", "E", [(seq, signal(seq))], now=0.0)
    assert fanout.finish_loading(member, 1, member.generation) is None
    assert member.state is MemberState.LOADING and member.position == 1


def test_a_stale_catch_up_changes_nothing() -> None:
    fanout = Fanout()
    member, _ = fanout.join("c", "SYM", EVERYTHING)
    fanout.prime("SYM", "E", 0)
    stale = member.generation
    fanout.reset_symbol("SYM", "F")
    assert fanout.finish_loading(member, 10, stale) == Outgoing()
    assert member.state is MemberState.LOADING


def test_leaving_the_last_group_frees_the_symbol() -> None:
    fanout = Fanout()
    a = live_member(fanout, "a")
    b = live_member(fanout, "b", parse_filter({"bots": ["x"]}))
    assert not fanout.leave(a)
    assert fanout.leave(b)
    assert fanout.symbols == {} and fanout.groups == {}


FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "kinds": st.lists(st.sampled_from(["signal", "trade"]), min_size=1, unique=True),
        "bots": st.lists(st.sampled_from(["b1", "b2", "b3"]), min_size=1, unique=True),
        "strategies": st.lists(st.sampled_from(["s1", "s2"]), min_size=1, unique=True),
        "signal_types": st.lists(st.sampled_from(["buy", "sell", "hold"]), min_size=1, unique=True),
        "min_confidence": st.sampled_from([0.0, 0.25, 0.5, 0.9]),
        "sides": st.lists(st.sampled_from(["buy", "sell"]), min_size=1, unique=True),
    },
)
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["signal", "trade"]),
        st.sampled_from(["b1", "b2", "b3"]),
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["buy", "sell", "hold"]),
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    ),
    min_size=1,
    max_size=60,
)


def _event(seq: int, spec: tuple[str, str, str, str, float]) -> str:
    kind, bot, strategy, type_, confidence = spec
    if kind == "signal":
        return signal(seq, bot=bot, strategy=strategy, type=type_, confidence=confidence)
    side = "buy" if type_ == "buy" else "sell"
    trade = Trade(
        symbol="SYM",
        ts=TS + seq,
        bot=bot,
        strategy=strategy,
        side=side,
        action="entry",
        price=1.0,
        qty=1.0,
        position=f"p{seq}",
    )
    return json.dumps(trade.to_dict(seq), separators=(",", ":"))


@settings(max_examples=150, deadline=None)
@given(
    events=EVENTS,
    clients=st.lists(st.tuples(FILTERS, st.integers(0, 60)), min_size=1, max_size=6),
    cuts=st.lists(st.integers(1, 60), max_size=8),
    idle_at=st.lists(st.integers(1, 60), max_size=4),
)
def test_every_client_gets_exactly_its_filter_in_order_with_contiguous_ranges(
    events: list[tuple[str, str, str, str, float]],
    clients: list[tuple[dict[str, Any], int]],
    cuts: list[int],
    idle_at: list[int],
) -> None:
    fanout = Fanout()
    recorder = Recorder()
    stream = [(seq, _event(seq, spec)) for seq, spec in enumerate(events, start=1)]
    boundaries = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    members: dict[str, tuple[Member, EventFilter, int]] = {}
    for start, end in itertools.pairwise(boundaries):
        for index, (raw_filter, join_at) in enumerate(clients):
            conn = f"c{index}"
            if conn not in members and join_at <= start:
                flt = parse_filter(raw_filter)
                member, _ = fanout.join(conn, "SYM", flt)
                if not fanout.is_primed("SYM"):
                    fanout.prime("SYM", "E", start)
                out = fanout.finish_loading(member, start, member.generation)
                assert out is not None
                recorder.apply(out, fanout)
                members[conn] = (member, flt, start)
        checked = fanout.check("SYM", "E", stream[start:end]) if fanout.symbols else []
        assert isinstance(checked, list)
        if fanout.symbols:
            recorder.apply(fanout.ingest("SYM", "E", checked, now=float(end)), fanout)
        if end in idle_at and fanout.symbols:
            recorder.apply(fanout.idle_frames(now=1e9 + end, heartbeat_s=1.0), fanout)
    for conn, (_, flt, joined_at) in members.items():
        expected = [seq for seq, raw in stream if seq > joined_at and flt.matches(json.loads(raw))]
        frames = recorder.frames.get(conn, [])
        got = [e["seq"] for f in frames for e in f["items"]]
        assert got == expected, "exactly the filter's events, in seq order, each once"
        position = joined_at
        for frame in frames:
            assert frame["from_seq"] <= position + 1, "no hole between frames"
            assert all(e["seq"] > position for e in frame["items"]), "nothing the client already has"
            assert all(frame["from_seq"] <= e["seq"] <= frame["to_seq"] for e in frame["items"])
            position = max(position, frame["to_seq"])


def test_a_member_lagging_on_its_own_frames_keeps_the_position_before_the_first_unsent_one() -> None:
    fanout = Fanout()
    member, _ = fanout.join("c", "SYM", EVERYTHING)
    fanout.prime("SYM", "E", 0)
    for seq in (1, 2, 3):
        fanout.ingest("SYM", "E", [(seq, signal(seq))], now=0.0)
    out = fanout.finish_loading(member, 0, member.generation)  # replays 1, 2, 3 as frames of its own
    assert out is not None
    assert [s.before for s in out.sends] == [0, 1, 2]
    # the I/O layer could write the first frame only: it has seq 1, whatever the core advanced to
    fanout.mark_lagging(member, out.sends[1].before, now=1.0)
    fanout.mark_lagging(member, out.sends[2].before, now=1.0)  # ignored: already lagging
    assert member.state is MemberState.LAGGING and member.position == 1


def test_a_member_going_live_on_a_batch_does_not_also_get_its_broadcast() -> None:
    fanout = Fanout()
    recorder = Recorder()
    live_member(fanout, "old")
    recorder.apply(fanout.ingest("SYM", "E", [(1, signal(1))], now=0.0), fanout)
    newcomer, _ = fanout.join("new", "SYM", EVERYTHING)
    out = fanout.finish_loading(newcomer, 2, newcomer.generation)  # its history already saw seq 2
    assert out is not None and newcomer.state is MemberState.WAITING
    recorder.apply(fanout.ingest("SYM", "E", [(2, signal(2)), (3, signal(3))], now=0.0), fanout)
    assert newcomer.state is MemberState.LIVE
    assert [e["seq"] for f in recorder.frames["new"] for e in f["items"]] == [3]
    assert [e["seq"] for f in recorder.frames["old"] for e in f["items"]] == [1, 2, 3]


def test_void_seqs_move_positions_without_items_like_filtered_events() -> None:
    fanout = Fanout()
    recorder = Recorder()
    live_member(fanout, "all")
    live_member(fanout, "sells", parse_filter({"signal_types": ["sell"]}))
    # Seqs 2 and 4..5 are void (stored with an invalid body): the batch ends at 5.
    out = fanout.ingest("SYM", "E", [(1, signal(1)), (3, signal(3, type="sell"))], now=0.0, to_seq=5)
    recorder.apply(out, fanout)
    assert fanout.symbols["SYM"].last_seq == 5
    assert [(f["from_seq"], f["to_seq"], [e["seq"] for e in f["items"]]) for f in recorder.frames["all"]] == [
        (1, 5, [1, 3])
    ]
    assert [(f["from_seq"], f["to_seq"]) for f in recorder.frames["sells"]] == [(1, 5)]
    # Only void seqs: no frame, the position moves (an idle frame tells quiet groups later).
    recorder.apply(fanout.ingest("SYM", "E", [], now=1.0, to_seq=7), fanout)
    assert fanout.symbols["SYM"].last_seq == 7 and len(recorder.frames["all"]) == 1
    recorder.apply(fanout.idle_frames(now=30.0, heartbeat_s=20.0), fanout)
    assert recorder.frames["all"][-1]["from_seq"] == 6 and recorder.frames["all"][-1]["to_seq"] == 7
    assert fanout.check("SYM", "E", [(8, signal(8))]) == [(8, signal(8))]


def test_ingest_takes_decoded_events_instead_of_decoding_again() -> None:
    fanout = Fanout()
    recorder = Recorder()
    live_member(fanout, "sells", parse_filter({"signal_types": ["sell"]}))
    messages = [(1, signal(1, type="sell")), (2, signal(2))]
    events = [json.loads(raw) for _, raw in messages]
    recorder.apply(fanout.ingest("SYM", "E", messages, now=0.0, events=events), fanout)
    assert [e["seq"] for e in recorder.frames["sells"][0]["items"]] == [1]


def test_a_reset_goes_on_after_its_position_and_forgets_what_another_epoch_sent() -> None:
    fanout = Fanout()
    live_member(fanout, "c")
    fanout.ingest("SYM", "E", [(1, signal(1)), (2, signal(2))], now=0.0)
    members = fanout.reset_symbol("SYM", "E", 2)  # same epoch (a rewrite): recent kept
    assert [m.state for m in members] == [MemberState.LOADING]
    assert fanout.symbols["SYM"].last_seq == 2 and fanout.symbols["SYM"].recent
    fanout.reset_symbol("SYM", "F", 40)  # a new epoch already at 40
    state = fanout.symbols["SYM"]
    assert (state.epoch, state.last_seq, state.recent) == ("F", 40, {})
    assert fanout.check("SYM", "F", [(2, signal(2, bot="other")), (41, signal(41))]) == [(41, signal(41))]
