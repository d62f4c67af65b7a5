"""Faults with real processes: `tierup web` (gunicorn) and `tierup worker` against a Zendesk stand-in over HTTP.

Each scenario posts signed Zendesk trigger bodies over real HTTP, lets the helpdesk misbehave
(429 with Retry-After, 500s, hangs past the client timeout), kills the worker with SIGKILL in
the middle of a batch, posts every delivery twice, or posts twenty events for one ticket at
once. Then, after the dust settles, it checks what an admin would: every accepted delivery
processed exactly once (the inbox), one comment and one applied update per transition (the
stand-in, by transition key), the final tags, group and escalation state (the stand-in's ticket
and the audit trail), and nothing failed that should not have.

Waits poll the inbox and the stand-in with generous deadlines; no sleep is an assertion.
Backoff and the client timeout are shortened through settings (TIERUP_RETRY_BASE_SECONDS,
ZENDESK_TIMEOUT) so the file takes about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration.model import Platform
from integration.store import DeliveryStatus, StoredDelivery
from tests.faults.harness import (
    FIRST_GROUP,
    LEAD_GROUP,
    Deployment,
    Sent,
    applied_keys,
    comment_keys,
    deliveries,
    wait_for,
)
from tests.standin.zendesk import Served, ZendeskStandIn

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

BASE_TAGS = {"gym", "tierup_reason_wrong_resolution"}  # the stand-in ticket's own tags, which must stay
STATE_TAGS = {"escalated", "escalation_confirmed", "escalation_cancelled"}
# Backoff short enough to keep the file quick. The client timeout is lowered for the hang scenario only, to a
# value a loaded 2-core machine still answers well within, so no other scenario sees a timeout it did not script.
FAST = {"TIERUP_RETRY_BASE_SECONDS": "0.2"}
TIMEOUT_SECONDS = 1.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One stand-in, database and `tierup web` (gunicorn, 2 workers) for the file; scenarios use their own tickets."""
    with ZendeskStandIn() as standin:
        deployed = Deployment(tmp_path_factory.mktemp("faults"), standin, settings=dict(FAST))
        try:
            deployed.start_web(workers=2)
            yield deployed
        finally:
            deployed.stop()


@pytest.fixture
def tierup(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment for one scenario: it starts its own worker, which is stopped afterwards."""
    deployment.worker_logs.clear()
    try:
        yield deployment
    finally:
        deployment.stop_worker()
        # Whatever a scenario did, nothing anywhere in the inbox may have failed.
        failed = [(r.delivery_id, r.last_error) for r in deployment.rows() if r.status is DeliveryStatus.FAILED]
        assert failed == []


@pytest.fixture
def standin(deployment: Deployment) -> ZendeskStandIn:
    return deployment.standin


# --- what should have happened -------------------------------------------------------------------


@dataclass
class Expected:
    """One ticket's deliveries run in arrival order through the lead-review procedure, worked out by hand."""

    state: str | None = None
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (invocation id, state after)
    commented: list[str] = field(default_factory=list)  # transition keys that post a comment
    ignored: list[str] = field(default_factory=list)

    def run(self, sent: Sent) -> None:
        kind, state = sent.kind, self.state
        if kind == "request" and state in (None, "cancelled"):
            self._move(sent, "escalated", comment=True)  # LR5
        elif kind == "request" and state in ("escalated", "confirmed"):
            self._move(sent, state, comment=False)  # already escalated: recorded, nothing written
        elif kind == "confirm" and state == "escalated":
            self._move(sent, "confirmed", comment=True)  # LR7
        elif kind == "cancel" and state in ("escalated", "confirmed"):
            self._move(sent, "cancelled", comment=True)  # LR6
        else:
            self.ignored.append(sent.invocation)  # not allowed from here: the workflow refuses it

    def _move(self, sent: Sent, state: str, *, comment: bool) -> None:
        self.transitions.append((sent.invocation, state))
        if comment:
            # integration.service.transition_key: the delivery id and the history's new length.
            self.commented.append(f"{sent.invocation}:{len(self.transitions)}")
        self.state = state


def expected_for(ref: str, rows: Sequence[StoredDelivery], sent: Sequence[Sent]) -> Expected:
    """What ticket `ref`'s deliveries must have done, taken in the order the inbox stored them."""
    by_invocation = {s.invocation: s for s in sent}
    expected = Expected()
    for row in rows:
        if row.ticket_ref == ref:
            expected.run(by_invocation[row.delivery_id])
    return expected


def assert_outcome(deployment: Deployment, sent: Sequence[Sent], rows: Sequence[StoredDelivery]) -> None:
    """Exactly once, in order, one comment per transition, the right tags, group and state: for every ticket."""
    standin = deployment.standin
    assert sorted(r.delivery_id for r in rows) == sorted(s.invocation for s in sent), "each accepted one stored once"
    for ref in sorted({s.ref for s in sent}):
        expected = expected_for(ref, rows, sent)
        statuses = {r.delivery_id: (r.status, r.last_error) for r in rows if r.ticket_ref == ref}
        assert statuses == {
            s.invocation: (DeliveryStatus.IGNORED, statuses[s.invocation][1])
            if s.invocation in expected.ignored
            else (DeliveryStatus.PROCESSED, None)
            for s in sent
            if s.ref == ref
        }
        for invocation in expected.ignored:
            assert str(statuses[invocation][1]).startswith("cannot "), statuses[invocation]  # the workflow said no

        history = deployment.history(ref)
        assert [(e.transition.delivery_id, e.transition.to_state.value) for e in history] == expected.transitions
        assert not any(e.dry_run for e in history)
        # One comment per transition that says something, and one applied update per transition that writes
        # (in lead-review every write carries a reply, and the internal note goes to its field).
        assert comment_keys(standin, ref) == expected.commented
        assert applied_keys(standin, ref) == expected.commented

        ticket = standin.ticket(ref)
        tags = set(ticket["tags"])
        assert tags & BASE_TAGS == BASE_TAGS
        assert tags & STATE_TAGS == STATE_TAGS_OF[expected.state], (ref, expected.state, tags)
        group = LEAD_GROUP if expected.state in ("escalated", "confirmed") else FIRST_GROUP
        assert standin.group_name(ref) == group
        escalation = deployment.escalations.load(Platform.ZENDESK, ref)
        if expected.state is None:
            assert escalation is None
        else:
            assert escalation is not None and escalation.state.value == expected.state
            assert ticket["priority"] == "high"  # LR5 raised it; cancelling does not lower it


STATE_TAGS_OF: dict[str | None, set[str]] = {
    None: set(),
    "escalated": {"escalated"},
    "confirmed": {"escalated", "escalation_confirmed"},
    "cancelled": {"escalation_cancelled"},
}


def post_all(deployment: Deployment, sent: Sequence[Sent]) -> None:
    for s in sent:
        assert deployment.post(s) == 202, s


def served(standin: ZendeskStandIn, refs: Sequence[str], **match: Any) -> list[Served]:
    return [s for s in standin.served(**match) if s.ticket in refs]


# --- a. 429 with Retry-After ---------------------------------------------------------------------


def test_rate_limited_for_a_while(tierup: Deployment, standin: ZendeskStandIn) -> None:
    refs = ["5101", "5102", "5103"]
    for ref in refs:
        standin.add_ticket(ref)
    sent = deliveries([(kind, ref) for ref in refs for kind in ("request", "confirm")], "rate")
    # The next six ticket calls (reads and writes) are throttled with Retry-After: 1.
    standin.fail_next("*", 429, count=6, kind="ticket", retry_after="1")
    tierup.start_worker()
    post_all(tierup, sent)

    rows = tierup.wait_settled("rate", len(sent))
    assert standin.faults_left() == 0 and len(served(standin, refs, status=429)) == 6
    assert_outcome(tierup, sent, rows)
    # Every throttled call put its delivery back for the server's Retry-After, not for our own backoff.
    retries = tierup.worker_said("retrying in")
    assert len(retries) == 6 and all(r.endswith("retrying in 1.0s") for r in retries), retries
    assert sum(r.attempts - 1 for r in rows) == 6


# --- b. 500s ------------------------------------------------------------------------------------------


def test_server_errors_for_a_while(tierup: Deployment, standin: ZendeskStandIn) -> None:
    refs = ["5201", "5202", "5203"]
    for ref in refs:
        standin.add_ticket(ref)
    sent = deliveries([(kind, ref) for ref in refs for kind in ("request", "confirm", "cancel")], "err")
    standin.fail_next("*", 500, count=6, kind="ticket")
    # Only a retry reads the audits (to see what already landed): that read fails once too.
    standin.fail_next("GET", 500, count=1, kind="audits")
    tierup.start_worker()
    post_all(tierup, sent)

    rows = tierup.wait_settled("err", len(sent))
    assert standin.faults_left() == 0 and len(served(standin, refs, status=500)) == 7
    assert_outcome(tierup, sent, rows)
    assert len(tierup.worker_said("Zendesk answered 500")) == 7
    assert sum(r.attempts - 1 for r in rows) == 7


# --- c. hangs past the client timeout ----------------------------------------------------------


def test_hangs_past_the_timeout(tierup: Deployment, standin: ZendeskStandIn) -> None:
    refs = ["5301", "5302"]
    for ref in refs:
        standin.add_ticket(ref)
    sent = deliveries([(kind, ref) for ref in refs for kind in ("request", "confirm")], "hang")
    hang = TIMEOUT_SECONDS * 2.5
    # Hung writes land late, after the client gave up: the retry must notice rather than write again.
    standin.hang_next("PUT", hang, count=2)
    standin.hang_next("GET", hang, count=1, kind="ticket")
    tierup.start_worker(ZENDESK_TIMEOUT=str(TIMEOUT_SECONDS))
    post_all(tierup, sent)

    rows = tierup.wait_settled("hang", len(sent))
    # A hung write lands (or is refused as stale) only when the stand-in gets round to answering it.
    wait_for(lambda: len([s for s in served(standin, refs) if s.seconds >= hang]) == 3, "the hung calls to end")
    assert standin.faults_left() == 0
    assert_outcome(tierup, sent, rows)
    timeouts = tierup.worker_said("ReadTimeout")
    assert len(timeouts) == 3, timeouts
    assert sum(r.attempts - 1 for r in rows) == 3


# --- d. the worker SIGKILLed mid-batch ----------------------------------------------------------


def test_worker_killed_mid_batch(tierup: Deployment, standin: ZendeskStandIn) -> None:
    refs = ["5401", "5402", "5403", "5404", "5405"]
    for ref in refs:
        standin.add_ticket(ref)
    sent = deliveries([(kind, ref) for kind in ("request", "confirm") for ref in refs], "kill")
    # Far longer than the test may wait: the restarted worker, on the same machine, sees that the
    # killed one has ended and takes over its deliveries and ticket locks without waiting for the lease.
    lease = {"TIERUP_LEASE_SECONDS": "600"}
    post_all(tierup, sent)  # the queue fills while no worker runs
    held = standin.hold_next_write()
    tierup.start_worker(**lease)
    assert held.wait_reached(30), tierup.logs()
    tierup.kill_worker()
    in_flight = [r for r in tierup.rows("kill") if r.status is DeliveryStatus.PROCESSING]
    assert held.ticket in {r.ticket_ref for r in in_flight}, "the delivery whose write is held was in flight"
    assert not tierup.settled("kill", len(sent)), "the worker died mid-batch"

    # The write reaches Zendesk after its caller is gone: the restarted worker must find it, not repeat it.
    held.release(apply=True)
    wait_for(lambda: len(standin.audits(held.ticket or "")) == 1, "the held write to land")
    tierup.start_worker(**lease)  # at once

    rows = tierup.wait_settled("kill", len(sent))
    assert_outcome(tierup, sent, rows)
    # The restarted worker queued again exactly what the dead one left in flight (and what it never started).
    recovered = tierup.worker_said("left in flight", run=1)[0]  # the first: on start
    assert {r.id for r in in_flight} <= {int(i) for i in recovered.rpartition(": ")[2].split(", ")}, recovered
    rerun = {r.delivery_id: r.attempts for r in rows if r.id in {f.id for f in in_flight}}
    assert rerun and set(rerun.values()) == {2}, rerun
    assert tierup.worker_said("(its holder has ended)", run=1), "the dead worker's ticket lock was broken at once"
    assert tierup.worker_said("is already on the ticket; not sent again")


# --- e. every delivery posted twice -------------------------------------------------------------


def test_every_delivery_posted_twice(tierup: Deployment, standin: ZendeskStandIn) -> None:
    refs = ["5501", "5502", "5503"]
    for ref in refs:
        standin.add_ticket(ref)
    sent = deliveries([(kind, ref) for ref in refs for kind in ("request", "confirm")], "twice")
    tierup.start_worker()
    # Both copies of each delivery at the same moment: one is stored (202), the other is a duplicate (200).
    statuses = tierup.post_at_once([s for s in sent for _ in range(2)])
    for n, s in enumerate(sent):
        assert sorted(statuses[2 * n : 2 * n + 2]) == [200, 202], s.invocation
    rows = tierup.wait_settled("twice", len(sent))
    # And a sender's retry long after the first copy was processed changes nothing.
    assert [tierup.post(s) for s in sent] == [200] * len(sent)
    assert tierup.rows("twice") == rows
    assert_outcome(tierup, sent, rows)


# --- f. twenty events for one ticket at once -------------------------------------------------------


def test_twenty_events_for_one_ticket_at_once(tierup: Deployment, standin: ZendeskStandIn) -> None:
    ref = "5601"
    standin.add_ticket(ref)
    kinds = ["request", "confirm", "cancel"] * 6 + ["request", "confirm"]
    sent = deliveries([(kind, ref) for kind in kinds], "burst")
    tierup.start_worker()
    assert tierup.post_at_once(sent) == [202] * 20
    rows = tierup.wait_settled("burst", len(sent))

    # Arrival order is the order the inbox stored them in: the worker must have run them in that order,
    # each exactly once, and the ticket ends as the last of them left it.
    assert_outcome(tierup, sent, rows)
    # The ticket ends as the last delivery the workflow accepted, in arrival order, left it.
    expected = expected_for(ref, rows, sent)
    last_invocation, last_state = expected.transitions[-1]
    assert [r.delivery_id for r in rows if r.delivery_id not in expected.ignored][-1] == last_invocation
    escalation = tierup.escalations.load(Platform.ZENDESK, ref)
    assert escalation is not None and escalation.state.value == last_state
    assert [t.delivery_id for t in escalation.history] == [i for i, _ in expected.transitions]
