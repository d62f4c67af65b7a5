"""Reading and writing Jira through the `jira` library: one issue edit per transition, then its comments.

One transition is: one `PUT issue` (label add/remove, priority, lead group field, assignee,
first-contact due), then each comment (internal: `sd.public.comment` {"internal": true};
public: the JSM request comment endpoint, or a plain comment outside JSM), then the
workflow transition to the Escalated status when the escalated label is added and the
workflow offers it, then the SLA sweep's label (sla_breached) in a `PUT` of its own, last.
Every comment carries the transition key as the comment property `tierup.key`, so a retry
reads the newest comments first and never posts one twice.

Calls go through the client's own session (`client._session`) where the library would
cost more: `Issue.update()` reloads the issue after the edit, and the library's
`search_issues` first lists every field. The session never retries or sleeps (max_retries=0):
a 429's Retry-After becomes TransientError(retry_after=...), and the worker schedules the retry.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from jira import JIRA, JIRAError

from adapters.jira.parse import (
    JiraPayloadError,
    Json,
    ProjectTypes,
    account_ids,
    issue_snapshot,
    project_of,
    status_category,
)
from adapters.jira.settings import Deployment, JiraSettings
from adapters.jira.wiki import html_to_wiki
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
    SlaTarget,
    TicketSnapshot,
    TicketStatus,
)
from integration.ports import Conflict, GatewayError, PermanentError, TransientError, utcnow

log = logging.getLogger("tierup.jira")

KEY_PROPERTY = "tierup.key"  # the comment property that records which transition posted it
INTERNAL_PROPERTY = {"key": "sd.public.comment", "value": {"internal": True}}
RECENT_COMMENTS = 50  # how far back a retry looks for its own comments
SLA_PAGE = 50
SEARCH_PAGE = 100
JIRA_DATETIME = "%Y-%m-%dT%H:%M:%S.000%z"


# --- errors ------------------------------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


# Requests errors that say the request could not be made as configured: retrying will not help.
_SETUP_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.TooManyRedirects,
)


def gateway_error(exc: Exception, operation: str, now: datetime) -> GatewayError:
    """The port's error for a failed Jira call: 429/5xx/timeouts retry, 409 re-decides, other 4xx fail."""
    if isinstance(exc, _SETUP_ERRORS):
        return PermanentError(f"{operation}: {type(exc).__name__}: {exc}")  # JIRA_URL, not the network
    if isinstance(exc, requests.RequestException):
        # A timeout, a refused or dropped connection, an answer cut off mid-body: the network's.
        return TransientError(f"{operation}: {type(exc).__name__}")
    if not isinstance(exc, JIRAError):
        return PermanentError(f"{operation}: {type(exc).__name__}: {exc}")
    status = exc.status_code
    # JIRAError.text is the library's reading of Jira's errorMessages / errors.
    detail = f"{operation}: HTTP {status}" + (f": {exc.text}" if exc.text else "")
    headers = exc.response.headers if exc.response is not None else {}
    if status is None or status == 429 or status >= 500:
        return TransientError(detail, retry_after=retry_after_seconds(headers.get("Retry-After"), now))
    if status == 409:
        return Conflict(detail)
    return PermanentError(detail, status=status)


def _json(value: Any, what: str) -> Json:
    try:
        return Json.root(value, what)
    except JiraPayloadError as exc:
        raise PermanentError(f"unexpected Jira answer: {exc}") from None


def _same_text(stored: str | None, sent: str) -> bool:
    """Whether a comment's stored text is the text posted (Jira may change line endings and outer space)."""
    return stored is not None and stored.replace("\r\n", "\n").strip() == sent.replace("\r\n", "\n").strip()


# --- SLAs --------------------------------------------------------------------------------


def sla_metric(name: str) -> str:
    """The neutral metric of a JSM SLA name."""
    lowered = name.lower()
    if "first response" in lowered or "first reply" in lowered:
        return "first_reply"
    if "resolution" in lowered or "resolve" in lowered:
        return "resolution"
    return name


def sla_target(record: Json, now: datetime) -> SlaTarget | None:
    """One JSM SLA (`/request/{key}/sla` value or SLA field on an issue) as a target, or None without cycles."""
    name = record.text("name")
    ongoing = record.opt_obj("ongoingCycle")
    if ongoing is not None:
        breach_time = ongoing.opt_obj("breachTime")
        breach_at = breach_time.millis("epochMillis") if breach_time else None
        remaining = ongoing.opt_obj("remainingTime")
        millis = remaining.number("millis") if remaining else None
        if breach_at is None and millis is not None and not ongoing.flag("paused"):
            # Older answers (and the documentation's example) give only the time left.
            breach_at = now + timedelta(milliseconds=millis)
        return SlaTarget(name=name, metric=sla_metric(name), breach_at=breach_at, breached=ongoing.flag("breached"))
    completed = record.objects("completedCycles")
    if completed:
        last = completed[-1]
        # Cloud gives a finished cycle its breachTime (when it breached, or would have); the
        # documentation's example and Data Center give only when it stopped.
        deadline = last.opt_obj("breachTime") or last.opt_obj("stopTime")
        return SlaTarget(
            name=name, metric=sla_metric(name), breach_at=deadline.millis("epochMillis") if deadline else None,
            breached=last.flag("breached"), fulfilled=True,
        )  # fmt: skip
    return None


def slas_in_fields(fields: Json, now: datetime) -> tuple[SlaTarget, ...]:
    """The JSM SLA fields of an issue (found by their shape: their ids differ per site)."""
    found = []
    for name in fields.names():
        if name.startswith("customfield_"):
            value = fields.opt_obj(name) if isinstance(fields.raw(name), Mapping) else None
            if value is not None and value.has("name") and (value.has("ongoingCycle") or value.has("completedCycles")):
                target = sla_target(value, now)
                if target is not None:
                    found.append(target)
    return tuple(found)


# --- the plan of one transition ------------------------------------------------------------


@dataclass
class EditPlan:
    """What one transition writes: the issue edit, links, the comments in order, the workflow moves, a last label."""

    edit: dict[str, Any] = field(default_factory=dict)
    last_labels: list[str] = field(default_factory=list)  # labels added after the rest (JiraGateway.sweep_label)
    comments: list[PublicReply | InternalNote] = field(default_factory=list)
    transition: bool = False
    links: list[str] = field(default_factory=list)  # issues to link this one to (JIRA_LINK_TYPE)
    solve: bool = False  # move to JIRA_SOLVED_STATUS (or the first Done status offered)


# --- the gateway ---------------------------------------------------------------------------


class JiraGateway:
    """The Gateway port on a real `jira.JIRA` client (built on first use, so start-up needs no network)."""

    platform = Platform.JIRA

    def __init__(
        self,
        settings: JiraSettings,
        *,
        escalated_label: str,
        sweep_label: str | None = None,
        project_types: ProjectTypes | None = None,
        read_slas: bool = True,
        clock: Callable[[], datetime] = utcnow,
        timeout: float | tuple[float, float] = (10.0, 30.0),
    ) -> None:
        self.settings = settings
        self.escalated_label = escalated_label
        # The label the SLA sweep's query leaves out (adapters.jira.sweep): added only once the rest of a
        # transition has landed, so a write that stops half-way leaves the breach for the next run to find.
        self.sweep_label = sweep_label
        self.project_types = project_types or ProjectTypes()
        # Only a policy with an SLA gate (SD1) looks at SLAs: others skip the read.
        self.read_slas = read_slas
        self.clock = clock
        self.timeout = timeout
        self._client: JIRA | None = None
        self._own: frozenset[str] | None = None
        self._fields_by_name: dict[str, frozenset[str]] | None = None
        # The id of the transition to Escalated, per project, once found: later moves cost no read.
        self._to_escalated: dict[str, str] = {}
        self.requests_made = 0  # HTTP requests sent through `call`, whatever the answer
        self._lock = threading.Lock()

    # --- the client and plain calls ---

    def client(self) -> JIRA:
        """The `jira.JIRA` client, built once (it reads serverInfo when it is built)."""
        with self._lock:
            if self._client is None:
                s = self.settings
                auth: dict[str, Any] = (
                    {"basic_auth": (s.email, s.api_token)} if s.email and s.api_token else {"token_auth": s.pat}
                )
                try:
                    # max_retries=0: the library must not sleep on a 429 inside a worker thread.
                    self._client = JIRA(server=s.url, get_server_info=True, max_retries=0, timeout=self.timeout,
                                        options={"check_update": False}, **auth)  # fmt: skip
                except (JIRAError, requests.RequestException) as exc:
                    raise gateway_error(exc, "connect", self.clock()) from None
            return self._client

    @property
    def deployment(self) -> Deployment:
        """Cloud or Data Center: the setting, else what serverInfo said."""
        if self.settings.deployment is not None:
            return self.settings.deployment
        return Deployment.CLOUD if self.client().deploymentType == "Cloud" else Deployment.DATACENTER

    def api_url(self, path: str) -> str:
        return f"{self.settings.url}/rest/api/2/{path}"

    def servicedesk_url(self, path: str) -> str:
        return f"{self.settings.url}/rest/servicedeskapi/{path}"

    def call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """One call through the client's session: parsed JSON, or None for an empty answer (or an allowed 404)."""
        session = self.client()._session
        self.requests_made += 1
        try:
            response = session.request(method, url, params=params,
                                       data=json.dumps(body) if body is not None else None)  # fmt: skip
        except JIRAError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            raise gateway_error(exc, operation, self.clock()) from None
        except requests.RequestException as exc:
            raise gateway_error(exc, operation, self.clock()) from None
        if response.history:
            # Redirected (to a sign-in page, say): a POST was sent on as a GET and nothing written.
            first = response.history[0]
            where = urlsplit(first.headers.get("Location", "")).path or "elsewhere"
            raise PermanentError(
                f"{operation}: Jira answered {first.status_code}, sending it to {where}: "
                "check JIRA_URL and the credentials"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            # A proxy's page in place of Jira's answer, as the Zendesk gateway takes it: try again later.
            kind = response.headers.get("Content-Type", "no content type")
            raise TransientError(f"{operation}: Jira answered {response.status_code} without JSON ({kind})") from None

    def own_accounts(self) -> frozenset[str]:
        """Tierup's own account ids (JIRA_BOT_ACCOUNT, else asked of Jira once)."""
        if self.settings.bot_account:
            return frozenset({self.settings.bot_account})
        if self._own is None:
            me = _json(self.call("myself", "GET", self.api_url("myself")), "myself")
            self._own = account_ids(me)
        return self._own

    def field_ids(self, name: str) -> frozenset[str]:
        """The ids of the fields called `name` (case aside), from Jira's field list, read once.

        Data Center's changelog names a custom field by its display name and gives no fieldId.
        """
        if self._fields_by_name is None:
            found: dict[str, set[str]] = {}
            for item in self.call("list fields", "GET", self.api_url("field")) or ():
                if isinstance(item, Mapping) and isinstance(item.get("id"), str) and isinstance(item.get("name"), str):
                    found.setdefault(item["name"].strip().lower(), set()).add(item["id"])
            self._fields_by_name = {k: frozenset(v) for k, v in found.items()}
        return self._fields_by_name.get(name.strip().lower(), frozenset())

    # --- reading ---

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        """The issue for the policy: the webhook's fields plus the JSM SLAs (one read), or one issue GET."""
        project = ref.rsplit("-", 1)[0]
        if hint is not None and (
            # A hint that carries SLAs came from a read with the SLA fields (the sweep's search): it is complete.
            hint.slas or not self.read_slas or self.project_types.is_service_desk(project) is False
        ):
            return hint
        if hint is not None:
            url, operation, params = self.servicedesk_url(f"request/{ref}/sla"), "read SLAs", {"limit": SLA_PAGE}
        else:
            url, operation, params = self.api_url(f"issue/{ref}"), "read issue", {}
        answer = self.call(operation, "GET", url, params=params, missing_ok=True)
        try:
            if hint is None:
                if answer is None:
                    return None
                issue = _json(answer, "issue")
                self.project_types.note(*project_of(issue))
                return issue_snapshot(issue, self.settings, slas_in_fields(issue.obj("fields"), self.clock()))
            if answer is None:
                # Not a JSM request: remember it, so the next event on this project reads nothing.
                if self.project_types.is_service_desk(project) is None:
                    self.project_types.note(project, "not_service_desk")
                return hint
            values = _json(answer, "SLA answer").objects("values")
            now = self.clock()
            return replace(hint, slas=tuple(t for t in (sla_target(v, now) for v in values) if t is not None))
        except JiraPayloadError as exc:
            raise PermanentError(f"unexpected Jira answer to {operation}: {exc}") from None

    def search_issues(self, jql: str, fields: Sequence[str], page_size: int = SEARCH_PAGE) -> Iterator[dict[str, Any]]:
        """Every issue `jql` finds (raw JSON, with `fields`), page by page: Cloud's `search/jql`, DC's `search`."""
        for page in self.search_pages(jql, fields, page_size):
            yield from page

    def search_pages(
        self, jql: str, fields: Sequence[str], page_size: int = SEARCH_PAGE
    ) -> Iterator[list[dict[str, Any]]]:
        """The issues `jql` finds, one list per request (so a caller can count the requests)."""
        if self.deployment is Deployment.CLOUD:
            # Cloud answers 410 on the old `search`; `search/jql` pages with a token.
            token: str | None = None
            while True:
                body: dict[str, Any] = {"jql": jql, "fields": list(fields), "maxResults": page_size}
                if token:
                    body["nextPageToken"] = token
                page = _json(self.call("search", "POST", self.api_url("search/jql"), body=body), "search")
                yield [dict(i) for i in page.raw("issues") or []]
                token = page.opt_text("nextPageToken")
                if not token or page.flag("isLast"):
                    return
        start = 0
        while True:
            body = {"jql": jql, "fields": list(fields), "startAt": start, "maxResults": page_size}
            page = _json(self.call("search", "POST", self.api_url("search"), body=body), "search")
            issues = page.raw("issues") or []
            yield [dict(i) for i in issues]
            start += len(issues)
            total = page.number("total")
            if not issues or (total is not None and start >= total):
                return

    # --- writing ---

    def plan(self, actions: Sequence[Action]) -> EditPlan:
        """The edit body, comments and transition for `actions` (no I/O)."""
        labels: list[dict[str, str]] = []
        fields: dict[str, Any] = {}
        out = EditPlan()
        names = self.settings.fields
        for action in actions:
            if isinstance(action, AddTags):
                labels += [{"add": t} for t in action.tags if t != self.sweep_label]
                out.last_labels += [t for t in action.tags if t == self.sweep_label]
                out.transition = out.transition or self.escalated_label in action.tags
            elif isinstance(action, RemoveTags):
                labels += [{"remove": t} for t in action.tags]
            elif isinstance(action, SetPriority):
                fields["priority"] = {"name": self.settings.priorities[action.priority]}
            elif isinstance(action, AssignGroup):
                if names.lead_group:
                    fields[names.lead_group] = {"name": action.group} if action.group else None
                else:
                    log.warning("JIRA_FIELD_LEAD_GROUP is not set: %s is not recorded on the issue", action.group)
            elif isinstance(action, AssignUser):
                who = "accountId" if self.deployment is Deployment.CLOUD else "name"
                fields["assignee"] = {who: action.user}
            elif isinstance(action, SetDue):
                if names.first_contact_due:
                    fields[names.first_contact_due] = action.due.strftime(JIRA_DATETIME)
                else:
                    fields["duedate"] = action.due.date().isoformat()  # the date where the due time falls
            elif isinstance(action, SetField):
                field_id = names.by_logical_name().get(action.name)
                if field_id:
                    fields[field_id] = action.value
                else:
                    log.info("no Jira field configured for %s; left as it is", action.name)
            elif isinstance(action, PublicReply | InternalNote):
                out.comments.append(action)
            elif isinstance(action, LinkTicket):
                # One issue link shows on both issues: it is made from the request's side only.
                if action.role is LinkRole.REQUEST and action.other not in out.links:
                    out.links.append(action.other)
            elif isinstance(action, SetStatus):
                if action.status in (TicketStatus.SOLVED, TicketStatus.CLOSED):
                    out.solve = True
                else:
                    log.info("no Jira workflow move for status %s; left as it is", action.status.value)
        if labels:
            out.edit["update"] = {"labels": labels}  # add/remove: never replace the label list
        if fields:
            out.edit["fields"] = fields
        return out

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        """One issue edit, the links, the comments not posted yet for `key`, the move to Escalated, then solving.

        The sweep's label (sweep_label) is added after the move to Escalated, in an edit of its
        own, and before solving (a Done status may not be editable).
        """
        plan = self.plan(actions)
        posted = frozenset[int]()
        if retry and plan.comments:
            # A request comment's mark is a second call (see _post_comment): one that never
            # landed leaves the reply unmarked, so a retry also knows it by its text.
            two_step = [self._request_comment_body(ref, c) for c in plan.comments]
            posted = self.posted_parts(ref, key, two_step)
        if plan.edit:
            self.call("edit issue", "PUT", self.api_url(f"issue/{ref}"), body=plan.edit)
        linked = self.linked_issues(ref) if retry and plan.links else frozenset()
        for other in plan.links:
            if other in linked:
                log.info("%s is already linked to %s; not linking again", ref, other)
                continue
            self._link(ref, other)
        for part, comment in enumerate(plan.comments):
            if part in posted:
                log.info("comment %d of %s is already on %s; not posting it again", part, key, ref)
                continue
            self._post_comment(ref, comment, {"transition": key, "part": part})
        if plan.transition and not (retry and self._is_escalated(ref)):
            self._move_to_escalated(ref)
        if plan.last_labels:
            body = {"update": {"labels": [{"add": label} for label in plan.last_labels]}}
            self.call("edit issue", "PUT", self.api_url(f"issue/{ref}"), body=body)
        if plan.solve and not (retry and self._is_done(ref)):
            self._move_to_solved(ref)

    # --- an escalation request raised as its own issue: link it, then solve it ---

    def _link(self, ref: str, other: str) -> None:
        # POST issueLink through the session: the library's create_issue_link first reads every
        # link type (on each call: its cache check never hits) and logs a warning for a plain name.
        body = {"type": {"name": self.settings.link_type}, "inwardIssue": {"key": ref}, "outwardIssue": {"key": other}}
        self.call("link issues", "POST", self.api_url("issueLink"), body=body)

    def linked_issues(self, ref: str) -> frozenset[str]:
        """The keys of the issues `ref` is linked to (a retry links only what is not linked yet)."""
        answer = self.call("read links", "GET", self.api_url(f"issue/{ref}"), params={"fields": "issuelinks"})
        keys = set()
        fields = _json(answer, "issue").opt_obj("fields")
        for link in fields.objects("issuelinks") if fields else []:
            for side in ("inwardIssue", "outwardIssue"):
                issue = link.opt_obj(side)
                if issue is not None and issue.opt_text("key"):
                    keys.add(issue.text("key"))
        return frozenset(keys)

    def _is_escalated(self, ref: str) -> bool:
        """Whether the issue is in JIRA_ESCALATED_STATUS already (a retry after the move landed moves it no more).

        A workflow whose Escalate transition is global, or loops, offers it from Escalated too.
        """
        answer = self.call("read status", "GET", self.api_url(f"issue/{ref}"), params={"fields": "status"})
        fields = _json(answer, "issue").opt_obj("fields")
        status = fields.opt_obj("status") if fields else None
        name = status.opt_text("name") if status else None
        if name and name.strip().lower() == self.settings.escalated_status.strip().lower():
            log.info("%s is in %s already; not moving it again", ref, name)
            return True
        return False

    def _is_done(self, ref: str) -> bool:
        """Whether the issue is in a Done-category status already (a retry after the move landed moves no further)."""
        answer = self.call("read status", "GET", self.api_url(f"issue/{ref}"), params={"fields": "status"})
        fields = _json(answer, "issue").opt_obj("fields")
        if fields is not None and status_category(fields) == "done":
            log.info("%s is in a Done status already; not moving it again", ref)
            return True
        return False

    def _move_to_solved(self, ref: str) -> None:
        """Move a request to JIRA_SOLVED_STATUS, or else the first Done-category status its workflow offers."""
        wanted = (self.settings.solved_status or "").strip().lower()
        url = self.api_url(f"issue/{ref}/transitions")
        answer = self.call("read transitions", "GET", url, params={"expand": "transitions.fields"})
        for transition in _json(answer, "transitions").objects("transitions"):
            target = transition.opt_obj("to")
            category = target.opt_obj("statusCategory") if target else None
            names = {n.lower() for n in (transition.opt_text("name"), target.opt_text("name") if target else None) if n}
            if (wanted and wanted in names) or (not wanted and category and category.opt_text("key") == "done"):
                body: dict[str, Any] = {"transition": {"id": transition.text("id")}}
                resolution = self._resolution(transition)
                if resolution:
                    body["fields"] = {"resolution": {"name": resolution}}
                self.call("transition", "POST", url, body=body)
                return
        shown = self.settings.solved_status or "a Done status"
        log.info("no transition to %s offered on %s; the request stays open", shown, ref)

    def _resolution(self, transition: Json) -> str | None:
        """The resolution to send: only when the transition's screen has the field (else Jira answers 400)."""
        fields = transition.opt_obj("fields")
        field_info = fields.opt_obj("resolution") if fields else None
        if field_info is None:
            return None
        if self.settings.solved_resolution:
            return self.settings.solved_resolution
        allowed = field_info.objects("allowedValues")
        return allowed[0].opt_text("name") if allowed else None

    def posted_parts(self, ref: str, key: str, unmarked: Sequence[str | None] = ()) -> frozenset[int]:
        """Which comments of transition `key` are already on the issue (the newest comments' `tierup.key`).

        `unmarked[part]`, when given, is the text of a part posted as a request comment: an
        own comment with that text and no `tierup.key` at all is that part whose mark never
        landed (the mark failed, or the post timed out after Jira made the comment). It is
        marked now and counts as posted.
        """
        params = {"orderBy": "-created", "maxResults": RECENT_COMMENTS, "expand": "properties"}
        answer = self.call("read comments", "GET", self.api_url(f"issue/{ref}/comment"), params=params)
        parts = set()
        bare: list[Json] = []  # comments without any tierup.key, newest first
        for comment in _json(answer, "comments").objects("comments"):
            marks = [p.raw("value") for p in comment.objects("properties") if p.opt_text("key") == KEY_PROPERTY]
            if not marks:
                bare.append(comment)
            for value in marks:
                if isinstance(value, Mapping) and value.get("transition") == key and isinstance(value.get("part"), int):
                    parts.add(int(value["part"]))
        for part, text in enumerate(unmarked):
            if text is None or part in parts:
                continue
            found = next((c for c in bare if _same_text(c.opt_text("body"), text) and self._is_own(c)), None)
            if found is not None:
                bare.remove(found)
                url = self.api_url(f"comment/{found.text('id')}/properties/{KEY_PROPERTY}")
                self.call("mark comment", "PUT", url, body={"transition": key, "part": part})
                log.info("comment %d of %s is on %s without its mark; marked it, not posting it again", part, key, ref)
                parts.add(part)
        return frozenset(parts)

    def _is_own(self, comment: Json) -> bool:
        author = comment.opt_obj("author")
        return author is not None and bool(account_ids(author) & self.own_accounts())

    def _request_comment_body(self, ref: str, comment: PublicReply | InternalNote) -> str | None:
        """The text a part is posted with when it is a request comment (marked apart), else None."""
        if isinstance(comment, PublicReply) and self.is_service_desk(ref):
            return html_to_wiki(comment.body)
        return None

    def is_service_desk(self, ref: str) -> bool:
        """Whether the issue's project is a JSM project (learned from payloads, else one project read, once)."""
        project = ref.rsplit("-", 1)[0]
        known = self.project_types.is_service_desk(project)
        if known is None:
            answer = _json(self.call("read project", "GET", self.api_url(f"project/{project}")), "project")
            self.project_types.note(project, answer.opt_text("projectTypeKey") or "unknown")
            known = self.project_types.is_service_desk(project)
        return bool(known)

    def _post_comment(self, ref: str, comment: PublicReply | InternalNote, marker: dict[str, Any]) -> None:
        request_body = self._request_comment_body(ref, comment)
        if request_body is not None:
            # A request comment is what the customer sees and is notified of; it takes no properties,
            # so the marker is set on it right after.
            url = self.servicedesk_url(f"request/{ref}/comment")
            try:
                created = self.call("public comment", "POST", url, body={"body": request_body, "public": True})
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                # An issue of a JSM project that is no customer request (an agent made it without a request
                # type): the request endpoints do not know it, and a plain comment is its public one.
                log.info("%s is not a customer request; its reply is a plain comment", ref)
            else:
                comment_id = _json(created, "comment").text("id")
                url = self.api_url(f"comment/{comment_id}/properties/{KEY_PROPERTY}")
                self.call("mark comment", "PUT", url, body=marker)
                return
        body = html_to_wiki(comment.body)
        properties: list[dict[str, Any]] = [{"key": KEY_PROPERTY, "value": marker}]
        if isinstance(comment, InternalNote):
            properties.append(INTERNAL_PROPERTY)
        operation = "internal note" if isinstance(comment, InternalNote) else "comment"
        url = self.api_url(f"issue/{ref}/comment")
        self.call(operation, "POST", url, body={"body": body, "properties": properties})

    def _move_to_escalated(self, ref: str) -> None:
        """Move the issue to the Escalated status when its workflow offers that.

        The first move in a project reads the issue's transitions and remembers the id; later
        moves post that id straight away. Jira answers 400 when it is not offered from the
        issue's status (another issue type's workflow, already Escalated): then it reads. One
        offered and still refused (a validator, a required screen field) leaves the status as it
        is, with a warning naming Jira's reason, the first time in a project as every other time.
        """
        project = ref.rsplit("-", 1)[0]
        url = self.api_url(f"issue/{ref}/transitions")
        known = self._to_escalated.get(project)
        refused: PermanentError | None = None
        if known is not None:
            try:
                self.call("transition", "POST", url, body={"transition": {"id": known}})
                return
            except PermanentError as exc:
                refused = exc
                log.info("transition %s not offered on %s (%s); reading its transitions", known, ref, exc)
        wanted = self.settings.escalated_status.strip().lower()
        for transition in _json(self.call("read transitions", "GET", url), "transitions").objects("transitions"):
            target = transition.opt_obj("to")
            names = {transition.opt_text("name"), target.opt_text("name") if target else None}
            if wanted in {n.lower() for n in names if n}:
                ident = transition.text("id")
                self._to_escalated[project] = ident
                if ident != known:  # one refused just now would be refused the same way again
                    try:
                        self.call("transition", "POST", url, body={"transition": {"id": ident}})
                        return
                    except PermanentError as exc:
                        refused = exc
                # Offered, and refused: a validator, or a field the transition's screen requires. The labels,
                # comments and fields are on the issue already; the move is the workflow's to allow.
                log.warning("Jira refused to move %s to %s (%s); status left as it is", ref,
                            self.settings.escalated_status, refused)  # fmt: skip
                return
        log.info("no transition to %s offered on %s; status left as it is", self.settings.escalated_status, ref)
