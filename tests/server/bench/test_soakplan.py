"""The soak's fault schedule and RSS bookkeeping."""

from __future__ import annotations

from server.bench.fleet import _share
from server.bench.soakplan import FAULTS, MemoryLife, fault_schedule


def test_schedule_runs_every_drill_once_in_a_default_run_and_leaves_the_end_quiet() -> None:
    plan = fault_schedule(600.0)
    assert [fault.name for fault in plan] == list(FAULTS)
    assert [fault.at_s for fault in plan] == [100.0, 200.0, 300.0, 400.0, 500.0]


def test_schedule_cycles_through_the_drills_on_a_long_run() -> None:
    plan = fault_schedule(60.0, interval_s=5.0)
    assert len(plan) == 11  # 5, 10, ... 55; none after 57.5
    assert [fault.name for fault in plan[:6]] == [*FAULTS, FAULTS[0]]
    assert fault_schedule(10.0, interval_s=0.0) == []


def test_memory_life_judges_from_warm_to_end() -> None:
    life = MemoryLife("gateway 1", started_s=100.0, warmup_s=30.0)
    for at, rss in ((105.0, 50_000), (130.0, 100_000), (200.0, 104_000), (300.0, 108_000), (301.0, 0)):
        life.add(at, rss)
    assert (life.start_kib, life.end_kib, life.peak_kib) == (100_000, 108_000, 108_000)
    assert life.growth_pct == 8.0
    assert life.span_s == 170.0
    cold = MemoryLife("gateway 2", started_s=0.0, warmup_s=30.0)
    cold.add(5.0, 1000)
    assert cold.growth_pct is None


def test_churn_shares_add_up() -> None:
    assert [_share(7, 3, i) for i in range(3)] == [3, 2, 2]
    assert sum(_share(1, 4, i) for i in range(4)) == 1
