"""Prometheus metrics in the text exposition format, counted with prometheus_client.

The worker counts what it does through the WorkerMetrics port (integration.processing);
`tierup serve` runs web and worker in one process, so /metrics shows both. `tierup web`
runs several gunicorn worker processes behind one port: with PROMETHEUS_MULTIPROC_DIR set
(`tierup web` sets it), each process writes its counts to a file there and /metrics, in
whichever process answers, sums every process's (prometheus_client's multiprocess mode).
Gauges that must be true across processes and machines (queue depth, inbox by status) are
read at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as _Counter
from prometheus_client import Histogram as _Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from integration.config import METRICS_DIR_SETTING
from integration.model import Platform

# The *_created series: when this process started counting, which means nothing summed across processes.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: webhook processing is one or two API calls, so most mass is under a few seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A counter with labels, counted as `inc(*label_values)`."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry) -> None:
        self._counter = _Counter(name, help, tuple(labelnames), registry=registry)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        (self._counter.labels(*labels) if labels else self._counter).inc(amount)


class Histogram:
    """A histogram with labels, observed as `observe(value, *label_values)`."""

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float], *, registry: CollectorRegistry
    ) -> None:
        self._histogram = _Histogram(name, help, tuple(labelnames), buckets=tuple(buckets), registry=registry)

    def observe(self, value: float, *labels: str) -> None:
        self._histogram.labels(*labels).observe(value)


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
        self.registry = registry = CollectorRegistry(auto_describe=True)  # one per runtime: tests build many
        self.received = Counter(
            "tierup_deliveries_received_total", "Webhook deliveries stored and queued.", ("platform",),
            registry=registry,
        )  # fmt: skip
        self.writes = Counter(
            "tierup_intake_writes_total",
            "Writes that stored and queued received deliveries; deliveries arriving together share one.",
            registry=registry,
        )
        self.responses = Counter(
            "tierup_webhook_responses_total", "Webhook answers by platform and HTTP status.", ("platform", "status"),
            registry=registry,
        )  # fmt: skip
        self.processed = Counter(
            "tierup_deliveries_processed_total",
            "Deliveries the worker finished (outcome processed or ignored).",
            ("platform", "outcome"),
            registry=registry,
        )
        self.failed = Counter(
            "tierup_deliveries_failed_total", "Deliveries that failed permanently.", ("platform",), registry=registry
        )
        self.retried = Counter(
            "tierup_deliveries_retried_total", "Transient failures scheduled for another attempt.", ("platform",),
            registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "tierup_processing_seconds", "Time to parse, decide, apply and record one delivery.", ("platform",),
            buckets, registry=registry,
        )  # fmt: skip
        self.api_calls = Counter(
            "tierup_api_calls_total", "Helpdesk API calls by platform, operation and outcome.",
            ("platform", "operation", "status"), registry=registry,
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
        """Everything in the Prometheus text format (version 0.0.4): every process's counts under multiprocess."""
        registry = self.registry
        shared = os.environ.get(METRICS_DIR_SETTING)
        if shared:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        lines = generate_latest(registry).decode("utf-8").splitlines()
        for gauge in gauges:
            lines += gauge.render()
        return "\n".join(lines) + "\n"
