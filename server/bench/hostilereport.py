"""``bench hostile``'s table: one row per attack from what was measured, and the end's SQL check (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.bench.attack import Attack, Outcome
from server.bench.stats import LatencyHistogram

#: (failure name, verdict key) of the counts that must be 0.
COUNTED = (
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("forged items", "forged"),
    ("unparseable frames", "unparseable"),
    ("holes", "holes"),
    ("resets", "resets"),
    ("honest clients closed", "closed"),
)


@dataclass(frozen=True)
class Moment:
    """What was true at one moment (the end of an attack, or after settling) and what /healthz said.

    ``gateway`` is None when it could not be judged (no honest event to watch)."""

    gateway: bool | None
    recorder: bool
    said: int

    @property
    def truthful(self) -> bool | None:
        if self.gateway is None:
            return None
        return (self.said == 200) == (self.gateway and self.recorder)


@dataclass(frozen=True)
class Rss:
    """The serve's RSS (MiB) before an attack, its peak during the window, and after settling."""

    before: float
    peak: float
    after: float


def state(during: bool | None, after: bool | None) -> str:
    """``up``; ``stalled`` (not working at the end of the attack, working after); ``DOWN``; ``?``."""
    if after is None:
        return "?"
    if not after:
        return "DOWN"
    return "up" if during is not False else "stalled"


def state_failures(part: str, during: bool | None, after: bool | None) -> list[str]:
    if after is False:
        return [f"{part} down"]
    if during is False:
        return [f"{part} stalled during the attack"]
    return []


def truthful(during: Moment, after: Moment) -> str:
    if during.truthful is False or after.truthful is False:
        return "NO"
    return "yes" if after.truthful else "?"


def attack_row(
    attack: Attack,
    outcome: Outcome,
    verdict: Mapping[str, Any],
    moments: tuple[Moment, Moment],
    rss: Rss,
    *,
    publish_failures: int,
    restarted: bool,
) -> dict[str, Any]:
    """The table row of one attack: the counts, the parts' states, /healthz against them, and a verdict
    naming every rule the row breaks."""
    during, after = moments
    p99 = LatencyHistogram.from_json(verdict["latency"]).quantile_us(0.99) / 1000
    failures = [name for name, key in COUNTED if verdict[key]]
    if not verdict["expected"]:
        failures.append("no honest event checked")
    failures += state_failures("gateway", during.gateway, after.gateway)
    failures += state_failures("recorder", during.recorder, after.recorder)
    if False in (during.truthful, after.truthful):
        failures.append("/healthz untruthful")
    if attack.p99_target_ms is not None and p99 > attack.p99_target_ms:
        failures.append(f"p99 {p99:,.0f} ms > {attack.p99_target_ms:g}")
    if attack.rss_return_mib is not None and rss.after - rss.before > attack.rss_return_mib:
        failures.append(f"RSS kept +{rss.after - rss.before:,.0f} MiB")
    failures += outcome.failures
    return {
        "attack": attack.name,
        "honest": verdict["expected"],
        "lost": verdict["lost"],
        "dup": verdict["duplicated"],
        "forged": verdict["forged"],
        "bad_frames": verdict["unparseable"],
        "holes": verdict["holes"],
        "resets": verdict["resets"],
        "closed": verdict["closed"],
        "pub_failed": publish_failures,
        "gateway": state(during.gateway, after.gateway),
        "recorder": state(during.recorder, after.recorder),
        "healthz": f"{during.said}/{after.said}",
        "truthful": truthful(during, after),
        "rss_peak_mib": round(rss.peak, 1),
        "rss_after_mib": round(rss.after, 1),
        "p99_ms": round(p99, 1),
        "verdict": "ok" if not failures else "FAIL: " + ", ".join(failures),
        "outcome": outcome.note + (" [serve restarted before this attack]" if restarted else ""),
    }


def sql_check(stored: Mapping[str, Sequence[int]], honest: Mapping[str, set[int]]) -> dict[str, Any]:
    """SQL against the honest feed at the end: every honest event exactly once, nothing else."""
    rows = sum(len(seqs) for seqs in stored.values())
    events = sum(len(seqs) for seqs in honest.values())
    missing = sum(len(honest[s] - set(stored.get(s, ()))) for s in honest)
    extra = sum(len(set(stored.get(s, ())) - honest[s]) for s in honest)
    duplicated = sum(len(stored.get(s, ())) - len(set(stored.get(s, ()))) for s in honest)
    ok = rows == events and not missing and not extra and not duplicated
    text = (
        f"SQL at the end: {rows:,} rows for {events:,} honest events "
        f"(missing {missing}, not honest {extra}, duplicated {duplicated}): {'ok' if ok else 'FAIL'}"
    )
    return {"rows": rows, "honest_events": events, "missing": missing, "extra": extra,
            "duplicated": duplicated, "ok": ok, "text": text}  # fmt: skip
