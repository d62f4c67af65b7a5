"""Shared pieces of the Zendesk tests: settings, fixtures, signed deliveries, and a Zendesk answered by `responses`."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from integration.model import Platform
from integration.ports import Delivery

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zendesk"
URL = "https://acme.zendesk.com"
API = f"{URL}/api/v2"
# Tuesday 10 March 2026, 10:00 UTC: a working morning in Warsaw and London.
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
BOT_ID = "6130907999999"
TICKET = "4016"
STAMP = "2026-03-10T09:59:58Z"  # updated_at of api_ticket_show_with_sideloads.json

GROUP_IDS = {
    "Support": 6130830360001,
    "Technical Support Team Leaders": 6130830360010,
    "Technical Support Team Leaders APAC": 6130830360011,
    "Technical Support Management": 6130830360012,
    "Service Desk Managers": 6130830360020,
    "Head of Service Delivery": 6130830360021,
}
FIELD_IDS = {
    "ZENDESK_FIELD_REASON": 6130900000001,
    "ZENDESK_FIELD_RATIONALE": 6130900000002,
    "ZENDESK_FIELD_CONTACT": 6130900000003,
    "ZENDESK_FIELD_PRIORITY": 6130900000004,
    "ZENDESK_FIELD_NOTE": 6130900000005,
    "ZENDESK_FIELD_DUE": 6130900000006,
}
NOTE_FIELD = FIELD_IDS["ZENDESK_FIELD_NOTE"]
DUE_FIELD = FIELD_IDS["ZENDESK_FIELD_DUE"]


def fixture(name: str) -> Any:
    """A JSON fixture from tests/fixtures/zendesk/, parsed (a fresh copy each time)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def changed(data: Any, **paths: Any) -> Any:
    """A deep copy of `data` with values replaced at dotted paths spelled with `__` (ticket__tags=...)."""
    out = copy.deepcopy(data)
    for path, value in paths.items():
        keys = path.split("__")
        target = out
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return out


def env(**overrides: str) -> dict[str, str]:
    """Settings of an installed Zendesk: credentials, secret, bot user, group and field ids."""
    values = {
        "ZENDESK_URL": URL,
        "ZENDESK_EMAIL": "tierup@acme.example",
        "ZENDESK_API_TOKEN": "api-token-for-tests",
        "ZENDESK_WEBHOOK_SECRET": SECRET,
        "ZENDESK_BOT_USER_ID": BOT_ID,
        "ZENDESK_GROUP_IDS": json.dumps(GROUP_IDS),
        **{name: str(fid) for name, fid in FIELD_IDS.items()},
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v != ""}


def delivery(payload: Any, delivery_id: str = "01HQ0INVOCATION0000000001", received_at: datetime = NOW) -> Delivery:
    """A stored Zendesk delivery of `payload` (a dict is serialised the way Zendesk sends JSON)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    headers = {"X-Zendesk-Webhook-Invocation-Id": delivery_id, "Content-Type": "application/json; charset=utf-8"}
    return Delivery(Platform.ZENDESK, delivery_id, headers, body, received_at)


def signed_headers(body: bytes, secret: str = SECRET, timestamp: str = "2026-03-10T10:00:00Z") -> dict[str, str]:
    """The headers Zendesk sends with a delivery (shapes from api_webhook_invocation_attempts_response.json)."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return {
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode("ascii"),
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Zendesk Webhook",
        "X-Zendesk-Account-Id": "18525119",
        "X-Zendesk-Webhook-Id": "01HAN96XNH1J7DY8D7RZ22QMT9",
        "X-Zendesk-Webhook-Invocation-Id": "01HANA2B5D5W9XSJS3NE5SQA1J",
    }


def update_response(ticket_id: str, metadata: dict[str, Any] | None = None, updated_at: str = STAMP) -> dict[str, Any]:
    """Zendesk's answer to a ticket PUT (the recorded update response, for ticket `ticket_id`)."""
    data: dict[str, Any] = fixture("api_ticket_update_response_with_change_audit.json")
    data["ticket"]["id"] = int(ticket_id)
    data["ticket"]["updated_at"] = updated_at
    data["audit"]["ticket_id"] = int(ticket_id)
    data["audit"]["metadata"]["custom"] = metadata or {}
    return data


@dataclass(frozen=True)
class Raw:
    """A response body sent as it is (not JSON-encoded), with only the headers given."""

    text: str


@dataclass
class FakeZendesk:
    """The Zendesk REST API as `responses` answers it: tickets to read, PUTs recorded, every call counted."""

    mock: responses.RequestsMock
    base: str = API
    tickets: dict[str, Any] = field(default_factory=dict)
    audits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audits_oldest_first: bool = False  # True: the audits list ignores sort_order (the worst case for a retry)
    # Answers to give the next PUTs / ticket reads, e.g. [(409, {...}, {})], consumed in order; None = answer normally.
    put_failures: list[tuple[int, Any, dict[str, str]] | None] = field(default_factory=list)
    put_stamps: list[str] = field(default_factory=list)  # the ticket's updated_at each PUT answers (else STAMP)
    read_failures: list[tuple[int, Any, dict[str, str]] | Exception | None] = field(default_factory=list)
    on_put: Callable[[str, dict[str, Any]], None] | None = None
    # Versions a ticket takes on, one per later read (after the first show()).
    later_versions: dict[str, list[Any]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ticket_url = re.compile(re.escape(self.base) + r"/tickets/(\d+)\.json(\?.*)?$")
        audits_url = re.compile(re.escape(self.base) + r"/tickets/(\d+)/audits\.json(\?.*)?$")
        self.mock.add_callback(responses.GET, ticket_url, callback=self._show)
        self.mock.add_callback(responses.GET, audits_url, callback=self._audits)
        self.mock.add_callback(responses.PUT, ticket_url, callback=self._put)

    def _ticket_id(self, url: str, pattern: str) -> str:
        match = re.search(pattern, url)
        assert match, url
        return match.group(1)

    def _show(self, request: Any) -> tuple[int, dict[str, str], str]:
        ref = self._ticket_id(request.url, r"/tickets/(\d+)\.json")
        failure = self.read_failures.pop(0) if self.read_failures else None
        if isinstance(failure, Exception):
            raise failure  # what requests raises when the connection times out or drops
        if failure is not None:
            status, body, headers = failure
            return status, {"Content-Type": "application/json", **headers}, json.dumps(body)
        later = self.later_versions.get(ref)
        if later and self.served.get(ref):
            self.tickets[ref] = later.pop(0)  # the ticket changed since the last read
        self.served[ref] = self.served.get(ref, 0) + 1
        if ref not in self.tickets:
            return 404, {"Content-Type": "application/json"}, json.dumps(fixture("api_error_404_record_not_found.json"))
        return 200, {"Content-Type": "application/json"}, json.dumps(self.tickets[ref])

    def _audits(self, request: Any) -> tuple[int, dict[str, str], str]:
        ref = self._ticket_id(request.url, r"/tickets/(\d+)/audits")
        query = parse_qs(urlsplit(request.url).query)
        audits = list(self.audits.get(ref, []))
        if query.get("sort_order") == ["desc"] and not self.audits_oldest_first:
            audits.reverse()  # newest first, as asked
        page, size = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["100"])[0])
        shown = audits[(page - 1) * size : page * size]
        after = f"{self.base}/tickets/{ref}/audits.json?page={page + 1}" if page * size < len(audits) else None
        body = {"audits": shown, "next_page": after, "previous_page": None, "count": len(audits)}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _put(self, request: Any) -> tuple[int, dict[str, str], str]:
        ref = self._ticket_id(request.url, r"/tickets/(\d+)\.json")
        failure = self.put_failures.pop(0) if self.put_failures else None
        if failure is not None:
            status, body, headers = failure
            if isinstance(body, Raw):  # a proxy's page, a redirect: not Zendesk's JSON
                return status, headers, body.text
            return status, {"Content-Type": "application/json", **headers}, json.dumps(body)
        sent = json.loads(request.body)["ticket"]
        if self.on_put:
            self.on_put(ref, sent)
        metadata = sent.get("metadata") or {}
        answer = update_response(ref, metadata, self.put_stamps.pop(0) if self.put_stamps else STAMP)
        self.audits.setdefault(ref, []).append(answer["audit"])
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    def show(self, ref: str = TICKET, data: Any | None = None, **changes: Any) -> dict[str, Any]:
        """Serve ticket `ref` (the recorded show-with-sideloads fixture, changed at dotted paths)."""
        base = data if data is not None else fixture("api_ticket_show_with_sideloads.json")
        shown: dict[str, Any] = changed(base, **changes)
        shown["ticket"]["id"] = int(ref)
        self.tickets[ref] = shown
        return shown

    def calls(self, method: str) -> list[Any]:
        return [c for c in self.mock.calls if c.request.method == method]

    @property
    def reads(self) -> int:
        return len(self.calls("GET"))

    @property
    def writes(self) -> int:
        return len([c for c in self.mock.calls if c.request.method in ("PUT", "POST", "PATCH", "DELETE")])

    def put_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(c.request.body) for c in self.calls("PUT")]
