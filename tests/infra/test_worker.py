"""The worker: parse → decide → apply → record, retries, failures, redrive, recovery, per-ticket order, SH4."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from integration.cli.ops import Runtime
from integration.model import SYSTEM, AddTags, AssignGroup, Decision, Platform, State, Transition
from integration.ports import Conflict, Delivery, PermanentError, TransientError
from integration.processing import Outcome, RetryPolicy
from integration.queue import HueyTicketLocks
from integration.store import DatabaseUnavailable, DeliveryStatus, StoredDelivery
from tests.infra.conftest import MakeRuntime, post, running_consumer, settled, wait_until
from tests.infra.fakes import T0, Clock, SignedAdapter, command_payload, request_payload

pytestmark = pytest.mark.timeout(120)


def stored(runtime: Runtime, row_id: int = 1) -> StoredDelivery:
    row = runtime.inbox.get(row_id)
    assert row is not None
    return row


def scheduled_in(runtime: Runtime) -> list[tuple[tuple[object, ...], float]]:
    """Jobs with an eta as (args, seconds from now until it); Huey holds them queued until a consumer sees them."""
    now = datetime.now(UTC).replace(tzinfo=None)  # Huey keeps naive UTC
    huey = runtime.tasks.huey
    return [(t.args, (t.eta - now).total_seconds()) for t in [*huey.pending(), *huey.scheduled()] if t.eta]


def test_request_is_decided_applied_and_recorded_in_one_go(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    post(client, request_payload("4016"), delivery_id="zd-1")

    assert runtime.tasks.run_pending() == 1

    row = stored(runtime)
    assert row.status is DeliveryStatus.PROCESSED and row.attempts == 1 and row.last_error is None
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED
    assert escalation.group == "Technical Support Team Leaders"
    [entry] = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert (entry.transition.rule, entry.transition.to_state, entry.transition.delivery_id) == (
        "LR5",
        State.ESCALATED,
        "zd-1",
    )
    assert entry.dry_run is True  # no credentials: planned, recorded, not written
    assert AssignGroup("Technical Support Team Leaders") in entry.transition.actions
    [(ref, actions, key)] = adapter.scripted.planned
    assert (ref, key) == ("4016", "zd-1:1")
    assert actions == entry.transition.actions


def test_live_adapter_records_transitions_as_applied(make_runtime: MakeRuntime, clock: Clock) -> None:
    adapter = SignedAdapter(dry_run=False)
    runtime = make_runtime(adapter, clock)
    post(runtime.create_app().test_client(), request_payload(), delivery_id="zd-live")
    runtime.tasks.run_pending()
    [entry] = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert entry.dry_run is False


def test_a_second_event_moves_the_same_escalation(client: FlaskClient, runtime: Runtime) -> None:
    post(client, request_payload("4016"), delivery_id="zd-1")
    post(client, command_payload("confirm", "4016"), delivery_id="zd-2")
    runtime.tasks.run_pending()

    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.CONFIRMED
    assert [e.transition.rule for e in runtime.escalations.history(Platform.ZENDESK, "4016")] == ["LR5", "LR7"]


def test_an_echo_is_ignored_with_its_reason(client: FlaskClient, runtime: Runtime) -> None:
    post(client, {"event": "ticket.echo", "ticket_ref": "4016"}, delivery_id="zd-echo")
    runtime.tasks.run_pending()
    row = stored(runtime)
    assert row.status is DeliveryStatus.IGNORED
    assert row.last_error == "our own write, echoed back"


def test_transient_error_is_retried_after_the_servers_retry_after(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    adapter.scripted.failures = [TransientError("429 Too Many Requests", retry_after=120)]
    post(client, request_payload(), delivery_id="zd-429")

    runtime.tasks.run_pending()

    row = stored(runtime)
    assert row.status is DeliveryStatus.RETRYING and row.attempts == 1
    assert row.next_attempt_at == clock.now + timedelta(seconds=120)
    assert row.last_error is not None and "429 Too Many Requests" in row.last_error
    [(args, delay)] = scheduled_in(runtime)
    assert args == (1,)
    assert 118 <= delay <= 120  # Huey's eta, not slept through

    clock.advance(seconds=121)
    runtime.tasks.process_task.call_local(1)  # the scheduled job, run when due

    assert stored(runtime).status is DeliveryStatus.PROCESSED
    assert [retry for _, _, retry in adapter.scripted.calls] == [False, True]  # the gateway checks before re-applying
    assert len(adapter.scripted.planned) == 1


@pytest.mark.parametrize(
    "failure",
    [
        DatabaseUnavailable("UPDATE deliveries", {}, Exception("database is locked")),
        TransientError("503 while sending Authorization: Bearer sk-live-123456"),
    ],
    ids=["the database away", "a credential in the error"],
)
def test_a_retry_is_scheduled_with_its_reason_and_never_a_credential(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, failure: Exception
) -> None:
    # A database outage is worth another go, like a 503 (not a failed delivery); and what the inbox keeps
    # of the error, shown by `tierup inbox`, never holds a credential the error text carried.
    adapter.scripted.failures = [failure]
    post(client, request_payload(), delivery_id="zd-retry")
    runtime.tasks.run_pending()
    row = stored(runtime)
    assert row.status is DeliveryStatus.RETRYING and row.last_error is not None
    assert "sk-live-123456" not in row.last_error and type(failure).__name__ in row.last_error


def test_backoff_grows_without_retry_after(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    adapter.scripted.failures = [TransientError("502"), TransientError("timed out")]
    post(client, request_payload(), delivery_id="zd-5xx")
    runtime.tasks.run_pending()
    clock.advance(seconds=6)
    runtime.tasks.process_task.call_local(1)

    delays = sorted(delay for _, delay in scheduled_in(runtime))
    assert len(delays) == 2
    assert 3 <= delays[0] <= 5 and 8 <= delays[1] <= 10  # 5 s, then 10 s
    assert stored(runtime).attempts == 2


def test_a_retry_that_comes_early_keeps_its_appointment(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    adapter.scripted.failures = [TransientError("429", retry_after=60)]
    post(client, request_payload(), delivery_id="zd-early")
    runtime.tasks.run_pending()

    clock.advance(seconds=30)
    assert runtime.worker.process(1) == [(1, Outcome.WAITING)]
    assert stored(runtime).status is DeliveryStatus.RETRYING
    assert len(adapter.scripted.calls) == 1


def test_a_conflict_that_persists_is_retried(client: FlaskClient, runtime: Runtime, adapter: SignedAdapter) -> None:
    adapter.scripted.failures = [Conflict("409"), Conflict("409"), Conflict("409")]
    post(client, request_payload(), delivery_id="zd-409")
    runtime.tasks.run_pending()
    row = stored(runtime)
    assert row.status is DeliveryStatus.RETRYING
    assert row.last_error is not None and "kept changing" in row.last_error


def test_transient_failures_give_up_after_the_last_attempt(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    runtime.worker.retry = RetryPolicy(max_attempts=2)
    adapter.scripted.failures = [TransientError("503"), TransientError("503 again")]
    post(client, request_payload(), delivery_id="zd-503")
    runtime.tasks.run_pending()
    clock.advance(minutes=1)
    runtime.tasks.process_task.call_local(1)

    row = stored(runtime)
    assert row.status is DeliveryStatus.FAILED
    assert row.last_error == "gave up after 2 attempts: TransientError: 503 again"


def test_permanent_error_fails_with_its_reason_and_redrive_runs_it_again(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    adapter.scripted.failures = [PermanentError("422 group 'Technical Support Team Leaders' does not exist")]
    post(client, request_payload(), delivery_id="zd-422")
    runtime.tasks.run_pending()

    row = stored(runtime)
    assert row.status is DeliveryStatus.FAILED
    assert row.last_error == "PermanentError: 422 group 'Technical Support Team Leaders' does not exist"
    assert runtime.tasks.huey.scheduled_count() == 0  # no retry for a permanent failure
    assert [r.id for r in runtime.inbox.recent(statuses=[DeliveryStatus.FAILED])] == [1]

    assert runtime.inbox.requeue(failed=True, now=runtime.clock()) == [1]
    runtime.tasks.enqueue(1)
    runtime.tasks.run_pending()

    row = stored(runtime)
    assert row.status is DeliveryStatus.PROCESSED and row.attempts == 2 and row.last_error is None
    assert adapter.scripted.calls[-1] == ("4016", "zd-422:1", True)


def test_unreadable_stored_payload_fails_permanently(client: FlaskClient, runtime: Runtime) -> None:
    post(client, {"event": "escalation.requested", "ticket_ref": "4016", "input": {"platform": "zendesk"}}, "zd-bad")
    runtime.tasks.run_pending()
    row = stored(runtime)
    assert row.status is DeliveryStatus.FAILED
    assert row.last_error is not None and row.last_error.startswith("PayloadError: input:")


def test_an_unexpected_error_fails_the_delivery_not_the_worker(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    adapter.scripted.failures = [ZeroDivisionError("bug in a gateway")]
    post(client, request_payload("1"), delivery_id="zd-bug")
    post(client, request_payload("2"), delivery_id="zd-fine")
    runtime.tasks.run_pending()
    assert stored(runtime, 1).status is DeliveryStatus.FAILED
    assert stored(runtime, 1).last_error == "unexpected ZeroDivisionError: bug in a gateway"
    assert stored(runtime, 2).status is DeliveryStatus.PROCESSED


def test_a_delivery_for_a_platform_not_configured_fails_visibly(runtime: Runtime) -> None:
    recorded = runtime.inbox.record(
        Delivery(Platform.JIRA, "jira-1", {}, b"{}", T0), kind="jira:issue_updated", ticket_ref="SUP-1"
    )
    runtime.tasks.enqueue(recorded.id)
    runtime.tasks.run_pending()
    assert stored(runtime, recorded.id).last_error == "jira is not configured on this worker"


def test_a_duplicate_job_leaves_a_delivery_in_progress_alone(client: FlaskClient, runtime: Runtime) -> None:
    post(client, {"event": "ticket.echo"}, delivery_id="zd-no-ticket")  # no ticket: no lock to serialise on
    assert runtime.inbox.claim(1, runtime.clock()) is not None  # another worker has it

    assert runtime.worker.process(1) == [(1, Outcome.SKIPPED)]
    assert stored(runtime).status is DeliveryStatus.PROCESSING and stored(runtime).attempts == 1


def test_busy_ticket_comes_back_later_instead_of_blocking(client: FlaskClient, runtime: Runtime) -> None:
    post(client, request_payload(), delivery_id="zd-busy")
    runtime.tasks.huey.dequeue()  # the job, taken by this test instead of a consumer

    with runtime.locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is not None
        assert runtime.worker.process(1) == [(1, Outcome.BUSY)]

    assert stored(runtime).status is DeliveryStatus.QUEUED
    [(args, delay)] = scheduled_in(runtime)
    assert args == (1,) and 0 < delay <= 1.0
    assert runtime.worker.process(1) == [(1, Outcome.PROCESSED)]


def test_an_event_naming_another_ticket_waits_for_that_tickets_lock(
    client: FlaskClient, runtime: Runtime, clock: Clock
) -> None:
    # An escalation email arrives as ticket 9100 and escalates the ticket it names, 4016.
    post(client, {**request_payload("4016", channel="email"), "ticket_ref": "9100"}, delivery_id="zd-mail")
    runtime.tasks.huey.dequeue()

    with runtime.locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is not None  # a macro delivery on 4016 is being worked on
        assert runtime.worker.process(1) == [(1, Outcome.RETRYING)]
        assert runtime.escalations.load(Platform.ZENDESK, "4016") is None  # nothing decided meanwhile

    row = stored(runtime)
    assert row.status is DeliveryStatus.RETRYING and "ticket 4016 is being worked on" in (row.last_error or "")
    [(args, delay)] = scheduled_in(runtime)
    assert args == (1,) and 0 < delay <= 1.0
    clock.advance(seconds=2)
    assert runtime.worker.process(1) == [(1, Outcome.PROCESSED)]
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED


def test_an_event_naming_another_ticket_waits_for_that_tickets_earlier_deliveries(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    clock.advance(hours=2)
    post(client, request_payload("4016"), delivery_id="zd-request")  # 1: escalated
    runtime.tasks.run_pending()
    adapter.scripted.failures = [TransientError("429", retry_after=60)]
    post(client, command_payload("cancel", "4016"), delivery_id="zd-cancel")  # 2: the lead cancels; 429
    runtime.tasks.run_pending()
    assert stored(runtime, 2).status is DeliveryStatus.RETRYING
    # 3: an escalation email (its own ticket 9100) naming 4016, sent after the cancel.
    email = {**request_payload("4016", channel="email", at=T0 + timedelta(hours=1, minutes=30)), "ticket_ref": "9100"}
    post(client, email, delivery_id="zd-mail")
    runtime.tasks.huey.dequeue()

    assert runtime.worker.process(3) == [(3, Outcome.WAITING)]  # behind 4016's cancel, not ahead of it
    waiting = stored(runtime, 3)
    assert (waiting.status, waiting.attempts) == (DeliveryStatus.RETRYING, 0)  # waiting is not a failed attempt
    assert "waiting for delivery 2 of ticket 4016" in (waiting.last_error or "")
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED  # nothing decided from it yet

    clock.advance(seconds=61)
    assert runtime.worker.process(2) == [(2, Outcome.PROCESSED)]  # the cancel, applied
    clock.advance(seconds=2)
    assert runtime.worker.process(3) == [(3, Outcome.PROCESSED)]
    history = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert [e.transition.delivery_id for e in history] == ["zd-request", "zd-cancel", "zd-mail"]


def test_a_decision_another_worker_overtook_is_not_recorded(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    post(client, request_payload("4016"), delivery_id="zd-1")
    runtime.tasks.run_pending()
    post(client, command_payload("confirm", "4016"), delivery_id="zd-2")
    runtime.tasks.huey.dequeue()
    plain_apply = adapter.scripted.apply

    def meanwhile(*args: Any, **kwargs: Any) -> None:
        # While this worker writes the confirm, another (this one having stalled past its lease)
        # records the lead's cancel of the same escalated ticket.
        current = runtime.escalations.load(Platform.ZENDESK, "4016")
        assert current is not None
        step = Transition(
            at=T0 + timedelta(hours=1), event="cancel", from_state=State.ESCALATED, to_state=State.CANCELLED,
            actor="900", rule="LR6", why="cancelled", actions=(), delivery_id="zd-3",
        )  # fmt: skip
        moved = replace(current, state=State.CANCELLED, history=(*current.history, step))
        runtime.escalations.record(Decision(escalation=moved, transition=step, target_ref="4016"))
        plain_apply(*args, **kwargs)

    adapter.scripted.apply = meanwhile  # type: ignore[method-assign]
    assert runtime.worker.process(2) == [(2, Outcome.RETRYING)]  # still its own: decided again later
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.CANCELLED  # the other's record stands
    history = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert [e.transition.delivery_id for e in history] == ["zd-1", "zd-3"]
    assert "moved on since it was read" in (stored(runtime, 2).last_error or "")


def test_one_job_runs_the_tickets_earlier_deliveries_first(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    post(client, request_payload("4016"), delivery_id="zd-a")
    post(client, command_payload("confirm", "4016"), delivery_id="zd-b")
    post(client, request_payload("777"), delivery_id="zd-other-ticket")

    # The job of the second delivery runs first: it does the first one before its own.
    assert runtime.worker.process(2) == [(1, Outcome.PROCESSED), (2, Outcome.PROCESSED)]
    assert adapter.parsed == ["zd-a", "zd-b"]
    assert runtime.worker.process(1) == [(1, Outcome.SKIPPED)]
    assert stored(runtime, 3).status is DeliveryStatus.QUEUED  # another ticket: not its business


def test_a_delivery_waiting_for_a_retry_holds_back_the_later_ones(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    adapter.scripted.failures = [TransientError("429", retry_after=30)]
    post(client, request_payload("4016"), delivery_id="zd-a")
    post(client, command_payload("confirm", "4016"), delivery_id="zd-b")
    runtime.tasks.run_pending()

    assert stored(runtime, 1).status is DeliveryStatus.RETRYING
    assert stored(runtime, 2).status is DeliveryStatus.QUEUED

    clock.advance(seconds=31)
    runtime.tasks.process_task.call_local(1)
    assert stored(runtime, 1).status is DeliveryStatus.PROCESSED
    assert stored(runtime, 2).status is DeliveryStatus.PROCESSED
    assert adapter.parsed == ["zd-a", "zd-a", "zd-b"]


# --- crash recovery ------------------------------------------------------------------------


def test_deliveries_left_in_flight_by_a_killed_worker_run_again_on_restart(
    make_runtime: MakeRuntime, adapter: SignedAdapter, clock: Clock
) -> None:
    before = make_runtime(adapter, clock)
    post(before.create_app().test_client(), request_payload(), delivery_id="zd-crash")
    # The worker dequeued the job, claimed the delivery and wrote to the helpdesk: then SIGKILL.
    before.tasks.huey.dequeue()
    assert before.inbox.claim(1, clock.now) is not None
    adapter.scripted.calls.append(("4016", "zd-crash:1", False))
    dead = HueyTicketLocks(before.tasks.huey, lease_seconds=300, clock=lambda: clock.now.timestamp() - 3600)
    assert dead._acquire(dead.key(Platform.ZENDESK, "4016"), "killed-worker")  # never released

    clock.advance(seconds=301)  # the lease is over
    after = make_runtime(adapter, clock)
    assert after.worker.recover_in_flight() == [1]
    row = stored(after)
    assert row.status is DeliveryStatus.QUEUED
    assert row.last_error is not None and "stopped in the middle" in row.last_error

    after.tasks.run_pending()

    row = stored(after)
    assert row.status is DeliveryStatus.PROCESSED and row.attempts == 2
    assert adapter.scripted.calls[-1] == ("4016", "zd-crash:1", True)  # checked before writing again
    assert not after.locks.is_locked(Platform.ZENDESK, "4016")


def test_a_job_slower_than_its_lease_keeps_its_delivery_and_its_ticket(make_runtime: MakeRuntime) -> None:
    # A live worker waiting on a slow helpdesk renews its leases: recovery must not re-queue its
    # delivery, nor another worker break its ticket lock, and it runs once.
    adapter = SignedAdapter()
    runtime = make_runtime(adapter, TIERUP_LEASE_SECONDS="0.6")
    post(runtime.create_app().test_client(), request_payload("4016"), delivery_id="zd-1")
    in_apply, release = threading.Event(), threading.Event()
    plain_apply = adapter.scripted.apply

    def slow_apply(*args: Any, **kwargs: Any) -> None:
        in_apply.set()
        release.wait(30)
        plain_apply(*args, **kwargs)

    adapter.scripted.apply = slow_apply  # type: ignore[method-assign]
    job = threading.Thread(target=runtime.worker.process, args=(1,))
    job.start()
    try:
        assert in_apply.wait(30)
        time.sleep(1.5)  # two and a half leases
        assert runtime.worker.recover_in_flight() == []
        with runtime.locks.hold(Platform.ZENDESK, "4016") as other:
            assert other is None
    finally:
        release.set()
        job.join(30)
    row = stored(runtime)
    assert (row.status, row.attempts) == (DeliveryStatus.PROCESSED, 1)
    assert [key for _, key, _ in adapter.scripted.calls] == ["zd-1:1"]
    assert not runtime.locks.is_locked(Platform.ZENDESK, "4016")


def test_recovery_leaves_deliveries_within_their_lease_alone(
    client: FlaskClient, runtime: Runtime, clock: Clock
) -> None:
    post(client, request_payload("1"), delivery_id="zd-young")
    post(client, request_payload("2"), delivery_id="zd-busy")
    runtime.inbox.claim(2, clock.now)

    clock.advance(seconds=299)
    assert runtime.worker.recover_in_flight() == []
    clock.advance(seconds=2)
    assert runtime.worker.recover_in_flight() == [1, 2]
    assert runtime.worker.recover_in_flight() == []  # recovered once, not on every sweep


def test_recovery_queues_a_retry_whose_job_was_lost(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    adapter.scripted.failures = [TransientError("429", retry_after=10)]
    post(client, request_payload(), delivery_id="zd-lost")
    runtime.tasks.run_pending()
    runtime.tasks.huey.storage.flush_schedule()  # the scheduled retry is gone

    clock.advance(seconds=10 + 301)
    assert runtime.worker.recover_in_flight() == [1]
    runtime.tasks.run_pending()
    assert stored(runtime).status is DeliveryStatus.PROCESSED


def test_a_worker_that_lost_its_ticket_lock_leaves_the_later_deliveries(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    for i in range(3):
        post(client, command_payload("contact", "4016", T0 + timedelta(minutes=i)) if i else request_payload(),
             delivery_id=f"zd-{i}")  # fmt: skip
    locks = runtime.worker.locks
    assert isinstance(locks, HueyTicketLocks)
    key = locks.key(Platform.ZENDESK, "4016")
    parse = adapter.parse

    def stall_then_parse(delivery: Delivery) -> object:
        # The worker stalls past its lease on its first delivery; another worker breaks the lock and takes it.
        locks.huey.storage.put_data(key, b'{"owner": "another-worker", "expires": 9999999999}')
        return parse(delivery)

    adapter.parse = stall_then_parse  # type: ignore[method-assign]
    outcomes = runtime.worker.process(1)

    assert outcomes == [(1, Outcome.PROCESSED)]  # the one it had started; not the two after it
    assert [stored(runtime, n).status for n in (2, 3)] == [DeliveryStatus.QUEUED] * 2
    assert locks.is_locked(Platform.ZENDESK, "4016")  # the new holder's lock is left alone


# --- per-ticket order under a real consumer ---------------------------------------------------


def _twenty_in_order(runtime: Runtime, adapter: SignedAdapter) -> None:
    client = runtime.create_app().test_client()
    with running_consumer(runtime.tasks, workers=4):
        for i in range(20):
            at = T0 + timedelta(minutes=i)
            payload = request_payload("4016", at) if i == 0 else command_payload("contact", "4016", at)
            assert post(client, payload, delivery_id=f"zd-{i:02d}").status_code == 202
        wait_until(settled(runtime, 20), what="20 deliveries to be processed")

    expected = [f"zd-{i:02d}" for i in range(20)]
    assert adapter.parsed == expected
    assert [r.status for r in reversed(runtime.inbox.recent())] == [DeliveryStatus.PROCESSED] * 20
    history = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert [e.transition.delivery_id for e in history] == expected


def test_twenty_events_for_one_ticket_run_in_arrival_order(make_runtime: MakeRuntime, clock: Clock) -> None:
    adapter = SignedAdapter()
    _twenty_in_order(make_runtime(adapter, clock), adapter)


@pytest.mark.scaleout
def test_twenty_events_in_arrival_order_on_redis(make_runtime: MakeRuntime, clock: Clock, redis_url: str) -> None:
    adapter = SignedAdapter()
    _twenty_in_order(make_runtime(adapter, clock, REDIS_URL=redis_url), adapter)


@pytest.mark.scaleout
def test_twenty_events_in_arrival_order_on_postgresql_and_redis(
    make_runtime: MakeRuntime, clock: Clock, redis_url: str, postgres_url: str
) -> None:
    adapter = SignedAdapter()
    _twenty_in_order(make_runtime(adapter, clock, REDIS_URL=redis_url, DATABASE_URL=postgres_url), adapter)


# --- SH4: the deadline check ----------------------------------------------------------------


def test_sh4_missed_first_contact_goes_one_level_up_once(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    post(client, request_payload("4016"), delivery_id="zd-1")
    runtime.tasks.run_pending()
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.first_contact_due is not None

    clock.now = escalation.first_contact_due - timedelta(minutes=1)
    assert runtime.worker.check_deadlines() == []

    clock.now = escalation.first_contact_due + timedelta(minutes=1)
    [decision] = runtime.worker.check_deadlines()

    assert isinstance(decision, Decision) and decision.state is State.LEVEL_2
    after = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert after is not None and after.level == 2 and after.group == "Technical Support Management"
    last = runtime.escalations.history(Platform.ZENDESK, "4016")[-1]
    assert (last.transition.event, last.transition.actor, last.transition.rule) == ("deadline_missed", SYSTEM.id, "SH4")
    assert AddTags(("escalation_level_2",)) in last.transition.actions
    assert runtime.worker.check_deadlines() == []  # once


def escalated_with_a_promise(client: FlaskClient, runtime: Runtime) -> datetime:
    """Ticket 4016 escalated (LR5) by a first delivery; the first-contact time promised."""
    post(client, request_payload("4016"), delivery_id="zd-1")
    runtime.tasks.run_pending()
    due = runtime.escalations.load(Platform.ZENDESK, "4016").first_contact_due  # type: ignore[union-attr]
    assert due is not None
    return due


def test_sh4_at_the_top_level_the_missed_deadline_is_noted_once(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    due = escalated_with_a_promise(client, runtime)
    clock.now = due + timedelta(minutes=1)
    assert len(runtime.worker.check_deadlines()) == 1  # level 2
    # Level 2 confirms (a new promise, from now) and misses it too: no level 3 exists.
    post(client, command_payload("confirm", "4016", clock.now), delivery_id="zd-2")
    runtime.tasks.run_pending()
    promise = runtime.escalations.load(Platform.ZENDESK, "4016").first_contact_due  # type: ignore[union-attr]
    assert promise is not None and promise > clock.now
    clock.now = promise + timedelta(minutes=1)

    assert len(runtime.worker.check_deadlines()) == 1
    assert runtime.worker.check_deadlines() == []
    assert runtime.worker.check_deadlines() == []
    notes = [
        e for e in runtime.escalations.history(Platform.ZENDESK, "4016") if e.transition.event == "deadline_missed"
    ]
    assert len(notes) == 2


def test_sh4_skips_a_ticket_another_job_is_working_on(client: FlaskClient, runtime: Runtime, clock: Clock) -> None:
    due = escalated_with_a_promise(client, runtime)
    clock.now = due + timedelta(minutes=1)
    with runtime.locks.hold(Platform.ZENDESK, "4016"):
        assert runtime.worker.check_deadlines() == []
    assert len(runtime.worker.check_deadlines()) == 1


def test_sh4_waits_for_a_delivery_of_the_ticket_waiting_for_its_retry(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter, clock: Clock
) -> None:
    # A lead's cancel got a 429 before the promise ran out. The deadline check went first, then
    # the cancel's retry was ignored as older than the level-2 move: the lead's cancel was lost.
    due = escalated_with_a_promise(client, runtime)
    clock.now = due - timedelta(minutes=5)
    adapter.scripted.failures = [TransientError("429", retry_after=600)]
    post(client, command_payload("cancel", "4016", clock.now), delivery_id="zd-cancel")
    runtime.tasks.run_pending()
    assert stored(runtime, 2).status is DeliveryStatus.RETRYING

    clock.now = due + timedelta(minutes=1)
    assert runtime.worker.check_deadlines() == []  # the cancel goes first
    clock.now = due + timedelta(minutes=6)
    assert runtime.worker.process(2) == [(2, Outcome.PROCESSED)]
    assert runtime.escalations.load(Platform.ZENDESK, "4016").state is State.CANCELLED  # type: ignore[union-attr]
    assert runtime.worker.check_deadlines() == []  # nothing left to miss


def test_sh4_deadline_check_is_registered_as_a_periodic_task(runtime: Runtime) -> None:
    names = {t.name for t in runtime.tasks.huey._registry.periodic_tasks}
    assert names == {"tierup.deadline_check", "tierup.recover_in_flight"}
