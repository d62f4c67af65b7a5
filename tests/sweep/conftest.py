"""Shared pieces of the SLA sweep tests: a scratch database and queue, ticket locks, recorded sleeps,
and Zendesk's metric events export, show_many, update_many and job statuses answered by `responses`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from huey import SqliteHuey

from integration.queue import HueyTicketLocks
from integration.store import Database, SqlEscalationStore, SweepCursors
from tests.zendesk.helpers import API, NOW, FakeZendesk, fixture, update_response

# --- the database, the queue's storage and the ticket locks --------------------------------------


@dataclass
class SweepStorage:
    """A migrated SQLite database with its escalation store and sweep cursors, and Huey's ticket locks."""

    database: Database
    escalations: SqlEscalationStore
    cursors: SweepCursors
    locks: HueyTicketLocks


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SweepStorage]:
    database = Database(f"sqlite:///{tmp_path / 'tierup.db'}")
    database.upgrade()
    huey = SqliteHuey("tierup-sweep-tests", filename=str(tmp_path / "queue.db"), results=False, utc=True)
    yield SweepStorage(database, SqlEscalationStore(database), SweepCursors(database), HueyTicketLocks(huey))
    database.dispose()


@dataclass
class Sleeps:
    """An injectable sleep that records what it was asked to wait and advances a monotonic clock."""

    waits: list[float] = field(default_factory=list)
    now: float = 1000.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


# --- Zendesk: the metric events export and the bulk endpoints ---------------------------------------

EXPORT_URL = f"{API}/incremental/ticket_metric_events.json"
T0 = NOW - timedelta(hours=6)  # the tests' events start here


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_event(
    event_id: int,
    ticket: int | str,
    kind: str,
    at: datetime,
    metric: str = "reply_time",
    instance: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    """One ticket metric event in the shape of ticket_metric_event_apply_sla_object.json (the list's items)."""
    event: dict[str, Any] = {
        "id": event_id,
        "ticket_id": int(ticket),
        "metric": metric,
        "instance_id": instance,
        "type": kind,
        "time": iso(at),
    }
    if kind == "breach":
        event["deleted"] = False
    if kind == "apply_sla":
        sample = fixture("ticket_metric_event_apply_sla_object.json")
        event["sla"] = sample["sla"]
    if kind == "update_status":
        event["status"] = {"calendar": 90, "business": 60}
    event.update(extra)
    return event


@dataclass
class ZendeskSweepApi(FakeZendesk):
    """FakeZendesk plus what the sweep uses: the export (time-based pages), show_many, update_many, job statuses.

    The export serves the events with time >= start_time, `page_size` at a time, with
    `end_time` = the last served event's time, as Zendesk's time-based exports do (so the
    event at a page boundary is served again on the next page).
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 1000
    export_failures: list[tuple[int, Any, dict[str, str]] | None] = field(default_factory=list)
    bulk_failures: list[tuple[int, Any, dict[str, str]] | None] = field(default_factory=list)
    failing_ids: set[str] = field(default_factory=set)  # reported failed in the job's results
    working_polls: int = 1  # polls that still answer "working" before "completed"
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _job_polls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.on_put = self.apply_fields
        self.mock.add_callback(responses.GET, re.compile(re.escape(EXPORT_URL) + r"(\?.*)?$"), callback=self._export)
        show_many = re.compile(re.escape(f"{self.base}/tickets/show_many.json") + r"(\?.*)?$")
        self.mock.add_callback(responses.GET, show_many, callback=self._show_many)
        self.mock.add_callback(responses.PUT, f"{self.base}/tickets/update_many.json", callback=self._update_many)
        job_url = re.compile(re.escape(f"{self.base}/job_statuses/") + r"([\w-]+)\.json$")
        self.mock.add_callback(responses.GET, job_url, callback=self._job)

    # --- tickets -----------------------------------------------------------------------------

    def open_tickets(self, refs: Any, **changes: Any) -> None:
        """Serve each of `refs` as an open ticket (the recorded show-with-sideloads fixture)."""
        base = fixture("api_ticket_show_with_sideloads.json")
        for ref in refs:
            self.show(str(ref), data=copy.deepcopy(base), **changes)

    def tags(self, ref: str) -> list[str]:
        return list(self.tickets[ref]["ticket"]["tags"])

    def apply_fields(self, ref: str, sent: dict[str, Any]) -> None:
        """What a ticket update does to the ticket, so later reads see it (tags, group, priority, comment)."""
        shown = self.tickets.get(ref)
        if shown is None:
            return
        ticket = shown["ticket"]
        tags = [t for t in ticket["tags"] if t not in set(sent.get("remove_tags") or ())]
        tags += [t for t in sent.get("additional_tags") or () if t not in tags]
        ticket["tags"] = tags
        for key in ("group_id", "priority", "status"):
            if key in sent:
                ticket[key] = sent[key]
        if sent.get("comment"):
            self.comments.setdefault(ref, []).append(sent["comment"])

    # --- the export ---------------------------------------------------------------------------

    def _export(self, request: Any) -> tuple[int, dict[str, str], str]:
        failure = self.export_failures.pop(0) if self.export_failures else None
        if failure is not None:
            status, body, headers = failure
            return status, {"Content-Type": "application/json", **headers}, json.dumps(body)
        start = int(parse_qs(urlsplit(request.url).query)["start_time"][0])
        ordered = sorted(self.events, key=lambda e: (e["time"], e["id"]))
        served = [e for e in ordered if epoch(datetime.fromisoformat(e["time"].replace("Z", "+00:00"))) >= start]
        page = served[: self.page_size]
        end = epoch(datetime.fromisoformat(page[-1]["time"].replace("Z", "+00:00"))) if page else start
        full = len(page) == self.page_size
        body = {
            "ticket_metric_events": page,
            "next_page": f"{EXPORT_URL}?start_time={end}" if full else None,
            "count": len(page),
            "end_time": end,
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def export_starts(self) -> list[int]:
        """The start_time of every export call, in order."""
        return [
            int(parse_qs(urlsplit(c.request.url).query)["start_time"][0])
            for c in self.mock.calls
            if c.request.url.startswith(EXPORT_URL)
        ]

    # --- show_many ----------------------------------------------------------------------------

    def _show_many(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        ids = query["ids"][0].split(",")
        assert len(ids) <= 100, "show_many takes at most 100 ids"
        found = [self.tickets[i] for i in ids if i in self.tickets]
        body: dict[str, Any] = {"tickets": [s["ticket"] for s in found]}  # serialised below: no copy needed
        for key in ("users", "organizations", "groups"):
            merged: dict[Any, Any] = {}
            for shown in found:
                for item in shown.get(key) or ():
                    merged[item["id"]] = item
            body[key] = list(merged.values())
        body.update({"next_page": None, "previous_page": None, "count": len(found)})
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def show_many_calls(self) -> list[list[str]]:
        return [
            parse_qs(urlsplit(c.request.url).query)["ids"][0].split(",")
            for c in self.mock.calls
            if "/tickets/show_many.json" in c.request.url
        ]

    # --- update_many and its job ------------------------------------------------------------------

    def _update_many(self, request: Any) -> tuple[int, dict[str, str], str]:
        failure = self.bulk_failures.pop(0) if self.bulk_failures else None
        if failure is not None:
            status, body, headers = failure
            return status, {"Content-Type": "application/json", **headers}, json.dumps(body)
        sent = json.loads(request.body)["tickets"]
        assert len(sent) <= 100, "update_many takes at most 100 tickets"
        results = []
        for item in sent:
            ref = str(item["id"])
            if ref in self.failing_ids or ref not in self.tickets:
                failed = {"id": item["id"], "action": "update", "success": False, "status": "Failed"}
                results.append({**failed, "error": "TicketUpdateFailed", "details": "Status: closed prevents update"})
                continue
            self.apply_fields(ref, item)
            # Each ticket's update is audited with the metadata sent for it, as a single PUT's is.
            self.audits.setdefault(ref, []).append(update_response(ref, item.get("metadata"))["audit"])
            results.append({"id": item["id"], "action": "update", "success": True, "status": "Updated"})
        job_id = f"8b726e606741012ffc2d782bcb7848fe{len(self.jobs):02d}"
        self.jobs[job_id] = {"id": job_id, "url": f"{self.base}/job_statuses/{job_id}.json", "total": len(sent),
                             "progress": len(sent), "status": "completed", "message": "Completed at now",
                             "results": results}  # fmt: skip
        queued = {**self.jobs[job_id], "status": "queued", "progress": 0, "message": None, "results": None}
        return 200, {"Content-Type": "application/json"}, json.dumps({"job_status": queued})

    def _job(self, request: Any) -> tuple[int, dict[str, str], str]:
        job_id = request.url.rsplit("/", 1)[-1].removesuffix(".json")
        polls = self._job_polls[job_id] = self._job_polls.get(job_id, 0) + 1
        job = self.jobs[job_id]
        if polls <= self.working_polls:
            job = {**job, "status": "working", "progress": 0, "results": None}
        return 200, {"Content-Type": "application/json"}, json.dumps({"job_status": job})

    def bulk_bodies(self) -> list[list[dict[str, Any]]]:
        """The `tickets` of every update_many call, in order."""
        return [
            json.loads(c.request.body)["tickets"]
            for c in self.mock.calls
            if c.request.method == "PUT" and c.request.url.endswith("/tickets/update_many.json")
        ]

    def single_puts(self) -> list[tuple[str, dict[str, Any]]]:
        """(ticket id, ticket body) of every single-ticket PUT, in order."""
        out = []
        for c in self.mock.calls:
            match = re.search(r"/tickets/(\d+)\.json", c.request.url)
            if c.request.method == "PUT" and match:
                out.append((match.group(1), json.loads(c.request.body)["ticket"]))
        return out

    def count(self, what: Callable[[str, str], bool]) -> int:
        return sum(1 for c in self.mock.calls if what(c.request.method, c.request.url))


@pytest.fixture
def zendesk() -> Iterator[ZendeskSweepApi]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield ZendeskSweepApi(mock)
