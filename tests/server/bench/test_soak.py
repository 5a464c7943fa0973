"""``bench soak`` end to end, compressed: every drill within half a minute, nothing lost or duplicated.

The program runs its own embedded Redis (the Redis restart drill restarts it), a gateway,
a separate recorder and a SQLite store. No timing is asserted; the counts are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.bench.soakplan import FAULTS
from server.cli.main import main

pytestmark = pytest.mark.slow


def test_a_short_soak_survives_every_drill_gap_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gateway the soak starts inherits this: the stalled client is closed within the run.
    monkeypatch.setenv("SIGNALPUSH_SERVER_SLOW_CLIENT_TIMEOUT_S", "2")
    out = tmp_path / "soak.json"
    argv = [
        "bench", "soak", "--minutes", "0.6", "--clients", "30", "--symbols", "2", "--rate", "30",
        "--churn-every", "2", "--churn", "0.2", "--replace", "0.1", "--fault-every", "5",
        "--redis-down", "0.5", "--warmup", "3", "--history-minutes", "1", "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    rows = {row["figure"]: row for row in result["rows"]}
    assert [drill.split(" ", 1)[1].rsplit(" (", 1)[0] for drill in result["drills"][:5]] == list(FAULTS)
    seeded = rows["of which history published before the run"]["value"]
    assert rows["events published"]["value"] > seeded == 1800  # 1 minute at 30 events/s
    assert rows["deliveries received"]["value"] > rows["events published"]["value"]
    for figure in ("events lost", "events duplicated", "clients behind at the end", "SQL rows missing",
                   "SQL rows duplicated", "publishes failed after retries"):  # fmt: skip
        assert rows[figure]["value"] == 0, figure
    assert rows["resets"]["value"] == 0
    joined, left = rows["clients joined / left during the run"]["value"].split(" / ")
    assert int(joined) > 0 and int(left) > 0
    assert result["faults"]["flooding"]["close_code"] == 1008
    assert result["faults"]["stalled"]["closed_after_s"] is not None, result["faults"]
    assert len([row for row in rows if row.startswith("gateway ")]) >= 3  # two drills, three lives


@pytest.mark.parametrize(
    ("option", "value"), [("--clients", "0"), ("--symbols", "-1"), ("--rate", "0"), ("--churn", "1.5")]
)
def test_a_bad_option_is_refused_before_anything_starts(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "soak", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
