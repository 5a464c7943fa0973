"""``signalpush bench filters``: the fan-out scenario with F distinct filters per symbol.

Same load as ``fanout`` (see there), run three times in one run: the baseline, signalpush
with every client unfiltered (one group per symbol), and signalpush with F [20] distinct
filters per symbol on bots, strategies and min_confidence (F groups per symbol). Every
bench event passes every filter, so deliveries are the same and the difference is the
cost of F groups: each filter evaluated on every event, one frame encoded per group.
"""

from __future__ import annotations

import argparse
from typing import Any

from server.bench import BenchResult, fanout, positive_int
from server.bench.fanout import Target, add_ratio, figure_rows, run_targets
from server.bench.rig import Rig, judge, repeat, vars_of

DESCRIPTION = "filters: fan-out with 20 distinct filters per symbol vs one group per symbol, vs the baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fanout.add_arguments(parser)
    parser.add_argument(
        "--filters", type=positive_int, default=20, help="distinct filters per symbol (default: 20)"
    )


def one_run(bench: Rig, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    many = f"{args.filters} filters"
    targets = [
        Target("baseline", "baseline", 1),
        Target("1 group", "signalpush", 1),
        Target(many, "signalpush", args.filters),
    ]
    rows = figure_rows(run_targets(bench, args, index, targets), args.rate)
    add_ratio(rows, "vs 1 group", many, "1 group")
    add_ratio(rows, "vs baseline", many, "baseline")
    return rows


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("filters", args, one_run, vars_of(args))
    many = f"{args.filters} filters"
    judge(
        result.rows,
        {
            "saturation deliveries/s": ("vs 1 group", ">= 0.8"),
            "saturation lost": (many, "== 0"),
            "saturation duplicated": (many, "== 0"),
        },
    )
    return result
