"""The worker: a stored delivery goes through parse → decide → apply → record, one ticket at a time.

Per-ticket order: every delivery row has an increasing id. A job takes its ticket's lock and
then runs all of that ticket's pending deliveries in id order, so whichever job gets the
lock first does the earlier ones; a job that finds the lock taken comes back shortly. A
delivery waiting for a retry holds back the later ones of its ticket, and so does one a
dead worker left processing, until in-flight recovery queues it again: at once when the
worker was a process on this machine (integration.liveness), else after the lease.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from integration.liveness import has_ended, this_process
from integration.logs import log_context
from integration.model import (
    SYSTEM,
    Action,
    Command,
    Decision,
    Escalation,
    Ignored,
    Platform,
    ReviewCommand,
    State,
    TicketSnapshot,
)
from integration.policy import Policy
from integration.ports import (
    Conflict,
    Delivery,
    Gateway,
    GatewayError,
    PayloadError,
    PermanentError,
    PlatformAdapter,
    TransientError,
    utcnow,
)
from integration.service import handle_event
from integration.store import (
    PENDING_STATUSES,
    DatabaseUnavailable,
    DeliveryStatus,
    Inbox,
    SqlEscalationStore,
    StaleDecision,
    StoredDelivery,
)

log = logging.getLogger("tierup.worker")


class Outcome(StrEnum):
    """What one run did with one delivery."""

    PROCESSED = "processed"
    IGNORED = "ignored"
    RETRYING = "retrying"
    FAILED = "failed"
    SKIPPED = "skipped"  # not pending any more: an earlier job of its ticket ran it
    BUSY = "busy"  # its ticket's lock was taken: the job comes back shortly
    WAITING = "waiting"  # a retry that is not due yet


class TicketLock(Protocol):
    def refresh(self) -> bool:
        """Extend the lease (the holder is still working); False when it ran out and another holder took over."""
        ...


class TicketLocks(Protocol):
    """Mutual exclusion per ticket, across threads, processes and machines."""

    def hold(self, platform: Platform, ticket_ref: str) -> AbstractContextManager[TicketLock | None]:
        """The lock while the block runs, or None when someone else holds it."""
        ...


Schedule = Callable[[int, float], None]  # (delivery row id, delay in seconds); 0 = now


class WorkerMetrics(Protocol):
    def delivery_done(self, platform: Platform, outcome: str, seconds: float) -> None: ...

    def api_call(self, platform: Platform, operation: str, status: str) -> None: ...


class NoMetrics:
    """Counts nothing (tests, commands that do not serve /metrics)."""

    def delivery_done(self, platform: Platform, outcome: str, seconds: float) -> None:
        pass

    def api_call(self, platform: Platform, operation: str, status: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for transient failures; a server's Retry-After wins when it says more."""

    base_seconds: float = 5.0
    factor: float = 2.0
    max_seconds: float = 15 * 60.0
    max_attempts: int = 8
    max_retry_after: float = 6 * 3600.0  # a Retry-After beyond this is a typo or an outage page

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.base_seconds * self.factor ** max(attempt - 1, 0), self.max_seconds)
        if retry_after is not None and retry_after > 0:
            # Not before the server said, and not sooner than the backoff either: a short Retry-After
            # repeated through an outage would spend every attempt within seconds.
            return max(min(retry_after, self.max_retry_after), backoff)
        return backoff


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, PermanentError):
        return "permanent"
    return "error"


@dataclass
class InstrumentedGateway:
    """A gateway that counts its calls by platform, operation and outcome for /metrics."""

    inner: Gateway
    metrics: WorkerMetrics
    platform: Platform = field(init=False)

    def __post_init__(self) -> None:
        self.platform = self.inner.platform

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        try:
            found = self.inner.snapshot(ref, hint)
        except Exception as exc:
            self.metrics.api_call(self.platform, "snapshot", _status_of(exc))
            raise
        self.metrics.api_call(self.platform, "snapshot", "ok" if found is not None else "not_found")
        return found

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        try:
            self.inner.apply(ref, actions, snapshot=snapshot, key=key, retry=retry)
        except Exception as exc:
            self.metrics.api_call(self.platform, "apply", _status_of(exc))
            raise
        self.metrics.api_call(self.platform, "apply", "ok")


@dataclass
class DeliveryStore:
    """The EscalationStore for one delivery: saving a decision also marks the delivery processed."""

    escalations: SqlEscalationStore
    delivery_row_id: int | None
    dry_run: bool
    saved: bool = False

    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None:
        return self.escalations.load(platform, ticket_ref)

    def save(self, decision: Decision) -> None:
        self.escalations.record(decision, delivery_row_id=self.delivery_row_id, dry_run=self.dry_run)
        self.saved = True


def deadline_already_handled(escalation: Escalation) -> bool:
    """True when the current first-contact promise already went through the deadline check.

    A promise is made when the escalation enters escalated or confirmed; a deadline_missed
    after the latest of those means this promise was handled, so level-up (or, at the top
    level, the note saying there is none) happens once per promise, not once a minute.
    """
    handled = False
    for t in escalation.history:
        if t.event == Command.DEADLINE_MISSED.value:
            handled = True
        elif t.to_state in _PROMISING and t.from_state != t.to_state:
            handled = False
    return handled


_PROMISING = frozenset({State.ESCALATED, State.CONFIRMED})


class _TicketBusy(TransientError):
    """A ticket another worker is running: worth another go after `retry_after`, not after a backoff."""


class _Behind(Exception):
    """The ticket an event names has deliveries that arrived before it and are still to run."""

    def __init__(self, ticket_ref: str, earlier: StoredDelivery) -> None:
        super().__init__(f"ticket {ticket_ref} has delivery {earlier.id} to run first")
        self.ticket_ref, self.earlier = ticket_ref, earlier


class _Leases:
    """What a running job holds on lease: its delivery's claim and the ticket locks it took."""

    def __init__(self, claim: Callable[[], bool]) -> None:
        self._claim = claim
        self._locks: list[TicketLock] = []
        self._guard = threading.Lock()

    def add(self, lock: TicketLock) -> None:
        with self._guard:
            self._locks.append(lock)

    def discard(self, lock: TicketLock) -> None:
        with self._guard:
            if lock in self._locks:
                self._locks.remove(lock)

    def renew(self) -> bool:
        """Extend every lease; False when a ticket lock was lost (another worker took it over).

        The claim's answer is not part of it: the job may have just marked its delivery done.
        """
        with self._guard:
            locks = list(self._locks)
        self._claim()
        return all([lock.refresh() for lock in locks])


class Worker:
    """Runs stored deliveries, the deadline check and in-flight recovery."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        escalations: SqlEscalationStore,
        adapters: Mapping[Platform, PlatformAdapter],
        policy: Policy,
        locks: TicketLocks,
        schedule: Schedule,
        clock: Callable[[], datetime] = utcnow,
        metrics: WorkerMetrics | None = None,
        retry: RetryPolicy | None = None,
        lock_retry_seconds: float = 1.0,
        lease_seconds: float = 300.0,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.inbox = inbox
        self.escalations = escalations
        self.adapters = adapters
        self.policy = policy
        self.locks = locks
        self.schedule = schedule
        self.clock = clock
        self.metrics: WorkerMetrics = metrics or NoMetrics()
        self.retry = retry or RetryPolicy()
        self.lock_retry_seconds = lock_retry_seconds
        self.lease_seconds = lease_seconds
        # Errors are kept in the inbox and shown by `tierup inbox`: scrub credentials like the logs do.
        self.redact = redact

    # --- deliveries -----------------------------------------------------------------------

    def process(self, row_id: int) -> list[tuple[int, Outcome]]:
        """Run delivery `row_id` (and, holding its ticket's lock, every earlier pending one of that ticket)."""
        row = self.inbox.get(row_id)
        if row is None:
            log.warning("delivery row %s is not in the inbox", row_id)
            return [(row_id, Outcome.SKIPPED)]
        if row.status not in PENDING_STATUSES:
            return [(row_id, Outcome.SKIPPED)]
        if row.ticket_ref is None:
            return [(row.id, self._run_one(row, own=True))]
        with self.locks.hold(row.platform, row.ticket_ref) as lock:
            if lock is None:
                # Another job is working on this ticket; come back rather than block a consumer thread.
                self.schedule(row.id, self.lock_retry_seconds)
                return [(row.id, Outcome.BUSY)]
            return self._drain(row, lock)

    def _drain(self, row: StoredDelivery, lock: TicketLock) -> list[tuple[int, Outcome]]:
        assert row.ticket_ref is not None
        done: list[tuple[int, Outcome]] = []
        seen: set[int] = set()
        while True:
            head = self.inbox.next_for_ticket(row.platform, row.ticket_ref)
            if head is None or head.id in seen:
                break
            seen.add(head.id)
            outcome = self._run_one(head, own=head.id == row.id, lock=lock)
            done.append((head.id, outcome))
            if outcome in (Outcome.RETRYING, Outcome.WAITING, Outcome.SKIPPED):
                # Keep the ticket's order: later deliveries wait until this one is through.
                break
            if not lock.refresh():
                # This worker stalled past its lease and another one took the ticket: the later
                # deliveries are the new holder's, or two workers would run one ticket at once.
                log.warning("lost the lock on ticket %s (lease ran out); leaving its later deliveries", row.ticket_ref)
                break
        return done

    def _run_one(self, row: StoredDelivery, *, own: bool, lock: TicketLock | None = None) -> Outcome:
        now = self.clock()
        if row.status is DeliveryStatus.RETRYING and row.next_attempt_at and row.next_attempt_at > now:
            if own:
                # This job came early (clock skew, a redundant job): keep the retry's appointment.
                self.schedule(row.id, (row.next_attempt_at - now).total_seconds())
            return Outcome.WAITING
        by = this_process()
        claimed = self.inbox.claim(row.id, now, by=by)
        if claimed is None:
            return Outcome.SKIPPED
        leases = _Leases(lambda: self.inbox.keep_claim(claimed.id, by, self.clock()))
        if lock is not None:
            leases.add(lock)
        with log_context(delivery_id=claimed.delivery_id, ticket_ref=claimed.ticket_ref), self._kept(leases):
            started = time.perf_counter()
            outcome = self._execute(claimed, leases)
            self.metrics.delivery_done(claimed.platform, outcome.value, time.perf_counter() - started)
            return outcome

    @contextmanager
    def _kept(self, leases: _Leases) -> Iterator[None]:
        """Renew the job's leases while it runs: a slow helpdesk must not make a live worker's job look dead.

        Without it a job longer than the lease (a few calls each waiting out their timeout)
        was re-queued by recovery and its ticket lock broken while it was still writing, and
        two workers ran one ticket. Renewed every third of the lease, for at most ten leases:
        a job stuck longer than that is given up to recovery as before.
        """
        stop = threading.Event()
        interval = self.lease_seconds / 3
        context = contextvars.copy_context()  # its log lines carry the delivery id too

        def beat() -> None:
            for _ in range(30):
                if stop.wait(interval):
                    return
                try:
                    kept = context.run(leases.renew)
                except Exception:  # the database or the queue's storage away for a moment: try again
                    log.warning("could not renew this job's leases", exc_info=True)
                    continue
                if not kept:
                    log.warning("lost this job's ticket lock to another worker while it was still running")
                    return

        thread = threading.Thread(target=beat, name="tierup-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _execute(self, row: StoredDelivery, leases: _Leases) -> Outcome:
        adapter = self.adapters.get(row.platform)
        if adapter is None:
            return self._fail(row, f"{row.platform.value} is not configured on this worker")
        try:
            parsed = adapter.parse(self._in_arrival_order(row))
            if isinstance(parsed, Ignored):
                self.inbox.mark_ignored(row.id, parsed.reason, self.clock())
                log.info("ignored: %s", parsed.reason)
                return Outcome.IGNORED
            # The transition key comes from the delivery id: a re-run must present the same one.
            event = parsed if parsed.delivery_id else replace(parsed, delivery_id=row.delivery_id)
            store = DeliveryStore(self.escalations, row.id, dry_run=adapter.dry_run)
            with self._named_ticket(row, event.ticket_ref, leases):
                result = handle_event(
                    event,
                    policy=self.policy,
                    gateway=InstrumentedGateway(adapter.gateway, self.metrics),
                    store=store,
                    clock=self.clock,
                    retry=row.attempts > 1,
                )
        except _Behind as behind:
            return self._put_off(row, behind)
        except StaleDecision as exc:
            # Another worker recorded a decision on this ticket since this one read it (it ran the
            # ticket while this one stalled past its lease): its record stands.
            log.warning("decision not recorded: %s", exc)
            if self.inbox.keep_claim(row.id, this_process(), self.clock()):
                return self._retry_later(row, exc)  # still this worker's delivery: decided again on what is now
            return Outcome.SKIPPED  # run by that worker too: left as it has it
        except (TransientError, Conflict) as exc:
            return self._retry_later(row, exc)
        except DatabaseUnavailable as exc:
            # The database went away or stayed locked: worth another go, like a 503.
            return self._retry_later(row, exc)
        except (PermanentError, PayloadError) as exc:
            return self._fail(row, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("unexpected error while processing")
            return self._fail(row, f"unexpected {type(exc).__name__}: {exc}")
        if isinstance(result, Ignored):
            self.inbox.mark_ignored(row.id, result.reason, self.clock())
            log.info("ignored: %s", result.reason)
            return Outcome.IGNORED
        if not store.saved:
            self.inbox.mark_processed(row.id, self.clock())
        mode = "planned (dry run)" if adapter.dry_run else "applied"
        log.info(
            "%s: %s -> %s, %d actions %s",
            result.rule,
            result.transition.from_state or "new",
            result.state,
            len(result.actions),
            mode,
        )
        return Outcome.PROCESSED

    @contextmanager
    def _named_ticket(self, row: StoredDelivery, named: str | None, leases: _Leases) -> Iterator[None]:
        """Hold the lock of the ticket an event names when it is not the delivery's own ticket.

        An escalation email (or form) arrives as its own ticket but escalates the ticket it
        names: that ticket's macro or lead deliveries must not be decided at the same moment
        from the same starting state. A taken lock is a transient failure: the delivery
        comes back shortly.
        """
        if not named or named == row.ticket_ref:
            yield
            return
        with self.locks.hold(row.platform, named) as lock:
            if lock is None:
                raise _TicketBusy(f"ticket {named} is being worked on", retry_after=self.lock_retry_seconds)
            # Its earlier deliveries go first, as if this one had arrived on that ticket: a lead's
            # cancel waiting for its retry must not be overtaken and then ignored as older.
            earlier = self.inbox.next_for_ticket(row.platform, named)
            if earlier is not None and earlier.id < row.id:
                raise _Behind(named, earlier)
            leases.add(lock)
            try:
                yield
            finally:
                leases.discard(lock)

    def _in_arrival_order(self, row: StoredDelivery) -> Delivery:
        """The delivery for the parser, never received before a delivery of its ticket that was stored earlier.

        Web processes read the clock before they store: two deliveries arriving together can be
        stored in one order with receipt times in the other. Arrival order is the inbox's (id)
        order, which the worker follows, so a later delivery is not "older than the last event
        applied" just because its clock reading lost the race.
        """
        delivery = row.to_delivery()
        if row.ticket_ref is None:
            return delivery
        earlier = self.inbox.received_before(row.platform, row.ticket_ref, row.id)
        if earlier is not None and earlier > delivery.received_at:
            return replace(delivery, received_at=earlier)
        return delivery

    def _put_off(self, row: StoredDelivery, behind: _Behind) -> Outcome:
        now = self.clock()
        earlier = behind.earlier
        due = earlier.next_attempt_at if earlier.status is DeliveryStatus.RETRYING and earlier.next_attempt_at else now
        delay = max((due - now).total_seconds(), 0.0) + self.lock_retry_seconds
        reason = f"waiting for delivery {earlier.id} of ticket {behind.ticket_ref}, which arrived first"
        self.inbox.put_off(row.id, reason, now + timedelta(seconds=delay), now)
        self.schedule(row.id, delay)
        log.info("%s; again in %.1fs", reason, delay)
        return Outcome.WAITING

    def _retry_later(self, row: StoredDelivery, exc: Exception) -> Outcome:
        attempt = row.attempts
        reason = self.redact(f"{type(exc).__name__}: {exc}")
        if attempt >= self.retry.max_attempts:
            return self._fail(row, f"gave up after {attempt} attempts: {reason}")
        if isinstance(exc, _TicketBusy) and exc.retry_after is not None:
            delay = exc.retry_after  # nothing failed: the other worker will be done in a moment
        else:
            delay = self.retry.delay(attempt, getattr(exc, "retry_after", None))
        now = self.clock()
        self.inbox.mark_retrying(row.id, f"attempt {attempt}: {reason}", now + timedelta(seconds=delay), now)
        self.schedule(row.id, delay)
        log.warning("attempt %d failed (%s); retrying in %.1fs", attempt, reason, delay)
        return Outcome.RETRYING

    def _fail(self, row: StoredDelivery, reason: str) -> Outcome:
        self.inbox.mark_failed(row.id, self.redact(reason), self.clock())
        log.error("failed: %s", reason)
        return Outcome.FAILED

    # --- recovery -------------------------------------------------------------------------

    def recover_in_flight(self, *, older_than: datetime | None = None) -> list[int]:
        """Queue again what a dead worker (or a lost job) left behind for longer than the lease.

        What a process on this machine was running when it ended is queued again at once.
        """
        now = self.clock()
        cutoff = older_than or now - timedelta(seconds=self.lease_seconds)
        ids = self.inbox.recover_in_flight(older_than=cutoff, now=now, ended=has_ended)
        for row_id in ids:
            self.schedule(row_id, 0.0)
        if ids:
            log.warning("recovered %d deliveries left in flight: %s", len(ids), ", ".join(map(str, ids[:20])))
        return ids

    # --- SH4: the deadline check ----------------------------------------------------------

    def check_deadlines(self) -> list[Decision | Ignored]:
        """Send every open escalation whose first-contact time passed without contact through the policy."""
        results: list[Decision | Ignored] = []
        for overdue in self.escalations.overdue(self.clock()):
            adapter = self.adapters.get(overdue.platform)
            if adapter is None or deadline_already_handled(overdue):
                continue
            with self.locks.hold(overdue.platform, overdue.ticket_ref) as lock:
                if lock is None:
                    continue  # the ticket is busy; the next check sees it again
                if self.inbox.next_for_ticket(overdue.platform, overdue.ticket_ref) is not None:
                    # A delivery of the ticket is still to run (a lead's cancel waiting for its retry, a
                    # contact just in): it goes first, or it would be ignored as older than the miss.
                    continue
                result = self._deadline(adapter, overdue)
                if result is not None:
                    results.append(result)
        return results

    def _deadline(self, adapter: PlatformAdapter, overdue: Escalation) -> Decision | Ignored | None:
        current = self.escalations.load(overdue.platform, overdue.ticket_ref)
        now = self.clock()
        due = current.first_contact_due if current else None
        if current is None or due is None or due > now or current.contacted_at or deadline_already_handled(current):
            return None
        key = f"deadline:{due.isoformat()}"
        command = ReviewCommand(
            platform=current.platform,
            ticket_ref=current.ticket_ref,
            command=Command.DEADLINE_MISSED,
            actor=SYSTEM,
            received_at=now,
            delivery_id=key,
        )
        with log_context(delivery_id=key, ticket_ref=current.ticket_ref):
            try:
                result = handle_event(
                    command,
                    policy=self.policy,
                    gateway=InstrumentedGateway(adapter.gateway, self.metrics),
                    store=DeliveryStore(self.escalations, None, dry_run=adapter.dry_run),
                    clock=self.clock,
                    # A run that wrote and then died left no record: check before writing again.
                    retry=True,
                )
            except GatewayError as exc:
                log.warning("deadline check could not update the ticket (%s); trying again next time", exc)
                return None
            except StaleDecision as exc:
                log.warning("deadline check not recorded: %s; the next check sees it again", exc)
                return None
            if isinstance(result, Decision):
                log.info("deadline missed: %s -> %s (%s)", result.transition.from_state, result.state, result.rule)
            return result
