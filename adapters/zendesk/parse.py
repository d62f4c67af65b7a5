"""Zendesk deliveries into neutral events: Tierup's own trigger bodies and Zendesk's ticket event webhooks.

Routing is a plain dict of `handle_<event>` functions (HANDLERS); the list of supported
events is its keys. Payloads are untrusted: every read goes through a checked accessor that
names the path it failed on. Three outcomes: an Event, Ignored (nothing to do, or our own
echo), or ZendeskPayloadError (400 at the door, a failed delivery in the worker).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from adapters.zendesk.mapping import (
    TicketRead,
    parse_time,
    priority_from_zendesk,
    role_from_zendesk,
    status_from_zendesk,
    text,
    words,
)
from integration.model import (
    SYSTEM,
    Channel,
    Command,
    EscalationRequest,
    Event,
    Ignored,
    Organisation,
    Person,
    Platform,
    Priority,
    Reason,
    ReviewCommand,
    Role,
    TicketSnapshot,
    TicketStatus,
)
from integration.policy import Tags
from integration.ports import Classified, Delivery, PayloadError
from integration.references import email_rationale, find_preferred_contact, find_reason, find_ticket_reference

log = logging.getLogger("tierup.zendesk")

# Every Tierup trigger body carries this key (its value is the body's version).
BODY_MARK = "tierup"
BODY_VERSION = "zendesk-trigger/1"
EVENT_PREFIX = "zen:event-type:"
TRIGGER_PREFIX = "tierup."


class TriggerKind(StrEnum):
    """What a Tierup trigger (or the SLA automation) reports; the body's `kind`."""

    ESCALATION_REQUESTED = "escalation_requested"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    NOT_HAPPY = "not_happy"
    SOLVED = "solved"
    CONTACT = "contact"
    FOLLOW_UP = "follow_up"
    SLA_BREACH = "sla_breach"


# Tags the macros add (and Tierup's triggers remove again): how an agent asks Tierup for something.
REQUEST_TAG = "escalation_requested"
COMMAND_TAGS: Mapping[str, Command] = {
    "escalation_confirm": Command.CONFIRM,
    "escalation_cancel": Command.CANCEL,
    "escalation_not_happy": Command.NOT_HAPPY,
}
# Dropdown option values of the installer's fields (Zendesk stores them as ticket tags too).
REASON_PREFIX = "tierup_reason_"
PRIORITY_PREFIX = "tierup_priority_"


class ZendeskPayloadError(PayloadError):
    """A Zendesk delivery that is not a payload Tierup can read (answered 400)."""


# --- checked accessors ------------------------------------------------------------------------


class Obj:
    """A checked view of one JSON object from an untrusted payload; errors name the path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ZendeskPayloadError(f"{path}: must be a JSON object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) not in (None, "")

    def obj(self, key: str, required: bool = False) -> Obj:
        value = self.data.get(key)
        if value is None and not required:
            return Obj({}, self._where(key))
        if value is None:
            raise ZendeskPayloadError(f"{self._where(key)}: missing")
        return Obj(value, self._where(key))

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ZendeskPayloadError(f"{self._where(key)}: must be text")
        return text(value)

    def ident(self, key: str, required: bool = False) -> str | None:
        """A Zendesk id: digits, sent as a number or (from placeholders) as text."""
        value = self.opt_text(key)
        if value is None:
            if required:
                raise ZendeskPayloadError(f"{self._where(key)}: missing")
            return None
        if not value.isdigit() or len(value) > 20:
            raise ZendeskPayloadError(f"{self._where(key)}: not a Zendesk id")
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if isinstance(value, bool):
            return value
        return isinstance(value, str) and value.strip().lower() == "true"

    def tags(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str | list):
            raise ZendeskPayloadError(f"{self._where(key)}: must be a list of tags or space-separated text")
        return words(value)


def load_json(body: bytes) -> Any:
    """The delivery body as JSON, or ZendeskPayloadError."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ZendeskPayloadError("body is not JSON") from None


# --- what the parser may use besides the payload ---------------------------------------------


@dataclass(frozen=True)
class ParseContext:
    """The policy's tags, Tierup's own user (echoes), the installer's field ids, and one cached read."""

    tags: Tags = field(default_factory=Tags)
    bot_user_id: str | None = None
    field_ids: Mapping[str, int] = field(default_factory=dict)
    # Reads a ticket once per delivery (the gateway hands the same read to the service); None in dry runs.
    read: Callable[[str], TicketRead | None] | None = None

    def open_tags(self) -> frozenset[str]:
        """Tags that mark an escalation someone is working on (a lead's public reply counts as contact)."""
        t = self.tags
        return frozenset({t.escalated, t.confirmed, t.level_2, t.reclassified})


Handler = Callable[[Obj, Delivery, ParseContext], Event | Ignored]


# --- small readers shared by the handlers ------------------------------------------------------


def reason_from_value(value: str | None) -> Reason | None:
    """A reason dropdown value (`tierup_reason_sla_violation` or `sla_violation`) as a Reason."""
    if not value:
        return None
    raw = value.strip().lower().removeprefix(REASON_PREFIX)
    try:
        return Reason(raw)
    except ValueError:
        log.warning("unknown escalation reason %r: treated as no reason given", value)
        return None


def priority_from_value(value: str | None) -> Priority | None:
    """A requested-priority dropdown value (`tierup_priority_high` or `high`) as a Priority."""
    if not value:
        return None
    return priority_from_zendesk(value.strip().lower().removeprefix(PRIORITY_PREFIX))


def _tag_value(tags: tuple[str, ...] | frozenset[str], prefix: str) -> str | None:
    return next((t for t in sorted(tags) if t.startswith(prefix)), None)


def _channel(value: str | None) -> Channel:
    try:
        return Channel(value) if value else Channel.MACRO
    except ValueError:
        raise ZendeskPayloadError(f"body.channel: unknown channel {value!r}") from None


def _person(o: Obj, organisation: str | None = None) -> Person:
    ident = o.ident("id")
    if ident is None:
        raise ZendeskPayloadError(f"{o.path}.id: missing")
    return Person(
        id=ident,
        email=o.opt_text("email"),
        name=o.opt_text("name"),
        role=role_from_zendesk(o.opt_text("role")),
        tags=frozenset(o.tags("tags")),
        organisation=organisation,
    )


def _organisation(o: Obj) -> Organisation | None:
    ident, name = o.ident("id"), o.opt_text("name")
    if ident is None and name is None:
        return None
    return Organisation(id=ident or name or "", name=name, tags=frozenset(o.tags("tags")))


def _trigger_ticket(body: Obj) -> tuple[str, Obj]:
    ticket = body.obj("ticket", required=True)
    ref = ticket.ident("id", required=True)
    assert ref is not None
    return ref, ticket


def _trigger_hint(body: Obj) -> TicketSnapshot:
    """What a trigger body tells about its ticket: the snapshot a dry run decides on."""
    ref, ticket = _trigger_ticket(body)
    org = _organisation(body.obj("organization"))
    requester = _person(body.obj("requester"), org.name if org else None) if body.obj("requester").has("id") else None
    return TicketSnapshot(
        ref=ref,
        platform=Platform.ZENDESK,
        status=status_from_zendesk(ticket.opt_text("status")) or TicketStatus.OPEN,
        priority=priority_from_zendesk(ticket.opt_text("priority")),
        group=ticket.opt_text("group"),
        requester=requester,
        organisation=org,
        tags=frozenset(ticket.tags("tags")),
        subject=ticket.opt_text("subject"),
    )


def _read(context: ParseContext, ref: str) -> TicketRead | None:
    return context.read(ref) if context.read is not None else None


# --- Tierup trigger bodies (README: "The trigger body") ------------------------------------------


def handle_escalation_requested(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """The Escalate macro (or an escalation form / email ticket) asks for an escalation."""
    ref, ticket = _trigger_ticket(body)
    esc = body.obj("escalation")
    channel = _channel(body.opt_text("channel"))
    org = _organisation(body.obj("organization"))
    requester = _person(body.obj("requester"), org.name if org else None)
    tags = ticket.tags("tags")
    common: dict[str, Any] = {
        "platform": Platform.ZENDESK,
        "requested_by": requester,
        "channel": channel,
        # A dropdown's value is also a ticket tag: the tag answers when the placeholder was left out.
        "reason": reason_from_value(esc.opt_text("reason") or _tag_value(tags, REASON_PREFIX)),
        "received_at": delivery.received_at,
        "rationale": esc.opt_text("rationale"),
        "preferred_contact": esc.opt_text("preferred_contact"),
        "requested_priority": priority_from_value(
            esc.opt_text("requested_priority") or _tag_value(tags, PRIORITY_PREFIX)
        ),
        "region": esc.opt_text("region"),
    }
    if channel in (Channel.EMAIL, Channel.FORM):
        # SD3/SD8: the request is a ticket of its own; the ticket to escalate is the one it names.
        subject, description, reply = (
            ticket.opt_text("subject"),
            ticket.opt_text("description"),
            body.opt_text("comment"),
        )
        # The subject first, then the body; but a reply to our request for the number (SD8) is the
        # sender's answer, read before an email that named a number that would not do.
        original = (description or "").strip()
        answered = bool(reply and reply.strip()) and not (original and original in (reply or ""))
        texts = (reply, subject, description) if answered else (subject, description, reply)
        named = find_ticket_reference(Platform.ZENDESK, *texts, exclude=ref)
        if channel is Channel.EMAIL:
            # An email has no fields: the reason, rationale and preferred contact (SD4) are in its text.
            common["reason"] = common["reason"] or find_reason(subject, description, reply)
            common["rationale"] = common["rationale"] or email_rationale(description)
            common["preferred_contact"] = common["preferred_contact"] or find_preferred_contact(description, reply)
        return EscalationRequest(ticket_ref=named, origin_ref=ref, **common)
    return EscalationRequest(ticket_ref=ref, ticket=_trigger_hint(body), **common)


def _trigger_command(command: Command) -> Handler:
    def handle(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
        ref, _ = _trigger_ticket(body)
        return ReviewCommand(
            platform=Platform.ZENDESK,
            ticket_ref=ref,
            command=command,
            actor=_person(body.obj("current_user", required=True)),
            received_at=delivery.received_at,
            feedback=body.opt_text("comment") if command is Command.CANCEL else None,
            ticket=_trigger_hint(body),
        )

    handle.__name__ = f"handle_{command.value}"
    handle.__doc__ = f"A Tierup trigger reports {command.value!r} on an escalated ticket."
    return handle


def handle_follow_up(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """The requester replied on a ticket waiting for information: the reply may be the missing rationale."""
    ref, _ = _trigger_ticket(body)
    reply = body.opt_text("comment")
    if reply is None:
        return Ignored("a reply without text", ref)
    org = _organisation(body.obj("organization"))
    return EscalationRequest(
        platform=Platform.ZENDESK,
        ticket_ref=ref,
        requested_by=_person(body.obj("requester"), org.name if org else None),
        channel=_channel(body.opt_text("channel")),
        reason=find_reason(reply),  # the answer to "please tell us why" says it in words (LR3)
        received_at=delivery.received_at,
        rationale=reply,
        ticket=_trigger_hint(body),
        follow_up=True,
    )


def handle_sla_breach(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """The SLA-breach automation: escalate without anyone asking (SH3)."""
    ref, _ = _trigger_ticket(body)
    return EscalationRequest(
        platform=Platform.ZENDESK,
        ticket_ref=ref,
        requested_by=SYSTEM,
        channel=Channel.SLA_BREACH,
        reason=Reason.SLA_VIOLATION,
        received_at=delivery.received_at,
        ticket=_trigger_hint(body),
    )


# --- Zendesk ticket event webhooks (zen:event-type:ticket.*) ---------------------------------------


def _event_ref(body: Obj) -> str:
    ref = body.obj("detail", required=True).ident("id")
    if ref is None:
        subject = body.opt_text("subject") or ""  # "zen:ticket:5158"
        ref = subject.rpartition(":")[2] if subject.startswith("zen:ticket:") else None
    if not ref or not ref.isdigit():
        raise ZendeskPayloadError("body.detail.id: missing (no ticket id in the event)")
    return ref


def _event_time(body: Obj, delivery: Delivery) -> datetime:
    return parse_time(body.opt_text("time")) or delivery.received_at


def _event_hint(body: Obj) -> TicketSnapshot:
    detail = body.obj("detail", required=True)
    requester = detail.ident("requester_id")
    org = detail.ident("organization_id")
    return TicketSnapshot(
        ref=_event_ref(body),
        platform=Platform.ZENDESK,
        status=status_from_zendesk(detail.opt_text("status")) or TicketStatus.OPEN,
        priority=priority_from_zendesk(detail.opt_text("priority")),
        assignee=detail.ident("assignee_id"),
        requester=Person(id=requester) if requester else None,
        organisation=Organisation(id=org) if org else None,
        tags=frozenset(detail.tags("tags")),
        subject=detail.opt_text("subject"),
        version=detail.opt_text("updated_at"),
    )


# Who a change by Zendesk itself (a trigger, an automation: "-1" in events and audits) is made by.
ZENDESK_ITSELF = Person(id="zendesk", name="Zendesk", role=Role.SYSTEM)


def _is_zendesk_itself(user_id: str | None) -> bool:
    """Zendesk's own "user" in events and audits; any other id must be a Zendesk id."""
    return user_id is not None and user_id.strip() == "-1"


def _event_actor(body: Obj) -> Person:
    detail = body.obj("detail", required=True)
    if _is_zendesk_itself(detail.opt_text("actor_id")):
        return ZENDESK_ITSELF
    return Person(id=detail.ident("actor_id") or "unknown")


def handle_ticket_tags_changed(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """A macro added `escalation_requested` or a review tag (the event-webhook way to ask)."""
    ref = _event_ref(body)
    added = set(body.obj("event").tags("tags_added"))
    hint = _event_hint(body)
    when = _event_time(body, delivery)
    if REQUEST_TAG in added:
        read = _read(context, ref)
        snap = read.snapshot if read is not None else hint
        ids = context.field_ids

        def value(name: str) -> str | None:
            return read.field_text(ids.get(name)) if read is not None else None

        tags = snap.tags | hint.tags
        requester = snap.requester or hint.requester or _event_actor(body)
        return EscalationRequest(
            platform=Platform.ZENDESK,
            ticket_ref=ref,
            requested_by=requester,
            channel=Channel.MACRO,
            reason=reason_from_value(value("escalation_reason") or _tag_value(tags, REASON_PREFIX)),
            received_at=when,
            rationale=value("business_rationale"),
            preferred_contact=value("preferred_contact"),
            requested_priority=priority_from_value(value("requested_priority") or _tag_value(tags, PRIORITY_PREFIX)),
            ticket=hint,
        )
    for tag, command in COMMAND_TAGS.items():
        if tag in added:
            return ReviewCommand(
                platform=Platform.ZENDESK, ticket_ref=ref, command=command, actor=_event_actor(body),
                received_at=when, ticket=hint,
            )  # fmt: skip
    return Ignored("no Tierup tag was added", ref)


def handle_ticket_status_changed(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """A ticket was solved: its open escalation is resolved (SD9)."""
    ref = _event_ref(body)
    if status_from_zendesk(body.obj("event").opt_text("current")) is not TicketStatus.SOLVED:
        return Ignored("a status change other than to solved", ref)
    return ReviewCommand(
        platform=Platform.ZENDESK, ticket_ref=ref, command=Command.RESOLVE, actor=_event_actor(body),
        received_at=_event_time(body, delivery), ticket=_event_hint(body),
    )  # fmt: skip


def handle_ticket_comment_added(body: Obj, delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """A public comment: an agent's on an escalated ticket keeps the contact promise; a requester's may answer LR3."""
    ref = _event_ref(body)
    comment = body.obj("event").obj("comment", required=True)
    if not comment.flag("is_public"):
        return Ignored("a private comment", ref)
    author = comment.obj("author")
    if _is_zendesk_itself(author.opt_text("id")):
        return Ignored("a comment by Zendesk itself (an automation)", ref)
    person = Person(
        id=author.ident("id") or "unknown",
        name=author.opt_text("name"),
        role=role_from_zendesk("agent" if author.flag("is_staff") else "end-user"),
    )
    hint = _event_hint(body)
    when = _event_time(body, delivery)
    if author.flag("is_staff"):
        if not hint.tags & context.open_tags():
            return Ignored("an agent's reply on a ticket without an open escalation", ref)
        return ReviewCommand(
            platform=Platform.ZENDESK, ticket_ref=ref, command=Command.CONTACT, actor=person, received_at=when,
            ticket=hint,
        )  # fmt: skip
    if context.tags.needs_info not in hint.tags:
        return Ignored("a requester's reply on a ticket not waiting for information", ref)
    answer = comment.opt_text("body")
    if not answer:
        return Ignored("a reply without text", ref)
    return EscalationRequest(
        platform=Platform.ZENDESK, ticket_ref=ref, requested_by=person, channel=Channel.MACRO,
        reason=find_reason(answer), received_at=when, rationale=answer, ticket=hint, follow_up=True,
    )  # fmt: skip


HANDLERS: Mapping[str, Handler] = {
    TRIGGER_PREFIX + TriggerKind.ESCALATION_REQUESTED: handle_escalation_requested,
    TRIGGER_PREFIX + TriggerKind.CONFIRM: _trigger_command(Command.CONFIRM),
    TRIGGER_PREFIX + TriggerKind.CANCEL: _trigger_command(Command.CANCEL),
    TRIGGER_PREFIX + TriggerKind.NOT_HAPPY: _trigger_command(Command.NOT_HAPPY),
    TRIGGER_PREFIX + TriggerKind.SOLVED: _trigger_command(Command.RESOLVE),
    TRIGGER_PREFIX + TriggerKind.CONTACT: _trigger_command(Command.CONTACT),
    TRIGGER_PREFIX + TriggerKind.FOLLOW_UP: handle_follow_up,
    TRIGGER_PREFIX + TriggerKind.SLA_BREACH: handle_sla_breach,
    EVENT_PREFIX + "ticket.tags_changed": handle_ticket_tags_changed,
    EVENT_PREFIX + "ticket.status_changed": handle_ticket_status_changed,
    EVENT_PREFIX + "ticket.comment_added": handle_ticket_comment_added,
}
SUPPORTED_EVENTS = tuple(HANDLERS)


# --- the two entry points ----------------------------------------------------------------------------


def _kind(payload: Any) -> str | None:
    body = Obj(payload, "body")
    if BODY_MARK in body.data:
        kind = body.opt_text("kind")
        return TRIGGER_PREFIX + kind if kind else None
    return body.opt_text("type")


def _worth_storing(kind: str, body: Obj) -> bool:
    """Cheap filters so event webhooks subscribed broadly do not fill the inbox with noise."""
    event = body.obj("event")
    if kind.endswith("ticket.tags_changed"):
        added = set(event.tags("tags_added"))
        return REQUEST_TAG in added or bool(added & COMMAND_TAGS.keys())
    if kind.endswith("ticket.status_changed"):
        return status_from_zendesk(event.opt_text("current")) is TicketStatus.SOLVED
    if kind.endswith("ticket.comment_added"):
        return event.obj("comment", required=True).flag("is_public")
    return True


def classify(payload: Any) -> Classified | None:
    """The event kind, ticket and time of a verified payload; None when Tierup does not handle it."""
    kind = _kind(payload)
    if kind is None or kind not in HANDLERS:
        return None
    body = Obj(payload, "body")
    if kind.startswith(TRIGGER_PREFIX):
        ref, ticket = _trigger_ticket(body)
        return Classified(kind=kind, ticket_ref=ref, occurred_at=parse_time(ticket.opt_text("updated_at")))
    if not _worth_storing(kind, body):
        return None
    return Classified(kind=kind, ticket_ref=_event_ref(body), occurred_at=parse_time(body.opt_text("time")))


def _actor_id(kind: str, body: Obj) -> str | None:
    """Who made the change, as text: only ever compared with Tierup's own user id.

    Not checked as a Zendesk id: a change by Zendesk itself may name no user ("-1" in an
    audit), and that is no reason to fail the delivery.
    """
    if kind.startswith(TRIGGER_PREFIX):
        return body.obj("current_user").opt_text("id")
    if kind.endswith("ticket.comment_added"):
        author = body.obj("event").obj("comment").obj("author").opt_text("id")
        if author is not None:
            return author
    return body.obj("detail").opt_text("actor_id")


def parse(delivery: Delivery, context: ParseContext) -> Event | Ignored:
    """Turn a stored Zendesk delivery into a request, a review command, or Ignored."""
    payload = load_json(delivery.body)
    classified = classify(payload)
    if classified is None:
        return Ignored("not an event Tierup handles")
    body = Obj(payload, "body")
    actor = _actor_id(classified.kind, body)
    if context.bot_user_id and actor == context.bot_user_id:
        # Our own write coming back through a trigger or an event: acting on it would loop.
        return Ignored(f"an update by Tierup's own API user ({actor})", classified.ticket_ref)
    event = HANDLERS[classified.kind](body, delivery, context)
    if isinstance(event, Ignored):
        return event
    # The transition key comes from the delivery id, so the event carries it.
    return event if event.delivery_id else _with_delivery_id(event, delivery.delivery_id)


def _with_delivery_id(event: Event, delivery_id: str) -> Event:
    return replace(event, delivery_id=delivery_id)


# --- the body Tierup's triggers send (the installer builds it; README documents it) ----------------


def trigger_body(kind: TriggerKind, field_ids: Mapping[str, int], channel: Channel = Channel.MACRO) -> str:
    """The JSON body, with Zendesk placeholders, that a Tierup trigger or automation posts."""

    def ticket_field(name: str) -> str:
        fid = field_ids.get(name)
        return f"{{{{ticket.ticket_field_{fid}}}}}" if fid else ""

    def person(who: str) -> dict[str, str]:
        return {
            "id": f"{{{{{who}.id}}}}",
            "email": f"{{{{{who}.email}}}}",
            "name": f"{{{{{who}.name}}}}",
            "role": f"{{{{{who}.role}}}}",
            "tags": f"{{{{{who}.tags}}}}",
        }

    body: dict[str, Any] = {
        BODY_MARK: BODY_VERSION,
        "kind": kind.value,
        "channel": channel.value,
        "ticket": {
            "id": "{{ticket.id}}",
            "subject": "{{ticket.title}}",
            "status": "{{ticket.status}}",
            "priority": "{{ticket.priority}}",
            "group": "{{ticket.group.name}}",
            "tags": "{{ticket.tags}}",
            "updated_at": "{{ticket.updated_at_with_timestamp}}",
        },
        "requester": person("ticket.requester"),
        "organization": {
            "id": "{{ticket.organization.id}}",
            "name": "{{ticket.organization.name}}",
            "tags": "{{ticket.organization.tags}}",
        },
        "current_user": person("current_user"),
    }
    if kind is TriggerKind.ESCALATION_REQUESTED:
        body["escalation"] = {
            "reason": ticket_field("escalation_reason"),
            "rationale": ticket_field("business_rationale"),
            "preferred_contact": ticket_field("preferred_contact"),
            "requested_priority": ticket_field("requested_priority"),
            "region": "{{ticket.organization.custom_fields.region}}",
        }
        if channel in (Channel.EMAIL, Channel.FORM):
            body["ticket"]["description"] = "{{ticket.description}}"
        if channel is Channel.EMAIL:
            # The requester's latest reply: the number an SD8 answer asked for (the email reply trigger).
            body["comment"] = "{{ticket.latest_comment}}"
    if kind in (TriggerKind.CANCEL, TriggerKind.FOLLOW_UP):
        body["comment"] = "{{ticket.latest_comment}}"
    return json.dumps(body, indent=2, ensure_ascii=False)
