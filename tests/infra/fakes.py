"""A small signed platform adapter over DryRunGateway, for testing the infrastructure before the real adapters.

It implements integration.ports.PlatformAdapter honestly: HMAC-SHA256 over the raw body,
a delivery id header, classify and parse of a JSON envelope whose `input` is the
`tierup decide` request format (integration.codec).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from integration.codec import CodecError, event_from_json
from integration.model import Action, Event, Ignored, Platform, TicketSnapshot
from integration.ports import Classified, Delivery, Gateway, PayloadError, SignatureError
from integration.service import DryRunGateway

SECRET = "whsec-test-4f1c9a2b7d"
SIGNATURE_HEADER = "X-Signed-Signature"
DELIVERY_HEADER = "X-Signed-Delivery-Id"
EVENT_HEADER = "X-Signed-Event"

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # a Tuesday morning in Warsaw


class SignedAdapterSignatureError(SignatureError):
    """The test platform's signature did not verify."""


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class ScriptedGateway(DryRunGateway):
    """A DryRunGateway whose apply first raises the scripted errors, recording every call."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[tuple[str, str, bool]] = field(default_factory=list)  # (ref, key, retry)

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        self.calls.append((ref, key, retry))
        if self.failures:
            raise self.failures.pop(0)
        super().apply(ref, actions, snapshot=snapshot, key=key, retry=retry)


class SignedAdapter:
    """PlatformAdapter for a made-up platform that signs its webhooks like Zendesk does."""

    HANDLED = ("escalation.requested", "escalation.reviewed", "ticket.echo")

    def __init__(self, *, gateway: ScriptedGateway | None = None, secret: str = SECRET, dry_run: bool = True) -> None:
        self.platform = Platform.ZENDESK
        self.scripted = gateway or ScriptedGateway(Platform.ZENDESK)  # what the tests script and inspect
        self.gateway: Gateway = self.scripted
        self.dry_run = dry_run
        self.secret = secret
        self.parsed: list[str] = []  # delivery ids in the order parse() saw them

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        given = headers.get(SIGNATURE_HEADER)
        if not given:
            raise SignedAdapterSignatureError("missing signature header")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), sign(body, self.secret).encode()):
            raise SignedAdapterSignatureError("signature does not match the body")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return headers.get(DELIVERY_HEADER) or None

    def replay_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return None

    def classify(self, payload: Any) -> Classified | None:
        if not isinstance(payload, dict):
            raise PayloadError("payload is not a JSON object")
        kind = payload.get("event")
        if kind not in self.HANDLED:
            return None
        ref = payload.get("ticket_ref")
        if ref is not None and not isinstance(ref, str | int):
            raise PayloadError("ticket_ref must be a string")
        return Classified(kind=str(kind), ticket_ref=str(ref) if ref is not None else None)

    def parse(self, delivery: Delivery) -> Event | Ignored:
        self.parsed.append(delivery.delivery_id)
        data = json.loads(delivery.body)
        if data.get("event") == "ticket.echo":
            return Ignored("our own write, echoed back", data.get("ticket_ref"))
        try:
            event = event_from_json(data["input"])
        except (CodecError, KeyError) as exc:
            raise PayloadError(f"input: {exc}") from None
        return replace(event, delivery_id=delivery.delivery_id)


# --- payloads --------------------------------------------------------------------------------

CHAMPION = {"id": "501", "email": "champ@club.example", "name": "Pat Champion", "tags": ["pg_champion"]}
LEAD = {"id": "900", "email": "lead@support.example", "name": "Lee Lead", "role": "lead"}


def ticket_json(ref: str) -> dict[str, Any]:
    return {
        "ref": ref, "status": "open", "priority": "normal", "group": "Support", "tags": ["gym"],
        "requester": CHAMPION, "organisation": {"id": "77", "name": "Club Warszawa", "region": "PL"},
    }  # fmt: skip


def request_payload(ref: str = "4016", at: datetime = T0, **changes: Any) -> dict[str, Any]:
    """An escalation request (lead-review LR5 when unchanged) for ticket `ref` at time `at`."""
    request = {
        "received_at": at.isoformat(),
        "platform": "zendesk",
        "channel": "macro",
        "reason": "wrong_resolution",
        "rationale": "Members cannot check in at the front desk: we lose revenue every hour",
        "preferred_contact": "phone +48 555 0100",
        "requested_by": CHAMPION,
        "ticket": ticket_json(ref),
        **changes,
    }
    return {"event": "escalation.requested", "ticket_ref": ref, "input": request}


def command_payload(command: str, ref: str = "4016", at: datetime = T0 + timedelta(hours=1)) -> dict[str, Any]:
    """A lead's review command (confirm, cancel, ...) on ticket `ref`."""
    request = {
        "received_at": at.isoformat(), "platform": "zendesk", "command": command, "ticket_ref": ref,
        "actor": LEAD, "ticket": {**ticket_json(ref), "tags": ["gym", "escalated"]},
    }  # fmt: skip
    return {"event": "escalation.reviewed", "ticket_ref": ref, "input": request}


def signed(payload: Any, delivery_id: str | None = None, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a correctly signed delivery."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {SIGNATURE_HEADER: sign(body, secret), "Content-Type": "application/json", EVENT_HEADER: "test"}
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    return body, headers


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
