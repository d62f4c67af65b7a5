"""SLA sweeps (SH3, SD1): read a platform's breaches from a stored cursor and escalate the tickets.

A platform adapter offers `sweep_source() -> SweepSource | None`; `run_sweep` pages through
it, decides each ticket once per run with the policy through `integration.service.handle_event`
(the code the worker runs), holding the ticket's lock, writes in bulk where the gateway can
(`BulkGateway`: one write per `max_batch` tickets over the whole run, a page's leftovers
carried into the next page's batch), records every decision that changes something, and
stores a page's cursor only once every breach on it and on all earlier pages is handled: a
crash between pages or between writes resumes where it left off.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from integration.logs import log_context
from integration.model import (
    OPEN_STATES,
    Action,
    Channel,
    Decision,
    Escalation,
    EscalationRequest,
    Ignored,
    Person,
    Platform,
    Reason,
    Role,
    State,
    TicketSnapshot,
    TicketStatus,
)
from integration.ports import GatewayError, TransientError
from integration.service import handle_event

if TYPE_CHECKING:
    from integration.policy import Policy
    from integration.ports import Gateway
    from integration.processing import TicketLock, TicketLocks
    from integration.store import SqlEscalationStore, SweepCursors

log = logging.getLogger("tierup.sweep")


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
    cursor: str | None  # stored once every breach on this page and earlier ones is handled (None: nothing to store)
    progress: float | None = None  # how far through what there is to read (0..1), when the source can tell


class SweepSource(Protocol):
    """Where one platform's SLA breaches come from, page by page from a cursor."""

    platform: Platform
    name: str  # cursor name in SweepCursors

    def pages(self, cursor: str | None, since: datetime | None) -> Iterator[SweepPage]:
        """Pages from `cursor` (the last one stored), or from `since` when given (it wins), or the source's default.

        A ticket an earlier page of the same call gave may come again without its snapshot:
        run_sweep decides each ticket once per run, from the breach and snapshot it got first.
        """
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
    tickets: int = 0  # distinct tickets among them: each is decided once per run
    tickets_escalated: int = 0  # moved into escalated (a new escalation or a deferred one woken)
    tickets_updated: int = 0  # decisions that wrote something (escalations and sla_breached tags)
    already_handled: int = 0  # the push path (or an earlier run) handled it already: nothing written or recorded
    skipped: int = 0  # tickets gone (deleted) or closed
    busy: int = 0  # tickets whose lock stayed taken: their page is read again next run
    failed: int = 0  # writes that failed for good (logged)
    api_calls: int = 0
    bulk_writes: int = 0  # one per `max_batch` tickets written over the run (and one per refused batch)
    single_writes: int = 0
    seconds: float = 0.0
    complete: bool = True  # False: stopped early (busy ticket, transient failure); the cursor stays
    cursor: str | None = None  # the last cursor stored
    progress: float | None = None  # the latest page's own estimate (0..1), for a progress bar
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


# The ticket-lock key that keeps one run per source at a time (no ticket ref looks like it).
RUN_LOCK_PREFIX = "~sweep:"

# Who the audit trail says decided a sweep's escalations.
SWEEP_ACTOR = Person(id="tierup-sla-sweep", name="Tierup SLA sweep", role=Role.SYSTEM)


class _Counter:
    """API calls the sweep's own gateway use made (reads and writes), for the report."""

    def __init__(self) -> None:
        self.calls = 0


@dataclass
class _FirstReadGateway:
    """The gateway for one ticket whose snapshot the sweep already read: that read is not repeated.

    A later snapshot (after a 409) reads again; every call is counted.
    """

    inner: Gateway
    known: TicketSnapshot
    counter: _Counter
    platform: Platform = field(init=False)
    _used: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.platform = self.inner.platform

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        if not self._used and ref == self.known.ref:
            self._used = True
            return self.known
        self.counter.calls += 1
        return self.inner.snapshot(ref, hint)

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        # A gateway that counts its HTTP requests (`requests_made`) is measured: one Jira transition is
        # an edit, comments and a workflow move; otherwise the write counts as one call.
        before = getattr(self.inner, "requests_made", None)
        try:
            self.inner.apply(ref, actions, snapshot=snapshot, key=key, retry=retry)
        finally:
            after = getattr(self.inner, "requests_made", None)
            made = after - before if isinstance(before, int) and isinstance(after, int) else 1
            self.counter.calls += max(made, 1)


@dataclass
class _PlanningGateway:
    """Decides without writing: handle_event's one write is kept for the batch instead."""

    known: TicketSnapshot
    platform: Platform = field(init=False)
    planned: tuple[tuple[Action, ...], str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.platform = self.known.platform

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        return self.known

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        self.planned = (tuple(actions), key)


@dataclass
class _HeldStore:
    """One ticket's escalation as loaded under its lock; save() keeps the decision until it is written."""

    escalation: Escalation | None
    decision: Decision | None = None

    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None:
        return self.escalation

    def save(self, decision: Decision) -> None:
        self.decision = decision


# States in which a breach the sweep finds late is still to be escalated (see _Sweep.event_time).
_BREACH_STILL_ESCALATES = frozenset({State.DEFERRED, State.NEEDS_INFO, State.URGENCY_REQUESTED})


@dataclass
class _RecordingStore:
    """Loads from the database and records each decision that changes something there (the audit trail)."""

    store: SqlEscalationStore
    dry_run: bool
    decision: Decision | None = None
    loaded: Escalation | None = None

    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None:
        self.loaded = self.store.load(platform, ticket_ref)
        return self.loaded

    def save(self, decision: Decision) -> None:
        self.decision = decision
        if not _changes_nothing(decision, self.loaded):
            self.store.record(decision, dry_run=self.dry_run)


@dataclass
class _Planned:
    """A decided ticket waiting for the batch's bulk write."""

    event: EscalationRequest
    snapshot: TicketSnapshot
    decision: Decision
    actions: tuple[Action, ...]
    key: str


@dataclass
class _Waiting:
    """A ticket this run has read a breach of and not handled yet."""

    breach: Breach  # its earliest breach so far, with the newest snapshot read
    page: int  # the page (0-based, this run) it first came on: that page's cursor waits for it
    busy: int = 0  # attempts that found its lock taken


def _changes_nothing(decision: Decision, before: Escalation | None) -> bool:
    """Whether `decision` has nothing to write and leaves the escalation as it was (history and the
    newest event's time aside): a further breach of a ticket already escalated and tagged sla_breached.
    """
    if before is None or decision.actions or decision.origin_actions:
        return False
    return replace(decision.escalation, history=before.history, last_event_at=before.last_event_at) == before


class _Sweep:
    """One run of run_sweep: the report, the ports, the tickets waiting for their write, and the cursor.

    Tickets are taken page by page into `waiting` (each ticket once per run) and handled a
    batch at a time, oldest first. With a bulk gateway a batch is `max_batch` tickets, carried
    over page boundaries, so the whole run makes one bulk write per `max_batch` tickets; without
    one, every page's tickets are handled before the next page is read. A page's cursor is
    stored once every ticket of it and of all earlier pages is handled.
    """

    def __init__(
        self,
        source: SweepSource,
        *,
        policy: Policy,
        gateway: Gateway,
        store: SqlEscalationStore,
        cursors: SweepCursors,
        locks: TicketLocks,
        clock: Callable[[], datetime],
        dry_run: bool,
        sleep: Callable[[float], None],
        lock_attempts: int,
        lock_wait_seconds: float,
        progress: Progress | None,
    ) -> None:
        self.source = source
        self.platform = source.platform
        self.policy = policy
        self.gateway = gateway
        self.bulk = gateway if isinstance(gateway, BulkGateway) and not dry_run else None
        self.batch_size = max(1, self.bulk.max_batch) if self.bulk is not None else 100
        self.store = store
        self.cursors = cursors
        self.locks = locks
        self.clock = clock
        self.dry_run = dry_run
        self.sleep = sleep
        self.lock_attempts = lock_attempts
        self.lock_wait_seconds = lock_wait_seconds
        self.progress = progress
        self.counter = _Counter()
        self.report = SweepReport(platform=source.platform, source=source.name)
        self.run_lock: TicketLock | None = None
        self.waiting: dict[str, _Waiting] = {}  # in the order they are to be handled
        self.page_of: dict[str, int] = {}  # every ticket taken this run: the page it first came on
        self.unstored: deque[tuple[int, str | None]] = deque()  # pages read whose cursor is not stored yet
        self.pages_taken = 0
        # The first page whose work this run leaves unfinished (a transient failure, a ticket that stayed
        # locked): neither its cursor nor a later one is stored, and no further page is read.
        self.blocked: int | None = None
        self.stuck: list[str] = []  # tickets whose lock stayed taken

    def tick(self) -> None:
        self.report.api_calls = self.source.api_calls() + self.counter.calls
        if self.run_lock is not None:
            self.run_lock.refresh()  # a long backlog must not lose the run's lock to its lease
        if self.progress is not None:
            self.progress(self.report)

    def block(self, page: int) -> None:
        self.blocked = page if self.blocked is None else min(self.blocked, page)

    # --- pages -----------------------------------------------------------------------------

    def take(self, page: SweepPage) -> None:
        """Queue `page`'s tickets: each ticket once per run, dated by its first breach."""
        index = self.pages_taken
        self.pages_taken += 1
        for breach in page.breaches:
            ref = breach.ticket_ref
            waiting = self.waiting.get(ref)
            if waiting is not None:
                # Several breaches of one ticket (several metrics, on one page or several) make one
                # escalation, dated by the first, decided on the newest snapshot read.
                first = breach if breach.breached_at < waiting.breach.breached_at else waiting.breach
                snapshot = breach.snapshot or waiting.breach.snapshot
                waiting.breach = first if first.snapshot is snapshot else replace(first, snapshot=snapshot)
            elif ref not in self.page_of:
                self.page_of[ref] = index
                self.waiting[ref] = _Waiting(breach, index)
                self.report.tickets += 1
            # else: decided earlier in this run; a later breach of it changes nothing more.
        self.unstored.append((index, page.cursor))

    def flush(self, *, final: bool) -> None:
        """Handle the waiting tickets a full batch at a time, oldest first; with `final`, all of them.

        A ticket whose lock another worker holds goes back to the head of the line, and the batch
        that tries it again waits `lock_wait_seconds` first; after `lock_attempts` more tries it
        stays unhandled, and its page's cursor is not stored.
        """
        while self.waiting and (final or len(self.waiting) >= self.batch_size):
            again: dict[str, _Waiting] = {}
            if self.bulk is None:
                self.handle_batch(self.next_batch(self.batch_size), again)
            else:
                self.fill_and_write(again, final=final)
            if again:
                self.waiting = again | self.waiting
            self.tick()

    def next_batch(self, size: int) -> list[_Waiting]:
        """Up to `size` waiting tickets, oldest first, out of the line (after a pause when one was busy before)."""
        batch = list(islice(self.waiting.values(), size))
        if any(w.busy for w in batch):
            # Tickets the worker (a push delivery) was holding: give it a moment, then try again.
            self.sleep(self.lock_wait_seconds)
        for waiting in batch:
            del self.waiting[waiting.breach.ticket_ref]
        return batch

    @contextmanager
    def hold(self, ref: str) -> Iterator[TicketLock | None]:
        """The ticket's lock, or None while it is busy: locked by a worker, or with deliveries still to run.

        A delivery of the ticket waiting for its retry (a lead's cancel after a 429) or just
        stored goes first: decided after the breach, it would be ignored as older than it, and
        the lead's word lost. Such a ticket is tried again like a locked one (SH4 waits the same way).
        """
        with ExitStack() as stack:
            lock = stack.enter_context(self.locks.hold(self.platform, ref))
            if lock is not None and self.store.inbox.next_for_ticket(self.platform, ref) is not None:
                stack.close()  # let go at once: the worker needs the lock for that delivery
                lock = None
            yield lock

    def was_busy(self, waiting: _Waiting, again: dict[str, _Waiting]) -> None:
        """`waiting`'s lock was taken: try it again later, or give up on it (and on its page's cursor)."""
        waiting.busy += 1
        if waiting.busy <= self.lock_attempts:
            again[waiting.breach.ticket_ref] = waiting
            return
        self.report.busy += 1
        self.stuck.append(waiting.breach.ticket_ref)
        self.block(waiting.page)

    def handle_batch(self, batch: Sequence[_Waiting], again: dict[str, _Waiting]) -> None:
        """One ticket at a time (a gateway without bulk writes): each decided, written and recorded under its lock."""
        with ExitStack() as stack:
            held: list[Breach] = []
            for waiting in batch:
                if stack.enter_context(self.hold(waiting.breach.ticket_ref)) is None:
                    self.was_busy(waiting, again)
                else:
                    held.append(waiting.breach)
            for breach in held:
                with log_context(delivery_id=breach.event_id, ticket_ref=breach.ticket_ref):
                    self.decide(breach, self.store.load(self.platform, breach.ticket_ref))

    def fill_and_write(self, again: dict[str, _Waiting], *, final: bool) -> None:
        """Decide waiting tickets under their locks until a full bulk write has something for each, then write it.

        A ticket with nothing to write (handled already, closed, changing nothing) is settled as it
        is decided and its lock let go: it takes no place in the write. When the line runs out
        before the write is full and more pages may come (not `final`), the tickets decided for
        it go back to the head of the line, unlocked, and are decided again with the next page's.
        """
        assert self.bulk is not None
        with ExitStack() as planned_locks:  # held until the write has landed and been recorded
            planned: list[tuple[_Waiting, _Planned, TicketLock]] = []
            while self.waiting and len(planned) < self.batch_size:
                batch = self.next_batch(self.batch_size - len(planned))
                own: dict[str, ExitStack] = {}  # each ticket's lock, until it joins planned_locks or is let go
                try:
                    held: list[tuple[_Waiting, TicketLock]] = []
                    for waiting in batch:
                        ref = waiting.breach.ticket_ref
                        own[ref] = ExitStack()
                        lock = own[ref].enter_context(self.hold(ref))
                        if lock is None:
                            self.was_busy(waiting, again)
                        else:
                            held.append((waiting, lock))
                    # One query for these tickets' escalations, read under the locks (nobody changes them meanwhile).
                    known = self.store.load_many(self.platform, [w.breach.ticket_ref for w, _ in held])
                    unwritten: list[Decision] = []  # decided with nothing to write, but changing something
                    for waiting, lock in held:
                        breach = waiting.breach
                        with log_context(delivery_id=breach.event_id, ticket_ref=breach.ticket_ref):
                            found = self.decide(breach, known.get(breach.ticket_ref))
                        if isinstance(found, _Planned):
                            planned.append((waiting, found, lock))
                            planned_locks.enter_context(own.pop(breach.ticket_ref))
                        elif found is not None:
                            unwritten.append(found)
                    self.record_all(unwritten)
                finally:
                    for stack in own.values():
                        stack.close()
            if not planned:
                return
            if not final and len(planned) < self.batch_size:
                # Not a full write yet: these wait for the next page's tickets, their snapshots kept.
                back = {w.breach.ticket_ref: _Waiting(replace(w.breach, snapshot=p.snapshot), w.page, w.busy)
                        for w, p, _ in planned}  # fmt: skip
                self.waiting = back | self.waiting
                return
            written = self.write([p for _, p, _ in planned], [lock for _, _, lock in planned])
            # Each decision is recorded only after its write landed; one transaction for the batch.
            self.record_all(written)

    def store_cursor(self) -> None:
        """Store the newest cursor of the pages whose tickets, and all earlier pages' tickets, are handled."""
        limit = min((w.page for w in self.waiting.values()), default=self.pages_taken)
        if self.blocked is not None:
            limit = min(limit, self.blocked)
        newest: str | None = None
        while self.unstored and self.unstored[0][0] < limit:
            cursor = self.unstored.popleft()[1]
            newest = cursor if cursor is not None else newest
        if newest is not None:
            self.cursors.set(self.platform, self.source.name, newest, self.clock())
            self.report.cursor = newest

    def finish(self) -> None:
        """Note the tickets that stayed locked (their pages are read again next run)."""
        if not self.stuck:
            return
        refs = ", ".join(self.stuck[:20])
        self.report.errors.append(
            f"tickets still locked by another worker or with deliveries still to run: {refs}; their page is read again"
        )
        log.warning("sweep %s: %d tickets stayed busy (%s); not storing the cursor", self.source.name,
                    len(self.stuck), refs)  # fmt: skip

    # --- one ticket ------------------------------------------------------------------------

    def decide(self, breach: Breach, escalation: Escalation | None) -> _Planned | Decision | None:
        """Decide one ticket's breach (holding its lock); a bulk gateway gets the write back, others write now.

        A decision with nothing to write comes back to be recorded with the batch.
        """
        report = self.report
        if escalation is not None and any(t.delivery_id == breach.event_id for t in escalation.history):
            report.already_handled += 1  # an earlier run (or a re-read page) did this one
            return None
        try:
            snapshot = breach.snapshot
            if snapshot is None:
                self.counter.calls += 1
                snapshot = self.gateway.snapshot(breach.ticket_ref)
        except TransientError as exc:
            self.transient(breach.ticket_ref, exc)
            return None
        except GatewayError as exc:
            self.failed(breach.ticket_ref, exc)
            return None
        if snapshot is None or snapshot.status is TicketStatus.CLOSED:
            report.skipped += 1  # deleted, or closed (a closed ticket cannot be changed)
            log.info("sweep: ticket %s is %s; nothing to escalate", breach.ticket_ref,
                     "gone" if snapshot is None else "closed")  # fmt: skip
            return None
        event = EscalationRequest(
            platform=self.platform,
            ticket_ref=breach.ticket_ref,
            requested_by=SWEEP_ACTOR,
            channel=Channel.SLA_BREACH,
            reason=Reason.SLA_VIOLATION,
            received_at=self.event_time(breach, escalation),
            ticket=snapshot,
            delivery_id=breach.event_id,
        )
        if self.bulk is None:
            # retry=True: an earlier run's write to this ticket may have stopped half-way (a 503 between
            # the note and the workflow move); the gateway checks what of it landed before writing again.
            self.decide_and_write(event, snapshot, retry=True)
            return None
        planner = _PlanningGateway(snapshot)
        held = _HeldStore(escalation)
        try:
            result = handle_event(event, policy=self.policy, gateway=planner, store=held, clock=self.clock)
        except GatewayError as exc:  # nothing is written while planning; kept for safety
            self.failed(breach.ticket_ref, exc)
            return None
        if isinstance(result, Ignored) or held.decision is None:
            report.already_handled += 1
            log.info("sweep: %s", result.reason if isinstance(result, Ignored) else "nothing decided")
            return None
        if planner.planned is None:
            if _changes_nothing(held.decision, escalation):
                # Already escalated and already tagged (the push path, or an earlier breach): no audit entry.
                report.already_handled += 1
                return None
            return held.decision  # nothing to write, but it changes the escalation: recorded with the batch
        actions, key = planner.planned
        return _Planned(event, snapshot, held.decision, actions, key)

    def event_time(self, breach: Breach, escalation: Escalation | None) -> datetime:
        """When the breach counts as having arrived: its own time, so an older breach never undoes a later outcome.

        Where nothing is escalated yet, though, a breach the platform showed only after a later
        event is not undone by it and must not be lost as older: a request deferred after the
        breach happened waits for exactly this breach, and one asked for its rationale or noted
        as urgency is still an SLA breach that nobody escalated (SH3). Those are taken now. An
        escalation already open has it in hand; one a lead turned down after the breach, and a
        solved ticket, keep their outcome.
        """
        if (
            escalation is not None
            and escalation.state in _BREACH_STILL_ESCALATES
            and escalation.last_event_at is not None
            and escalation.last_event_at >= breach.breached_at
        ):
            return max(self.clock(), escalation.last_event_at + timedelta(microseconds=1))
        return breach.breached_at

    def decide_and_write(self, event: EscalationRequest, snapshot: TicketSnapshot, *, retry: bool) -> None:
        """The worker's path for one ticket: decide, apply through the gateway, record."""
        recording = _RecordingStore(self.store, self.dry_run)
        gateway = _FirstReadGateway(self.gateway, snapshot, self.counter)
        breach_ref = event.ticket_ref or ""
        try:
            result = handle_event(
                event, policy=self.policy, gateway=gateway, store=recording, clock=self.clock, retry=retry
            )
        except TransientError as exc:
            self.transient(breach_ref, exc)
            return
        except GatewayError as exc:
            self.failed(breach_ref, exc)
            return
        if isinstance(result, Ignored):
            self.report.already_handled += 1
            log.info("sweep: %s", result.reason)
            return
        if result.actions:
            self.report.single_writes += 1
        self.count(result)

    # --- writing a batch ---------------------------------------------------------------------

    def write(self, planned: Sequence[_Planned], locks: Sequence[TicketLock]) -> list[Decision]:
        """One bulk write for the batch, the failed ones one by one; the decisions the bulk write landed."""
        assert self.bulk is not None
        items = [(p.snapshot, p.actions, p.key) for p in planned]
        try:
            result = self.bulk.apply_many(items)
        except TransientError as exc:
            self.report.bulk_writes += 1
            self.counter.calls += 1
            for p in planned:
                self.transient(p.snapshot.ref, exc)
            return []
        except GatewayError as exc:
            # The whole request was refused (one bad ticket can do that): write them one by one.
            self.report.bulk_writes += 1
            self.counter.calls += 1
            log.warning("sweep: bulk write refused (%s); writing the %d tickets one by one", exc, len(planned))
            result = BulkResult({p.snapshot.ref: exc for p in planned}, api_calls=0)
        else:
            self.report.bulk_writes += 1
            self.counter.calls += result.api_calls
        for lock in locks:
            lock.refresh()  # the write (and its job polls) took a while: keep the tickets ours
        written: list[Decision] = []
        for p in planned:
            error = result.outcomes.get(p.snapshot.ref, GatewayError("the bulk write reported nothing for it"))
            if error is None:
                written.append(p.decision)
                continue
            log.info("sweep: ticket %s failed in the bulk write (%s); writing it alone", p.snapshot.ref, error)
            with log_context(delivery_id=p.event.delivery_id, ticket_ref=p.snapshot.ref):
                # retry=True: the gateway checks what of this transition already landed before writing again.
                self.decide_and_write(p.event, p.snapshot, retry=True)
        return written

    def record_all(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        self.store.record_many(decisions, dry_run=self.dry_run)
        for decision in decisions:
            self.count(decision)

    def count(self, decision: Decision) -> None:
        t = decision.transition
        if decision.actions:
            self.report.tickets_updated += 1
        if t.to_state is State.ESCALATED and t.from_state not in OPEN_STATES:
            self.report.tickets_escalated += 1
        elif not decision.actions:
            self.report.already_handled += 1

    # --- failures ------------------------------------------------------------------------------

    def transient(self, ref: str, exc: TransientError) -> None:
        self.block(self.page_of.get(ref, 0))
        self.report.errors.append(f"ticket {ref}: {exc} (tried again next run)")
        log.warning("sweep: ticket %s: %s; the page is read again next run", ref, exc)

    def failed(self, ref: str, exc: GatewayError) -> None:
        self.report.failed += 1
        self.report.errors.append(f"ticket {ref}: {exc}")
        log.error("sweep: ticket %s could not be escalated: %s", ref, exc)


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
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    lock_attempts: int = 3,
    lock_wait_seconds: float = 2.0,
) -> SweepReport:
    """Sweep `source` from its stored cursor (or `since`), escalating each still-real breach once.

    Per ticket, once per run, under its lock: load the escalation, decide with the policy
    (handle_event, channel sla_breach, reason sla_violation), write, record (a decision that
    writes nothing and changes nothing is not recorded). With a BulkGateway the writes go out
    as one bulk write per `max_batch` tickets over the whole run (a page's leftovers wait for
    the next page; the last partial batch goes out when the source is exhausted or the run
    stops); a ticket that fails in it is written alone. A page's cursor is stored once all its
    breaches and all earlier pages' are handled; a ticket whose lock stays taken, or a
    transient failure, stops the run there, so the next run reads that page again (what was
    done is recognised by the breach's event id).
    """
    started = time.perf_counter()
    sweep = _Sweep(
        source, policy=policy, gateway=gateway, store=store, cursors=cursors, locks=locks, clock=clock,
        dry_run=dry_run, sleep=sleep, lock_attempts=lock_attempts, lock_wait_seconds=lock_wait_seconds,
        progress=progress,
    )  # fmt: skip
    report = sweep.report
    # One run per source at a time, across workers: every consumer's scheduler fires the periodic task,
    # and two runs would read the same pages (harmless, the breaches are recognised) and could store
    # an older cursor after a newer one.
    with locks.hold(source.platform, f"{RUN_LOCK_PREFIX}{source.name}") as run_lock:
        if run_lock is None:
            report.complete = False
            report.errors.append(f"another {source.platform.value} sweep of {source.name} is running; not started")
            log.info("sweep %s: another run holds it; not started", source.name)
            return report
        sweep.run_lock = run_lock
        cursor = None if since is not None else cursors.get(source.platform, source.name)
        try:
            for page in source.pages(cursor, since):
                report.pages += 1
                report.events_read += page.events_read
                report.breaches += len(page.breaches)
                report.progress = page.progress
                sweep.take(page)
                # Bulk writes carry a page's leftovers into the next page's batch; one by one, each page is done now.
                sweep.flush(final=sweep.bulk is None)
                sweep.store_cursor()
                sweep.tick()
                if sweep.blocked is not None:
                    break  # a transient failure or a ticket that stayed locked: the next run reads from here
        except GatewayError as exc:
            # The source could not read (rate limited past its patience, an outage): next run resumes.
            report.complete = False
            report.errors.append(f"reading {source.name}: {exc}")
            log.warning("sweep %s stopped: %s", source.name, exc)
        # The remainder of what was read: written (a partial batch) before the run ends, however it ends.
        sweep.flush(final=True)
        sweep.store_cursor()
        sweep.finish()
        if sweep.blocked is not None:
            report.complete = False
    report.seconds = time.perf_counter() - started
    sweep.tick()
    log.info(
        "sweep %s: %d events, %d breaches, %d escalated, %d already handled, %d api calls, %d bulk writes, %.2fs%s",
        source.name, report.events_read, report.breaches, report.tickets_escalated, report.already_handled,
        report.api_calls, report.bulk_writes, report.seconds, "" if report.complete else " (stopped early)",
    )  # fmt: skip
    return report


def sweep_source_of(adapter: object) -> SweepSource | None:
    """The adapter's SLA sweep (`sweep_source()`), looking through wrappers such as FormAwareAdapter."""
    seen: set[int] = set()
    current: object | None = adapter
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        offer = getattr(type(current), "sweep_source", None)
        if callable(offer):
            found: SweepSource | None = offer(current)
            return found
        current = getattr(current, "inner", None)
    return None
