"""The soak's plan and its memory record, as plain objects (tested without processes).

:func:`fault_schedule` spreads the drills over the run; :class:`MemoryLife` follows one
process's RSS from warm to end, so a gateway restarted by a drill is judged on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

#: The drills, in the order they first happen. The gateway goes first so the gateway
#: alive at the end has lived through most of the run (its RSS growth is the figure).
FAULTS: Final = (
    "gateway SIGKILL + restart",
    "Redis restart",
    "client stops reading",
    "recorder SIGKILL + restart",
    "client floods",
)


@dataclass(frozen=True, slots=True)
class PlannedFault:
    at_s: float
    name: str


def fault_schedule(duration_s: float, interval_s: float | None = None) -> list[PlannedFault]:
    """Drills every ``interval_s`` (default: the run split in ``len(FAULTS) + 1``), cycling
    through :data:`FAULTS`, none in the last half interval (the end must be quiet to count);
    ``interval_s=0``: no drills."""
    interval = duration_s / (len(FAULTS) + 1) if interval_s is None else interval_s
    if interval <= 0:
        return []
    plan: list[PlannedFault] = []
    at = interval
    while at <= duration_s - interval / 2:
        plan.append(PlannedFault(round(at, 3), FAULTS[len(plan) % len(FAULTS)]))
        at += interval
    return plan


@dataclass
class MemoryLife:
    """RSS samples of one process life: the first after ``warmup_s`` is its start, the last its end."""

    label: str
    started_s: float
    warmup_s: float
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, at_s: float, rss_kib: int) -> None:
        if rss_kib > 0:
            self.samples.append((at_s, rss_kib))

    @property
    def warm(self) -> list[tuple[float, int]]:
        return [(at, rss) for at, rss in self.samples if at - self.started_s >= self.warmup_s]

    @property
    def start_kib(self) -> int | None:
        warm = self.warm
        return warm[0][1] if warm else None

    @property
    def end_kib(self) -> int | None:
        warm = self.warm
        return warm[-1][1] if warm else None

    @property
    def peak_kib(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    @property
    def growth_pct(self) -> float | None:
        start, end = self.start_kib, self.end_kib
        return round(100 * (end - start) / start, 1) if start and end else None

    @property
    def span_s(self) -> float:
        warm = self.warm
        return round(warm[-1][0] - warm[0][0], 1) if len(warm) > 1 else 0.0
