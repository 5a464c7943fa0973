"""``signalpush bench <scenario>``: benchmarks as programs, each with a baseline measured in the same run.

A scenario is a module in this package exposing::

    DESCRIPTION: str
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> BenchResult

Scenarios start what they need on loopback, bound their load in count and time, and
stop by themselves.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from server.analytics.tables import format_table

#: Scenario name -> module (imported only when that scenario runs).
SCENARIOS: dict[str, str] = {
    "fanout": "server.bench.fanout",
    "filters": "server.bench.filters",
    "connections": "server.bench.connections",
    "reconnect": "server.bench.reconnect",
}
SCENARIOS["performance"] = "server.bench.performance"
SCENARIOS["backfill"] = "server.bench.backfill"
SCENARIOS["wall"] = "server.bench.wall"
SCENARIOS["soak"] = "server.bench.soak"
SCENARIOS["amplification"] = "server.bench.amplification"
SCENARIOS["hostile"] = "server.bench.hostile"
SCENARIOS["walls"] = "server.bench.walls"
SCENARIOS["replay"] = "server.bench.replay"


class Scenario(Protocol):
    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> BenchResult: ...


@dataclass
class BenchResult:
    """What a scenario measured: table rows (label -> figures) and a one-line summary."""

    scenario: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "machine": machine_info(),
            "rows": self.rows,
            "summary": self.summary,
            **self.extra,
        }


def positive_int(text: str) -> int:
    """An argparse type: an integer above 0 (a bench of 0 symbols or clients measures nothing)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def share(text: str) -> float:
    """An argparse type: a share between 0 and 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def register(commands: Any) -> None:
    """Add ``bench`` and its scenarios to the CLI."""
    bench = commands.add_parser(
        "bench",
        help="run a benchmark scenario (prints a table, --json FILE for the figures)",
        description="Benchmarks against a baseline measured in the same run.",
    )
    scenarios = bench.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    for name, module_name in SCENARIOS.items():
        module: Scenario = importlib.import_module(module_name)
        sub = scenarios.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        sub.add_argument("--json", type=Path, help="also write the results as JSON to this file")
        module.add_arguments(sub)
        sub.set_defaults(handler=_runner(module))


def _runner(module: Scenario) -> Any:
    def handler(args: argparse.Namespace) -> int:
        result = module.run(args)
        print(format_table(result.rows))
        if result.summary:
            print(result.summary)
        if args.json:
            args.json.write_text(json.dumps(result.to_json(), indent=2, default=str))
            print(f"results written to {args.json}", file=sys.stderr)
        return 0

    return handler
