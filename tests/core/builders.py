"""Small builders for core tests: a request or a command with sensible defaults."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from integration.model import (
    Channel,
    Command,
    Escalation,
    EscalationRequest,
    Organisation,
    Person,
    Platform,
    Priority,
    Reason,
    ReviewCommand,
    Role,
    SlaTarget,
    TicketSnapshot,
)

# Tuesday 10 March 2026, 10:00 UTC: a working morning in Warsaw and London.
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)

CHAMPION = Person(id="501", email="champ@club.example", name="Pat Champion", tags=frozenset({"pg_champion"}))
STRANGER = Person(id="502", email="someone@elsewhere.example", name="Sam Stranger")
LEAD = Person(id="900", email="lead@support.example", name="Lee Lead", role=Role.LEAD)


def ticket(ref: str = "4016", **changes: Any) -> TicketSnapshot:
    base = TicketSnapshot(
        ref=ref,
        platform=Platform.ZENDESK,
        priority=Priority.NORMAL,
        group="Support",
        requester=CHAMPION,
        organisation=Organisation(id="77", name="Club Warszawa", region="PL"),
        tags=frozenset({"gym"}),
    )
    return replace(base, **changes)


def request(**changes: Any) -> EscalationRequest:
    snap = changes.pop("ticket", None) or ticket()
    base = EscalationRequest(
        platform=Platform.ZENDESK,
        ticket_ref=snap.ref,
        requested_by=CHAMPION,
        channel=Channel.MACRO,
        reason=Reason.WRONG_RESOLUTION,
        received_at=NOW,
        rationale="Members cannot check in: <b>we lose</b> revenue every hour",
        preferred_contact="phone +48 555 0100",
        ticket=snap,
        delivery_id="d-1",
    )
    return replace(base, **changes)


def command(cmd: Command, escalation: Escalation, **changes: Any) -> ReviewCommand:
    base = ReviewCommand(
        platform=escalation.platform,
        ticket_ref=escalation.ticket_ref,
        command=cmd,
        actor=LEAD,
        received_at=NOW,
        ticket=ticket(escalation.ticket_ref, tags=frozenset({"gym", "escalated"}), group=escalation.group),
        delivery_id="d-2",
    )
    return replace(base, **changes)


def sla(name: str = "First reply time", breach_at: datetime | None = None, breached: bool = False) -> SlaTarget:
    return SlaTarget(name=name, metric="first_reply", breach_at=breach_at, breached=breached)
