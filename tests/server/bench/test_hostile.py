"""``bench hostile`` end to end at a tiny size: it runs two attacks and a baseline, prints the table,
checks SQL, and leaves no process behind. Verdicts of the attacks depend on the gateway's code and
are not asserted; the baseline's (nothing attacks it) is.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from server.bench.hostile import ATTACKS, selected
from server.bench.procs import BenchError, children_of
from server.cli.main import main

pytestmark = pytest.mark.slow

COLUMNS = [
    "attack", "honest", "lost", "dup", "forged", "bad_frames", "holes", "resets", "closed", "pub_failed",
    "gateway", "recorder", "healthz", "truthful", "rss_peak_mib", "rss_after_mib", "p99_ms", "verdict",
    "outcome",
]  # fmt: skip


def test_a_short_run_prints_a_row_per_attack_and_stops_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(children_of(os.getpid()))
    out = tmp_path / "hostile.json"
    argv = [
        "bench", "hostile", "--attacks", "live: garbage,duplicate headers", "--seconds-per-attack", "1.5",
        "--settle", "6", "--clients", "2", "--rate", "15", "--history-rows", "2000", "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["attack"] for row in rows] == ["none (baseline)", "live: garbage", "http: duplicate headers"]
    for row in rows:
        assert list(row) == COLUMNS
        assert row["attack"] in printed and row["honest"] > 0
        assert row["healthz"].count("/") == 1
        assert row["verdict"] == "ok" or row["verdict"].startswith("FAIL: ")
    baseline = rows[0]
    assert (baseline["lost"], baseline["dup"], baseline["forged"], baseline["holes"]) == (0, 0, 0, 0)
    assert baseline["gateway"] == "up" and baseline["recorder"] == "up" and baseline["verdict"] == "ok"
    # Up to 30 (1.5 s at 20 a second): how many depends on the machine, not on the code.
    sent = re.match(r"(\d+) messages on ", rows[1]["outcome"])
    assert sent is not None and 0 < int(sent.group(1)) <= 30, rows[1]["outcome"]
    assert "as the publisher user" in rows[1]["outcome"]
    assert result["sql"]["honest_events"] > 0 and "SQL at the end" in printed
    assert set(children_of(os.getpid())) <= before


def test_attacks_are_chosen_by_parts_of_their_names() -> None:
    assert [a.name for a in selected("flood,XADD")] == ["log: XADD far ahead", "ws: message flood"]
    assert len(selected(None)) == len(ATTACKS) == 18
    with pytest.raises(BenchError, match="no attack matches"):
        selected("nothing like this")


@pytest.mark.parametrize(
    ("option", "value"), [("--seconds-per-attack", "0"), ("--clients", "0"), ("--rate", "-1")]
)
def test_a_bad_option_is_refused_before_anything_starts(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "hostile", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
