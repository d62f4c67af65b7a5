"""A Jira site mocked with `responses` under the real `jira` client, and deliveries built from fixtures."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from adapters.jira import JiraAdapter, build_adapter
from integration.model import Decision, Event, Ignored, Platform
from integration.policy import Policy, load_policy
from integration.ports import Delivery
from integration.service import MemoryStore, handle_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "jira"
SITE = "https://some-instance-test.atlassian.net"
DC_SITE = "https://jira.example.org"
SECRET = "whsec-new-4f1d"
OLD_SECRET = "whsec-old-93ab"
BOT = "712020:7d1e8b1c-0000-4000-8000-tierupbot001"
# Tuesday 10 March 2026, 10:00 UTC: a working morning in Warsaw and London (the fixtures' timestamps).
NOW = datetime(2026, 3, 10, 10, 0, 5, tzinfo=UTC)

ENV: dict[str, str] = {
    "JIRA_URL": SITE,
    "JIRA_EMAIL": "tierup@support.example",
    "JIRA_API_TOKEN": "api-token-1",
    "JIRA_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}",
    "JIRA_BOT_ACCOUNT": BOT,
    "JIRA_PROJECTS": "SUP",
    "JIRA_FIELD_REASON": "customfield_10100",
    "JIRA_FIELD_RATIONALE": "customfield_10101",
    "JIRA_FIELD_PREFERRED_CONTACT": "customfield_10102",
    "JIRA_FIELD_REQUESTED_PRIORITY": "customfield_10103",
    "JIRA_FIELD_REGION": "customfield_10104",
    "JIRA_FIELD_LEAD_GROUP": "customfield_10105",
    "JIRA_FIELD_FIRST_CONTACT_DUE": "customfield_10106",
    "JIRA_ESCALATION_REQUEST_TYPE": "Escalation request",
}
DC_ENV: dict[str, str] = {
    **{k: v for k, v in ENV.items() if k not in ("JIRA_EMAIL", "JIRA_API_TOKEN")},
    "JIRA_URL": DC_SITE,
    "JIRA_PAT": "pat-dc-1",
    "JIRA_BOT_ACCOUNT": "tierup",
}


def fixture(name: str) -> Any:
    """A fixture's JSON."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    """A fixture's bytes, exactly as stored (what Jira would have signed)."""
    return (FIXTURES / name).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(body: bytes | Any, delivery_id: str = "wh-1", attempt: int = 1) -> Delivery:
    """A stored delivery of `body` (bytes, or JSON to serialise) as the inbox hands it to the worker."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Atlassian-Webhook-Identifier": delivery_id, "Content-Type": "application/json"}
    return Delivery(
        platform=Platform.JIRA, delivery_id=delivery_id, headers=headers, body=data, received_at=NOW, attempt=attempt
    )


@dataclass
class Site:
    """The mocked Jira: register answers, then read back what Tierup sent."""

    rsps: responses.RequestsMock
    base: str = SITE

    def api(self, path: str) -> str:
        return f"{self.base}/rest/api/2/{path}"

    def sd(self, path: str) -> str:
        return f"{self.base}/rest/servicedeskapi/{path}"

    def calls(self) -> list[tuple[str, str]]:
        """(method, path?query) of every call except the client's serverInfo at construction."""
        out = []
        for call in self.rsps.calls:
            parts = urlsplit(call.request.url or "")
            if not parts.path.endswith("/serverInfo"):
                out.append((call.request.method or "", parts.path + (f"?{parts.query}" if parts.query else "")))
        return out

    def sent(self, method: str, path_end: str) -> list[Any]:
        """The JSON bodies sent by `method` to URLs whose path ends with `path_end`, in order."""
        bodies = []
        for call in self.rsps.calls:
            if call.request.method == method and urlsplit(call.request.url or "").path.endswith(path_end):
                body = call.request.body
                bodies.append(json.loads(body) if body else None)
        return bodies

    def query(self, method: str, path_end: str) -> dict[str, list[str]]:
        for call in self.rsps.calls:
            if call.request.method == method and urlsplit(call.request.url or "").path.endswith(path_end):
                return parse_qs(urlsplit(call.request.url or "").query)
        raise AssertionError(f"no {method} …{path_end}")

    def count(self) -> Counts:
        """Calls by kind: reads (GET), edits (PUT issue), comments (POST comment), others."""
        c = Counts()
        for method, path in self.calls():
            bare = path.split("?")[0]
            if method == "GET":
                c.reads += 1
            elif method == "PUT" and bare.rsplit("/", 2)[-2] == "issue":
                c.edits += 1
            elif method == "POST" and bare.endswith("/comment"):
                c.comments += 1
            else:
                c.other.append(f"{method} {bare.removeprefix(self.base)}")
        return c

    # --- common answers ---

    def sla(self, key: str, name: str | None) -> None:
        """The JSM SLA answer for `key` (a fixture), or 404 when `name` is None (not a request)."""
        url = self.sd(f"request/{key}/sla")
        if name is None:
            self.rsps.get(url, status=404, json={"errorMessage": "Request not found", "i18nErrorMessage": {}})
        else:
            self.rsps.get(url, json=fixture(name))

    def writes(self, key: str, *, transitions: bool = True) -> None:
        """Answers to one transition's writes on `key`: edit, comments, marker, transition."""
        self.rsps.put(self.api(f"issue/{key}"), status=204)
        self.rsps.post(self.api(f"issue/{key}/comment"), status=201, json=fixture("rest_api2_comment_added.json"))
        self.rsps.post(
            self.sd(f"request/{key}/comment"), status=201, json=fixture("servicedeskapi_request_comment_added.json")
        )
        self.rsps.put(self.api("comment/10101/properties/tierup.key"), status=201)
        if transitions:
            self.rsps.get(self.api(f"issue/{key}/transitions"), json=fixture("rest_api2_issue_transitions.json"))
            self.rsps.post(self.api(f"issue/{key}/transitions"), status=204)


@dataclass
class Counts:
    reads: int = 0
    edits: int = 0
    comments: int = 0
    other: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.reads} reads, {self.edits} edits, {self.comments} comments, other: {self.other}"


@pytest.fixture
def site() -> Iterator[Site]:
    """Jira Cloud at SITE (serverInfo answers; everything else must be registered by the test)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_cloud.json"))
        yield Site(rsps)


@pytest.fixture
def dc_site() -> Iterator[Site]:
    """Jira Data Center at DC_SITE."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{DC_SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_dc.json"))
        yield Site(rsps, base=DC_SITE)


def adapter_for(policy: str | Policy, env: dict[str, str] | None = None) -> JiraAdapter:
    built = build_adapter(env or ENV, policy if isinstance(policy, Policy) else load_policy(policy))
    assert built is not None
    return built


class Run:
    """Deliveries through parse → handle_event with the adapter's gateway, one MemoryStore and a fixed clock."""

    def __init__(self, policy: str, env: dict[str, str] | None = None, clock: datetime = NOW) -> None:
        self.policy = load_policy(policy)
        self.adapter = adapter_for(self.policy, env)
        self.store = MemoryStore()
        self.now = clock

    def parse(self, name_or_payload: str | Any, delivery_id: str = "wh-1") -> Event | Ignored:
        body = raw(name_or_payload) if isinstance(name_or_payload, str) else name_or_payload
        return self.adapter.parse(delivery(body, delivery_id))

    def deliver(self, name_or_payload: str | Any, delivery_id: str = "wh-1", *, retry: bool = False) -> Decision:
        """A delivery that must come out as a decision."""
        result = self.deliver_any(name_or_payload, delivery_id, retry=retry)
        assert isinstance(result, Decision), result
        return result

    def deliver_any(
        self, name_or_payload: str | Any, delivery_id: str = "wh-1", *, retry: bool = False
    ) -> Decision | Ignored:
        event = self.parse(name_or_payload, delivery_id)
        if isinstance(event, Ignored):
            return event
        return handle_event(
            event,
            policy=self.policy,
            gateway=self.adapter.gateway,
            store=self.store,
            clock=lambda: self.now,
            retry=retry,
        )
