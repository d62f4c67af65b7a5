"""Operations endpoints: /healthz (process up), /readyz (database and queue), /metrics (Prometheus)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from webhooks.app import web_config
from webhooks.metrics import Gauge

blueprint = Blueprint("ops", __name__)
log = logging.getLogger("tierup.webhooks.ops")


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
            check()
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
        counts = config.inbox.counts()
        gauges.append(
            Gauge("tierup_inbox_deliveries", "Deliveries in the inbox by status.",
                  [({"status": s.value}, float(n)) for s, n in counts.items()])
        )  # fmt: skip
    except Exception as exc:
        log.warning("metrics: inbox unavailable: %s", type(exc).__name__)
    if config.queue_depth is not None:
        try:
            gauges.append(Gauge("tierup_queue_depth", "Jobs queued or scheduled.", [({}, float(config.queue_depth()))]))
        except Exception as exc:
            log.warning("metrics: queue unavailable: %s", type(exc).__name__)
    body = config.metrics.render(gauges)
    return Response(body, mimetype="text/plain", content_type="text/plain; version=0.0.4; charset=utf-8")
