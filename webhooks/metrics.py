"""Prometheus metrics in the text exposition format, kept in process (no client library needed).

The worker counts what it does through the WorkerMetrics port (integration.processing);
`tierup serve` runs web and worker in one process, so /metrics shows both. Gauges that must
be true across processes (queue depth, inbox by status) are read at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from integration.model import Platform

# Seconds: webhook processing is one or two API calls, so most mass is under a few seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        with self.lock:
            return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self.lock:
            for labels, value in sorted(self.values.items()):
                lines.append(f"{self.name}{_labels(self.labelnames, labels)} {_number(value)}")
        return lines


@dataclass
class Histogram:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, value: float, *labels: str) -> None:
        with self.lock:
            counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            counts[-1] += 1  # +Inf
            self.sums[labels] = self.sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        with self.lock:
            return self.counts.get(labels, [0])[-1]

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self.lock:
            for labels, counts in sorted(self.counts.items()):
                for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                    le = f'le="{_number(bound)}"'
                    lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {n}")
                lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(self.sums[labels])}")
                lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {counts[-1]}")
        return lines


@dataclass(frozen=True, slots=True)
class Gauge:
    """A value read at scrape time."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            lines.append(f"{self.name}{_labels(tuple(labels), tuple(labels.values()))} {_number(value)}")
        return lines


class Metrics:
    """The service's counters and histograms; implements integration.processing.WorkerMetrics."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.received = Counter(
            "tierup_deliveries_received_total", "Webhook deliveries stored and queued.", ("platform",)
        )
        self.writes = Counter(
            "tierup_intake_writes_total",
            "Writes that stored and queued received deliveries; deliveries arriving together share one.",
        )
        self.responses = Counter(
            "tierup_webhook_responses_total", "Webhook answers by platform and HTTP status.", ("platform", "status")
        )
        self.processed = Counter(
            "tierup_deliveries_processed_total",
            "Deliveries the worker finished (outcome processed or ignored).",
            ("platform", "outcome"),
        )
        self.failed = Counter("tierup_deliveries_failed_total", "Deliveries that failed permanently.", ("platform",))
        self.retried = Counter(
            "tierup_deliveries_retried_total", "Transient failures scheduled for another attempt.", ("platform",)
        )
        self.latency = Histogram(
            "tierup_processing_seconds", "Time to parse, decide, apply and record one delivery.", ("platform",),
            buckets,
        )  # fmt: skip
        self.api_calls = Counter(
            "tierup_api_calls_total", "Helpdesk API calls by platform, operation and outcome.",
            ("platform", "operation", "status"),
        )  # fmt: skip

    # WorkerMetrics
    def delivery_done(self, platform: Platform, outcome: str, seconds: float) -> None:
        if outcome in ("processed", "ignored"):
            self.processed.inc(platform.value, outcome)
        elif outcome == "failed":
            self.failed.inc(platform.value)
        elif outcome == "retrying":
            self.retried.inc(platform.value)
        self.latency.observe(seconds, platform.value)

    def api_call(self, platform: Platform, operation: str, status: str) -> None:
        self.api_calls.inc(platform.value, operation, status)

    def render(self, gauges: Iterable[Gauge] = ()) -> str:
        """Everything in the Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        for metric in (self.received, self.writes, self.responses, self.processed, self.failed, self.retried):
            lines += metric.render()
        lines += self.latency.render()
        lines += self.api_calls.render()
        for gauge in gauges:
            lines += gauge.render()
        return "\n".join(lines) + "\n"
