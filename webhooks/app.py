"""The Flask app factory: thin blueprints over an explicit config; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from integration.config import CoreSettings
from integration.model import Platform
from integration.ports import PayloadError, PlatformAdapter, SignatureError
from integration.store import Inbox
from webhooks.metrics import Metrics

log = logging.getLogger("tierup.webhooks")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebConfig:
    """Everything the web side needs, built by the composition root (integration.ops_commands)."""

    settings: CoreSettings
    adapters: Mapping[Platform, PlatformAdapter]
    inbox: Inbox
    enqueue: Callable[[int], None]  # queue a stored delivery's row id for the worker
    metrics: Metrics = field(default_factory=Metrics)
    # Readiness: name -> a check that raises when that dependency is not reachable.
    checks: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    queue_depth: Callable[[], int] | None = None
    clock: Callable[[], datetime] = utcnow

    def adapter(self, platform: str) -> PlatformAdapter | None:
        """The adapter for a URL's platform segment, or None when it is unknown or not configured."""
        try:
            return self.adapters.get(Platform(platform))
        except ValueError:
            return None


def web_config() -> WebConfig:
    """The config of the app handling the current request."""
    config: WebConfig = current_app.extensions["tierup"]
    return config


def create_app(config: WebConfig) -> Flask:
    """Build the web app: webhook receivers, health, readiness and metrics."""
    from webhooks import ops, receive

    app = Flask("tierup")
    # Werkzeug caps the read of a body sent without Content-Length (chunked) at this, but
    # silently: one byte over the limit lets the receiver see that the body was longer.
    app.config["MAX_CONTENT_LENGTH"] = config.settings.max_body_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["tierup"] = config
    _register_errors(app)
    app.register_blueprint(receive.blueprint)
    app.register_blueprint(ops.blueprint)
    return app


def _register_errors(app: Flask) -> None:
    """The one place where failures become HTTP answers; none of them a 500 for what a sender can send."""

    @app.errorhandler(SignatureError)
    def _signature(exc: SignatureError) -> ResponseReturnValue:
        # The reason is ours (which check failed); the sender's values are not repeated.
        log.warning("rejected delivery: %s", exc)
        return jsonify(error="signature", detail=str(exc) or "signature does not verify"), 401

    @app.errorhandler(PayloadError)
    def _payload(exc: PayloadError) -> ResponseReturnValue:
        log.info("malformed delivery: %s", exc)
        return jsonify(error="payload", detail=str(exc)), 400

    @app.errorhandler(SQLAlchemyError)
    def _storage(exc: SQLAlchemyError) -> ResponseReturnValue:
        # Nothing was stored, so the sender must retry: 503, not 500 (and not 202).
        log.error("storage unavailable: %s", type(exc).__name__)
        return jsonify(error="unavailable", detail="storage unavailable, retry later"), 503, {"Retry-After": "30"}

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        return jsonify(error=(exc.name or "error").lower().replace(" ", "_"), detail=exc.description), exc.code or 500
