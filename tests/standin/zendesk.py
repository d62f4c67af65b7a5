"""A Zendesk stand-in over real HTTP on 127.0.0.1: just what ZendeskGateway calls, with scripted failures.

Tierup's processes talk to it exactly as they talk to Zendesk (ZENDESK_URL=http://127.0.0.1:PORT,
zenpy underneath), so tests that run `tierup web` and `tierup worker` as real processes can
check what reached the helpdesk. It serves:

- GET  /api/v2/tickets/{id}.json?include=users,organizations,groups,slas (the recorded show fixture)
- PUT  /api/v2/tickets/{id}.json: tags (whole, additional_tags, remove_tags), group, priority,
  assignee, due date, custom fields, one comment, audit metadata, and safe_update with
  updated_stamp (409 when stale)
- GET  /api/v2/tickets/{id}/audits.json (newest first with sort_order=desc): how a retry checks
- GET  /api/v2/groups.json and /api/v2/users/me.json

Tickets live in memory in Zendesk's own JSON shapes. Every request is counted; every comment
is kept with the transition key Tierup put in the update's metadata. Failures are scripted
per request: answer a status (429 with Retry-After, 500) for the next N, hang for T seconds
before answering (longer than the client's timeout), or hold a write until the test lets it go.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.zendesk.helpers import GROUP_IDS, changed, fixture

SHOW_FIXTURE = "api_ticket_show_with_sideloads.json"
UPDATE_FIXTURE = "api_ticket_update_response_with_change_audit.json"
EMAIL = "tierup@acme.example"
API_TOKEN = "api-token-for-the-stand-in"
BOT_USER_ID = 6130907999999
# What a held write waits for at most: a test that forgets to release one must not hang forever.
HOLD_LIMIT_SECONDS = 60.0

_TICKET = re.compile(r"^/api/v2/tickets/(\d+)\.json$")
_AUDITS = re.compile(r"^/api/v2/tickets/(\d+)/audits\.json$")
# The ticket fields a PUT may set directly, and the name Zendesk's audit gives each change.
_PLAIN_FIELDS = ("group_id", "priority", "assignee_id", "status", "due_at", "subject", "type")


@dataclass(frozen=True)
class Comment:
    """A comment a PUT added, with the transition key and part from the update's metadata."""

    ticket: str
    html_body: str
    public: bool
    key: str | None
    part: str | None
    audit_id: int


@dataclass(frozen=True)
class Served:
    """One request the stand-in answered (status 0: held and never answered)."""

    method: str
    kind: str  # "ticket", "audits", "groups", "me", "other"
    ticket: str | None
    status: int
    started: float
    seconds: float


@dataclass
class Fault:
    """What the next `count` matching requests get instead of (or before) a normal answer."""

    method: str  # "GET", "PUT" or "*"
    kind: str | None  # "ticket", "audits", ... or None for any
    count: int
    status: int | None = None
    retry_after: str | None = None
    hang_seconds: float = 0.0

    def matches(self, method: str, kind: str) -> bool:
        return self.count > 0 and self.method in ("*", method) and self.kind in (None, kind)


@dataclass
class Hold:
    """The next ticket write, stopped on arrival until the test releases it (so it knows a writer is mid-call)."""

    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    apply: bool = True
    ticket: str | None = None

    def wait_reached(self, timeout: float) -> bool:
        """True once a write is being held."""
        return self.reached.wait(timeout)

    def release(self, *, apply: bool) -> None:
        """Let the held write go: applied (it landed although its caller is gone) or dropped."""
        self.apply = apply
        self.released.set()


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ZendeskStandIn:
    """An in-memory Zendesk account served over HTTP on 127.0.0.1, on a free port."""

    def __init__(
        self,
        *,
        email: str = EMAIL,
        api_token: str = API_TOKEN,
        group_ids: Mapping[str, int] = GROUP_IDS,
        host: str = "127.0.0.1",
    ) -> None:
        self.email = email
        self.api_token = api_token
        self.group_ids = dict(group_ids)
        self._lock = threading.Lock()
        self._tickets: dict[str, dict[str, Any]] = {}
        self._audits: dict[str, list[dict[str, Any]]] = {}
        self._comments: list[Comment] = []
        self._served: list[Served] = []
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._next_id = 7_000_000_000_000
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to put in ZENDESK_URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ZendeskStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="zendesk-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            holds = list(self._holds)
        for hold in holds:
            hold.release(apply=False)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ZendeskStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The Zendesk settings that point Tierup here (credentials and the installer's group ids)."""
        return {
            "ZENDESK_URL": self.url,
            "ZENDESK_EMAIL": self.email,
            "ZENDESK_API_TOKEN": self.api_token,
            "ZENDESK_BOT_USER_ID": str(BOT_USER_ID),
            "ZENDESK_GROUP_IDS": json.dumps(self.group_ids),
        }

    # --- the account -----------------------------------------------------------------------

    def add_ticket(self, ref: str, **changes: Any) -> None:
        """Ticket `ref` as the recorded show-with-sideloads fixture, changed at `__`-paths (ticket__tags=[...])."""
        shown: dict[str, Any] = changed(fixture(SHOW_FIXTURE), **changes)
        shown["ticket"]["id"] = int(ref)
        shown["ticket"]["url"] = f"{self.url}/api/v2/tickets/{ref}.json"
        with self._lock:
            self._tickets[ref] = shown
            self._audits.setdefault(ref, [])

    def ticket(self, ref: str) -> dict[str, Any]:
        """A copy of the ticket object as a show would return it."""
        with self._lock:
            return copy.deepcopy(self._tickets[ref]["ticket"])

    def tags(self, ref: str) -> set[str]:
        return set(self.ticket(ref)["tags"])

    def group_name(self, ref: str) -> str | None:
        gid = self.ticket(ref)["group_id"]
        return next((name for name, known in self.group_ids.items() if known == gid), None)

    def comments(self, ref: str | None = None) -> list[Comment]:
        """Comments posted through the API, oldest first (all tickets, or one)."""
        with self._lock:
            return [c for c in self._comments if ref is None or c.ticket == ref]

    def audits(self, ref: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._audits.get(ref, []))

    # --- scripting failures ----------------------------------------------------------------

    def fail_next(
        self, method: str, status: int, count: int = 1, *, kind: str | None = "ticket", retry_after: str | None = None
    ) -> None:
        """Answer the next `count` matching requests with `status` (and Retry-After when given)."""
        with self._lock:
            self._faults.append(Fault(method, kind, count, status=status, retry_after=retry_after))

    def hang_next(self, method: str, seconds: float, count: int = 1, *, kind: str | None = "ticket") -> None:
        """Sit on the next `count` matching requests for `seconds`, then answer (and apply) them as usual."""
        with self._lock:
            self._faults.append(Fault(method, kind, count, hang_seconds=seconds))

    def hold_next_write(self) -> Hold:
        """Stop the next ticket PUT on arrival until the returned Hold is released."""
        hold = Hold()
        with self._lock:
            self._holds.append(hold)
        return hold

    def faults_left(self) -> int:
        """Scripted failures not yet served."""
        with self._lock:
            return sum(f.count for f in self._faults) + sum(1 for h in self._holds if not h.reached.is_set())

    # --- counting --------------------------------------------------------------------------

    def served(self, method: str | None = None, kind: str | None = None, status: int | None = None) -> list[Served]:
        """Requests answered so far, filtered by method, kind and status."""
        with self._lock:
            return [
                s
                for s in self._served
                if (method is None or s.method == method)
                and (kind is None or s.kind == kind)
                and (status is None or s.status == status)
            ]

    # --- serving (called by the handler threads) --------------------------------------------

    def _take_fault(self, method: str, kind: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, kind):
                    fault.count -= 1
                    return Fault(fault.method, fault.kind, 1, fault.status, fault.retry_after, fault.hang_seconds)
        return None

    def _take_hold(self, ref: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if not hold.reached.is_set():
                    hold.ticket = ref
                    hold.reached.set()
                    return hold
        return None

    def _record(self, served: Served) -> None:
        with self._lock:
            self._served.append(served)

    def authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.email}/token:{self.api_token}".encode()).decode()
        return header == f"Basic {expected}"

    def show(self, ref: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            stored = self._tickets.get(ref)
            if stored is None:
                return 404, fixture("api_error_404_record_not_found.json")
            shown = copy.deepcopy(stored)
        gid = shown["ticket"].get("group_id")
        template = fixture(SHOW_FIXTURE)["groups"][0]
        shown["groups"] = [
            {**template, "id": known, "name": name, "url": f"{self.url}/api/v2/groups/{known}.json"}
            for name, known in self.group_ids.items()
            if known == gid
        ]
        return 200, shown

    def list_audits(self, ref: str, newest_first: bool) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if ref not in self._tickets:
                return 404, fixture("api_error_404_record_not_found.json")
            audits = copy.deepcopy(self._audits.get(ref, []))
        if newest_first:
            audits.reverse()
        return 200, {"audits": audits, "next_page": None, "previous_page": None, "count": len(audits)}

    def list_groups(self) -> dict[str, Any]:
        template = fixture(SHOW_FIXTURE)["groups"][0]
        groups = [
            {**template, "id": gid, "name": name, "url": f"{self.url}/api/v2/groups/{gid}.json"}
            for name, gid in self.group_ids.items()
        ]
        return {
            "groups": groups, "next_page": None, "previous_page": None, "count": len(groups),
            "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
            "links": {"next": None, "prev": None},
        }  # fmt: skip

    def me(self) -> dict[str, Any]:
        user = fixture(SHOW_FIXTURE)["users"][1]
        return {"user": {**user, "id": BOT_USER_ID, "name": "Tierup", "email": self.email, "role": "admin"}}

    def update(self, ref: str, sent: Any) -> tuple[int, dict[str, Any]]:
        """Apply one ticket PUT the way Zendesk does, or refuse it (404, 409 stale, 422 invalid)."""
        if not isinstance(sent, dict) or not isinstance(sent.get("ticket"), dict):
            return 400, {"error": "InvalidValue", "description": "Request body must be a ticket object"}
        change: dict[str, Any] = sent["ticket"]
        with self._lock:
            stored = self._tickets.get(ref)
            if stored is None:
                return 404, fixture("api_error_404_record_not_found.json")
            ticket = stored["ticket"]
            if change.get("safe_update") and change.get("updated_stamp") != ticket["updated_at"]:
                return 409, fixture("api_error_409_update_conflict.json")
            if "group_id" in change and change["group_id"] not in (None, *self.group_ids.values()):
                invalid = fixture("api_error_422_record_invalid.json")
                return 422, invalid
            audit_id = self._next_id
            self._next_id += 10
            events: list[dict[str, Any]] = []
            tags = list(ticket["tags"])
            if "tags" in change:
                tags = list(change["tags"] or [])
            tags += [t for t in change.get("additional_tags") or [] if t not in tags]
            tags = [t for t in tags if t not in (change.get("remove_tags") or [])]
            if tags != ticket["tags"]:
                events.append({"type": "Change", "field_name": "tags", "value": tags, "previous_value": ticket["tags"]})
                ticket["tags"] = tags
            for name in _PLAIN_FIELDS:
                if name in change and change[name] != ticket.get(name):
                    events.append(
                        {
                            "type": "Change",
                            "field_name": name,
                            "value": change[name],
                            "previous_value": ticket.get(name),
                        }
                    )
                    ticket[name] = change[name]
            for item in change.get("custom_fields") or []:
                for list_name in ("custom_fields", "fields"):
                    current = next((f for f in ticket[list_name] if f["id"] == item["id"]), None)
                    if current is None:
                        ticket[list_name].append({"id": item["id"], "value": item["value"]})
                    else:
                        current["value"] = item["value"]
                events.append({"type": "Change", "field_name": str(item["id"]), "value": item["value"]})
            metadata = change.get("metadata") or {}
            comment = change.get("comment")
            if isinstance(comment, dict):
                html = str(comment.get("html_body") or comment.get("body") or "")
                public = bool(comment.get("public", True))
                events.append({
                    "type": "Comment", "author_id": BOT_USER_ID, "body": html, "html_body": html, "public": public,
                    "attachments": [], "audit_id": audit_id,
                })  # fmt: skip
                self._comments.append(
                    Comment(ref, html, public, metadata.get("tierup_key"), metadata.get("tierup_part"), audit_id)
                )
            # Every write moves updated_at on, by a second at least, so a stale stamp is always caught.
            now = max(
                datetime.now(UTC).replace(microsecond=0), _parse_stamp(ticket["updated_at"]) + timedelta(seconds=1)
            )
            ticket["updated_at"] = _stamp(now)
            for i, event in enumerate(events):
                event["id"] = audit_id + 1 + i
            response: dict[str, Any] = fixture(UPDATE_FIXTURE)
            audit = response["audit"]
            audit.update(id=audit_id, ticket_id=int(ref), created_at=ticket["updated_at"], author_id=BOT_USER_ID,
                         events=events)  # fmt: skip
            audit["metadata"]["custom"] = dict(metadata)
            self._audits[ref].append(copy.deepcopy(audit))
            response["ticket"] = copy.deepcopy(ticket)
            return 200, response


class _Handler(BaseHTTPRequestHandler):
    """One request: count it, play any scripted fault, then answer as Zendesk would."""

    protocol_version = "HTTP/1.1"  # keep-alive, as zenpy's session expects
    server_version = "ZendeskStandIn/1"

    @property
    def standin(self) -> ZendeskStandIn:
        standin: ZendeskStandIn = self.server.standin  # type: ignore[attr-defined]
        return standin

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests count requests; nobody reads an access log

    def handle(self) -> None:
        # A client closed its keep-alive connection (or died, SIGKILL): nothing to answer, nothing to report.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind, ref = _route(parts.path)
        status = 0
        try:
            status = self._answer(method, kind, ref, parts.query, raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): Zendesk would have carried on all the same
        finally:
            self.standin._record(Served(method, kind, ref, status, started, time.monotonic() - started))

    def _answer(self, method: str, kind: str, ref: str | None, query: str, raw: bytes) -> int:
        standin = self.standin
        if not standin.authorised(self.headers.get("Authorization")):
            return self._send(401, {"error": "Couldn't authenticate you"})
        fault = standin._take_fault(method, kind)
        if fault is not None and fault.hang_seconds:
            time.sleep(fault.hang_seconds)
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            error = "APIRateLimitExceeded" if fault.status == 429 else "InternalError"
            return self._send(fault.status, {"error": error, "description": "scripted by the test"}, headers)
        if method == "PUT" and kind == "ticket" and ref is not None:
            hold = standin._take_hold(ref)
            if hold is not None:
                hold.released.wait(HOLD_LIMIT_SECONDS)
                if not hold.apply:
                    return self._send(503, {"error": "ServiceUnavailable", "description": "dropped by the test"})
            try:
                sent = json.loads(raw or b"null")
            except ValueError:
                return self._send(400, {"error": "InvalidJSON", "description": "body is not JSON"})
            return self._send(*standin.update(ref, sent))
        if method == "GET" and kind == "ticket" and ref is not None:
            return self._send(*standin.show(ref))
        if method == "GET" and kind == "audits" and ref is not None:
            newest_first = parse_qs(query).get("sort_order") == ["desc"]
            return self._send(*standin.list_audits(ref, newest_first))
        if method == "GET" and kind == "groups":
            return self._send(200, standin.list_groups())
        if method == "GET" and kind == "me":
            return self._send(200, standin.me())
        return self._send(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> int:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return status


def _route(path: str) -> tuple[str, str | None]:
    if match := _TICKET.match(path):
        return "ticket", match.group(1)
    if match := _AUDITS.match(path):
        return "audits", match.group(1)
    if path == "/api/v2/groups.json":
        return "groups", None
    if path == "/api/v2/users/me.json":
        return "me", None
    return "other", None
