"""Each bench scenario end to end at a tiny size: it runs, both servers deliver, the JSON is sane.

No timing is asserted: the figures of a run this small mean nothing; the program working does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.bench import SCENARIOS
from server.cli.main import main

pytestmark = pytest.mark.slow

TINY: dict[str, list[str]] = {
    "fanout": ["--symbols", "2", "--clients", "8", "--seconds", "1", "--rate", "40", "--rate-seconds", "1"],
    "filters": [
        "--symbols", "2", "--clients", "8", "--filters", "3", "--seconds", "1", "--rate", "40",
        "--rate-seconds", "1",
    ],
    "connections": ["--symbols", "2", "--clients", "40", "--settle", "0.2"],
    "alerts": [
        "--symbols", "2", "--clients", "8", "--seconds", "1", "--rate", "40", "--rate-seconds", "1",
        "--rules", "5",
    ],
    "reconnect": [
        "--symbols", "2", "--clients", "20", "--rate", "40", "--history-events", "5", "--before-kill", "0.5",
        "--after", "3",
    ],
    "amplification": [
        "--heavy", "2", "--light", "2", "--rows", "2000", "--days", "1", "--quiet-s", "0.5", "--seconds", "2",
        "--after-s", "0.5",
    ],
}  # fmt: skip
TINY["walls"] = ["--skip-browser", "--displays", "20", "--every-s", "0.5", "--server-s", "1"]


def run_bench(scenario: str, redis_url: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"{scenario}.json"
    assert main(["bench", scenario, *TINY[scenario], "--redis-url", redis_url, "--json", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["scenario"] == scenario
    assert result["machine"]["cpus"]
    return result


def figures(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["figure"]: row for row in result["rows"]}


def test_every_scenario_has_a_smoke_test() -> None:
    # backfill and performance have their own tests (test_backfill.py, test_stats_cli.py), soak and
    # hostile too (test_soak.py, test_hostile.py); wall is a browser soak (minutes long), run by hand,
    # not by the suite; replay loads 1,000,000 rows (its reads, cursor and frames are tested in
    # tests/server/history/test_replay_cursor.py and tests/server/gateway/test_replay.py).
    assert set(SCENARIOS) == set(TINY) | {"backfill", "performance", "wall", "soak", "hostile", "replay"}


def test_fanout(redis_url: str, tmp_path: Path) -> None:
    rows = figures(run_bench("fanout", redis_url, tmp_path))
    for server in ("baseline", "signalpush"):
        assert rows["saturation deliveries/s"][server] > 0
        assert rows["40 ev/s deliveries/s"][server] > 0
        assert rows["40 ev/s latency p50 ms"][server] > 0
        assert rows["saturation lost"][server] == 0
        assert rows["40 ev/s lost"][server] == 0
    assert rows["saturation duplicated"]["signalpush"] == 0
    assert rows["saturation deliveries/s"]["ratio"] > 0
    assert rows["publishers alone ev/s"]["signalpush"] > 0
    # The default configuration: the bench's symbols are registered and recorded, every event.
    assert rows["SQL rows missing"]["signalpush"] == 0
    assert rows["SQL rows missing"]["baseline"] is None
    assert rows["40 ev/s recorder lag max s"]["signalpush"] is not None
    assert rows["40 ev/s recorder CPU %"]["signalpush"] is not None  # the recorder is a child process


def test_alerts(redis_url: str, tmp_path: Path) -> None:
    rows = figures(run_bench("alerts", redis_url, tmp_path))
    for server in ("no rules", "5 rules"):
        assert rows["saturation deliveries/s"][server] > 0
        assert rows["saturation lost"][server] == 0
    # Every cause reaches the webhook, even with the shared test Redis holding other tests' poisoned
    # logs (a log key of the wrong type once stopped the evaluator's one XREAD for every symbol).
    assert rows["saturation: webhooks missing"]["5 rules"] == 0
    assert rows["40 ev/s: webhooks missing"]["5 rules"] == 0


def test_fanout_compares_recording_on_and_off(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    argv = [*TINY["fanout"], "--only", "signalpush", "--compare-recorder", "--redis-url", redis_url]
    assert main(["bench", "fanout", *argv, "--json", str(out)]) == 0
    rows = figures(json.loads(out.read_text()))
    assert rows["SQL rows missing"]["signalpush"] == 0
    assert rows["SQL rows missing"]["in-process recorder"] == 0
    assert rows["SQL rows missing"]["no recording"] is None
    assert rows["40 ev/s recorder CPU %"]["in-process recorder"] is None  # its CPU is the gateway's
    assert rows["40 ev/s server CPU %"]["child / off"] is not None


def test_filters(redis_url: str, tmp_path: Path) -> None:
    rows = figures(run_bench("filters", redis_url, tmp_path))
    for server in ("baseline", "1 group", "3 filters"):
        assert rows["saturation deliveries/s"][server] > 0
        assert rows["saturation lost"][server] == 0
    assert rows["saturation deliveries/s"]["vs 1 group"] > 0


def test_connections(redis_url: str, tmp_path: Path) -> None:
    rows = figures(run_bench("connections", redis_url, tmp_path))
    for server in ("baseline", "signalpush"):
        assert rows["connections subscribed"][server] == 40
        assert rows["connections live (got an event)"][server] == 40
        assert rows["RSS after MiB"][server] > 0


def test_reconnect(redis_url: str, tmp_path: Path) -> None:
    rows = figures(run_bench("reconnect", redis_url, tmp_path))
    assert rows["clients reconnected"]["signalpush"] == 20
    assert rows["all live again after restart s"]["signalpush"] is not None
    assert rows["events lost"]["signalpush"] == 0
    assert rows["events duplicated"]["signalpush"] == 0
    assert rows["clients reconnected"]["baseline"] == 20
    # Recorded through the SIGKILL and restart: the new recorder re-reads what the old one held.
    assert rows["SQL rows missing"]["signalpush"] == 0


def test_amplification(redis_url: str, tmp_path: Path) -> None:
    quiet, load, after = run_bench("amplification", redis_url, tmp_path)["rows"]
    assert [quiet["phase"], load["phase"], after["phase"]] == ["quiet", "load", "after"]
    assert quiet["light_events"] > 0 and load["light_events"] > 0
    assert load["histories"] > 0 and load["busy"] == 0
    assert load["with_workers_peak_mib"] >= load["rss_peak_mib"] > 0


@pytest.mark.parametrize(
    ("scenario", "option", "value"),
    [
        ("fanout", "--clients", "0"),
        ("amplification", "--heavy", "0"),
        ("fanout", "--rate", "-5"),
        ("filters", "--filters", "0"),
        ("connections", "--clients", "0"),
        ("reconnect", "--symbols", "0"),
        ("backfill", "--rows", "0"),
        ("performance", "--bots", "0"),
        ("wall", "--tiles", "0"),
        ("wall", "--seed-rate", "0"),
        ("walls", "--displays", "0"),
    ],
)
def test_every_scenario_refuses_an_empty_load_at_the_command_line(
    scenario: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before anything starts: a count of 0 used to fail minutes later with a traceback.
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", scenario, option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be above 0, got {value}" in capsys.readouterr().err


def test_walls_measures_the_server_cost_of_display_heartbeats(redis_url: str, tmp_path: Path) -> None:
    result = run_bench("walls", redis_url, tmp_path)
    rows = figures(result)
    # No figure is judged (other tests share this Redis and these cores); the phases ran.
    assert {"gateway CPU (% of one core)", "Redis commands/s"} <= set(rows)
    assert result["fleet"]["beating"]["heartbeats_s"] > 0 and "silent" in result["fleet"]
