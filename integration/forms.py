"""The escalation form channel (SD3): the stored form delivery and the EscalationRequest it becomes.

Codec-like and pure: the web form (webhooks.escalate) writes a small JSON document into the
inbox with `form_body`; the worker reads it back with `parse_form_delivery`. `FormAwareAdapter`
wraps a platform adapter so that form deliveries of its platform never reach the platform's
own parser, while webhook deliveries cannot pretend to be forms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from integration.model import Channel, EscalationRequest, Event, Ignored, Person, Platform, Reason
from integration.ports import Classified, Delivery, Gateway, PayloadError, PlatformAdapter, SignatureError

FORM_SOURCE_HEADER = "x-tierup-source"
FORM_SOURCE = "form"
FORM_KIND = "tierup.form"
FORM_VERSION = 1

# Field caps: a form field is not a place for an essay, and the stored body stays small.
MAX_TICKET = 32
MAX_EMAIL = 254  # RFC 5321's limit on a forward path
MAX_RATIONALE = 2000
MAX_CONTACT = 200

# ASCII digits only: str.isdigit() takes "٣٤٥" too, which no helpdesk numbers a ticket with.
_ZENDESK_NUMBER = re.compile(r"#?\s*(\d{1,12})", re.ASCII)
_JIRA_KEY = re.compile(r"([A-Z][A-Z0-9_]{1,9}-\d{1,9})", re.ASCII)
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FormSourceError(SignatureError):
    """A webhook delivery that claims to come from the escalation form; only Tierup's own form page may."""


def ticket_number(platform: Platform, text: str) -> str | None:
    """The ticket number (Zendesk) or issue key (Jira) a person typed, normalised, or None if it is not one."""
    given = text.strip()
    if platform is Platform.JIRA:
        match = _JIRA_KEY.fullmatch(given.upper())
        return match.group(1) if match else None
    match = _ZENDESK_NUMBER.fullmatch(given)
    return str(int(match.group(1))) if match else None  # "004016" is ticket 4016, stored and read as 4016


def email_address(text: str) -> str | None:
    """The address, trimmed, if it looks like one (the helpdesk decides whether it is on the ticket)."""
    given = text.strip()
    return given if len(given) <= MAX_EMAIL and _EMAIL.fullmatch(given) else None


def clean_text(text: str) -> str:
    """Form text without control characters (newlines and tabs stay) and surrounding blanks."""
    return _CONTROL.sub("", text.replace("\r\n", "\n")).strip()


def form_body(
    *,
    ticket: str,
    email: str,
    reason: Reason,
    rationale: str | None,
    preferred_contact: str | None,
    submitted_at: datetime,
) -> bytes:
    """The stored body of one form submission (read back by parse_form_delivery)."""
    document = {
        "form": FORM_VERSION,
        "ticket": ticket,
        "email": email,
        "reason": reason.value,
        "rationale": rationale or None,
        "preferred_contact": preferred_contact or None,
        "submitted_at": submitted_at.isoformat(),
    }
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def form_headers() -> dict[str, str]:
    """The headers a form delivery is stored with; the source header routes it in the worker."""
    return {FORM_SOURCE_HEADER: FORM_SOURCE, "content-type": "application/json"}


def is_form_delivery(delivery: Delivery) -> bool:
    """Whether a stored delivery came from the escalation form."""
    return _header(delivery.headers, FORM_SOURCE_HEADER) == FORM_SOURCE


def parse_form_delivery(delivery: Delivery) -> EscalationRequest:
    """The EscalationRequest a stored form submission asks for; PayloadError when the body is not one."""
    try:
        data = json.loads(delivery.body)
    except (ValueError, RecursionError):
        raise PayloadError("form delivery: body is not JSON") from None
    if not isinstance(data, dict):
        raise PayloadError("form delivery: body is not a JSON object")
    if data.get("form") != FORM_VERSION:
        raise PayloadError(f"form delivery: unknown form version {data.get('form')!r}")
    ticket = ticket_number(delivery.platform, _text(data, "ticket", MAX_TICKET, required=True) or "")
    if ticket is None:
        raise PayloadError("form delivery: ticket is not a ticket number")
    email = email_address(_text(data, "email", MAX_EMAIL, required=True) or "")
    if email is None:
        raise PayloadError("form delivery: email is not an address")
    reason_text = _text(data, "reason", 64, required=True) or ""
    try:
        reason = Reason(reason_text)
    except ValueError:
        raise PayloadError(f"form delivery: unknown reason {reason_text!r}") from None
    submitted = _text(data, "submitted_at", 64, required=True) or ""
    try:
        submitted_at = datetime.fromisoformat(submitted)
    except ValueError:
        raise PayloadError("form delivery: submitted_at is not an ISO 8601 time") from None
    if submitted_at.tzinfo is None:
        raise PayloadError("form delivery: submitted_at has no offset")
    return EscalationRequest(
        platform=delivery.platform,
        ticket_ref=ticket,
        # Not trusted as anyone yet: the service checks the address against the ticket (on_ticket).
        requested_by=Person(id=f"form:{email.lower()}", email=email),
        channel=Channel.FORM,
        reason=reason,
        received_at=submitted_at,
        rationale=_text(data, "rationale", MAX_RATIONALE),
        preferred_contact=_text(data, "preferred_contact", MAX_CONTACT),
        delivery_id=delivery.delivery_id,
    )


def _text(data: Mapping[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    """A checked string field of the stored body: the right type, not too long, present when required."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise PayloadError(f"form delivery: {key} is missing")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"form delivery: {key} must be a string")
    if len(value) > limit:
        raise PayloadError(f"form delivery: {key} is longer than {limit} characters")
    return value


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class FormAwareAdapter:
    """A platform adapter that hands form deliveries to parse_form_delivery and the rest to `inner`."""

    def __init__(self, inner: PlatformAdapter) -> None:
        self.inner = inner

    # The port's attributes are the inner adapter's, read and written through.
    @property
    def platform(self) -> Platform:
        return self.inner.platform

    @platform.setter
    def platform(self, value: Platform) -> None:
        self.inner.platform = value

    @property
    def gateway(self) -> Gateway:
        return self.inner.gateway

    @gateway.setter
    def gateway(self, value: Gateway) -> None:
        self.inner.gateway = value

    @property
    def dry_run(self) -> bool:
        return self.inner.dry_run

    @dry_run.setter
    def dry_run(self, value: bool) -> None:
        self.inner.dry_run = value

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """The inner adapter's check, after refusing webhooks that claim to be form submissions."""
        # Platform signatures do not cover headers: without this, a replayed delivery with
        # the header added would be read as a form submission by the worker.
        if _header(headers, FORM_SOURCE_HEADER) is not None:
            raise FormSourceError(f"a webhook may not carry {FORM_SOURCE_HEADER}")
        self.inner.verify(headers, body, query, now)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The inner adapter's delivery id."""
        return self.inner.delivery_id(headers, body)

    def replay_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The inner adapter's replay key."""
        return self.inner.replay_key(headers, body)

    def classify(self, payload: Any) -> Classified | None:
        """The inner adapter's classification (forms are stored already classified)."""
        return self.inner.classify(payload)

    def parse(self, delivery: Delivery) -> Event | Ignored:
        """A form submission's request, or whatever the inner adapter reads from a webhook."""
        if is_form_delivery(delivery):
            return parse_form_delivery(delivery)
        return self.inner.parse(delivery)

    def __getattr__(self, name: str) -> Any:
        # Platform-specific extras (sweeps, installers) stay reachable through the wrapper.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
