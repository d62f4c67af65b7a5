"""SLA sweeps (SH3, SD1): read a platform's breaches from a stored cursor and escalate the tickets.

A platform adapter offers `sweep_source() -> SweepSource | None`; `run_sweep` pages through
it, decides each ticket with the policy through `integration.service.handle_event` (the
code the worker runs), holding the ticket's lock, writes the batch in bulk where the
gateway can (`BulkGateway`), records every decision, and stores the page's cursor only
once every breach on the page is handled: a crash between pages resumes where it left off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from integration.model import Action, Platform, TicketSnapshot
from integration.ports import GatewayError

if TYPE_CHECKING:
    from integration.policy import Policy
    from integration.ports import Gateway
    from integration.processing import TicketLocks
    from integration.store import SqlEscalationStore, SweepCursors


@dataclass(frozen=True, slots=True)
class Breach:
    """One SLA breach a sweep found that is still real (not fulfilled or deleted since)."""

    ticket_ref: str
    metric: str  # e.g. "reply_time" (Zendesk), "Time to resolution" (Jira)
    breached_at: datetime
    event_id: str  # stable id of this breach, for logs and dedupe
    snapshot: TicketSnapshot | None = None  # when the source already read the ticket


@dataclass(frozen=True, slots=True)
class SweepPage:
    """One page a source read: its still-real breaches, how many events it read, and where to resume."""

    breaches: Sequence[Breach]
    events_read: int
    cursor: str | None  # stored once every breach on this page is handled (None: nothing to store)


class SweepSource(Protocol):
    """Where one platform's SLA breaches come from, page by page from a cursor."""

    platform: Platform
    name: str  # cursor name in SweepCursors

    def pages(self, cursor: str | None, since: datetime | None) -> Iterator[SweepPage]:
        """Pages from `cursor` (the last one stored), or from `since` when given (it wins), or the source's default."""
        ...

    def api_calls(self) -> int:
        """Reads made so far."""
        ...


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What one bulk write did: per ticket ref, None when written or the error that stopped it."""

    outcomes: Mapping[str, GatewayError | None]
    api_calls: int = 1  # requests the write took (the update plus any job-status polls)


@runtime_checkable
class BulkGateway(Protocol):
    """An optional capability of a Gateway: many tickets' transitions in one write."""

    max_batch: int  # most tickets one write may carry (Zendesk update_many: 100)

    def apply_many(self, items: Sequence[tuple[TicketSnapshot, Sequence[Action], str]]) -> BulkResult:
        """Apply (ticket, actions, transition key) for up to `max_batch` tickets in ONE write; per-ref outcome."""
        ...


Progress = Callable[["SweepReport"], None]


@dataclass
class SweepReport:
    """What one sweep run did; printed by `tierup sweep` and logged by the periodic task."""

    platform: Platform
    source: str
    pages: int = 0
    events_read: int = 0
    breaches: int = 0  # still-real breaches the source returned
    tickets: int = 0  # distinct tickets among them, per page
    tickets_escalated: int = 0  # moved into escalated (a new escalation or a deferred one woken)
    tickets_updated: int = 0  # decisions that wrote something (escalations and sla_breached tags)
    already_handled: int = 0  # the push path (or an earlier run) handled the breach already
    skipped: int = 0  # tickets gone (deleted) or closed
    busy: int = 0  # tickets whose lock stayed taken: their page is read again next run
    failed: int = 0  # writes that failed for good (logged)
    api_calls: int = 0
    bulk_writes: int = 0
    single_writes: int = 0
    seconds: float = 0.0
    complete: bool = True  # False: stopped early (busy ticket, transient failure); the cursor stays
    cursor: str | None = None  # the last cursor stored
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


def run_sweep(
    source: SweepSource,
    *,
    policy: Policy,
    gateway: Gateway,
    store: SqlEscalationStore,
    cursors: SweepCursors,
    locks: TicketLocks,
    clock: Callable[[], datetime],
    since: datetime | None = None,
    progress: Progress | None = None,
) -> SweepReport:
    """Sweep `source` from its stored cursor (or `since`), escalating each still-real breach once."""
    raise NotImplementedError  # the implementation follows in the next commit
