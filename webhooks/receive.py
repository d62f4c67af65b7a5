"""POST /webhooks/<platform>: verify → store and enqueue → 202. The worker does the rest."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from integration.logs import log_context
from integration.ports import Classified, Delivery, PayloadError, PlatformAdapter, SignatureError
from integration.store import Arrival, HeaderMap
from webhooks.app import web_config

blueprint = Blueprint("webhooks", __name__)
log = logging.getLogger("tierup.webhooks")
# Verified payloads we do not handle: answered 200 so the sender does not retry, logged apart.
unsupported = logging.getLogger("tierup.webhooks.unsupported")

MAX_DELIVERY_ID = 200
MAX_TICKET_REF = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@blueprint.post("/webhooks/<platform>")
def receive(platform: str) -> ResponseReturnValue:
    """Take one delivery from a helpdesk."""
    config = web_config()
    adapter = config.adapter(platform)
    if adapter is None:
        abort(404, f"no webhook receiver for {platform!r}")
    limit = config.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"body over {limit} bytes")
    body = request.get_data(cache=False)  # capped at limit + 1 bytes (see create_app)
    if len(body) > limit:
        raise RequestEntityTooLarge(f"body over {limit} bytes")
    headers = HeaderMap(request.headers.items())
    now = config.clock()

    _verify(adapter, headers, body, request.args.to_dict(), now)  # over the raw bytes, before parsing
    classified = _classify(adapter, _json(body))
    if classified is None:
        unsupported.info("unsupported %s payload", adapter.platform.value, extra={"platform": adapter.platform.value})
        return jsonify(status="ignored", detail="not an event Tierup handles"), 200

    delivery_id = _delivery_id(_platform_delivery_id(adapter, headers, body), body)
    delivery = Delivery(platform=adapter.platform, delivery_id=delivery_id, headers=headers, body=body, received_at=now)
    with log_context(delivery_id=delivery_id, ticket_ref=classified.ticket_ref):
        kind, ref, at = _CONTROL.sub("", classified.kind), classified.ticket_ref, classified.occurred_at
        arrival = Arrival(delivery, kind, ref, at, replay_key=adapter.replay_key(headers, body))
        recorded = config.intake.accept(arrival)  # stored and queued, with whatever arrived alongside
        if not recorded.created:
            log.info("duplicate delivery: already stored as %s", recorded.id)
            return jsonify(status="duplicate", id=recorded.id), 200
        log.info("accepted %s as %s", classified.kind, recorded.id)
        config.metrics.received.inc(adapter.platform.value)
        return jsonify(status="accepted", id=recorded.id), 202


@blueprint.after_request
def count_answer(response: Response) -> Response:
    """Every answer of the receiver by platform and status, refusals (401, 400, 413, 503) included."""
    config = web_config()
    named = str((request.view_args or {}).get("platform"))
    platform = named if config.adapter(named) is not None else "unknown"  # the URL's own text is never a label
    config.metrics.responses.inc(platform, str(response.status_code))
    return response


class UnreadableSignatureError(SignatureError):
    """Signature headers so malformed that the adapter could not even check them."""


def _verify(adapter: PlatformAdapter, headers: HeaderMap, body: bytes, query: dict[str, str], now: datetime) -> None:
    try:
        adapter.verify(headers, body, query, now)
    except (SignatureError, PayloadError):
        raise
    except (KeyError, TypeError, ValueError, UnicodeError, IndexError) as exc:
        # A header the adapter's parsing choked on is still an unauthenticated delivery: 401, not 500.
        raise UnreadableSignatureError(f"signature headers unreadable ({type(exc).__name__})") from None


def _platform_delivery_id(adapter: PlatformAdapter, headers: HeaderMap, body: bytes) -> str | None:
    try:
        return adapter.delivery_id(headers, body)
    except (KeyError, TypeError, ValueError, UnicodeError, IndexError):
        return None  # derived from the body instead


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("body is not JSON") from None


def _classify(adapter: PlatformAdapter, payload: Any) -> Classified | None:
    try:
        classified = adapter.classify(payload)
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A payload shape the adapter's accessors did not expect is the sender's problem: 400.
        raise PayloadError(f"unexpected payload shape ({type(exc).__name__})") from None
    if classified is None:
        return None
    ref = classified.ticket_ref
    if ref is not None and (len(ref) > MAX_TICKET_REF or _CONTROL.search(ref) or not _is_text(ref)):
        raise PayloadError("ticket reference is not a ticket reference")
    if not _is_text(classified.kind):
        raise PayloadError("event type is not text")
    return classified


def _is_text(value: str) -> bool:
    # JSON may carry a lone surrogate ("\ud800"), which no database column can store.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _delivery_id(given: str | None, body: bytes) -> str:
    """The platform's delivery id, or one derived from the body (a resent body is the same delivery)."""
    if given and len(given) <= MAX_DELIVERY_ID and not _CONTROL.search(given):
        return given
    source = given.encode("utf-8", "replace") if given else body
    return "sha256:" + hashlib.sha256(source).hexdigest()
