"""Operations endpoints: /healthz (process up), /readyz (database and queue), /metrics (Prometheus)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue

from webhooks.app import web_config
from webhooks.metrics import Gauge

blueprint = Blueprint("ops", __name__)
log = logging.getLogger("tierup.webhooks.ops")

# How long /readyz and /metrics wait for a dependency (a probe's own timeout is often 1-5 s).
CHECK_SECONDS = 3.0


class NoAnswer(Exception):
    """A dependency check that has not answered in time."""


class _Run:
    """One call of check `name` on a thread of its own."""

    def __init__(self, name: str, check: Callable[[], Any]) -> None:
        self.name = name
        self.check = check
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def __call__(self, finished: Callable[[_Run], None]) -> None:
        try:
            self.value = self.check()
        except BaseException as exc:  # handed to whoever waits
            self.error = exc
        finally:
            self.done.set()
            finished(self)


class Probes:
    """Runs dependency checks with a deadline, one call per check at a time.

    A database that stops answering while keeping its connection open (a stuck proxy, a
    network partition) blocks a query for as long as TCP allows. The check runs on a thread
    of its own and the answer waits at most `seconds` for it; a probe that comes while that
    call is still running waits for the same call rather than starting another, so stuck
    calls never pile up and take every request thread with them.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._running: dict[str, _Run] = {}

    def __call__(self, name: str, check: Callable[[], Any]) -> Any:
        """`check()`'s value; its exception, or NoAnswer when it has not answered within `seconds`."""
        with self._lock:
            run = self._running.get(name)
            if run is None:
                run = self._running[name] = _Run(name, check)
                threading.Thread(target=run, args=(self._finished,), name=f"probe {name}", daemon=True).start()
        if not run.done.wait(self.seconds):
            raise NoAnswer(f"no answer within {self.seconds:g}s")
        if run.error is not None:
            raise run.error
        return run.value

    def _finished(self, run: _Run) -> None:
        with self._lock:
            if self._running.get(run.name) is run:
                del self._running[run.name]


def probes() -> Probes:
    """This app's Probes (made on first use)."""
    found: Probes | None = current_app.extensions.get("tierup.probes")
    if found is None:
        found = current_app.extensions.setdefault("tierup.probes", Probes(CHECK_SECONDS))
    return found


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and answering."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready when every dependency (database, queue) answers."""
    results: dict[str, str] = {}
    for name, check in web_config().checks.items():
        try:
            probes()(name, check)
        except NoAnswer as exc:
            log.warning("not ready: %s: %s", name, exc)
            results[name] = str(exc)
        except Exception as exc:
            # The exception text may carry a URL with credentials: only its type goes out.
            log.warning("not ready: %s: %s", name, type(exc).__name__)
            results[name] = f"unreachable ({type(exc).__name__})"
        else:
            results[name] = "ok"
    ready = all(v == "ok" for v in results.values())
    return jsonify(status="ready" if ready else "not ready", checks=results), 200 if ready else 503


@blueprint.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Counters, the latency histogram and scrape-time gauges in Prometheus text format."""
    config = web_config()
    gauges: list[Gauge] = []
    try:
        counts = probes()("inbox", config.inbox.counts)
        gauges.append(
            Gauge("tierup_inbox_deliveries", "Deliveries in the inbox by status.",
                  [({"status": s.value}, float(n)) for s, n in counts.items()])
        )  # fmt: skip
    except Exception as exc:
        log.warning("metrics: inbox unavailable: %s", type(exc).__name__)
    if config.queue_depth is not None:
        try:
            depth = probes()("queue depth", config.queue_depth)
            gauges.append(Gauge("tierup_queue_depth", "Jobs queued or scheduled.", [({}, float(depth))]))
        except Exception as exc:
            log.warning("metrics: queue unavailable: %s", type(exc).__name__)
    body = config.metrics.render(gauges)
    return Response(body, mimetype="text/plain", content_type="text/plain; version=0.0.4; charset=utf-8")
