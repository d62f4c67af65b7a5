"""GET/POST /escalate: the Case Escalation Request form (SD3, SD4, SD8), server-rendered and without JavaScript.

A valid submission is stored in the inbox as one delivery of the form's platform and queued,
exactly like a webhook; the worker turns it into the same EscalationRequest a macro makes
(integration.forms). The page answers with the same message whether or not the ticket exists
or the address is on it, so the form cannot be used to probe tickets. Also here: the signed
session (CSRF tokens, the dashboard login) and the pages' security headers, shared with
webhooks.dashboard.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, render_template, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from itsdangerous import URLSafeTimedSerializer
from jinja2 import TemplateError
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from integration.forms import (
    FORM_KIND,
    MAX_CONTACT,
    MAX_EMAIL,
    MAX_RATIONALE,
    MAX_TICKET,
    clean_text,
    email_address,
    form_body,
    form_headers,
    ticket_number,
)
from integration.logs import log_context
from integration.model import Person, Platform, Reason
from integration.policy import REASON_LABELS, Policy
from integration.ports import Delivery
from integration.store import Arrival, RateLimits, WebSecrets
from webhooks.app import WebConfig, web_config

blueprint = Blueprint(
    "escalate", __name__, template_folder="templates", static_folder="static", static_url_path="/static/tierup"
)
log = logging.getLogger("tierup.webhooks.form")

CSRF_FIELD = "csrf_token"
SESSION_KEY_NAME = "session-signing-key"
RATE_WINDOW = timedelta(hours=1)
SESSION_LIFETIME = timedelta(hours=12)

# What the page says after every accepted submission, whatever the worker will find: the same
# words for a ticket that does not exist, or an address that is not on it (no probing).
CONFIRMATION = (
    "We have received your escalation request. If it is about an existing ticket that you raised "
    "or are copied on, the escalation team will review it, try your preferred contact method first "
    "and reply on the ticket. You do not need to send it again."
)
# SD8 in case the policy's own wording cannot be rendered outside a ticket.
SD8_FALLBACK = (
    "Please provide the number of the existing ticket you would like to escalate. The escalation "
    "service is not for logging new queries or urgent tickets: please raise those with the Service Desk."
)

# Content Security Policy: no script runs on these pages, whatever ends up in them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# --- sessions and CSRF (used by the dashboard too) ----------------------------------------


class StoredKeySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, signed with TIERUP_SECRET_KEY or the key stored in the database.

    The stored key is read on first use rather than when the app is built, so building the
    app needs no migrated database; until it can be read, requests get no session (the
    webhooks do not need one; the form and dashboard answer 503).
    """

    # Machine-to-machine paths carry no cookie worth reading: they get Flask's null session.
    SESSIONLESS = ("/webhooks/", "/healthz", "/readyz", "/metrics")

    def __init__(self, load_key: Callable[[], str]) -> None:
        self._load_key = load_key

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.SESSIONLESS):
            return None  # Flask's null session: nothing read, nothing saved
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            try:
                app.secret_key = self._load_key()
            except SQLAlchemyError as exc:
                log.warning("no session key yet (database: %s)", type(exc).__name__)
                return None
        return super().get_signing_serializer(app)


def install_sessions(app: Flask, config: WebConfig) -> None:
    """Signed, same-site, HTTP-only session cookies for the form and the dashboard."""
    db = config.inbox.db
    app.secret_key = config.channels.secret_key
    # A key generated once and kept in the database is shared by every gunicorn worker and
    # every machine on that database, survives restarts, and needs no writable .env.
    app.session_interface = StoredKeySessions(
        lambda: WebSecrets(db).get_or_create(SESSION_KEY_NAME, lambda: secrets.token_urlsafe(48), config.clock())
    )
    public = (config.settings.public_url or "").lower()
    app.config.update(
        SESSION_COOKIE_NAME="tierup_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
        session.permanent = True
    return token


def csrf_ok() -> bool:
    """Whether the posted form carries this session's CSRF token."""
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def page(template: str, status: int = 200, headers: Mapping[str, str] | None = None, **context: Any) -> Response:
    """A rendered page with the security headers (autoescaped: every template is .html)."""
    response = current_app.make_response((render_template(template, **context), status))
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


def message_page(status: int, title: str, text: str, *, link: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> Response:  # fmt: skip
    """A short page that says what went wrong and what to do (errors, limits, switched-off pages)."""
    return page("message.html", status, headers, title=title, text=text, link=link)


def sessions_ready() -> Response | None:
    """A 503 page when sessions cannot be signed yet (no key: the database is not reachable)."""
    if current_app.secret_key:
        return None
    return message_page(503, "Temporarily unavailable", "This page is not available right now. Please try again later.",
                        headers={"Retry-After": "30"})  # fmt: skip


def client_address() -> str:
    """The client's IP: as the server saw it, or as the trusted proxies did (TIERUP_TRUSTED_PROXIES)."""
    return request.remote_addr or "unknown"


def client_key() -> str:
    """Who a per-client limit counts: the IPv4 address, or the IPv6 /64 (one host may hold all of one)."""
    address = client_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped  # ::ffff:192.0.2.1 is that IPv4 client
        return str(mapped) if mapped else str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# --- the form ------------------------------------------------------------------------------


def form_platform(config: WebConfig) -> Platform | None:
    """The platform the form escalates on: TIERUP_FORM_PLATFORM, else the one configured, Zendesk when both."""
    wanted = config.channels.form_platform
    if wanted is not None:
        return wanted if wanted in config.adapters else None
    if Platform.ZENDESK in config.adapters:
        return Platform.ZENDESK
    return next(iter(config.adapters), None)


@dataclass
class Submission:
    """What someone typed, as typed (for showing it again), and what was wrong with it."""

    ticket: str = ""
    email: str = ""
    reason: str = ""
    rationale: str = ""
    contact: str = ""
    submission: str = field(default_factory=lambda: str(uuid.uuid4()))
    errors: dict[str, str] = field(default_factory=dict)
    sd8: bool = False  # no usable ticket number: the page shows the procedure's SD8 answer


def reason_choices(policy: Policy) -> list[tuple[str, str]]:
    """(value, label) for each reason the policy knows, escalation reasons first, in the model's order."""
    offered = [r for r in Reason if r in policy.escalation_reasons] + [r for r in Reason if r in policy.urgency_reasons]
    return [(r.value, _capitalised(REASON_LABELS.get(r, r.value.replace("_", " ")))) for r in offered]


def _capitalised(label: str) -> str:
    return label[:1].upper() + label[1:]


def sd8_text(policy: Policy) -> Markup:
    """The policy's own SD8 answer (its ticket_number_reply), or a plain fallback."""
    context: dict[str, Any] = {
        "ticket": None, "request": None, "requester": Person(id="form"), "reason": "", "reason_label": "",
        "rationale": None, "preferred_contact": None, "group": policy.default_group, "level": 1,
    }  # fmt: skip
    try:
        # The policy's templates are the administrator's, sandboxed and autoescaped.
        return Markup(policy.render("ticket_number_reply", **context))
    except TemplateError:
        return Markup("<p>{}</p>").format(SD8_FALLBACK)


def _configured() -> tuple[WebConfig, Policy, Platform] | Response:
    config = web_config()
    platform = form_platform(config)
    if platform is None or config.policy is None:
        return message_page(404, "Escalation form not available",
                            "The escalation form is not switched on. Please contact the Service Desk.")  # fmt: skip
    return config, config.policy, platform


def _form(policy: Policy, submission: Submission, status: int = 200) -> Response:
    return page(
        "escalate.html", status, form=submission, reasons=reason_choices(policy),
        rationale_required=policy.require_rationale, sd8=sd8_text(policy) if submission.sd8 else None,
        limits={"ticket": MAX_TICKET, "email": MAX_EMAIL, "rationale": MAX_RATIONALE, "contact": MAX_CONTACT},
    )  # fmt: skip


@blueprint.before_request
def _sessions() -> ResponseReturnValue | None:
    return sessions_ready()


@blueprint.get("/escalate")
def show_form() -> ResponseReturnValue:
    """The empty form."""
    found = _configured()
    if isinstance(found, Response):
        return found
    _, policy, _ = found
    return _form(policy, Submission())


@blueprint.post("/escalate")
def submit_form() -> ResponseReturnValue:
    """Check the fields, store one form delivery and queue it; the same confirmation whatever the ticket."""
    found = _configured()
    if isinstance(found, Response):
        return found
    config, policy, platform = found
    if not csrf_ok():
        return message_page(400, "This form has expired",
                            "We could not accept this form: it has expired or did not come from this site. "
                            "Please open the form again and resend your request.",
                            link=("/escalate", "Open the escalation form"))  # fmt: skip
    submission = _read(platform, policy)
    if submission.errors:
        return _form(policy, submission, 422)

    ticket = ticket_number(platform, submission.ticket)
    email = email_address(submission.email)
    assert ticket is not None and email is not None  # checked by _read
    now = config.clock()
    delivery_id = _delivery_id(
        submission.submission, ticket, email.lower(), submission.reason, submission.rationale, submission.contact
    )
    # A page sent again (a refresh, a second click) is the request already stored: it is answered the
    # same and takes nothing from the sender's allowance, or a double-click could shut them out for an hour.
    if config.inbox.find(platform, delivery_id) is None:
        limits = RateLimits(config.inbox.db)
        keys = (f"form-email:{email.lower()}", f"form-ip:{client_key()}")
        wait = limits.acquire(keys, limit=config.channels.form_rate_limit, window=RATE_WINDOW, now=now)
        if wait is not None:
            log.info("form: rate limit reached; retry in %.0fs", wait)
            return message_page(429, "Too many requests",
                                "You have sent several escalation requests in a short time. Please wait a while "
                                "before you send another; the requests you sent are being handled.",
                                headers=retry_after(wait))  # fmt: skip
    body = form_body(
        ticket=ticket, email=email, reason=Reason(submission.reason), rationale=submission.rationale or None,
        preferred_contact=submission.contact or None, submitted_at=now,
    )  # fmt: skip
    delivery = Delivery(platform=platform, delivery_id=delivery_id, headers=form_headers(), body=body, received_at=now)
    with log_context(delivery_id=delivery_id, ticket_ref=ticket):
        recorded = config.intake.accept(Arrival(delivery, FORM_KIND, ticket, now))
        if recorded.created:
            log.info("form submission stored as %s", recorded.id)
            config.metrics.received.inc(platform.value)
        else:
            log.info("form submission sent twice; already stored as %s", recorded.id)
    labels = dict(reason_choices(policy))
    return page("escalate_sent.html", message=CONFIRMATION, form=submission, ticket=ticket, email=email,
                reason_label=labels.get(submission.reason, submission.reason))  # fmt: skip


def _delivery_id(submission: str, *fields: str) -> str:
    """The page's own id for this submission (a uuid4 made with it) and what it asks, so a resend is stored once.

    What it asks is part of it: the Back button keeps the page's id, and a request edited
    and sent again from it (another ticket, say) is another request, not a resend to drop.
    """
    try:
        parsed = uuid.UUID(submission)
    except ValueError:
        parsed = uuid.uuid4()
    page = str(parsed) if parsed.version == 4 else str(uuid.uuid4())
    asked = hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode("utf-8", "replace")).hexdigest()[:16]
    return f"{page}:{asked}"


def _field(name: str) -> str:
    value = request.form.get(name, "")
    return clean_text(value) if isinstance(value, str) else ""


def _read(platform: Platform, policy: Policy) -> Submission:
    """The posted fields and, per field, what is wrong with them."""
    s = Submission(
        ticket=_field("ticket"), email=_field("email"), reason=_field("reason"), rationale=_field("rationale"),
        contact=_field("contact"), submission=_field("submission") or str(uuid.uuid4()),
    )  # fmt: skip
    errors = s.errors
    example = "SUP-123" if platform is Platform.JIRA else "12345"
    if not s.ticket:
        errors["ticket"] = "Enter the number of your existing ticket."
        s.sd8 = True
    elif len(s.ticket) > MAX_TICKET or ticket_number(platform, s.ticket) is None:
        errors["ticket"] = f"Enter the ticket number as it appears on your ticket, for example {example}."
        s.sd8 = True
    if not s.email:
        errors["email"] = "Enter your email address."
    elif email_address(s.email) is None:
        errors["email"] = "Enter an email address in the right format, like name@example.com."
    if s.reason not in dict(reason_choices(policy)):
        errors["reason"] = "Choose the reason for the escalation."
    if policy.require_rationale and not s.rationale:
        errors["rationale"] = "Explain the business impact: why this ticket needs more urgency."
    elif len(s.rationale) > MAX_RATIONALE:
        errors["rationale"] = f"Keep the business rationale to {MAX_RATIONALE} characters or fewer."
    if len(s.contact) > MAX_CONTACT:
        errors["contact"] = f"Keep the preferred contact method to {MAX_CONTACT} characters or fewer."
    return s


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    # A page, not the receivers' JSON: a person is reading (e.g. 413 for an oversized form).
    return message_page(exc.code or 500, exc.name, exc.description or exc.name)


def storage_unavailable(exc: SQLAlchemyError) -> Response:
    """The pages' 503 when the database does not answer: a page a person can act on, not the receivers' JSON."""
    log.error("storage unavailable: %s", type(exc).__name__)
    return message_page(503, "Temporarily unavailable",
                        "We could not take this just now. Nothing was stored: please go back and send it again in a "
                        "minute.", headers={"Retry-After": "30"})  # fmt: skip


blueprint.register_error_handler(SQLAlchemyError, storage_unavailable)


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response
