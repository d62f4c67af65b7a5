"""The common escalation model: what every platform adapter maps onto.

Nothing here knows about Zendesk or Jira. Tag names, group names and priorities are
the policy's logical names; adapters translate them at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Platform(StrEnum):
    ZENDESK = "zendesk"
    JIRA = "jira"


class Channel(StrEnum):
    """How a request reached Tierup."""

    MACRO = "macro"
    FORM = "form"
    EMAIL = "email"
    SLA_BREACH = "sla_breach"
    API = "api"


class Reason(StrEnum):
    SLA_VIOLATION = "sla_violation"
    WRONG_RESOLUTION = "wrong_resolution"
    PRIORITY_MISCLASSIFIED = "priority_misclassified"
    AGENT_CONDUCT = "agent_conduct"
    BUSINESS_URGENCY = "business_urgency"


class State(StrEnum):
    REQUESTED = "requested"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"
    NEEDS_INFO = "needs_info"
    RECLASSIFIED = "reclassified"
    URGENCY_REQUESTED = "urgency_requested"
    CONFIRMED = "confirmed"
    RESOLVED = "resolved"
    LEVEL_2 = "level_2"


# States in which an escalation is still being worked on (dashboard, deadline check).
OPEN_STATES = frozenset({State.ESCALATED, State.CONFIRMED, State.RECLASSIFIED, State.LEVEL_2})


class Role(StrEnum):
    END_USER = "end_user"
    AGENT = "agent"
    LEAD = "lead"
    ADMIN = "admin"
    SYSTEM = "system"


class Priority(StrEnum):
    """Neutral priorities, lowest first; adapters map their own names onto these."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {p: i for i, p in enumerate(Priority)}


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    HOLD = "hold"
    SOLVED = "solved"
    CLOSED = "closed"


class Command(StrEnum):
    """Reviewing commands and system events that move an existing escalation."""

    CONFIRM = "confirm"  # a lead confirms the escalation is valid (LR7)
    CANCEL = "cancel"  # a lead cancels it with feedback (LR6)
    NOT_HAPPY = "not_happy"  # the requester is not happy with the outcome (SD11)
    RESOLVE = "resolve"  # the ticket was solved (SD9)
    CONTACT = "contact"  # the lead group replied publicly: the contact promise is kept
    DEADLINE_MISSED = "deadline_missed"  # first-contact due passed (SH4)


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    email: str | None = None
    name: str | None = None
    role: Role = Role.END_USER
    tags: frozenset[str] = frozenset()
    organisation: str | None = None
    region: str | None = None


SYSTEM = Person(id="tierup", name="Tierup", role=Role.SYSTEM)


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str | None = None
    region: str | None = None
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """One SLA metric on a ticket: e.g. first reply time, breaching at `breach_at`."""

    name: str
    metric: str  # "first_reply", "next_reply", "resolution", or the platform's SLA name
    breach_at: datetime | None = None
    breached: bool = False
    fulfilled: bool = False


@dataclass(frozen=True, slots=True)
class TicketSnapshot:
    ref: str
    platform: Platform
    status: TicketStatus = TicketStatus.OPEN
    priority: Priority | None = None
    # The platform's own priority name when it maps to none of ours (a Jira "Blocker"): a priority
    # Tierup cannot rank, which it never raises "to at least" another one (that could lower it).
    unranked_priority: str | None = None
    group: str | None = None
    assignee: str | None = None
    requester: Person | None = None
    organisation: Organisation | None = None
    region: str | None = None
    tags: frozenset[str] = frozenset()
    slas: tuple[SlaTarget, ...] = ()
    cc_emails: frozenset[str] = frozenset()
    # Helpdesk user ids of the people copied in (Zendesk CCs, JSM request participants): Jira
    # Cloud often hides e-mail addresses, so the id is what matches.
    cc_ids: frozenset[str] = frozenset()
    subject: str | None = None
    # The platform's optimistic-concurrency token (Zendesk updated_stamp, Jira updated);
    # opaque to the core.
    version: str | None = None

    def priority_below(self, priority: Priority) -> bool:
        """Whether raising the ticket to `priority` raises it: it has none, or a lower one of ours."""
        if self.priority is None:
            return self.unranked_priority is None
        return self.priority.rank < priority.rank

    def breached_slas(self) -> tuple[SlaTarget, ...]:
        return tuple(s for s in self.slas if s.breached)

    def pending_slas(self) -> tuple[SlaTarget, ...]:
        return tuple(s for s in self.slas if not s.breached and not s.fulfilled)


@dataclass(frozen=True, slots=True)
class EscalationRequest:
    """Somebody (or an SLA breach) asks for a ticket to be escalated."""

    platform: Platform
    ticket_ref: str | None
    requested_by: Person
    channel: Channel
    reason: Reason | None
    received_at: datetime
    rationale: str | None = None
    preferred_contact: str | None = None
    requested_priority: Priority | None = None
    region: str | None = None
    ticket: TicketSnapshot | None = None  # filled in by the service before deciding
    # Where replies go when there is no ticket to escalate (an email request ticket).
    origin_ref: str | None = None
    delivery_id: str | None = None
    # Only supplies what an earlier request lacked (a comment after a needs-info reply):
    # ignored unless the escalation is waiting for information.
    follow_up: bool = False


@dataclass(frozen=True, slots=True)
class ReviewCommand:
    """A lead, the requester or the system moves an existing escalation on."""

    platform: Platform
    ticket_ref: str
    command: Command
    actor: Person
    received_at: datetime
    feedback: str | None = None
    ticket: TicketSnapshot | None = None
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A delivery that asks nothing of Tierup (echo of our own write, unrelated change)."""

    reason: str
    ticket_ref: str | None = None


Event = EscalationRequest | ReviewCommand


# --- neutral actions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddTags:
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoveTags:
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AssignGroup:
    group: str | None  # the policy's group name (the adapter maps it to an id); None: no group


@dataclass(frozen=True, slots=True)
class AssignUser:
    user: str


@dataclass(frozen=True, slots=True)
class SetPriority:
    priority: Priority


@dataclass(frozen=True, slots=True)
class SetDue:
    due: datetime


@dataclass(frozen=True, slots=True)
class PublicReply:
    body: str  # HTML; customer text in it is escaped


@dataclass(frozen=True, slots=True)
class InternalNote:
    body: str  # HTML; customer text in it is escaped


@dataclass(frozen=True, slots=True)
class SetField:
    name: str  # a logical field name: escalation_state, escalation_level, ...
    value: str | None


class LinkRole(StrEnum):
    """Which end of an escalation-request link a ticket is."""

    REQUEST = "request"  # this ticket is the request (an email's own ticket) that escalated `other`
    ESCALATED = "escalated"  # this ticket was escalated by the request `other`


@dataclass(frozen=True, slots=True)
class LinkTicket:
    """Link this ticket with ticket `other`: a request ticket and the ticket it escalates (SD3)."""

    other: str
    role: LinkRole


@dataclass(frozen=True, slots=True)
class SetStatus:
    status: TicketStatus  # e.g. SOLVED for an email request that was carried over to its ticket


Action = (
    AddTags
    | RemoveTags
    | AssignGroup
    | AssignUser
    | SetPriority
    | SetDue
    | PublicReply
    | InternalNote
    | SetField
    | LinkTicket
    | SetStatus
)


# --- the escalation and its history ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    event: str  # "request" or a Command value
    from_state: State | None
    to_state: State
    actor: str
    rule: str  # the procedure rule that decided it, e.g. "LR5"
    why: str
    actions: tuple[Action, ...] = ()
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class Escalation:
    platform: Platform
    ticket_ref: str
    state: State
    level: int = 1
    group: str | None = None
    previous_group: str | None = None
    reason: Reason | None = None
    rationale: str | None = None
    requested_by: Person | None = None
    preferred_contact: str | None = None
    region: str | None = None
    requested_at: datetime | None = None
    first_contact_due: datetime | None = None
    contacted_at: datetime | None = None
    # When the newest event applied to it happened: an older, late delivery must not undo it.
    last_event_at: datetime | None = None
    history: tuple[Transition, ...] = field(default=())

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one event: the new escalation and what to do."""

    escalation: Escalation
    transition: Transition
    target_ref: str | None  # the ticket the actions apply to
    # A request that arrived as a ticket of its own (an email) and named another ticket: what to
    # write on that request ticket (link, reply, solve) once the target's write has landed.
    origin_ref: str | None = None
    origin_actions: tuple[Action, ...] = ()

    @property
    def state(self) -> State:
        return self.escalation.state

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.transition.actions

    @property
    def rule(self) -> str:
        return self.transition.rule
