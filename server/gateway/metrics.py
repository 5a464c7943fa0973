"""Counters, gauges and a latency histogram rendered as Prometheus text. Plain ints: cheap on hot paths."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from server.core.trust import REASONS

#: Upper bounds (seconds) of the publish→send latency histogram.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def label_value(value: object) -> str:
    """``value`` escaped for a label of the Prometheus text format (backslash, double quote, newline).

    Label values such as symbol names come from Redis, i.e. from whoever can write there: unescaped,
    a name holding ``"}`` and a newline would forge whole metric lines.
    """
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogates either
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample(name: str, labels: Mapping[str, object], value: object) -> str:
    """One sample line: ``name{label="escaped value",...} value``. Every labelled line goes through here."""
    if not labels:
        return f"{name} {value}"
    inner = ",".join(f'{key}="{label_value(text)}"' for key, text in labels.items())
    return f"{name}{{{inner}}} {value}"


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (for logs and tests)."""
        if not self.count:
            return 0.0
        target, running = q * self.count, 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            if running >= target:
                return bound
        return float("inf")


@dataclass
class GatewayMetrics:
    events_in: int = 0
    frames_out: int = 0
    deliveries: int = 0
    bytes_out: int = 0
    gaps_filled: int = 0
    gap_events_filled: int = 0
    resets: int = 0
    slow_catchups: int = 0
    slow_closes: int = 0
    bus_reconnects: int = 0
    protocol_errors: int = 0
    connections_accepted: int = 0
    connections_refused: int = 0
    history_busy: int = 0
    chunked_frames: int = 0
    latency: Histogram = field(default_factory=Histogram)
    #: Messages read from Redis and dropped, per reason (server.core.trust.REASONS: a fixed set).
    bus_rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: Restarts of the process's long-running tasks, per task (bus, housekeeping, recorder).
    task_restarts: dict[str, int] = field(default_factory=dict)


_HELP = {
    "events_in": ("counter", "Events received from the Redis bus"),
    "frames_out": ("counter", "Frames encoded and sent (one per group per batch)"),
    "deliveries": ("counter", "Frame deliveries to connections"),
    "bytes_out": ("counter", "Bytes of frames delivered"),
    "gaps_filled": ("counter", "Holes in a symbol's live stream filled from the log"),
    "gap_events_filled": ("counter", "Events recovered from the log by hole filling"),
    "resets": ("counter", "Subscriptions reset (epoch changed or position unknown)"),
    "slow_catchups": ("counter", "Slow connections caught up from the log after draining"),
    "slow_closes": ("counter", "Slow connections closed with 4008"),
    "bus_reconnects": ("counter", "Reconnections of the Redis bus"),
    "protocol_errors": ("counter", "Client frames answered with an error"),
    "connections_accepted": ("counter", "Websocket connections accepted"),
    "connections_refused": ("counter", "Connections refused by limits"),
    "history_busy": ("counter", "History requests refused with busy (too many waiting for a build)"),
    "chunked_frames": ("counter", "Frames over server.max_send_frame_bytes sent as chunk frames"),
}


def render(
    metrics: GatewayMetrics,
    gauges: dict[str, tuple[float, str]],
    extra: Callable[[], list[str]] | None = None,
) -> str:
    """Prometheus text exposition of ``metrics`` plus ``gauges`` (name -> (value, help))."""
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        full = f"signalpush_{name}_total"
        lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}", f"{full} {getattr(metrics, name)}"]
    for name, (value, text) in gauges.items():
        full = f"signalpush_{name}"
        lines += [f"# HELP {full} {text}", f"# TYPE {full} gauge", f"{full} {value:g}"]
    labelled = (
        ("bus_rejected", "reason", "Messages read from Redis and dropped (bad, forged or unconfirmed)"),
        ("task_restarts", "task", "Long-running tasks restarted after they ended unexpectedly"),
    )
    for name, label, text in labelled:
        full = f"signalpush_{name}_total"
        lines += [f"# HELP {full} {text}", f"# TYPE {full} counter"]
        # Label values are fixed names of this code (reasons, tasks), never data.
        lines += [f'{full}{{{label}="{key}"}} {count}' for key, count in getattr(metrics, name).items()]
    hist = metrics.latency
    full = "signalpush_publish_to_send_seconds"
    lines += [f"# HELP {full} Publish to send latency of live batches", f"# TYPE {full} histogram"]
    running = 0
    for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
        running += count
        label = "+Inf" if bound == float("inf") else f"{bound:g}"
        lines.append(sample(f"{full}_bucket", {"le": label}, running))
    lines += [f"{full}_sum {hist.total:.6f}", f"{full}_count {hist.count}"]
    if extra is not None:
        lines += extra()
    return "\n".join(lines) + "\n"
