"""What a load connection counts, on frames built by the real protocol code."""

from __future__ import annotations

from server.bench.loadclient import ConnState, FrameCache, Tally, parse_baseline_message, parse_events_frame
from server.core.protocol import events_frame


def _event(seq: int, stamp: int = 0) -> str:
    meta = f'{{"t":{stamp}}}' if stamp else "{}"
    return f'{{"seq":{seq},"kind":"signal","symbol":"S","ts":1,"bot":"b","meta":{meta}}}'


def _frame(from_seq: int, to_seq: int, seqs: list[int], stamp: int = 0) -> bytes:
    return events_frame("g1", "S", "e1", from_seq, to_seq, [_event(s, stamp) for s in seqs]).encode()


def test_parse_events_frame_reads_range_items_and_stamps() -> None:
    frame = parse_events_frame(_frame(5, 9, [5, 7, 9], stamp=123))
    assert (frame.epoch, frame.from_seq, frame.to_seq) == ("e1", 5, 9)
    assert list(frame.seqs) == [5, 7, 9]
    assert frame.stamps == (123, 123, 123)
    contiguous = parse_events_frame(_frame(5, 9, [5, 6, 7, 8, 9]), stamps=False)
    assert list(contiguous.seqs) == [5, 6, 7, 8, 9]
    assert contiguous.stamps == ()


def test_parse_baseline_message() -> None:
    payload = b'e1 42 1700000000000 {"seq":42,"kind":"signal","meta":{"t":99,"pad":"x"}}'
    assert parse_baseline_message(payload) == ("e1", 42, 99)


def _conn() -> ConnState:
    conn = ConnState("S", Tally(), FrameCache())
    conn.on_message(b'{"op":"subscribed","sub":"g1","symbol":"S","epoch":"e1","seq":0}', 0)
    return conn


def test_counts_unique_items_duplicates_and_holes() -> None:
    conn = _conn()
    conn.on_message(_frame(1, 3, [1, 2, 3]), 10)
    conn.on_message(_frame(3, 5, [3, 4, 5]), 20)  # 3 again: a duplicate
    conn.on_message(_frame(8, 9, [8, 9]), 30)  # 6..7 never came: a hole
    assert conn.unique == 7
    assert conn.tally.duplicates == 1
    assert conn.tally.holes == 1
    assert conn.position == 9
    assert (conn.tally.items, conn.tally.frames) == (8, 3)


def test_latency_is_taken_from_the_send_stamp() -> None:
    conn = _conn()
    conn.tally.measure_latency = True
    conn.on_message(_frame(1, 2, [1, 2], stamp=1_000_000), 3_000_000)
    assert conn.tally.latency.count == 2
    assert 1900 <= conn.tally.latency.quantile_us(0.5) <= 2100  # 2 ms


def test_history_then_resume_goes_live_once_caught_up() -> None:
    conn = ConnState("S", Tally(), FrameCache(), expects_history=True)
    ready: list[bool] = []
    conn.on_ready = lambda: ready.append(True)
    conn.on_message(b'{"op":"subscribed","sub":"g1","symbol":"S","epoch":"e1","seq":3}', 0)
    assert not ready
    conn.on_message(
        b'{"op":"history","sub":"g1","epoch":"e1","to_seq":3,"data":{"signal":{"seq":[1,2,3]}}}', 1
    )
    assert ready and conn.unique == 3
    conn.resubscribing()
    conn.on_message(b'{"op":"subscribed","sub":"g1","symbol":"S","epoch":"e1","seq":6}', 2)
    assert conn.live_at_ns == 0  # not live before it has 4..6
    conn.on_message(_frame(4, 6, [4, 5, 6]), 7)
    assert conn.live_at_ns == 7
    assert conn.unique == 6 and conn.tally.duplicates == 0


def test_baseline_messages_count_like_events() -> None:
    conn = ConnState("S", Tally(), FrameCache())
    conn.on_message(b'{"op":"subscribed"}', 0)
    for seq in (1, 2, 2, 4):
        conn.on_message(f'e1 {seq} 0 {{"seq":{seq},"meta":{{"t":1}}}}'.encode(), 5)
    assert conn.unique == 3
    assert conn.tally.duplicates == 1
    assert conn.tally.holes == 1


def test_frame_cache_parses_a_shared_frame_once() -> None:
    cache = FrameCache()
    payload = _frame(1, 2, [1, 2])
    assert cache.get(payload, False) is cache.get(bytes(payload), False)
    assert cache.parsed == 1


def test_lost_counts_the_seqs_missed_since_the_mark() -> None:
    conn = _conn()
    conn.on_message(_frame(1, 3, [1, 2, 3]), 0)
    conn.mark()
    conn.on_message(_frame(4, 6, [4, 5, 6]), 0)
    assert conn.lost(6) == 0
    assert conn.lost(8) == 2  # 7 and 8 never came
    conn.on_message(_frame(9, 10, [9, 10]), 0)  # a hole: 7 and 8 skipped
    assert conn.lost(10) == 2
    conn.on_message(_frame(9, 10, [9, 10]), 0)  # duplicates do not hide the hole
    assert conn.lost(10) == 2
