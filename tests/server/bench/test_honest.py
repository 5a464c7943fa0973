"""``bench hostile``'s bookkeeping without sockets: the honest record, a checked subscription, the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.bench.attack import Attack, Outcome
from server.bench.honest import CheckedSub, HonestEvent, HonestRecord, judge
from server.bench.hostilereport import Moment, Rss, attack_row, sql_check

S = 1_000_000_000


def events(from_seq: int, to_seq: int, items: list[tuple[int, int]]) -> bytes:
    body = [{"seq": seq, "kind": "signal", "meta": {"t": stamp}} for seq, stamp in items]
    return json.dumps(
        {"op": "events", "sub": "g1", "from_seq": from_seq, "to_seq": to_seq, "items": body}
    ).encode()


def subscribed(seq: int) -> bytes:
    return json.dumps({"op": "subscribed", "ref": "s", "sub": "g1", "seq": seq, "epoch": "e"}).encode()


def record_of(tmp_path: Path, published: list[HonestEvent]) -> HonestRecord:
    path = tmp_path / "honest.txt"
    path.write_text("".join(e.line() for e in published) + "BTC 99 1")  # an unfinished last line
    record = HonestRecord(path)
    record.refresh()
    return record


def test_the_record_reads_complete_lines_as_the_file_grows(tmp_path: Path) -> None:
    record = record_of(tmp_path, [HonestEvent("BTC", 1, 10, True), HonestEvent("BTC", 0, 11, False)])
    assert record.seqs == {"BTC": {1: 10}} and record.failed_stamps == {11}
    with (tmp_path / "honest.txt").open("a") as out:
        out.write("23 ok\n")  # completes "BTC 99 1" -> "BTC 99 123 ok"
    record.refresh()
    assert record.seqs["BTC"] == {1: 10, 99: 123}
    assert record.is_honest("BTC", 99, 123) and not record.is_honest("BTC", 99, 1)
    assert record.is_honest("ETH", 5, 11)  # a failed publish may still have been applied: not forged


def test_a_clean_subscription_has_every_honest_event_once(tmp_path: Path) -> None:
    record = record_of(tmp_path, [HonestEvent("BTC", seq, max(seq, 2) * S, True) for seq in range(1, 6)])
    sub = CheckedSub("BTC")
    sub.on_message(subscribed(0), 0)
    sub.on_message(events(1, 2, [(1, 2 * S), (2, 2 * S)]), 2 * S + 5_000_000)
    for seq in range(3, 6):
        sub.on_message(events(seq, seq, [(seq, seq * S)]), seq * S + 5_000_000)
    verdict = judge([sub], record, 1, 6 * S)
    assert (verdict.connections, verdict.expected, verdict.lost, verdict.duplicated) == (1, 5, 0, 0)
    assert (verdict.forged, verdict.holes, verdict.unparseable) == (0, 0, 0)
    assert 4_000 < verdict.latency.quantile_us(0.99) < 6_000


def test_lost_duplicated_forged_holes_unparseable_resets_and_closes_are_counted(tmp_path: Path) -> None:
    record = record_of(tmp_path, [HonestEvent("BTC", seq, seq * S, True) for seq in range(1, 7)])
    sub = CheckedSub("BTC")
    sub.on_message(subscribed(0), 0)
    sub.on_message(events(1, 2, [(1, S), (2, 2 * S)]), 2 * S)
    sub.on_message(events(2, 2, [(2, 2 * S)]), 2 * S)  # again
    sub.on_message(events(3, 3, [(3, 12345)]), 3 * S)  # seq 3, not the honest body
    sub.on_message(b'{"op":"events","items":[{"seq":4,"kind":"signal"garbage}]}', 4 * S)
    sub.on_message(events(6, 6, [(6, 6 * S)]), 6 * S)  # 4 and 5 never came: a hole
    sub.on_message(json.dumps({"op": "reset", "sub": "g1", "reason": "epoch"}).encode(), 6 * S)
    sub.on_message(events(2_000_007, 2_000_007, [(2_000_007, 1)]), 6 * S)
    sub.on_close(1011)
    verdict = judge([sub], record, 1, 7 * S)
    assert verdict.expected == 6
    assert verdict.lost == 3  # 3 (a forged body took its place), 4, 5
    assert verdict.duplicated == 1
    assert verdict.forged == 2  # seq 3's body and seq 2,000,007
    assert verdict.holes == 2  # 4..5, and the jump to 2,000,007
    assert (verdict.unparseable, verdict.resets, verdict.closed) == (1, 1, 1)


def test_a_window_counts_only_connections_subscribed_before_it_and_not_closed_before_it(
    tmp_path: Path,
) -> None:
    record = record_of(tmp_path, [HonestEvent("BTC", seq, seq * S, True) for seq in range(1, 5)])
    late, gone = CheckedSub("BTC"), CheckedSub("BTC")
    late.on_message(subscribed(2), 3 * S)
    gone.on_message(subscribed(0), 0)
    gone.on_close(None)
    gone.closed_ns = S // 2
    assert judge([late, gone], record, S, 4 * S).connections == 0
    assert judge([late], record, 3 * S, 4 * S).connections == 1


def test_symbols_still_flowing_after_the_attack_are_named(tmp_path: Path) -> None:
    record = record_of(tmp_path, [HonestEvent("BTC", 1, S, True), HonestEvent("BTC", 2, 3 * S, True)])
    sub = CheckedSub("BTC")
    sub.on_message(subscribed(0), 0)
    sub.on_message(events(1, 1, [(1, S)]), S)
    assert judge([sub], record, 1, 2 * S, alive_after_ns=2 * S).alive_symbols == set()
    sub.on_message(events(2, 2, [(2, 3 * S)]), 3 * S)
    assert judge([sub], record, 1, 2 * S, alive_after_ns=2 * S).alive_symbols == {"BTC"}


def _verdict(**counts: Any) -> dict[str, Any]:
    base = {"expected": 9, "lost": 0, "duplicated": 0, "forged": 0, "unparseable": 0, "holes": 0, "resets": 0}
    return {**base, "closed": 0, "latency": {"buckets": {}, "count": 0, "max_us": 0, "total_us": 0}, **counts}


async def _noop(ctx: Any) -> Outcome:
    return Outcome()


def test_a_row_names_every_rule_it_breaks() -> None:
    attack = Attack("x", _noop, rss_return_mib=10)
    up = Moment(True, True, 200)
    clean = attack_row(attack, Outcome("fine"), _verdict(), (up, up), Rss(100, 110, 105), publish_failures=0,
                       restarted=False)  # fmt: skip
    assert clean["verdict"] == "ok" and clean["truthful"] == "yes" and clean["gateway"] == "up"
    down = Moment(False, True, 200)
    row = attack_row(attack, Outcome("bad", ["HTTP 500 ×3"]), _verdict(lost=4, resets=2), (down, down),
                     Rss(100, 300, 250), publish_failures=1, restarted=True)  # fmt: skip
    assert row["verdict"] == (
        "FAIL: lost, resets, gateway down, /healthz untruthful, RSS kept +150 MiB, HTTP 500 ×3"
    )
    assert row["gateway"] == "DOWN" and row["truthful"] == "NO" and row["healthz"] == "200/200"
    assert row["outcome"].endswith("[serve restarted before this attack]")
    stalled = attack_row(attack, Outcome(), _verdict(), (Moment(True, False, 503), up), Rss(1, 1, 1),
                         publish_failures=0, restarted=False)  # fmt: skip
    assert stalled["recorder"] == "stalled" and stalled["truthful"] == "yes"
    assert stalled["verdict"] == "FAIL: recorder stalled during the attack"


def test_the_sql_check_wants_every_honest_event_once_and_nothing_else() -> None:
    assert sql_check({"A": [1, 2, 3]}, {"A": {1, 2, 3}})["ok"]
    check = sql_check({"A": [1, 2, 2, 9]}, {"A": {1, 2, 3}})
    assert (check["missing"], check["extra"], check["duplicated"], check["ok"]) == (1, 1, 1, False)
