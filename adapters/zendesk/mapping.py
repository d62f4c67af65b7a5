"""Zendesk's spellings onto the neutral model: priorities, statuses, roles, SLA metrics, a ticket with side-loads.

The parser (payload hints) and the gateway (API reads) both map through here, so a Zendesk
value means the same thing whichever way it arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integration.model import (
    Organisation,
    Person,
    Platform,
    Priority,
    Role,
    SlaTarget,
    TicketSnapshot,
    TicketStatus,
)

log = logging.getLogger("tierup.zendesk")

# Zendesk's four priorities are the neutral four, one for one.
_PRIORITIES = {p.value: p for p in Priority}
_STATUSES = {s.value: s for s in TicketStatus} | {"on-hold": TicketStatus.HOLD, "on_hold": TicketStatus.HOLD}
_ROLES = {"end-user": Role.END_USER, "enduser": Role.END_USER, "end_user": Role.END_USER, "agent": Role.AGENT,
          "admin": Role.ADMIN, "administrator": Role.ADMIN}  # fmt: skip

# Zendesk SLA metric -> (neutral metric, readable name). Unknown metrics keep Zendesk's name.
_SLA_METRICS = {
    "first_reply_time": ("first_reply", "First reply time"),
    "next_reply_time": ("next_reply", "Next reply time"),
    "requester_wait_time": ("resolution", "Requester wait time"),
    "agent_work_time": ("resolution", "Agent work time"),
    "total_resolution_time": ("resolution", "Total resolution time"),
    "periodic_update_time": ("periodic_update", "Periodic update time"),
    "pausable_update_time": ("periodic_update", "Pausable update time"),
}

# Organisation / user custom field (key) that carries the routing region (LR4).
REGION_FIELD_KEY = "region"


def text(value: Any) -> str | None:
    """A non-empty string (ids may come as numbers), or None for empty / missing values."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def words(value: Any) -> tuple[str, ...]:
    """Tags as Zendesk sends them: a JSON list, or one space-separated string from a placeholder."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(t for t in (text(v) for v in value) if t)
    return ()


def priority_from_zendesk(value: Any) -> Priority | None:
    """Zendesk low/normal/high/urgent (any case; events send LOW) as a neutral Priority."""
    raw = text(value)
    return _PRIORITIES.get(raw.lower()) if raw else None


def status_from_zendesk(value: Any) -> TicketStatus | None:
    """Zendesk's ticket status (any case; events send OPEN) as a neutral TicketStatus."""
    raw = text(value)
    return _STATUSES.get(raw.lower()) if raw else None


def role_from_zendesk(value: Any) -> Role:
    """Zendesk's user role (`end-user`, `agent`, `admin`); anything else is an end user."""
    raw = text(value)
    return _ROLES.get(raw.lower().replace(" ", ""), Role.END_USER) if raw else Role.END_USER


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from Zendesk, or None when absent or unreadable (placeholders may render oddly)."""
    raw = text(value)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _remaining_is_negative(metric: Mapping[str, Any]) -> bool:
    return any(isinstance(metric.get(k), int | float) and metric[k] < 0 for k in ("days", "hours", "minutes"))


def sla_targets(metrics: Iterable[Any]) -> tuple[SlaTarget, ...]:
    """The `slas.policy_metrics` side-load as SlaTargets.

    Breached is what the API says, never our clock: a `stage` of "breached", or a negative
    remaining time in a target not yet met (Zendesk shows a breached target as active with
    negative time). "achieved" is fulfilled, and not breached: Zendesk counts its time to
    `breach_at` on after it was met (a first reply achieved in December reads `"days": -141`
    in May), which says nothing about whether it was met late.
    """
    out: list[SlaTarget] = []
    for metric in metrics:
        if not isinstance(metric, Mapping):
            continue
        name = text(metric.get("metric")) or "sla"
        neutral, label = _SLA_METRICS.get(name, (name, name.replace("_", " ").capitalize()))
        stage = (text(metric.get("stage")) or "").lower()
        fulfilled = stage in ("achieved", "fulfilled", "closed")
        out.append(
            SlaTarget(
                name=label,
                metric=neutral,
                breach_at=parse_time(metric.get("breach_at")),
                breached=stage == "breached" or (not fulfilled and _remaining_is_negative(metric)),
                fulfilled=fulfilled,
            )
        )
    return tuple(out)


def _custom_value(fields: Any, key: str) -> str | None:
    return text(fields.get(key)) if isinstance(fields, Mapping) else None


def organisation_from_zendesk(org: Mapping[str, Any]) -> Organisation:
    """A Zendesk organization object; its `region` custom field routes (LR4)."""
    return Organisation(
        id=text(org.get("id")) or "",
        name=text(org.get("name")),
        region=_custom_value(org.get("organization_fields"), REGION_FIELD_KEY),
        tags=frozenset(words(org.get("tags"))),
    )


def person_from_zendesk(user: Mapping[str, Any], organisations: Mapping[str, Organisation]) -> Person:
    """A Zendesk user object, with its organisation's name and region from the side-load."""
    org = organisations.get(text(user.get("organization_id")) or "")
    return Person(
        id=text(user.get("id")) or "",
        email=text(user.get("email")),
        name=text(user.get("name")),
        role=role_from_zendesk(user.get("role")),
        tags=frozenset(words(user.get("tags"))),
        organisation=org.name if org else None,
        region=_custom_value(user.get("user_fields"), REGION_FIELD_KEY) or (org.region if org else None),
    )


@dataclass(frozen=True)
class TicketRead:
    """One read of a ticket: the neutral snapshot plus the custom field values only the adapter knows."""

    snapshot: TicketSnapshot
    custom_fields: Mapping[int, Any] = field(default_factory=dict)
    updated_at: str | None = None

    def field_text(self, field_id: int | None) -> str | None:
        return text(self.custom_fields.get(field_id)) if field_id is not None else None


def _by_id(items: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {text(i.get("id")) or "": i for i in items if isinstance(i, Mapping)}


def ticket_read_from_show(data: Mapping[str, Any]) -> TicketRead | None:
    """`GET /api/v2/tickets/{id}.json?include=users,organizations,groups,slas` as a TicketRead (None: deleted)."""
    ticket = data.get("ticket")
    if not isinstance(ticket, Mapping) or text(ticket.get("id")) is None:
        return None
    if (text(ticket.get("status")) or "").lower() == "deleted":
        return None
    organisations = {k: organisation_from_zendesk(v) for k, v in _by_id(data.get("organizations")).items()}
    users = {k: person_from_zendesk(v, organisations) for k, v in _by_id(data.get("users")).items()}
    groups = _by_id(data.get("groups"))
    slas = ticket.get("slas") if isinstance(ticket.get("slas"), Mapping) else data.get("slas")
    metrics = slas.get("policy_metrics", ()) if isinstance(slas, Mapping) else ()
    requester_id = text(ticket.get("requester_id"))
    group = groups.get(text(ticket.get("group_id")) or "")
    cc_ids = [text(i) for i in (ticket.get("email_cc_ids") or ticket.get("collaborator_ids") or [])]
    cc_emails = frozenset(p.email for i in cc_ids if i and (p := users.get(i)) and p.email)
    custom: dict[int, Any] = {}
    for item in ticket.get("custom_fields") or ():
        if isinstance(item, Mapping) and isinstance(item.get("id"), int):
            custom[item["id"]] = item.get("value")
    raw_status = text(ticket.get("status"))
    status = status_from_zendesk(raw_status)
    if status is None:
        log.warning("ticket %s has a status Tierup does not know (%r): taken as open", ticket.get("id"), raw_status)
    snapshot = TicketSnapshot(
        ref=text(ticket.get("id")) or "",
        platform=Platform.ZENDESK,
        status=status or TicketStatus.OPEN,
        priority=priority_from_zendesk(ticket.get("priority")),
        group=text(group.get("name")) if group else None,
        assignee=text(ticket.get("assignee_id")),
        requester=users.get(requester_id or "") or (Person(id=requester_id) if requester_id else None),
        organisation=organisations.get(text(ticket.get("organization_id")) or ""),
        tags=frozenset(words(ticket.get("tags"))),
        slas=sla_targets(metrics if isinstance(metrics, list) else ()),
        cc_emails=cc_emails,
        cc_ids=frozenset(i for i in cc_ids if i),
        subject=text(ticket.get("subject")),
        version=text(ticket.get("updated_at")),
    )
    return TicketRead(snapshot=snapshot, custom_fields=custom, updated_at=text(ticket.get("updated_at")))
