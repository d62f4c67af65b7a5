"""The Flask app factory: thin blueprints over an explicit config; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from integration.config import ConfigError, CoreSettings
from integration.intake import Intake
from integration.model import Platform
from integration.policy import Policy
from integration.ports import PayloadError, PlatformAdapter, SignatureError, utcnow
from integration.store import Inbox, SqlEscalationStore
from webhooks.metrics import Metrics

log = logging.getLogger("tierup.webhooks")


# --- settings of the escalation form and the dashboard (webhooks.escalate, webhooks.dashboard) ---


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """TIERUP_FORM_PLATFORM, TIERUP_SECRET_KEY, TIERUP_FORM_RATE_LIMIT and TIERUP_TRUSTED_PROXIES."""

    form_platform: Platform | None = None  # None: the one configured platform, Zendesk when both
    secret_key: str | None = None  # None: generated once and kept in the database
    form_rate_limit: int = 5  # form submissions per hour, per email address and per client IP
    # Reverse proxies in front of the service whose X-Forwarded-For / -Proto are believed: 0
    # believes none (a client could write any address there); behind one proxy, set 1, or
    # every client is the proxy's address to the per-client limits.
    trusted_proxies: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChannelSettings:
        """Read and check the settings; ConfigError names a wrong one."""
        platform = (env.get("TIERUP_FORM_PLATFORM") or "").strip().lower()
        if platform and platform not in Platform._value2member_map_:
            raise ConfigError(f"TIERUP_FORM_PLATFORM must be one of {', '.join(Platform)}, got {platform!r}")
        raw_limit = (env.get("TIERUP_FORM_RATE_LIMIT") or "").strip()
        if raw_limit and not (raw_limit.isdigit() and int(raw_limit) > 0):
            raise ConfigError(f"TIERUP_FORM_RATE_LIMIT must be a positive whole number, got {raw_limit!r}")
        secret = (env.get("TIERUP_SECRET_KEY") or "").strip()
        if secret and len(secret) < 16:
            raise ConfigError("TIERUP_SECRET_KEY is too short: use at least 16 random characters")
        raw_proxies = (env.get("TIERUP_TRUSTED_PROXIES") or "").strip()
        if raw_proxies and not (raw_proxies.isdigit() and raw_proxies.isascii() and int(raw_proxies) <= 10):
            raise ConfigError(f"TIERUP_TRUSTED_PROXIES is the number of proxies in front (0-10), got {raw_proxies!r}")
        return cls(
            form_platform=Platform(platform) if platform else None,
            secret_key=secret or None,
            form_rate_limit=int(raw_limit) if raw_limit else 5,
            trusted_proxies=int(raw_proxies) if raw_proxies else 0,
        )


@dataclass(frozen=True)
class WebConfig:
    """Everything the web side needs, built by the composition root (integration.cli.ops)."""

    settings: CoreSettings
    adapters: Mapping[Platform, PlatformAdapter]
    inbox: Inbox
    enqueue: Callable[[Sequence[int]], None]  # queue stored deliveries' row ids for the worker, in order
    metrics: Metrics = field(default_factory=Metrics)
    # Readiness: name -> a check that raises when that dependency is not reachable.
    checks: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    queue_depth: Callable[[], int] | None = None
    clock: Callable[[], datetime] = utcnow
    # The escalation form and the dashboard: off without a policy and an escalation store.
    policy: Policy | None = None
    escalations: SqlEscalationStore | None = None
    channels: ChannelSettings = field(default_factory=ChannelSettings)

    @cached_property
    def intake(self) -> Intake:
        """Stores and queues what the receivers accept, together when deliveries arrive together."""
        return Intake(self.inbox, self.enqueue, written=self.metrics.writes.inc)

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
    """Build the web app: webhook receivers, the form and dashboard, and the ops endpoints."""
    from webhooks import receive

    app = create_ops_app(config, name="tierup")
    # Werkzeug caps the read of a body sent without Content-Length (chunked) at this, but
    # silently: one byte over the limit lets the receiver see that the body was longer.
    app.config["MAX_CONTENT_LENGTH"] = config.settings.max_body_bytes + 1
    if config.channels.trusted_proxies:
        # The client's address and scheme as the trusted proxies saw them (the per-client limits, logs).
        proxies = config.channels.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    app.register_blueprint(receive.blueprint)
    _register_pages(app, config)
    return app


def create_ops_app(config: WebConfig, *, name: str = "tierup-ops") -> Flask:
    """Only /healthz, /readyz and /metrics (a worker running apart serves this); create_app builds on it."""
    from webhooks import ops

    app = Flask(name)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["tierup"] = config
    _register_errors(app)
    app.register_blueprint(ops.blueprint)
    return app


def _register_pages(app: Flask, config: WebConfig) -> None:
    """The escalation form and the leads' dashboard with its JSON API."""
    from webhooks import dashboard, escalate

    escalate.install_sessions(app, config)
    app.register_blueprint(escalate.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(dashboard.api)


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
