"""Jira webhook payloads → escalation requests, review commands, or Ignored.

Events are routed through HANDLERS, a dict of `handle_<event>` functions; the supported
events are its keys. Payloads are untrusted: every read goes through `Json`, whose
accessors raise JiraPayloadError (400) naming the path that is wrong.

What each event means:

- `jira:issue_updated`
  - the request label added (label *sets* from the changelog, checked against the issue's
    labels) → an EscalationRequest (channel macro) from the fields on the issue;
  - a review label added (confirm / cancel / not happy) → a ReviewCommand. A cancel's
    feedback is, in this order: the comment made with the change (a transition or edit
    screen with a comment), the text of JIRA_FIELD_FEEDBACK, the newest comment the
    payload carries that is not ours;
  - a status change into the *done* status category → Command.RESOLVE;
  - the reason / rationale / preferred-contact / requested-priority field changed → a
    follow-up request (the service ignores it unless the escalation waits for information);
    Data Center names a custom field by its display name, without a fieldId, so its id is
    looked up in Jira's field list (read once);
  - anything else, including a priority change on its own, → Ignored (nothing to decide).
- `jira:issue_created` of the configured JSM request type (JIRA_ESCALATION_REQUEST_TYPE)
  → an EscalationRequest for the issue its summary or description names (SD8), replies
  going to the request itself; channel form when the form's reason field is filled,
  email otherwise.
- `comment_created` → a follow-up request whose rationale is the comment's text; an
  internal JSM comment (`jsdPublic` false) is not the requester's answer and is Ignored.
  Data Center sends this event without the issue, and the same comment again as
  `jira:issue_updated` with `issue_event_type_name` issue_commented: there, that one counts.
- `tierup:sla_breached` (our own kind: a Jira Automation rule "When: SLA threshold breached"
  → "Send web request", body in the README) → an EscalationRequest by the system, channel
  sla_breach, reason sla_violation (SH3), with no snapshot: the gateway reads the issue once,
  so routing sees the same fields as the sweep and the other events.

Changes made by Tierup's own account (JIRA_BOT_ACCOUNT) are Ignored, so our writes never
echo back. Times come from the payload's `timestamp` (ms since the epoch), so a delivery
Jira retries half an hour late still sorts before a newer one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from adapters.jira.settings import Deployment, JiraSettings
from integration.model import (
    SYSTEM,
    Channel,
    Command,
    EscalationRequest,
    Event,
    Ignored,
    Person,
    Platform,
    Reason,
    ReviewCommand,
    Role,
    TicketSnapshot,
    TicketStatus,
)
from integration.policy import REASON_LABELS
from integration.ports import Classified, Delivery, PayloadError
from integration.references import email_rationale, find_preferred_contact, find_reason, find_ticket_reference


class JiraPayloadError(PayloadError):
    """A Jira body that is not JSON or not shaped like a Jira webhook (answered 400)."""


# --- checked access to untrusted JSON ---------------------------------------------------


class Json:
    """A checked view of one JSON object: every read names its path when the shape is wrong."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self._data, self._path = data, path

    @classmethod
    def root(cls, value: Any, what: str = "payload") -> Json:
        """The top of a payload, which must be a JSON object."""
        if not isinstance(value, Mapping):
            raise JiraPayloadError(f"{what} must be a JSON object")
        return cls(value, "")

    def _at(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return key in self._data

    def names(self) -> list[str]:
        return [k for k in self._data if isinstance(k, str)]

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def obj(self, key: str) -> Json:
        found = self.opt_obj(key)
        if found is None:
            raise JiraPayloadError(f"{self._at(key)}: missing")
        return found

    def opt_obj(self, key: str) -> Json | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise JiraPayloadError(f"{self._at(key)}: must be an object")
        return Json(value, self._at(key))

    def text(self, key: str) -> str:
        found = self.opt_text(key)
        if found is None:
            raise JiraPayloadError(f"{self._at(key)}: missing")
        return found

    def opt_text(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise JiraPayloadError(f"{self._at(key)}: must be text")
        return str(value) if str(value).strip() else None

    def flag(self, key: str) -> bool:
        value = self._data.get(key)
        if value is not None and not isinstance(value, bool):
            raise JiraPayloadError(f"{self._at(key)}: must be true or false")
        return bool(value)

    def objects(self, key: str) -> list[Json]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise JiraPayloadError(f"{self._at(key)}: must be a list of objects")
        return [Json(v, f"{self._at(key)}[{i}]") for i, v in enumerate(value)]

    def texts(self, key: str) -> list[str]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise JiraPayloadError(f"{self._at(key)}: must be a list of strings")
        return list(value)

    def millis(self, key: str) -> datetime | None:
        """A time given as milliseconds since the epoch (webhook `timestamp`, `epochMillis`)."""
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 253402300800000:
            raise JiraPayloadError(f"{self._at(key)}: must be milliseconds since the epoch")
        return datetime.fromtimestamp(value / 1000, tz=UTC)

    def number(self, key: str) -> float | None:
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JiraPayloadError(f"{self._at(key)}: must be a number")
        return float(value)


def jira_time(value: str | None) -> datetime | None:
    """A Jira date-time (`2019-02-16T13:12:10.037-0800`), or None when absent or unreadable."""
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def field_text(fields: Json, field_id: str | None) -> str | None:
    """The text of a (custom) field, whatever its type: text, number, option, user, group, or a list of them."""
    if not field_id:
        return None
    return _value_text(fields.raw(field_id))


def _value_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    if isinstance(value, Mapping):
        if value.get("type") == "doc":  # Atlassian document format (API v3 and some Automation bodies)
            return _adf_text(value) or None
        for key in ("value", "name", "displayName", "key"):
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key]).strip()
        return None
    if isinstance(value, list):
        for item in value:
            if found := _value_text(item):
                return found
    return None


def comment_text(comment: Json) -> str | None:
    """A comment's text: wiki markup, as webhooks send it, or an Atlassian document (API v3, smart values)."""
    body = comment.raw("body")
    if isinstance(body, Mapping) and body.get("type") == "doc":
        return _adf_text(body).strip() or None
    return comment.opt_text("body")


def _adf_text(node: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if isinstance(node.get("text"), str):
        parts.append(node["text"])
    for child in node.get("content") or ():
        if isinstance(child, Mapping):
            parts.append(_adf_text(child))
    joined = "".join(parts)
    return joined + "\n" if node.get("type") == "paragraph" else joined


# --- what the payload says about people, issues and projects ------------------------------


def user_id(user: Json | None) -> str | None:
    """A user's id: the accountId on Cloud, the username on Data Center."""
    if user is None:
        return None
    return user.opt_text("accountId") or user.opt_text("name") or user.opt_text("key")


def person(user: Json | None, role: Role) -> Person:
    """A payload user as the model's Person."""
    ident = user_id(user) if user is not None else None
    if user is None or ident is None:
        return Person(id="unknown", role=role)
    return Person(id=ident, email=user.opt_text("emailAddress"), name=user.opt_text("displayName"), role=role)


_STATUS_BY_CATEGORY = {"new": TicketStatus.NEW, "indeterminate": TicketStatus.OPEN, "done": TicketStatus.SOLVED}


def status_category(fields: Json) -> str | None:
    status = fields.opt_obj("status")
    category = status.opt_obj("statusCategory") if status else None
    return category.opt_text("key") if category else None


def issue_snapshot(issue: Json, settings: JiraSettings, slas: Iterable[Any] = ()) -> TicketSnapshot:
    """The ticket snapshot the policy needs, from an issue as webhooks and `GET issue` give it."""
    fields = issue.obj("fields")
    priority = fields.opt_obj("priority")
    priority_name = priority.opt_text("name") if priority else None
    ranked = settings.priority_for(priority_name)
    region = field_text(fields, settings.fields.region)
    participants = _users(fields, settings.fields.participants)
    return TicketSnapshot(
        ref=issue.text("key"),
        platform=Platform.JIRA,
        status=_STATUS_BY_CATEGORY.get(status_category(fields) or "", TicketStatus.OPEN),
        priority=ranked,
        unranked_priority=priority_name if ranked is None and priority_name else None,
        group=field_text(fields, settings.fields.lead_group),
        assignee=user_id(fields.opt_obj("assignee")),
        requester=person(fields.opt_obj("reporter"), Role.END_USER) if fields.has("reporter") else None,
        region=region.upper() if region else None,
        tags=frozenset(fields.texts("labels")),
        slas=tuple(slas),
        cc_emails=frozenset(e for u in participants if (e := u.opt_text("emailAddress"))),
        cc_ids=frozenset(i for u in participants if (i := user_id(u))),
        subject=fields.opt_text("summary"),
        version=fields.opt_text("updated"),
    )


def _users(fields: Json, field_id: str | None) -> list[Json]:
    """The users in a multi-user field (JSM's Request participants); none when unset, empty or not users."""
    if not field_id:
        return []
    try:
        return fields.objects(field_id)
    except JiraPayloadError:  # a setting naming another kind of field must not stop every escalation
        return []


def project_of(issue: Json) -> tuple[str, str | None]:
    """The issue's project key and type (`service_desk`, `software`, ...; None when the payload leaves it out)."""
    fields = issue.opt_obj("fields")
    project = fields.opt_obj("project") if fields else None
    key = project.opt_text("key") if project else None
    return (key or issue.text("key").rsplit("-", 1)[0]).upper(), project.opt_text("projectTypeKey") if project else None


class ProjectTypes:
    """What kind each project is, learned for free from payloads and reads; shared by the parser and the gateway."""

    SERVICE_DESK = "service_desk"

    def __init__(self) -> None:
        self._types: dict[str, str] = {}

    def note(self, project_key: str, type_key: str | None) -> None:
        if type_key:
            self._types[project_key.upper()] = type_key

    def is_service_desk(self, project_key: str) -> bool | None:
        """True for a JSM project, False for another kind, None when not known yet."""
        known = self._types.get(project_key.upper())
        return None if known is None else known == self.SERVICE_DESK


# --- the parser ----------------------------------------------------------------------------


def reason_from_text(text: str | None) -> Reason | None:
    """A Reason from a field's text: its value (`sla_violation`) or a label (`SLA violation`)."""
    if not text:
        return None
    wanted = _normal(text)
    for reason in Reason:
        if wanted in (reason.value, _normal(REASON_LABELS.get(reason, ""))):
            return reason
    return None


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def _label_set(text: str | None) -> frozenset[str]:
    # Changelog label values are space-separated lists.
    return frozenset((text or "").split())


def account_ids(user: Json) -> frozenset[str]:
    """A Jira user's ids: the accountId (Cloud), the name and the key (Data Center)."""
    return frozenset(i for i in (user.opt_text(k) for k in ("accountId", "name", "key")) if i)


def no_fields(name: str) -> frozenset[str]:
    """No field ids for any name (a site whose field list is not read: dry runs, tests)."""
    return frozenset()


@dataclass(frozen=True)
class _Context:
    settings: JiraSettings
    own_accounts: frozenset[str]
    delivery_id: str | None
    received_at: datetime
    field_ids: Callable[[str], frozenset[str]] = no_fields  # the ids of the fields with a display name

    def is_own(self, user: Json | None) -> bool:
        if user is None or not self.own_accounts:
            return False
        return bool(account_ids(user) & self.own_accounts)

    def out_of_scope(self, issue: Json) -> Ignored | None:
        project, _ = project_of(issue)
        if self.settings.projects and project not in self.settings.projects:
            return Ignored(f"project {project} is not in JIRA_PROJECTS", issue.opt_text("key"))
        return None


Handler = Callable[[Json, _Context], Event | Ignored]


def _hint(issue: Json, settings: JiraSettings) -> TicketSnapshot | None:
    # Comment payloads carry a cut-down issue (no labels): no hint, the gateway reads the issue.
    fields = issue.opt_obj("fields")
    return issue_snapshot(issue, settings) if fields is not None and fields.has("labels") else None


def _request(
    issue: Json, ctx: _Context, requester: Person, at: datetime, *, follow_up: bool, rationale: str | None = None
) -> EscalationRequest:
    fields = issue.obj("fields")
    f = ctx.settings.fields
    return EscalationRequest(
        platform=Platform.JIRA,
        ticket_ref=issue.text("key"),
        requested_by=requester,
        channel=Channel.MACRO,
        reason=reason_from_text(field_text(fields, f.reason)),
        received_at=at,
        rationale=rationale if rationale is not None else field_text(fields, f.rationale),
        preferred_contact=field_text(fields, f.preferred_contact),
        requested_priority=ctx.settings.priority_for(field_text(fields, f.requested_priority)),
        ticket=_hint(issue, ctx.settings),
        delivery_id=ctx.delivery_id,
        follow_up=follow_up,
    )


def _cancel_feedback(payload: Json, issue: Json, ctx: _Context) -> str | None:
    """What the customer is told as the cancel's feedback (LR6): the lead's words only.

    The comment made with the label, else the feedback field, else the newest comment of the
    lead who added the label (internal or not, as the one made with the label may be). Never
    anyone else's (a customer's plea, another agent's internal note): they would go to the
    customer as the Team Leader's feedback.
    """
    comment = payload.opt_obj("comment")
    if comment is not None and not ctx.is_own(comment.opt_obj("author")) and (said := comment_text(comment)):
        return said
    fields = issue.obj("fields")
    from_field = field_text(fields, ctx.settings.fields.feedback)
    if from_field:
        return from_field
    user = payload.opt_obj("user")
    lead = account_ids(user) if user is not None else frozenset()
    thread = fields.opt_obj("comment")
    for older in reversed(thread.objects("comments") if thread else []):
        author = older.opt_obj("author")
        if author is not None and lead & account_ids(author) and (said := comment_text(older)):
            return said
    return None


def handle_issue_updated(payload: Json, ctx: _Context) -> Event | Ignored:
    """Labels, status and request fields changed on an issue."""
    issue = payload.obj("issue")
    key = issue.text("key")
    user = payload.opt_obj("user")
    if ctx.is_own(user):
        return Ignored("our own change", key)
    if skipped := ctx.out_of_scope(issue):
        return skipped
    at = payload.millis("timestamp") or ctx.received_at
    fields = issue.obj("fields")
    changelog = payload.opt_obj("changelog")
    items = changelog.objects("items") if changelog else []
    changed = {item.opt_text("fieldId") or item.opt_text("field"): item for item in items}
    for entry in items:
        name = entry.opt_text("field")
        if entry.opt_text("fieldId") is None and entry.opt_text("fieldtype") == "custom" and name:
            # Data Center names a custom field by its display name, with no fieldId.
            changed.update(dict.fromkeys(ctx.field_ids(name), entry))

    labels = ctx.settings.labels
    added: frozenset[str] = frozenset()
    if (item := changed.get("labels")) is not None:
        added = _label_set(item.opt_text("toString")) - _label_set(item.opt_text("fromString"))
        if fields.has("labels"):
            added &= frozenset(fields.texts("labels"))  # still on the issue when Jira sent this
    if labels.request in added:
        return _request(issue, ctx, person(user, Role.AGENT), at, follow_up=False)
    review = [(label, cmd) for label, cmd in ((labels.confirm, Command.CONFIRM), (labels.cancel, Command.CANCEL),
                                              (labels.not_happy, Command.NOT_HAPPY)) if label in added]  # fmt: skip
    if len(review) > 1:
        return Ignored(f"several review labels added at once ({', '.join(label for label, _ in review)})", key)
    if review:
        command = review[0][1]
        return ReviewCommand(
            platform=Platform.JIRA,
            ticket_ref=key,
            command=command,
            actor=person(user, Role.AGENT if command is Command.NOT_HAPPY else Role.LEAD),
            received_at=at,
            feedback=_cancel_feedback(payload, issue, ctx) if command is Command.CANCEL else None,
            ticket=_hint(issue, ctx.settings),
            delivery_id=ctx.delivery_id,
        )
    if "status" in changed and status_category(fields) == "done":
        return ReviewCommand(
            platform=Platform.JIRA,
            ticket_ref=key,
            command=Command.RESOLVE,
            actor=person(user, Role.AGENT),
            received_at=at,
            ticket=_hint(issue, ctx.settings),
            delivery_id=ctx.delivery_id,
        )
    if ctx.settings.fields.request_fields() & changed.keys():
        return _request(issue, ctx, person(user, Role.AGENT), at, follow_up=True)
    if (item := changed.get("priority")) is not None:
        moved = f"{item.opt_text('fromString') or 'none'} -> {item.opt_text('toString') or 'none'}"
        return Ignored(f"priority changed ({moved}): nothing to decide", key)
    comment = payload.opt_obj("comment")
    event_type = payload.opt_text("issue_event_type_name")
    if comment is not None and event_type == "issue_commented" and _data_center(ctx, user):
        # Data Center's comment_created carries no issue: its comments are taken from this event.
        return _comment_follow_up(payload, issue, comment, ctx)
    return Ignored("no change Tierup acts on", key)


def _data_center(ctx: _Context, user: Json | None) -> bool:
    """Whether the payload is Data Center's: as configured, else by its user (Cloud users all have an accountId)."""
    if ctx.settings.deployment is not None:
        return ctx.settings.deployment is Deployment.DATACENTER
    return user is not None and user.opt_text("accountId") is None


def _request_type(fields: Json) -> tuple[str | None, str | None]:
    """The JSM request type's (name, id); JSM keeps it in a custom field whose id differs per site: found by shape."""
    for name in fields.names():
        value = fields.raw(name) if name.startswith("customfield_") else None
        if isinstance(value, Mapping) and isinstance(value.get("requestType"), Mapping):
            kind = value["requestType"]
            return _value_text(kind), _value_text(kind.get("id"))
    return None, None


def is_escalation_request_type(fields: Json, wanted: str | None) -> tuple[bool, str | None]:
    """Whether the issue is of JIRA_ESCALATION_REQUEST_TYPE (its name, or its id), and the type's name."""
    name, ident = _request_type(fields)
    if not wanted or (name is None and ident is None):
        return False, name
    want = wanted.strip().lower()
    return want in {n.strip().lower() for n in (name, ident) if n}, name


def handle_issue_created(payload: Json, ctx: _Context) -> Event | Ignored:
    """An escalation request raised as its own issue (the JSM escalation form or email)."""
    issue = payload.obj("issue")
    key = issue.text("key")
    user = payload.opt_obj("user")
    fields = issue.obj("fields")
    reporter = fields.opt_obj("reporter") or user
    if ctx.is_own(user) or ctx.is_own(reporter):
        return Ignored("our own issue", key)
    if skipped := ctx.out_of_scope(issue):
        return skipped
    matches, request_type = is_escalation_request_type(fields, ctx.settings.escalation_request_type)
    if not matches:
        return Ignored(f"not an escalation request (request type {request_type or 'none'})", key)
    return _escalation_request(issue, ctx, reporter, payload.millis("timestamp") or ctx.received_at)


def _escalation_request(
    issue: Json, ctx: _Context, reporter: Json | None, at: datetime, answer: str | None = None
) -> EscalationRequest:
    """The request an escalation request issue makes: the issue it names, why, and how to reach its reporter.

    `answer` is the reporter's reply to the SD8 answer ("please tell us the number"): read first.
    """
    key = issue.text("key")
    fields = issue.obj("fields")
    f = ctx.settings.fields
    summary, description = fields.opt_text("summary"), field_text(fields, "description")
    reason_text = field_text(fields, f.reason)
    given = field_text(fields, f.rationale)
    named = find_ticket_reference(
        Platform.JIRA, answer, summary, description, given or description, exclude=key, projects=ctx.settings.projects
    )
    # A form fills the reason field; an email has only a subject and a body, which say the reason
    # and the preferred contact (SD4) in words.
    channel = Channel.FORM if reason_text else Channel.EMAIL
    email = channel is Channel.EMAIL
    rationale = given or (email_rationale(description) if email else description)
    return EscalationRequest(
        platform=Platform.JIRA,
        ticket_ref=named,
        requested_by=person(reporter, Role.END_USER),
        channel=channel,
        reason=reason_from_text(reason_text) or (find_reason(answer, summary, description) if email else None),
        received_at=at,
        rationale=rationale,
        preferred_contact=field_text(fields, f.preferred_contact)
        or (find_preferred_contact(description) if email else None),
        requested_priority=ctx.settings.priority_for(field_text(fields, f.requested_priority)),
        origin_ref=key,
        delivery_id=ctx.delivery_id,
    )


def handle_comment_created(payload: Json, ctx: _Context) -> Event | Ignored:
    """A comment: the rationale a needs-info reply asked for (a follow-up)."""
    comment = payload.obj("comment")
    issue = payload.opt_obj("issue")
    if issue is None:
        # Data Center's: it sends the same comment again as jira:issue_updated (issue_commented), with the issue.
        return Ignored("comment without its issue (Data Center sends it again, with the issue, as issue_commented)")
    return _comment_follow_up(payload, issue, comment, ctx)


def _comment_follow_up(payload: Json, issue: Json, comment: Json, ctx: _Context) -> Event | Ignored:
    key = issue.text("key")
    author = comment.opt_obj("author") or payload.opt_obj("user")
    if ctx.is_own(author):
        return Ignored("our own comment", key)
    if skipped := ctx.out_of_scope(issue):
        return skipped
    if comment.raw("jsdPublic") is False:
        return Ignored("an internal comment is not the requester's answer", key)
    body = comment_text(comment)
    if body is None:
        return Ignored("empty comment", key)
    at = payload.millis("timestamp") or ctx.received_at
    fields = issue.obj("fields")
    if is_escalation_request_type(fields, ctx.settings.escalation_request_type)[0]:
        # A reply on an escalation request itself answers our SD8 answer ("please tell us the
        # number"): the request again, the issue it names read from the reply first. Never a
        # follow-up completing the request issue as if it were the ticket to escalate.
        reporter = fields.opt_obj("reporter")
        if reporter is None or author is None or not account_ids(reporter) & account_ids(author):
            return Ignored("a comment on an escalation request by someone other than its reporter", key)
        return _escalation_request(issue, ctx, reporter, at, answer=body)
    request = _request(issue, ctx, person(author, Role.END_USER), at, follow_up=True, rationale=body.strip())
    # The answer to "please tell us why" says it in words (LR3), where no reason field does.
    return request if request.reason else replace(request, reason=find_reason(body))


SLA_BREACHED_EVENT = "tierup:sla_breached"


def handle_sla_breached(payload: Json, ctx: _Context) -> Event | Ignored:
    """An SLA breach a Jira Automation rule reports (README: "From a Jira Automation rule"): SH3."""
    issue = payload.obj("issue")
    key = issue.text("key")
    if skipped := ctx.out_of_scope(issue):
        return skipped
    sla = payload.opt_text("sla")
    return EscalationRequest(
        platform=Platform.JIRA,
        ticket_ref=key,
        requested_by=SYSTEM,
        channel=Channel.SLA_BREACH,
        reason=Reason.SLA_VIOLATION,
        received_at=payload.millis("timestamp") or ctx.received_at,
        rationale=f"{sla.strip()} breached" if sla else None,
        # The body carries the key only: one issue read gives routing the real fields (region, priority, labels).
        ticket=None,
        delivery_id=ctx.delivery_id,
    )


HANDLERS: dict[str, Handler] = {
    "jira:issue_updated": handle_issue_updated,
    "jira:issue_created": handle_issue_created,
    "comment_created": handle_comment_created,
    SLA_BREACHED_EVENT: handle_sla_breached,
}
SUPPORTED_EVENTS = frozenset(HANDLERS)


def decode(body: bytes) -> Json:
    """The delivery body as a checked JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise JiraPayloadError("body is not JSON") from None
    return Json.root(data)


def _no_accounts() -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class JiraParser:
    """Classifies and parses Jira deliveries under one site's settings."""

    settings: JiraSettings
    project_types: ProjectTypes | None = None
    # Tierup's own account ids when JIRA_BOT_ACCOUNT is unset (asked of Jira once, by the gateway).
    own_accounts: Callable[[], frozenset[str]] = _no_accounts
    # The ids of the fields with a display name (asked of Jira once, by the gateway): Data Center changelogs.
    field_ids: Callable[[str], frozenset[str]] = no_fields

    def classify(self, payload: Any) -> Classified | None:
        """The event kind, issue key and event time of a payload, or None for events Tierup does not handle."""
        root = Json.root(payload)
        kind = root.opt_text("webhookEvent")
        if kind not in HANDLERS:
            return None
        issue = root.opt_obj("issue")
        return Classified(kind=kind, ticket_ref=issue.text("key") if issue else None,
                          occurred_at=root.millis("timestamp"))  # fmt: skip

    def parse(self, delivery: Delivery) -> Event | Ignored:
        """The request or command a stored delivery carries, or Ignored."""
        payload = decode(delivery.body)
        kind = payload.opt_text("webhookEvent")
        handler = HANDLERS.get(kind or "")
        if handler is None:
            return Ignored(f"unsupported Jira event {kind or '(none)'}")
        issue = payload.opt_obj("issue")
        if issue is not None and self.project_types is not None:
            self.project_types.note(*project_of(issue))
        bot = self.settings.bot_account
        own = frozenset({bot}) if bot else self.own_accounts()
        ctx = _Context(self.settings, own, delivery.delivery_id, delivery.received_at, self.field_ids)
        return handler(payload, ctx)
