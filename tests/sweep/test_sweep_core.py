"""run_sweep with small fakes that record calls: a source of pages, a gateway (with and without bulk writes),
ticket locks; the store and the cursors are the real SQLite ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import responses

from integration.forms import FormAwareAdapter
from integration.model import (
    Action,
    AddTags,
    Channel,
    Decision,
    EscalationRequest,
    Platform,
    Priority,
    Reason,
    State,
    TicketSnapshot,
    TicketStatus,
)
from integration.policy import decide, load_policy
from integration.ports import Delivery, GatewayError, PermanentError, TransientError
from integration.service import DryRunGateway
from integration.store import HeaderMap, SweepCursors
from integration.sweep import (
    SWEEP_ACTOR,
    Breach,
    BulkResult,
    SweepPage,
    SweepReport,
    run_sweep,
    sweep_source_of,
)
from tests.conftest import NewRuntime
from tests.sweep.conftest import Sleeps, SweepStorage
from tests.zendesk.helpers import NOW

POLICY = load_policy("lead-review")
LEADS = "Technical Support Team Leaders"


def ticket(ref: str, **changes: Any) -> TicketSnapshot:
    base: dict[str, Any] = {"status": TicketStatus.OPEN, "priority": Priority.NORMAL, "group": "Support"}
    return TicketSnapshot(ref=ref, platform=Platform.ZENDESK, **{**base, **changes})


def breach(ref: str, minutes_ago: int = 30, event: str | None = None, *, read: bool = True) -> Breach:
    return Breach(
        ticket_ref=ref,
        metric="reply_time",
        breached_at=NOW - timedelta(minutes=minutes_ago),
        event_id=event or f"test-sla:{ref}:{minutes_ago}",
        snapshot=ticket(ref) if read else None,
    )


@dataclass
class FakeSource:
    """Yields the pages it was given; records how it was asked; can fail after some pages."""

    given: list[SweepPage]
    fail_after: int | None = None
    platform: Platform = Platform.ZENDESK
    name: str = "test_events"
    asked: list[tuple[str | None, Any]] = field(default_factory=list)
    yielded: int = 0

    def pages(self, cursor: str | None, since: Any) -> Iterator[SweepPage]:
        self.asked.append((cursor, since))
        for i, page in enumerate(self.given):
            if self.fail_after is not None and i >= self.fail_after:
                raise TransientError("export: Zendesk answered 503", retry_after=30)
            self.yielded += 1
            yield page

    def api_calls(self) -> int:
        return self.yielded


@dataclass
class RecordingGateway:
    """A Gateway that records snapshot reads and applies; `fail` maps a ref to the error its apply raises."""

    tickets: dict[str, TicketSnapshot] = field(default_factory=dict)
    fail: dict[str, GatewayError] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    platform: Platform = Platform.ZENDESK
    reads: list[str] = field(default_factory=list)
    applied: list[tuple[str, tuple[Action, ...], str, bool]] = field(default_factory=list)

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        self.reads.append(ref)
        return None if ref in self.gone else self.tickets.get(ref, ticket(ref))

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        if ref in self.fail:
            raise self.fail[ref]
        self.applied.append((ref, tuple(actions), key, retry))


class Killed(BaseException):
    """The process dying mid-write (SIGKILL, a deploy): nothing after it runs."""


@dataclass
class RecordingBulkGateway(RecordingGateway):
    """Also a BulkGateway: records each batch; `bulk_fail` maps a ref to its outcome in the batch.

    `killed_at` n: the n-th bulk write (1-based) kills the process before anything lands.
    `timeline`, when given, gets ("write", number of tickets) for each bulk write that lands.
    """

    max_batch: int = 2
    batches: list[list[str]] = field(default_factory=list)
    written: list[tuple[TicketSnapshot, tuple[Action, ...]]] = field(default_factory=list)
    bulk_fail: dict[str, GatewayError] = field(default_factory=dict)
    raise_bulk: GatewayError | None = None
    killed_at: int | None = None
    timeline: list[tuple[str, Any]] | None = None

    def apply_many(self, items: Sequence[tuple[TicketSnapshot, Sequence[Action], str]]) -> BulkResult:
        assert len(items) <= self.max_batch
        self.batches.append([s.ref for s, _, _ in items])
        if self.raise_bulk is not None:
            raise self.raise_bulk
        if self.killed_at == len(self.batches):
            raise Killed
        self.written += [(s, tuple(actions)) for s, actions, _ in items if self.bulk_fail.get(s.ref) is None]
        if self.timeline is not None:
            self.timeline.append(("write", len(items)))
        return BulkResult({s.ref: self.bulk_fail.get(s.ref) for s, _, _ in items}, api_calls=2)


@dataclass
class LoggedCursors:
    """The real SweepCursors, each cursor stored also noted on a timeline (beside the gateway's writes)."""

    inner: SweepCursors
    timeline: list[tuple[str, Any]]

    def get(self, platform: Platform, name: str) -> str | None:
        return self.inner.get(platform, name)

    def set(self, platform: Platform, name: str, cursor: str, at: datetime) -> None:
        self.timeline.append(("cursor", cursor))
        self.inner.set(platform, name, cursor, at)


@dataclass
class BusyLocks:
    """Ticket locks where the refs in `busy` are taken for that many attempts."""

    busy: dict[str, int] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)

    @contextmanager
    def hold(self, platform: Platform, ticket_ref: str) -> Iterator[Any]:
        self.attempts.append(ticket_ref)
        if self.busy.get(ticket_ref, 0) > 0:
            self.busy[ticket_ref] -= 1
            yield None
            return
        yield self

    def refresh(self) -> bool:
        return True


def run(storage: SweepStorage, source: FakeSource, gateway: Any, sleeps: Sleeps, **kwargs: Any) -> SweepReport:
    options: dict[str, Any] = {"locks": storage.locks, "sleep": sleeps, "cursors": storage.cursors, **kwargs}
    return run_sweep(
        source, policy=POLICY, gateway=gateway, store=storage.escalations, clock=lambda: NOW, **options
    )  # fmt: skip


def state(storage: SweepStorage, ref: str) -> State | None:
    esc = storage.escalations.load(Platform.ZENDESK, ref)
    return esc.state if esc else None


# --- one write per ticket (a gateway without bulk writes) -----------------------------------------------


def test_each_breach_is_decided_applied_and_recorded_and_each_page_stores_its_cursor(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    source = FakeSource(
        [SweepPage([breach("1"), breach("2", read=False)], 40, "c1"), SweepPage([breach("3")], 7, "c2")]
    )
    gateway = RecordingGateway()
    report = run(storage, source, gateway, sleeps)

    assert gateway.reads == ["2"]  # 1 and 3 came with their snapshot
    # retry=True: the gateway checks what an earlier run's write that stopped half-way left on the ticket.
    assert [(ref, key, retry) for ref, _, key, retry in gateway.applied] == [
        ("1", "test-sla:1:30:1", True), ("2", "test-sla:2:30:1", True), ("3", "test-sla:3:30:1", True),
    ]  # fmt: skip
    assert gateway.applied[0][1][0] == AddTags(("escalated", "sla_breached"))
    for ref in ("1", "2", "3"):
        (entry,) = storage.escalations.history(Platform.ZENDESK, ref)
        t = entry.transition
        assert (t.to_state, t.actor, t.rule, t.delivery_id) == (
            State.ESCALATED,
            SWEEP_ACTOR.id,
            "SH3",
            f"test-sla:{ref}:30",
        )
        assert t.at == NOW
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c2"
    assert (report.pages, report.events_read, report.breaches, report.tickets) == (2, 47, 3, 3)
    assert (report.tickets_escalated, report.single_writes, report.bulk_writes, report.complete) == (3, 3, 0, True)
    assert report.api_calls == 2 + 1 + 3  # pages read, one snapshot, three writes


def test_a_stored_cursor_is_where_the_source_starts_unless_since_is_given(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    storage.cursors.set(Platform.ZENDESK, "test_events", "c7", NOW)
    source = FakeSource([])
    run(storage, source, RecordingGateway(), sleeps)
    since = NOW - timedelta(days=2)
    run(storage, source, RecordingGateway(), sleeps, since=since)
    assert source.asked == [("c7", None), (None, since)]


def test_several_breaches_of_one_ticket_are_one_escalation_dated_by_the_first(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    page = SweepPage([breach("1", 10, "late"), breach("1", 50, "early"), breach("1", 20, "middle")], 3, "c1")
    gateway = RecordingGateway()
    report = run(storage, FakeSource([page]), gateway, sleeps)
    assert [ref for ref, *_ in gateway.applied] == ["1"]
    esc = storage.escalations.load(Platform.ZENDESK, "1")
    assert esc is not None and esc.requested_at == NOW - timedelta(minutes=50)
    assert esc.history[-1].delivery_id == "early"
    assert (report.breaches, report.tickets, report.tickets_escalated) == (3, 1, 1)


def test_a_breach_already_in_the_history_is_not_handled_again(storage: SweepStorage, sleeps: Sleeps) -> None:
    page = SweepPage([breach("1")], 1, "c1")
    run(storage, FakeSource([page]), RecordingGateway(), sleeps)
    gateway = RecordingGateway()
    report = run(storage, FakeSource([page]), gateway, sleeps)
    assert gateway.applied == [] and gateway.reads == []
    assert (report.already_handled, report.tickets_escalated) == (1, 0)
    assert len(storage.escalations.history(Platform.ZENDESK, "1")) == 1


def test_a_breach_older_than_the_escalations_last_event_changes_nothing(storage: SweepStorage, sleeps: Sleeps) -> None:
    # A lead cancelled the escalation after the breach happened: that old breach must not undo it.
    request = EscalationRequest(
        platform=Platform.ZENDESK, ticket_ref="1", requested_by=SWEEP_ACTOR, channel=Channel.MACRO,
        reason=Reason.WRONG_RESOLUTION, received_at=NOW - timedelta(minutes=5), rationale="Members cannot check in",
        ticket=ticket("1"),
    )  # fmt: skip
    decision: Decision = decide(load_policy("service-desk"), None, request, NOW - timedelta(minutes=5))
    storage.escalations.record(decision)
    gateway = RecordingGateway()
    report = run(storage, FakeSource([SweepPage([breach("1", 30)], 1, "c1")]), gateway, sleeps)
    assert gateway.applied == [] and report.already_handled == 1
    assert len(storage.escalations.history(Platform.ZENDESK, "1")) == 1
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"


def test_gone_and_closed_tickets_are_skipped(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = RecordingGateway(tickets={"2": ticket("2", status=TicketStatus.CLOSED)}, gone={"1"})
    page = SweepPage([breach("1", read=False), breach("2", read=False)], 2, "c1")
    report = run(storage, FakeSource([page]), gateway, sleeps)
    assert gateway.applied == [] and report.skipped == 2 and report.complete
    assert state(storage, "1") is None and state(storage, "2") is None


# --- failures and the cursor ------------------------------------------------------------------------------


def test_a_transient_failure_keeps_the_cursor_before_its_page_and_stops(storage: SweepStorage, sleeps: Sleeps) -> None:
    pages = [
        SweepPage([breach("1")], 10, "c1"),
        SweepPage([breach("2"), breach("3")], 10, "c2"),
        SweepPage([breach("4")], 10, "c3"),
    ]
    source = FakeSource(pages)
    gateway = RecordingGateway(fail={"2": TransientError("Zendesk answered 503", retry_after=20)})
    report = run(storage, source, gateway, sleeps)
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"
    assert source.yielded == 2  # page three is not read
    assert [ref for ref, *_ in gateway.applied] == ["1", "3"]  # the page's other tickets are still done
    assert not report.complete and report.errors == ["ticket 2: Zendesk answered 503 (tried again next run)"]

    # The next run starts from c1: ticket 3 is recognised, ticket 2 and page three are done.
    source2 = FakeSource(pages[1:])
    gateway2 = RecordingGateway()
    again = run(storage, source2, gateway2, sleeps)
    assert [ref for ref, *_ in gateway2.applied] == ["2", "4"]
    assert (again.already_handled, again.complete) == (1, True)
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c3"


def test_a_permanent_failure_is_reported_and_does_not_hold_the_cursor(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = RecordingGateway(fail={"1": PermanentError("ticket 1: Zendesk answered 422 RecordInvalid")})
    report = run(storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), gateway, sleeps)
    assert (report.failed, report.tickets_escalated, report.complete) == (1, 1, True)
    assert report.errors == ["ticket 1: ticket 1: Zendesk answered 422 RecordInvalid"]
    assert state(storage, "1") is None and state(storage, "2") is State.ESCALATED
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"


def test_a_source_that_stops_reading_ends_the_run_after_the_pages_it_gave(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    source = FakeSource([SweepPage([breach("1")], 5, "c1"), SweepPage([breach("2")], 5, "c2")], fail_after=1)
    report = run(storage, source, RecordingGateway(), sleeps)
    assert not report.complete and report.errors == ["reading test_events: export: Zendesk answered 503"]
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"
    assert state(storage, "1") is State.ESCALATED and state(storage, "2") is None


# --- ticket locks ------------------------------------------------------------------------------------------


def test_a_busy_ticket_is_tried_again_after_a_pause(storage: SweepStorage, sleeps: Sleeps) -> None:
    locks = BusyLocks(busy={"2": 2})
    gateway = RecordingGateway()
    report = run(storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), gateway, sleeps, locks=locks)
    assert locks.attempts == ["~sweep:test_events", "1", "2", "2", "2"]
    assert sleeps.waits == [2.0, 2.0]
    assert [ref for ref, *_ in gateway.applied] == ["1", "2"]
    assert report.complete and report.busy == 0
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"


def test_a_ticket_that_stays_busy_holds_the_cursor_back(storage: SweepStorage, sleeps: Sleeps) -> None:
    locks = BusyLocks(busy={"2": 99})
    report = run(
        storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), RecordingGateway(), sleeps,
        locks=locks, lock_attempts=2, lock_wait_seconds=0.5,
    )  # fmt: skip
    assert sleeps.waits == [0.5, 0.5] and report.busy == 1 and not report.complete
    assert storage.cursors.get(Platform.ZENDESK, "test_events") is None
    assert state(storage, "1") is State.ESCALATED and state(storage, "2") is None


# --- bulk writes -------------------------------------------------------------------------------------------


def test_a_bulk_gateway_gets_one_write_per_max_batch_tickets(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = RecordingBulkGateway()
    page = SweepPage([breach(str(n)) for n in range(1, 6)], 5, "c1")
    report = run(storage, FakeSource([page]), gateway, sleeps)
    assert gateway.batches == [["1", "2"], ["3", "4"], ["5"]]
    assert gateway.applied == []  # nothing went out ticket by ticket
    assert all(state(storage, str(n)) is State.ESCALATED for n in range(1, 6))
    assert (report.bulk_writes, report.single_writes, report.tickets_escalated) == (3, 0, 5)
    assert report.api_calls == 1 + 3 * 2


def test_a_ticket_failing_in_the_bulk_write_is_written_alone_with_retry(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = RecordingBulkGateway(bulk_fail={"2": PermanentError("ticket 2: bulk update failed")})
    report = run(storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), gateway, sleeps)
    assert gateway.batches == [["1", "2"]]
    assert [(ref, key, retry) for ref, _, key, retry in gateway.applied] == [("2", "test-sla:2:30:1", True)]
    assert len(storage.escalations.history(Platform.ZENDESK, "2")) == 1
    assert (report.tickets_escalated, report.single_writes) == (2, 1)


def test_a_refused_bulk_write_falls_back_to_one_write_per_ticket(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = RecordingBulkGateway(raise_bulk=PermanentError("update_many: Zendesk answered 400 InvalidValue"))
    report = run(storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), gateway, sleeps)
    assert [ref for ref, *_ in gateway.applied] == ["1", "2"]
    assert report.tickets_escalated == 2 and report.complete


def test_a_transient_bulk_failure_writes_nothing_more_and_keeps_the_cursor(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    gateway = RecordingBulkGateway(raise_bulk=TransientError("update_many: Zendesk answered 429", retry_after=10))
    report = run(storage, FakeSource([SweepPage([breach("1"), breach("2")], 2, "c1")]), gateway, sleeps)
    assert gateway.applied == [] and not report.complete
    assert state(storage, "1") is None and storage.cursors.get(Platform.ZENDESK, "test_events") is None


@pytest.mark.parametrize("gateway_type", [RecordingBulkGateway, RecordingGateway], ids=["bulk", "per-ticket"])
def test_a_breach_that_changes_nothing_is_not_recorded(
    storage: SweepStorage, sleeps: Sleeps, gateway_type: type[RecordingGateway]
) -> None:
    run(storage, FakeSource([SweepPage([breach("1", 60, "first")], 1, "c1")]), gateway_type(), sleeps)
    before = storage.escalations.load(Platform.ZENDESK, "1")
    tagged = ticket("1", tags=frozenset({"escalated", "sla_breached"}))
    second = Breach("1", "agent_work_time", NOW - timedelta(minutes=5), "second", snapshot=tagged)
    gateway = gateway_type()
    report = run(storage, FakeSource([SweepPage([second], 1, "c2")]), gateway, sleeps)
    assert gateway.applied == [] and getattr(gateway, "batches", []) == []
    # Already escalated and already tagged: no audit entry, the escalation as it was; counted as handled.
    history = storage.escalations.history(Platform.ZENDESK, "1")
    assert [e.transition.delivery_id for e in history] == ["first"]
    assert storage.escalations.load(Platform.ZENDESK, "1") == before
    assert (report.already_handled, report.tickets_escalated, report.tickets_updated) == (1, 0, 0)
    assert report.complete and storage.cursors.get(Platform.ZENDESK, "test_events") == "c2"


@pytest.mark.parametrize("gateway_type", [RecordingBulkGateway, RecordingGateway], ids=["bulk", "per-ticket"])
def test_a_breach_that_only_adds_the_sla_breached_tag_is_written_and_recorded(
    storage: SweepStorage, sleeps: Sleeps, gateway_type: type[RecordingGateway]
) -> None:
    run(storage, FakeSource([SweepPage([breach("1", 60, "first")], 1, "c1")]), gateway_type(), sleeps)
    untagged = ticket("1", tags=frozenset({"escalated"}))  # someone took sla_breached off
    second = Breach("1", "agent_work_time", NOW - timedelta(minutes=5), "second", snapshot=untagged)
    gateway = gateway_type()
    report = run(storage, FakeSource([SweepPage([second], 1, "c2")]), gateway, sleeps)
    if isinstance(gateway, RecordingBulkGateway):
        assert [(s.ref, actions) for s, actions in gateway.written] == [("1", (AddTags(("sla_breached",)),))]
    else:
        assert [(ref, actions) for ref, actions, _, _ in gateway.applied] == [("1", (AddTags(("sla_breached",)),))]
    history = storage.escalations.history(Platform.ZENDESK, "1")
    assert [(e.transition.delivery_id, e.transition.from_state, e.transition.to_state) for e in history] == [
        ("first", None, State.ESCALATED), ("second", State.ESCALATED, State.ESCALATED),
    ]  # fmt: skip
    assert history[-1].transition.actions == (AddTags(("sla_breached",)),)
    assert (report.tickets_updated, report.tickets_escalated, report.already_handled) == (1, 0, 0)


# --- one bulk write per max_batch tickets over the whole run -------------------------------------------------


def sixty_a_page(pages: int = 3) -> list[SweepPage]:
    """`pages` pages of 60 distinct tickets each (page p: tickets p*100+1 .. p*100+60), cursors c1, c2, ..."""
    return [
        SweepPage([breach(str(p * 100 + n), 90 - p) for n in range(1, 61)], 60, f"c{p}") for p in range(1, pages + 1)
    ]


def refs_of(*pages: SweepPage) -> list[str]:
    return [b.ticket_ref for page in pages for b in page.breaches]


def test_a_pages_leftovers_are_carried_into_the_next_pages_bulk_write(storage: SweepStorage, sleeps: Sleeps) -> None:
    timeline: list[tuple[str, Any]] = []
    pages = sixty_a_page()
    gateway = RecordingBulkGateway(max_batch=100, timeline=timeline)
    cursors = LoggedCursors(storage.cursors, timeline)
    report = run(storage, FakeSource(pages), gateway, sleeps, cursors=cursors)

    # 180 tickets: 100 + 80, not 60 + 60 + 60. Page 1's cursor is stored once its tickets are written
    # (with 40 of page 2's); page 2's only once its other 20 are, with page 3's.
    assert gateway.batches == [refs_of(*pages)[:100], refs_of(*pages)[100:]]
    assert timeline == [("write", 100), ("cursor", "c1"), ("write", 80), ("cursor", "c3")]
    assert gateway.applied == []
    assert all(state(storage, ref) is State.ESCALATED for ref in refs_of(*pages))
    assert (report.tickets, report.tickets_escalated, report.bulk_writes, report.single_writes) == (180, 180, 2, 0)
    assert report.complete and report.cursor == "c3"


def test_a_crash_in_the_second_bulk_write_resumes_without_losing_or_repeating_a_ticket(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    pages = sixty_a_page()
    killed = RecordingBulkGateway(max_batch=100, killed_at=2)
    with pytest.raises(Killed):
        run(storage, FakeSource(pages), killed, sleeps)
    # The first write (page 1 and 40 of page 2) landed and was recorded; page 1's cursor only.
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"
    done, lost = refs_of(*pages)[:100], refs_of(*pages)[100:]
    assert all(state(storage, ref) is State.ESCALATED for ref in done)
    assert all(state(storage, ref) is None for ref in lost)

    # The next run reads from c1: page 2's first 40 are recognised, the other 80 go out in one write.
    source = FakeSource(pages[1:])
    gateway = RecordingBulkGateway(max_batch=100)
    again = run(storage, source, gateway, sleeps)
    assert source.asked == [("c1", None)]
    assert gateway.batches == [lost]
    assert (again.already_handled, again.tickets_escalated, again.bulk_writes, again.complete) == (40, 80, 1, True)
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c3"
    for ref in refs_of(*pages):
        history = storage.escalations.history(Platform.ZENDESK, ref)
        assert [e.transition.to_state for e in history] == [State.ESCALATED]


def test_a_source_that_stops_reading_still_gets_the_pages_it_gave_written(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    pages = sixty_a_page()
    gateway = RecordingBulkGateway(max_batch=100)
    report = run(storage, FakeSource(pages, fail_after=2), gateway, sleeps)
    assert gateway.batches == [refs_of(*pages)[:100], refs_of(*pages)[100:120]]  # the remainder, flushed
    assert not report.complete and storage.cursors.get(Platform.ZENDESK, "test_events") == "c2"


@pytest.mark.parametrize("gateway_type", [RecordingBulkGateway, RecordingGateway], ids=["bulk", "per-ticket"])
def test_a_ticket_on_several_pages_is_decided_once_per_run(
    storage: SweepStorage, sleeps: Sleeps, gateway_type: type[RecordingGateway]
) -> None:
    pages = [
        SweepPage([breach("1", 50, "1-reply"), breach("2", 49)], 2, "c1"),
        SweepPage([breach("1", 20, "1-wait"), breach("3", 19)], 2, "c2"),  # 1 is handled already
        SweepPage([breach("3", 5, "3-again"), breach("1", 4, "1-again")], 2, "c3"),
    ]
    gateway = gateway_type()
    report = run(storage, FakeSource(pages), gateway, sleeps)
    if isinstance(gateway, RecordingBulkGateway):
        assert gateway.batches == [["1", "2"], ["3"]]
    else:
        assert [ref for ref, *_ in gateway.applied] == ["1", "2", "3"]
    assert gateway.reads == []
    for ref, first in (("1", "1-reply"), ("2", "test-sla:2:49"), ("3", "test-sla:3:19")):
        assert [e.transition.delivery_id for e in storage.escalations.history(Platform.ZENDESK, ref)] == [first]
    assert (report.breaches, report.tickets, report.tickets_escalated, report.already_handled) == (6, 3, 3, 0)
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c3"


def test_a_waiting_ticket_seen_again_keeps_its_first_breach_and_takes_the_newer_snapshot(
    storage: SweepStorage, sleeps: Sleeps
) -> None:
    newer = ticket("1", group="Billing")
    pages = [
        SweepPage([breach("1", 50, "first")], 1, "c1"),  # waits: the batch takes two
        SweepPage([Breach("1", "agent_work_time", NOW - timedelta(minutes=10), "later", newer), breach("2")], 2, "c2"),
    ]
    gateway = RecordingBulkGateway()
    run(storage, FakeSource(pages), gateway, sleeps)
    assert gateway.batches == [["1", "2"]]
    assert gateway.written[0][0] is newer
    esc = storage.escalations.load(Platform.ZENDESK, "1")
    assert esc is not None and esc.requested_at == NOW - timedelta(minutes=50)
    assert [t.delivery_id for t in esc.history] == ["first"]
    assert esc.previous_group == "Billing"


def still_to_run(storage: SweepStorage, ref: str, delivery_id: str) -> int:
    """A delivery of ticket `ref` stored and not processed yet (queued, or waiting for its retry)."""
    delivery = Delivery(Platform.ZENDESK, delivery_id, HeaderMap(), b"{}", NOW - timedelta(minutes=5))
    return storage.escalations.inbox.record(delivery, kind="comment_added", ticket_ref=ref).id


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
def test_sh3_a_ticket_with_a_delivery_still_to_run_waits_for_it_and_holds_the_cursor_back(
    storage: SweepStorage, sleeps: Sleeps, bulk: bool
) -> None:
    # A lead's cancel of ticket 2 got a 429 and waits for its retry. Decided first, the breach would
    # escalate 2 and the cancel would then be ignored as older than it: the lead's word lost.
    id = still_to_run(storage, "2", "zd-cancel")
    page = SweepPage([breach("1"), breach("2")], 2, "c1")
    gateway = RecordingBulkGateway() if bulk else RecordingGateway()

    def written() -> list[str]:
        if isinstance(gateway, RecordingBulkGateway):
            return [s.ref for s, _ in gateway.written]
        return [ref for ref, *_ in gateway.applied]

    report = run(storage, FakeSource([page]), gateway, sleeps, lock_attempts=1, lock_wait_seconds=0.5)
    assert written() == ["1"]
    assert sleeps.waits == [0.5]  # tried again once, after a pause, like a locked ticket
    assert (report.busy, report.tickets_escalated, report.complete) == (1, 1, False)
    assert state(storage, "2") is None
    assert storage.cursors.get(Platform.ZENDESK, "test_events") is None  # the page is read again

    storage.escalations.inbox.mark_processed(id, NOW)
    again = run(storage, FakeSource([page]), gateway, sleeps)
    assert (again.tickets_escalated, again.complete) == (1, True)  # 1 was done by the first run
    assert written() == ["1", "2"]
    assert state(storage, "2") is State.ESCALATED
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"


def test_a_busy_ticket_leaves_its_place_in_the_write_to_the_next_one(storage: SweepStorage, sleeps: Sleeps) -> None:
    locks = BusyLocks(busy={"2": 1})
    gateway = RecordingBulkGateway()
    page = SweepPage([breach("1"), breach("2"), breach("3")], 3, "c1")
    report = run(storage, FakeSource([page]), gateway, sleeps, locks=locks)
    assert gateway.batches == [["1", "3"], ["2"]]
    assert locks.attempts == ["~sweep:test_events", "1", "2", "3", "2"]
    assert sleeps.waits == [2.0]  # before 2 is tried again
    assert report.complete and report.busy == 0
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"


def test_a_ticket_that_stays_busy_stops_the_run_at_its_page(storage: SweepStorage, sleeps: Sleeps) -> None:
    locks = BusyLocks(busy={"3": 99})
    pages = [
        SweepPage([breach("1"), breach("2")], 2, "c1"),
        SweepPage([breach("3"), breach("4")], 2, "c2"),
        SweepPage([breach("5")], 1, "c3"),
    ]
    source = FakeSource(pages)
    gateway = RecordingBulkGateway()
    report = run(storage, source, gateway, sleeps, locks=locks, lock_attempts=1)
    # 4 waits for a full write while 3 is tried again; when 3 gives up, 4 goes out alone and page 3 is not read.
    assert locks.attempts == ["~sweep:test_events", "1", "2", "3", "4", "3", "4", "4"]
    assert gateway.batches == [["1", "2"], ["4"]] and source.yielded == 2
    assert sleeps.waits == [2.0]
    assert (report.busy, report.tickets_escalated, report.complete) == (1, 3, False)
    assert report.errors == [
        "tickets still locked by another worker or with deliveries still to run: 3; their page is read again"
    ]
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c1"
    assert [state(storage, ref) for ref in "12345"] == [State.ESCALATED] * 2 + [None, State.ESCALATED, None]

    again = run(storage, FakeSource(pages[1:]), RecordingBulkGateway(), sleeps)
    assert (again.tickets_escalated, again.already_handled, again.complete) == (2, 1, True)
    assert storage.cursors.get(Platform.ZENDESK, "test_events") == "c3"


# --- dry runs and adapters ---------------------------------------------------------------------------------


def test_a_dry_run_plans_and_records_as_dry_run(storage: SweepStorage, sleeps: Sleeps) -> None:
    gateway = DryRunGateway(Platform.ZENDESK)
    report = run(storage, FakeSource([SweepPage([breach("1")], 1, "c1")]), gateway, sleeps, dry_run=True)
    assert [ref for ref, _, _ in gateway.planned] == ["1"]
    (entry,) = storage.escalations.history(Platform.ZENDESK, "1")
    assert entry.dry_run is True and report.tickets_escalated == 1


@dataclass
class AdapterWithSweep:
    source: FakeSource
    platform: Platform = Platform.ZENDESK
    gateway: Any = None
    dry_run: bool = False

    def sweep_source(self) -> FakeSource:
        return self.source


def test_the_sweep_source_is_found_through_the_form_wrapper() -> None:
    source = FakeSource([])
    adapter = AdapterWithSweep(source)
    assert sweep_source_of(FormAwareAdapter(adapter)) is source  # type: ignore[arg-type]
    assert sweep_source_of(object()) is None


@pytest.mark.parametrize("seconds", [0.0, 2.0])
def test_events_per_second(seconds: float) -> None:
    report = SweepReport(Platform.ZENDESK, "x", events_read=1000, seconds=seconds)
    assert report.events_per_second == (500.0 if seconds else 0.0)


def test_one_run_per_source_at_a_time(storage: SweepStorage, sleeps: Sleeps) -> None:
    source = FakeSource([SweepPage([breach("1")], 1, "c1")])
    with storage.locks.hold(Platform.ZENDESK, "~sweep:test_events") as other:
        assert other is not None
        report = run(storage, source, RecordingGateway(), sleeps)
    assert source.asked == [] and not report.complete
    assert report.errors == ["another zendesk sweep of test_events is running; not started"]
    assert run(storage, source, RecordingGateway(), sleeps).complete  # free again afterwards


# --- the store's batch reads and writes --------------------------------------------------------------------


def test_record_many_and_load_many_keep_each_tickets_history(storage: SweepStorage, sleeps: Sleeps) -> None:
    run(storage, FakeSource([SweepPage([breach("1", 60, "a")], 1, "c1")]), RecordingGateway(), sleeps)
    first = storage.escalations.load(Platform.ZENDESK, "1")
    assert first is not None
    later = [
        decide(POLICY, first, request_for("1", 10), NOW),
        decide(POLICY, None, request_for("2", 10), NOW),
    ]
    storage.escalations.record_many(later, dry_run=True)
    loaded = storage.escalations.load_many(Platform.ZENDESK, ["1", "2", "3", "1"])
    assert sorted(loaded) == ["1", "2"]
    assert [len(loaded[r].history) for r in ("1", "2")] == [2, 1]
    trail = storage.escalations.history(Platform.ZENDESK, "1")
    assert [(e.transition.delivery_id, e.dry_run) for e in trail] == [("a", False), ("again:1", True)]
    storage.escalations.record_many(later)  # the same decisions again add nothing
    assert len(storage.escalations.history(Platform.ZENDESK, "1")) == 2
    with pytest.raises(ValueError, match="one decision per ticket"):
        storage.escalations.record_many([later[1], later[1]])
    storage.escalations.record_many([])
    assert storage.escalations.load_many(Platform.ZENDESK, []) == {}


def request_for(ref: str, minutes_ago: int) -> EscalationRequest:
    return EscalationRequest(
        platform=Platform.ZENDESK, ticket_ref=ref, requested_by=SWEEP_ACTOR, channel=Channel.SLA_BREACH,
        reason=Reason.SLA_VIOLATION, received_at=NOW - timedelta(minutes=minutes_ago), ticket=ticket(ref),
        delivery_id=f"again:{ref}",
    )  # fmt: skip


# --- the per-ticket path under the real Jira client -------------------------------------------------------


def test_jira_a_breach_that_changes_nothing_reads_the_issue_and_records_nothing(new_runtime: NewRuntime) -> None:
    """The per-ticket path records through _RecordingStore: a no-change decision leaves the audit trail alone."""
    from tests.jira.conftest import NOW as JIRA_NOW
    from tests.sweep.test_jira_sweep import FakeJira, issue_json, sweep_settings

    def jira_breach(event: str, minutes_ago: int) -> Breach:
        return Breach("SUP-7", "Time to resolution", JIRA_NOW - timedelta(minutes=minutes_ago), event)

    def sweep_jira(runtime: Any, event: str, minutes_ago: int) -> SweepReport:
        source = FakeSource([SweepPage([jira_breach(event, minutes_ago)], 1, None)], platform=Platform.JIRA)
        adapter = runtime.adapters[Platform.JIRA]
        return run_sweep(
            source, policy=runtime.policy, gateway=adapter.gateway, store=runtime.escalations, cursors=runtime.cursors,
            locks=runtime.locks, clock=runtime.clock, sleep=lambda _: None,
        )  # fmt: skip

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = FakeJira(rsps)
        jira.add(issue_json("SUP-7"))
        runtime = new_runtime(sweep_settings(), clock=lambda: JIRA_NOW)
        first = sweep_jira(runtime, "jira-sla:first", 30)
        assert first.tickets_escalated == 1 and {"escalated", "sla_breached"} <= jira.labels("SUP-7")
        edits = len(jira.bodies("PUT", "/issue/SUP-7"))
        jira.log.clear()

        # Escalated and labelled: the issue is read, nothing is written, nothing recorded.
        again = sweep_jira(runtime, "jira-sla:second", 20)
        assert [c for c in jira.log if not c.startswith("GET /rest/api/2/issue/SUP-7")] == []
        assert "GET /rest/api/2/issue/SUP-7" in jira.log
        assert (again.already_handled, again.tickets_escalated, again.tickets_updated) == (1, 0, 0)
        assert len(jira.bodies("PUT", "/issue/SUP-7")) == edits
        history = runtime.escalations.history(Platform.JIRA, "SUP-7")
        assert [e.transition.delivery_id for e in history] == ["jira-sla:first"]

        # Someone took the label off: the next breach puts it back, and that is recorded.
        jira.issues["SUP-7"]["fields"]["labels"].remove("sla_breached")
        third = sweep_jira(runtime, "jira-sla:third", 10)
        assert jira.bodies("PUT", "/issue/SUP-7")[edits:] == [{"update": {"labels": [{"add": "sla_breached"}]}}]
        assert (third.tickets_updated, third.single_writes, third.already_handled) == (1, 1, 0)
        history = runtime.escalations.history(Platform.JIRA, "SUP-7")
        assert [(e.transition.delivery_id, e.transition.actions) for e in history][1:] == [
            ("jira-sla:third", (AddTags(("sla_breached",)),))
        ]
