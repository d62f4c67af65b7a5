"""A helpdesk stand-in for the form and dashboard tests: it knows some tickets and records every write.

Built on the infrastructure tests' SignedAdapter and ScriptedGateway (a DryRunGateway that
records what it would write), so the worker's decisions are real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from integration.model import Organisation, Person, Platform, Priority, TicketSnapshot
from tests.infra.fakes import ScriptedGateway, SignedAdapter

REQUESTER = Person(id="501", email="champ@club.example", name="Pat Champion")
CC = "deputy@club.example"


def ticket(ref: str = "4016", **changes: Any) -> TicketSnapshot:
    """An open Zendesk ticket raised by REQUESTER with one CC."""
    base = TicketSnapshot(
        ref=ref,
        platform=Platform.ZENDESK,
        priority=Priority.NORMAL,
        group="Support",
        requester=REQUESTER,
        organisation=Organisation(id="77", name="Club Warszawa", region="PL"),
        tags=frozenset({"gym"}),
        cc_emails=frozenset({CC}),
    )
    return replace(base, **changes)


@dataclass
class KnownTickets(ScriptedGateway):
    """Reads the tickets it was given; any other number is not found (None, as a 404 would be)."""

    tickets: dict[str, TicketSnapshot] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        self.reads.append(ref)
        return self.tickets.get(ref)


def helpdesk(*tickets: TicketSnapshot) -> tuple[SignedAdapter, KnownTickets]:
    """A Zendesk-platform adapter whose gateway knows `tickets` (default: ticket 4016)."""
    gateway = KnownTickets(Platform.ZENDESK, tickets={t.ref: t for t in tickets or (ticket(),)})
    return SignedAdapter(gateway=gateway), gateway
