"""JSON forms of the model: the `tierup decide` input, stored escalations, audit trails."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from integration.model import (
    Action,
    AddTags,
    AssignGroup,
    AssignUser,
    Channel,
    Command,
    Decision,
    Escalation,
    EscalationRequest,
    Event,
    InternalNote,
    LinkRole,
    LinkTicket,
    Organisation,
    Person,
    Platform,
    Priority,
    PublicReply,
    Reason,
    RemoveTags,
    ReviewCommand,
    Role,
    SetDue,
    SetField,
    SetPriority,
    SetStatus,
    SlaTarget,
    State,
    TicketSnapshot,
    TicketStatus,
    Transition,
)

E = TypeVar("E", bound=StrEnum)


class CodecError(ValueError):
    """Input JSON that does not describe a request; the message names the field."""


def parse_time(value: Any, key: str) -> datetime:
    """An aware datetime from ISO 8601 text, or CodecError naming `key`."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise CodecError(f"{key}: not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise CodecError(f"{key}: needs a time zone offset: {value!r}")
    return parsed


def _optparse_time(value: Any, key: str) -> datetime | None:
    return None if value in (None, "") else parse_time(value, key)


def _enum(kind: type[E], value: Any, key: str) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(c.value for c in kind)
        raise CodecError(f"{key}: unknown value {value!r} (expected one of: {choices})") from None


def _opt_enum(kind: type[E], value: Any, key: str) -> E | None:
    return None if value in (None, "") else _enum(kind, value, key)


def _obj(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CodecError(f"{key}: must be an object")
    return value


def person_from_json(data: Any, key: str = "person") -> Person:
    d = _obj(data, key)
    if "id" not in d:
        raise CodecError(f"{key}.id: missing")
    return Person(
        id=str(d["id"]),
        email=d.get("email"),
        name=d.get("name"),
        role=_enum(Role, d.get("role", "end_user"), f"{key}.role"),
        tags=frozenset(d.get("tags", ())),
        organisation=d.get("organisation"),
        region=d.get("region"),
    )


def ticket_from_json(data: Any, platform: Platform, key: str = "ticket") -> TicketSnapshot:
    d = _obj(data, key)
    if "ref" not in d:
        raise CodecError(f"{key}.ref: missing")
    org = d.get("organisation")
    organisation = None
    if org is not None:
        o = _obj(org, f"{key}.organisation")
        organisation = Organisation(
            id=str(o.get("id", o.get("name", ""))), name=o.get("name"), region=o.get("region"),
            tags=frozenset(o.get("tags", ())),
        )  # fmt: skip
    slas = tuple(
        SlaTarget(
            name=str(_obj(s, f"{key}.slas[{i}]").get("name", s.get("metric", "sla"))),
            metric=str(s.get("metric", s.get("name", ""))),
            breach_at=_optparse_time(s.get("breach_at"), f"{key}.slas[{i}].breach_at"),
            breached=bool(s.get("breached", False)),
            fulfilled=bool(s.get("fulfilled", False)),
        )
        for i, s in enumerate(d.get("slas", ()))
    )
    return TicketSnapshot(
        ref=str(d["ref"]),
        platform=platform,
        status=_enum(TicketStatus, d.get("status", "open"), f"{key}.status"),
        priority=_opt_enum(Priority, d.get("priority"), f"{key}.priority"),
        group=d.get("group"),
        assignee=d.get("assignee"),
        requester=person_from_json(d["requester"], f"{key}.requester") if d.get("requester") else None,
        organisation=organisation,
        region=d.get("region"),
        tags=frozenset(d.get("tags", ())),
        slas=slas,
        cc_emails=frozenset(d.get("cc_emails", ())),
        cc_ids=frozenset(str(i) for i in d.get("cc_ids", ())),
        subject=d.get("subject"),
        version=d.get("version"),
    )


def event_from_json(data: Any, default_now: datetime | None = None) -> Event:
    """Read a request or a review command (the `tierup decide` format, see README)."""
    d = _obj(data, "input")
    platform = _enum(Platform, d.get("platform", "zendesk"), "platform")
    received = d.get("received_at", d.get("now"))
    if received is None and default_now is None:
        raise CodecError("received_at: missing (or give `now`)")
    received_at = parse_time(received, "received_at") if received is not None else default_now
    assert received_at is not None
    ticket = ticket_from_json(d["ticket"], platform) if d.get("ticket") else None
    if "command" in d:
        ref = d.get("ticket_ref") or (ticket.ref if ticket else None)
        if not ref:
            raise CodecError("ticket_ref: missing")
        return ReviewCommand(
            platform=platform,
            ticket_ref=str(ref),
            command=_enum(Command, d["command"], "command"),
            actor=person_from_json(d.get("actor", {"id": "unknown"}), "actor"),
            received_at=received_at,
            feedback=d.get("feedback"),
            ticket=ticket,
        )
    if "requested_by" not in d:
        raise CodecError("requested_by: missing")
    return EscalationRequest(
        platform=platform,
        ticket_ref=str(d.get("ticket_ref") or (ticket.ref if ticket else "")) or None,
        requested_by=person_from_json(d["requested_by"], "requested_by"),
        channel=_enum(Channel, d.get("channel", "macro"), "channel"),
        reason=_opt_enum(Reason, d.get("reason"), "reason"),
        received_at=received_at,
        rationale=d.get("rationale"),
        preferred_contact=d.get("preferred_contact"),
        requested_priority=_opt_enum(Priority, d.get("requested_priority"), "requested_priority"),
        region=d.get("region"),
        ticket=ticket,
        origin_ref=d.get("origin_ref"),
    )


# --- out ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_ACTION_KINDS: dict[type, str] = {
    AddTags: "add_tags",
    RemoveTags: "remove_tags",
    AssignGroup: "assign_group",
    AssignUser: "assign_user",
    SetPriority: "set_priority",
    SetDue: "set_due",
    PublicReply: "public_reply",
    InternalNote: "internal_note",
    SetField: "set_field",
    LinkTicket: "link_ticket",
    SetStatus: "set_status",
}


def action_to_json(action: Action) -> dict[str, Any]:
    kind = _ACTION_KINDS[type(action)]
    match action:
        case AddTags(tags) | RemoveTags(tags):
            return {"kind": kind, "tags": list(tags)}
        case AssignGroup(group):
            return {"kind": kind, "group": group}
        case AssignUser(user):
            return {"kind": kind, "user": user}
        case SetPriority(priority):
            return {"kind": kind, "priority": priority.value}
        case SetDue(due):
            return {"kind": kind, "due": due.isoformat()}
        case PublicReply(body) | InternalNote(body):
            return {"kind": kind, "body": body}
        case SetField(name, value):
            return {"kind": kind, "name": name, "value": value}
        case LinkTicket(other, role):
            return {"kind": kind, "other": other, "role": role.value}
        case SetStatus(status):
            return {"kind": kind, "status": status.value}
    raise TypeError(action)


def action_from_json(data: Mapping[str, Any]) -> Action:
    kind = data.get("kind")
    match kind:
        case "add_tags":
            return AddTags(tuple(data["tags"]))
        case "remove_tags":
            return RemoveTags(tuple(data["tags"]))
        case "assign_group":
            return AssignGroup(data["group"])
        case "assign_user":
            return AssignUser(data["user"])
        case "set_priority":
            return SetPriority(Priority(data["priority"]))
        case "set_due":
            return SetDue(parse_time(data["due"], "due"))
        case "public_reply":
            return PublicReply(data["body"])
        case "internal_note":
            return InternalNote(data["body"])
        case "set_field":
            return SetField(data["name"], data.get("value"))
        case "link_ticket":
            return LinkTicket(data["other"], LinkRole(data["role"]))
        case "set_status":
            return SetStatus(TicketStatus(data["status"]))
    raise CodecError(f"kind: unknown action {kind!r}")


def person_to_json(person: Person | None) -> dict[str, Any] | None:
    if person is None:
        return None
    return {
        "id": person.id, "email": person.email, "name": person.name, "role": person.role.value,
        "tags": sorted(person.tags), "organisation": person.organisation, "region": person.region,
    }  # fmt: skip


def transition_to_json(t: Transition) -> dict[str, Any]:
    return {
        "at": t.at.isoformat(),
        "event": t.event,
        "from_state": t.from_state.value if t.from_state else None,
        "to_state": t.to_state.value,
        "actor": t.actor,
        "rule": t.rule,
        "why": t.why,
        "actions": [action_to_json(a) for a in t.actions],
        "delivery_id": t.delivery_id,
    }


def transition_from_json(d: Mapping[str, Any]) -> Transition:
    return Transition(
        at=parse_time(d["at"], "at"),
        event=d["event"],
        from_state=State(d["from_state"]) if d.get("from_state") else None,
        to_state=State(d["to_state"]),
        actor=d["actor"],
        rule=d["rule"],
        why=d["why"],
        actions=tuple(action_from_json(a) for a in d.get("actions", ())),
        delivery_id=d.get("delivery_id"),
    )


def escalation_to_json(e: Escalation, with_history: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "platform": e.platform.value,
        "ticket_ref": e.ticket_ref,
        "state": e.state.value,
        "level": e.level,
        "group": e.group,
        "previous_group": e.previous_group,
        "reason": e.reason.value if e.reason else None,
        "rationale": e.rationale,
        "requested_by": person_to_json(e.requested_by),
        "preferred_contact": e.preferred_contact,
        "region": e.region,
        "requested_at": _iso(e.requested_at),
        "first_contact_due": _iso(e.first_contact_due),
        "contacted_at": _iso(e.contacted_at),
        "last_event_at": _iso(e.last_event_at),
    }
    if with_history:
        out["history"] = [transition_to_json(t) for t in e.history]
    return out


def escalation_from_json(d: Mapping[str, Any]) -> Escalation:
    return Escalation(
        platform=Platform(d["platform"]),
        ticket_ref=d["ticket_ref"],
        state=State(d["state"]),
        level=int(d.get("level", 1)),
        group=d.get("group"),
        previous_group=d.get("previous_group"),
        reason=Reason(d["reason"]) if d.get("reason") else None,
        rationale=d.get("rationale"),
        requested_by=person_from_json(d["requested_by"]) if d.get("requested_by") else None,
        preferred_contact=d.get("preferred_contact"),
        region=d.get("region"),
        requested_at=_optparse_time(d.get("requested_at"), "requested_at"),
        first_contact_due=_optparse_time(d.get("first_contact_due"), "first_contact_due"),
        contacted_at=_optparse_time(d.get("contacted_at"), "contacted_at"),
        last_event_at=_optparse_time(d.get("last_event_at"), "last_event_at"),
        history=tuple(transition_from_json(t) for t in d.get("history", ())),
    )


def decision_to_json(decision: Decision) -> dict[str, Any]:
    e = decision.escalation
    return {
        "rule": decision.rule,
        "state": e.state.value,
        "from_state": decision.transition.from_state.value if decision.transition.from_state else None,
        "level": e.level,
        "group": e.group,
        "first_contact_due": _iso(e.first_contact_due),
        "target_ref": decision.target_ref,
        "why": decision.transition.why,
        "actions": [action_to_json(a) for a in decision.actions],
        **(
            {"origin_ref": decision.origin_ref, "origin_actions": [action_to_json(a) for a in decision.origin_actions]}
            if decision.origin_actions
            else {}
        ),
    }
