"""The Zendesk gateway: one cached ticket read with side-loads, one ticket PUT per transition, through zenpy.

All Zendesk traffic goes to ZENDESK_URL. Rate limits and outages become TransientError with
the server's Retry-After (nothing here sleeps); a safe_update collision becomes Conflict, so
the service re-reads and decides again; other 4xx become PermanentError with Zendesk's own
description.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import requests
from zenpy import Zenpy
from zenpy.lib.api import BaseApi
from zenpy.lib.api_objects import Ticket as ZenpyTicket
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from adapters.zendesk.mapping import TicketRead, ticket_read_from_show
from adapters.zendesk.settings import ZendeskSettings
from integration.config import ConfigError
from integration.model import (
    Action,
    AddTags,
    AssignGroup,
    AssignUser,
    InternalNote,
    LinkRole,
    LinkTicket,
    Platform,
    PublicReply,
    RemoveTags,
    SetDue,
    SetField,
    SetPriority,
    SetStatus,
    TicketSnapshot,
)
from integration.ports import Conflict, GatewayError, PermanentError, TransientError
from integration.sweep import BulkResult

log = logging.getLogger("tierup.zendesk")

SIDELOADS = "users,organizations,groups,slas"
# Audit metadata keys: Zendesk stores the update's `metadata` under the audit's metadata.custom.
KEY_FIELD = "tierup_key"
PART_FIELD = "tierup_part"
MAIN_PART = "main"
NOTE_PART = "note"
USER_AGENT = "Tierup (zenpy)"
# Zendesk has no ticket links: an escalation request ticket carries this tag, and both tickets a
# note naming the other with its agent URL (what Zendesk admins do by hand).
REQUEST_LINK_TAG = "tierup_escalation_request"
# How many pages of a ticket's audits (100 each) a retry reads, at most, for its own earlier write.
AUDIT_PAGES = 5


# --- the zenpy client --------------------------------------------------------------------------


def retry_after_seconds(response: requests.Response) -> float | None:
    """The response's Retry-After in seconds (delta-seconds or an HTTP date, against the response's Date)."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = _gmt(parsedate_to_datetime(raw))
        sent = response.headers.get("Date")
        base = _gmt(parsedate_to_datetime(sent)) if sent else datetime.now(UTC)
        return max((when - base).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _gmt(when: datetime) -> datetime:
    # HTTP dates are GMT: the asctime form and a "-0000" zone parse without a zone.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _raise_when_throttled(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Session hook: answers zenpy must not handle itself, turned into the port's errors first.

    It runs before zenpy sees the response, so zenpy's sleep-and-retry loop for 429 never
    starts: the worker reschedules the delivery instead of holding a thread. A redirect is
    not followed: the API never redirects a call it accepts, and requests would send a PUT
    on as a GET (to a sign-in page, say) that zenpy then returns as if the PUT had landed. An
    error whose body is no JSON object (a proxy's page) is answered here too: zenpy would
    fail reading it.
    """
    status = response.status_code
    if status in (429, 503):
        after = retry_after_seconds(response)
        raise TransientError(f"Zendesk answered {status} (retry after {after}s)", retry_after=after)
    if response.is_redirect:
        where = urlsplit(response.headers.get("Location", "")).path or "elsewhere"
        raise PermanentError(
            f"{_request_line(response)}: Zendesk answered {status}, sending it to {where}: "
            "check ZENDESK_URL and the credentials"
        )
    if status >= 400 and not isinstance(_json_or_none(response), dict):
        raise error_for_response(response, _request_line(response))


def _request_line(response: requests.Response) -> str:
    request = response.request
    return f"{request.method} {urlsplit(request.url or '').path}" if request is not None else "Zendesk call"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _use_scheme(client: Zenpy, scheme: str) -> None:
    # zenpy builds https URLs; every API object's `protocol` attribute is what _build_url reads.
    # (ZENPY_FORCE_SCHEME would do the same for every client in the process, so we do not use it.)
    seen: set[int] = set()
    pending: list[Any] = [client]
    while pending:
        obj = pending.pop()
        for value in vars(obj).values():
            if isinstance(value, BaseApi) and id(value) not in seen:
                seen.add(id(value))
                value.protocol = scheme
                pending.append(value)


def zenpy_client(settings: ZendeskSettings, session: requests.Session | None = None) -> Zenpy:
    """A zenpy client on ZENDESK_URL (https or a local http stand-in) that never sleeps on a 429."""
    if not settings.has_credentials:
        raise ConfigError("ZENDESK_API_TOKEN is not set (environment or .env); it goes with ZENDESK_EMAIL")
    parts = urlsplit(settings.url)
    # zenpy joins `subdomain.domain` into the host; any host with a dot splits that way.
    subdomain, _, domain = parts.netloc.partition(".")
    if not domain:
        raise ConfigError(f"ZENDESK_URL host must contain a dot (use 127.0.0.1 rather than localhost): {settings.url}")
    session = session or requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.hooks["response"].append(_raise_when_throttled)
    client = Zenpy(
        subdomain=subdomain,
        domain=domain,
        email=settings.email,
        token=None if settings.oauth_token else settings.api_token,
        oauth_token=settings.oauth_token,
        session=session,
        timeout=settings.timeout_seconds,
        # Objects must come from Zendesk each time: a cached ticket would be a stale snapshot.
        disable_cache=True,
        # Belt and braces: should zenpy ever reach its 429 loop, it gives up before its first sleep.
        ratelimit_budget=1,
        proactive_ratelimit=None,
    )
    if parts.scheme != "https":
        _use_scheme(client, parts.scheme)
    return client


# --- HTTP failures as the ports' errors -----------------------------------------------------------


def _describe(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or ""
    if not isinstance(data, dict):
        return str(data)[:200]
    error = data.get("error")
    if isinstance(error, dict):  # some endpoints nest {"error": {"title", "message"}}
        error = error.get("title") or error.get("message")
    parts = [str(p) for p in (error, data.get("description")) if p]
    details = data.get("details")
    if details:
        parts.append(str(details)[:300])
    return ": ".join(parts) or str(data)[:200]


def error_for_response(response: requests.Response, what: str) -> GatewayError:
    """The port error for a failed Zendesk answer: 409 Conflict, 429/5xx transient, other 4xx permanent."""
    status = response.status_code
    described = _describe(response)
    message = f"{what}: Zendesk answered {status} {described}".rstrip()
    if status == 409:
        return Conflict(message)
    if status == 429 or status >= 500:
        return TransientError(message, retry_after=retry_after_seconds(response))
    return PermanentError(message, status=status)


def _translate(exc: Exception, what: str) -> GatewayError:
    response = getattr(exc, "response", None)
    if isinstance(response, requests.Response):
        return error_for_response(response, what)
    if isinstance(exc, RatelimitBudgetExceeded):
        return TransientError(f"{what}: rate limited by Zendesk")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


def _landed(answer: Any, what: str) -> None:
    """Raise unless a write's answer is what zenpy makes of Zendesk's JSON (an audit, a job status).

    zenpy hands back the bare response when a 200 carries no JSON (a proxy's page): the write
    did not land, whatever the status says.
    """
    if isinstance(answer, requests.Response):
        kind = answer.headers.get("Content-Type", "no content type")
        raise TransientError(f"{what}: Zendesk answered {answer.status_code} without JSON ({kind}); nothing written")


def call_zendesk(what: str, call: Callable[..., Any], *args: Any) -> Any:
    """Run one zenpy (or session) call, turning its failures into GatewayErrors named after `what`."""
    try:
        return call(*args)
    except GatewayError as exc:
        # Raised by the session hook (a 429, a redirect), which cannot know what the call was for.
        if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith(f"{what}: "):
            exc.args = (f"{what}: {exc.args[0]}", *exc.args[1:])
        raise
    except (APIException, ZenpyException, requests.RequestException) as exc:
        raise _translate(exc, what) from exc


# --- HTML to readable text for the note field ------------------------------------------------------


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"p", "div", "br", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Our HTML bodies as plain text: paragraphs and line breaks kept, tags dropped, entities decoded."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.parts).splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


# --- the gateway --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketUpdate:
    """One planned ticket PUT: `part` names it in the audit metadata, so a retry can tell what landed."""

    part: str
    ticket: dict[str, Any]


@dataclass
class ZendeskGateway:
    """integration.ports.Gateway for Zendesk; nothing Zendesk-shaped leaves it."""

    settings: ZendeskSettings
    client: Zenpy
    prefetch_seconds: float = 60.0
    monotonic: Callable[[], float] = time.monotonic
    # Bulk writes (integration.sweep.BulkGateway): update_many takes 100 tickets; its job is polled, sleeping here.
    max_batch: int = 100
    sleep: Callable[[float], None] = time.sleep
    job_wait_seconds: float = 120.0
    platform: Platform = field(default=Platform.ZENDESK, init=False)
    _prefetched: dict[str, tuple[float, TicketRead | None]] = field(default_factory=dict, init=False, repr=False)
    _groups: dict[str, int] | None = field(default=None, init=False, repr=False)
    _own: str | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    requests_made: int = field(default=0, init=False)  # HTTP requests answered, whatever the status

    def __post_init__(self) -> None:
        self._session.hooks["response"].append(self._counted)

    def _counted(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests_made += 1

    @classmethod
    def from_settings(cls, settings: ZendeskSettings) -> ZendeskGateway:
        return cls(settings=settings, client=zenpy_client(settings))

    def own_user_id(self) -> str:
        """Tierup's own Zendesk user: ZENDESK_BOT_USER_ID (install stores it), else asked of Zendesk once."""
        if self.settings.bot_user_id:
            return self.settings.bot_user_id
        if self._own is None:
            me = call_zendesk("read Tierup's own user", lambda: self.client.users.me())
            self._own = str(me.id)
        return self._own

    # --- reading --------------------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        session: requests.Session = self.client.tickets.session
        return session

    def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> Any | None:
        """GET through zenpy's session (for what zenpy cannot return whole); None on 404."""
        url = f"{self.settings.url}/api/v2/{path}"
        response = call_zendesk(
            what, lambda: self._session.get(url, params=params, timeout=self.settings.timeout_seconds)
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise error_for_response(response, what)
        try:
            return response.json()
        except ValueError:
            raise TransientError(f"{what}: Zendesk answered {response.status_code} without JSON") from None

    def _fetch(self, ref: str) -> TicketRead | None:
        if not ref.isdigit():
            return None
        # zenpy's tickets(id=, include=) keeps the side-loads in its cache, which we disable; read them whole.
        data = self._get(f"tickets/{ref}.json", f"read ticket {ref}", {"include": SIDELOADS})
        return ticket_read_from_show(data) if isinstance(data, dict) else None

    def read_ticket(self, ref: str) -> TicketRead | None:
        """Read ticket `ref` once and keep it for the next snapshot() of this delivery (the parser's read)."""
        read = self._fetch(ref)
        now = self.monotonic()
        with self._lock:
            # Reads nobody took (the delivery was ignored) must not pile up in a long-running worker.
            for stale in [r for r, (at, _) in self._prefetched.items() if now - at > self.prefetch_seconds]:
                del self._prefetched[stale]
            self._prefetched[ref] = (now, read)
        return read

    def _take_prefetched(self, ref: str) -> tuple[bool, TicketRead | None]:
        with self._lock:
            entry = self._prefetched.pop(ref, None)
        if entry is None or self.monotonic() - entry[0] > self.prefetch_seconds:
            return False, None
        return True, entry[1]

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        """The ticket with SLAs, requester and organisation: one read per delivery, None if it does not exist."""
        found, read = self._take_prefetched(ref)
        if not found:
            read = self._fetch(ref)
        if read is None:
            return None
        snap = read.snapshot
        if hint is not None:
            # The read wins; the payload only fills what the read cannot know (a routing region).
            snap = replace(
                snap,
                region=snap.region or hint.region,
                requester=snap.requester or hint.requester,
                organisation=snap.organisation or hint.organisation,
            )
        return snap

    def applied_parts(self, ref: str, key: str) -> set[str]:
        """Which parts of transition `key` the ticket's audits already record, newest first.

        The first page (100 audits, newest first) is where a write of a retried transition
        lands; when `key` is not on it, the later pages are read too, up to AUDIT_PAGES, so a
        ticket with a long history is not taken for one without the write.
        """
        parts: set[str] = set()
        for page in range(1, AUDIT_PAGES + 1):
            params = {"sort_order": "desc", "per_page": "100"} | ({"page": str(page)} if page > 1 else {})
            data = self._get(f"tickets/{ref}/audits.json", f"read audits of ticket {ref}", params)
            audits = data.get("audits") if isinstance(data, dict) else None
            for audit in audits if isinstance(audits, list) else ():
                metadata = audit.get("metadata") if isinstance(audit, dict) else None
                custom = metadata.get("custom") if isinstance(metadata, dict) else None
                if isinstance(custom, dict) and custom.get(KEY_FIELD) == key:
                    parts.add(str(custom.get(PART_FIELD) or MAIN_PART))
            if parts or not (isinstance(data, dict) and data.get("next_page")):
                break
        return parts

    # --- group names to ids ----------------------------------------------------------------

    def group_id(self, name: str) -> int:
        """The Zendesk id of a policy group: from ZENDESK_GROUP_IDS, else one process-wide list of groups."""
        known = self.settings.group_ids.get(name)
        if known is not None:
            return known
        with self._lock:
            if self._groups is None:
                groups = call_zendesk("list groups", lambda: list(self.client.groups()))
                self._groups = {str(g.name): int(g.id) for g in groups if getattr(g, "name", None)}
            found = self._groups.get(name)
        if found is None:
            raise PermanentError(f"group {name!r} does not exist in Zendesk (run `tierup install zendesk`)")
        return found

    # --- writing ---------------------------------------------------------------------------

    def plan(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str
    ) -> list[TicketUpdate]:
        """Neutral actions as Zendesk ticket updates: the one place that knows Zendesk's fields."""
        ticket: dict[str, Any] = {}
        add: list[str] = []
        remove: list[str] = []
        custom: dict[int, Any] = {}
        public: list[str] = []
        notes: list[str] = []
        for action in actions:
            match action:
                case AddTags(tags):
                    add += [t for t in tags if t not in add]
                case RemoveTags(tags):
                    remove += [t for t in tags if t not in remove]
                case AssignGroup(group):
                    ticket["group_id"] = self.group_id(group) if group else None
                case AssignUser(user):
                    if not user.isdigit():
                        raise PermanentError(f"assignee {user!r} is not a Zendesk user id")
                    ticket["assignee_id"] = int(user)
                case SetPriority(priority):
                    ticket["priority"] = priority.value  # Zendesk's four priorities are the neutral four
                case SetDue(due):
                    stamp = due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    due_field = self.settings.field_id("first_contact_due")
                    if due_field is not None:
                        custom[due_field] = stamp
                    else:
                        ticket["due_at"] = stamp  # Zendesk shows it on task tickets only; see README
                case SetField(name, value):
                    fid = self.settings.field_id(name)
                    if fid is None:
                        log.warning("ticket %s: no Zendesk field is configured for %r; not set", ref, name)
                    else:
                        custom[fid] = value
                case PublicReply(body):
                    public.append(body)
                case InternalNote(body):
                    notes.append(body)
                case LinkTicket(other, role):
                    notes.append(self._link_note(other, role))
                    if role is LinkRole.REQUEST and REQUEST_LINK_TAG not in add:
                        add.append(REQUEST_LINK_TAG)
                case SetStatus(status):
                    ticket["status"] = status.value  # Zendesk's statuses are the neutral six
        if add:
            ticket["additional_tags"] = add  # never the whole tag list: other tags stay as they are
        removed = [t for t in remove if t not in add]
        if removed:
            ticket["remove_tags"] = removed
        extra: list[TicketUpdate] = []
        note_html = "\n".join(notes)
        if public:
            ticket["comment"] = {"html_body": "\n".join(public), "public": True}
            if notes:
                # One comment per update: the note goes into the agent-only note field, as text.
                note_field = self.settings.field_id("escalation_note")
                if note_field is not None:
                    custom[note_field] = html_to_text(note_html)
                else:
                    comment = {"html_body": note_html, "public": False}
                    extra.append(TicketUpdate(NOTE_PART, {"comment": comment, "metadata": _metadata(key, NOTE_PART)}))
        elif notes:
            ticket["comment"] = {"html_body": note_html, "public": False}
        if custom:
            ticket["custom_fields"] = [{"id": fid, "value": value} for fid, value in custom.items()]
        updates: list[TicketUpdate] = []
        if ticket:
            ticket["metadata"] = _metadata(key, MAIN_PART)
            if snapshot is not None and snapshot.version:
                ticket["safe_update"] = True
                ticket["updated_stamp"] = snapshot.version
            updates.append(TicketUpdate(MAIN_PART, ticket))
        return updates + extra

    def _link_note(self, other: str, role: LinkRole) -> str:
        if not other.isdigit():
            raise PermanentError(f"{other!r} is not a Zendesk ticket number")
        url = f"{self.settings.url}/agent/tickets/{other}"
        if role is LinkRole.REQUEST:
            return f"<p>Escalation request for ticket #{other}: {url} (the escalation is handled there).</p>"
        return f"<p>Escalation requested in ticket #{other}: {url} (the request, now solved).</p>"

    def _put(self, ref: str, update: TicketUpdate) -> str | None:
        """One ticket PUT; the ticket's updated_at after it, when Zendesk says."""
        with self._lock:
            self._prefetched.pop(ref, None)  # the ticket changes: a kept read is stale now
        ticket = zenpy_ticket(ref, update.ticket)
        answer = call_zendesk(f"update ticket {ref}", lambda: self.client.tickets.update(ticket))
        _landed(answer, f"update ticket {ref}")
        updated = getattr(answer, "ticket", None)
        stamp = updated.to_dict().get("updated_at") if updated is not None else None
        return str(stamp) if stamp else None

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        """Apply a transition's actions in one ticket PUT (two only when the note field is not installed)."""
        if not ref.isdigit():
            raise PermanentError(f"{ref!r} is not a Zendesk ticket number")
        updates = self.plan(ref, actions, snapshot=snapshot, key=key)
        done = self.applied_parts(ref, key) if retry and updates else set()
        stamp = snapshot.version if snapshot is not None else None
        for n, update in enumerate(updates):
            if update.part in done:
                log.info(
                    "ticket %s: %s of transition %s is already on the ticket; not sent again", ref, update.part, key
                )
                continue
            if n > 0 and stamp:
                # The note's PUT is conditional too, on the ticket as the PUT before it left it (or as read
                # for a retry): a PUT that timed out and then landed after the retry had checked the audits
                # makes the other one a 409, never a second note.
                update = replace(update, ticket={**update.ticket, "safe_update": True, "updated_stamp": stamp})
            try:
                stamp = self._put(ref, update) or stamp
            except PermanentError as exc:
                if "status" not in update.ticket or exc.status != 422:
                    raise  # a 401, 403 or 404 is not about the status: the same PUT twice more would not help
                stamp = self._put_without_solving_unassigned(ref, update, exc) or stamp
            log.info("ticket %s: applied %s of transition %s", ref, update.part, key)

    def _put_without_solving_unassigned(self, ref: str, update: TicketUpdate, refused: PermanentError) -> str | None:
        """Zendesk refused a status change: most likely solving an unassigned ticket (a request ticket).

        Zendesk never solves a ticket without an assignee; with "auto-assign upon solve" on, it
        assigns whoever solves it, and without it the update is refused (422). Tierup does what
        that setting would: the same update again, assigned to Tierup's own agent user
        (ZENDESK_BOT_USER_ID, stored by the installer). Refused again, or with no user known,
        the rest goes without the status: the reply and the link land, and an agent solves it.
        """
        bot = self.own_user_id()
        if bot.isdigit() and "assignee_id" not in update.ticket:
            log.info("ticket %s: Zendesk would not set its status (%s); assigning it to Tierup's user", ref, refused)
            try:
                return self._put(ref, replace(update, ticket={**update.ticket, "assignee_id": int(bot)}))
            except PermanentError as exc:
                if exc.status != 422:
                    raise
                refused = exc
        log.warning("ticket %s: Zendesk would not set its status (%s); sending the rest without it", ref, refused)
        return self._put(ref, replace(update, ticket={k: v for k, v in update.ticket.items() if k != "status"}))

    # --- many tickets at once (the SLA sweep) -------------------------------------------------

    def snapshots(self, refs: Sequence[str]) -> dict[str, TicketSnapshot]:
        """Up to 100 tickets in one `show_many` read with the side-loads; deleted or missing ones are left out."""
        ids = [r for r in dict.fromkeys(refs) if r.isdigit()]
        if not ids:
            return {}
        if len(ids) > self.max_batch:
            raise ValueError(f"show_many reads at most {self.max_batch} tickets, got {len(ids)}")
        data = self._get(
            "tickets/show_many.json", f"read {len(ids)} tickets", {"ids": ",".join(ids), "include": SIDELOADS}
        )
        page: dict[str, Any] = data if isinstance(data, dict) else {}
        tickets = page.get("tickets")
        found: dict[str, TicketSnapshot] = {}
        for ticket in tickets if isinstance(tickets, list) else ():
            # The side-loads serve the whole page; each ticket maps as a show of its own would.
            shown = {"ticket": ticket, **{k: page.get(k) for k in ("users", "organizations", "groups")}}
            read = ticket_read_from_show(shown) if isinstance(ticket, dict) else None
            if read is not None and read.snapshot.ref in ids:
                found[read.snapshot.ref] = read.snapshot
        return found

    def apply_many(self, items: Sequence[tuple[TicketSnapshot, Sequence[Action], str]]) -> BulkResult:
        """Many tickets' transitions in ONE `PUT tickets/update_many.json`, its job polled; the outcome per ticket.

        Each ticket's fields come from plan(), as a single PUT's would. A second part
        (the internal note when the note field is not installed) goes out alone afterwards.
        """
        if len(items) > self.max_batch:
            raise ValueError(f"update_many takes at most {self.max_batch} tickets, got {len(items)}")
        outcomes: dict[str, GatewayError | None] = {}
        tickets: list[ZenpyTicket] = []
        later: dict[str, list[TicketUpdate]] = {}
        calls = 0
        for snapshot, actions, key in items:
            ref = snapshot.ref
            if not ref.isdigit():
                outcomes[ref] = PermanentError(f"{ref!r} is not a Zendesk ticket number")
                continue
            try:
                # No snapshot: update_many has no safe_update; our changes are additive (tags added / removed).
                updates = self.plan(ref, actions, snapshot=None, key=key)
                added = {tag for update in updates for tag in update.ticket.get("additional_tags") or ()}
                if added and added <= snapshot.tags:
                    # Every tag this write adds is on the ticket already: an earlier bulk write of it
                    # may have landed without us learning so (its job never reported back). The
                    # ticket's audits tell which parts did; those are not sent again.
                    calls += 1
                    landed = self.applied_parts(ref, key)
                    if landed:
                        log.info("parts %s of %s are already on ticket %s; not sent again", sorted(landed), key, ref)
                    updates = [update for update in updates if update.part not in landed]
            except GatewayError as exc:
                outcomes[ref] = exc
                continue
            outcomes[ref] = None
            for update in updates:
                if update.part == MAIN_PART:
                    tickets.append(zenpy_ticket(ref, update.ticket))
                else:
                    later.setdefault(ref, []).append(update)
        if tickets:
            with self._lock:
                for ticket in tickets:
                    self._prefetched.pop(str(ticket.id), None)
            job = call_zendesk(f"update {len(tickets)} tickets", lambda: self.client.tickets.update(tickets))
            _landed(job, f"update {len(tickets)} tickets")
            calls += 1
            results, polls = self._wait_for_job(job)
            calls += polls
            for ticket in tickets:
                ref = str(ticket.id)
                outcomes[ref] = _job_outcome(results.get(ref), ref)
        for ref, updates in later.items():
            for update in updates:
                if outcomes.get(ref) is not None:
                    break
                try:
                    calls += 1
                    self._put(ref, update)
                except GatewayError as exc:
                    outcomes[ref] = exc
        return BulkResult(outcomes, api_calls=calls)

    def _wait_for_job(self, job: Any) -> tuple[dict[str, dict[str, Any]], int]:
        """Poll `GET job_statuses/{id}.json` until the job is done; its results by ticket id, and the polls made."""
        job_id = getattr(job, "id", None)
        if not job_id:
            raise PermanentError(f"update_many answered without a job status ({type(job).__name__})")
        status, results = str(getattr(job, "status", "") or "queued"), getattr(job, "results", None)
        polls, waited, delay = 0, 0.0, 0.25
        while status not in ("completed", "failed", "killed"):
            if waited >= self.job_wait_seconds:
                raise TransientError(f"job {job_id} still {status} after {waited:.0f}s")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
            try:
                data = self._get(f"job_statuses/{job_id}.json", f"read job {job_id}")
            except TransientError as exc:
                # The write is in Zendesk's hands already: keep waiting for its outcome rather than write again.
                pause = min(exc.retry_after or delay, max(self.job_wait_seconds - waited, 0.0))
                self.sleep(pause)
                waited += pause
                polls += 1
                continue
            polls += 1
            found = data.get("job_status") if isinstance(data, dict) else None
            if not isinstance(found, dict):
                raise TransientError(f"job {job_id}: Zendesk answered without a job status")
            status, results = str(found.get("status") or "queued"), found.get("results")
        by_id: dict[str, dict[str, Any]] = {}
        for item in results if isinstance(results, list) else ():
            # zenpy may hand the first answer's results over as objects; the polls give plain JSON.
            result = item.to_dict() if hasattr(item, "to_dict") else item
            if isinstance(result, dict) and result.get("id") is not None:
                by_id[str(result["id"])] = result
        if status != "completed":
            log.warning("job %s ended %s with %d results", job_id, status, len(by_id))
        return by_id, polls


def _job_outcome(result: dict[str, Any] | None, ref: str) -> GatewayError | None:
    """One ticket's entry in a job's results: None when it was updated, else why not."""
    if result is None:
        return TransientError(f"ticket {ref}: the bulk job reported nothing for it")
    failed = result.get("success") is False or result.get("error") or str(result.get("status", "")).lower() == "failed"
    if not failed:
        return None
    described = ": ".join(str(p) for p in (result.get("error"), result.get("details")) if p) or "failed"
    return PermanentError(f"ticket {ref}: bulk update failed: {described}")


def zenpy_ticket(ref: str, fields: dict[str, Any]) -> ZenpyTicket:
    """A zenpy Ticket to PUT with `fields`; a field set to None is sent as null (no group: LR6).

    zenpy's constructor leaves None values out of what it sends; set afterwards, they go as null.
    """
    ticket = ZenpyTicket(id=int(ref), **fields)
    for name, value in fields.items():
        if value is None:
            setattr(ticket, name, None)
    return ticket


def _metadata(key: str, part: str) -> dict[str, str]:
    return {KEY_FIELD: key, PART_FIELD: part}
