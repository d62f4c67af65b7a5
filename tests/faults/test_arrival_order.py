"""The race behind "twenty events at once", made deterministic: stored in one order, clock read in the other.

A web process reads the clock before it stores a delivery. Two deliveries for one ticket
arriving together can therefore be stored (and so run) in one order while their receipt
times say the other. The worker runs them in arrival (inbox) order; the later one must not be
dropped as "older than the last event applied".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from integration.cli.ops import Runtime
from integration.model import Platform, State
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.faults.harness import FIELD_IDS, SECRET, deliveries, signed_headers
from tests.standin.zendesk import ZendeskStandIn


class SteppedClock:
    """The receiver's and the worker's clock, set by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def standin() -> Iterator[ZendeskStandIn]:
    with ZendeskStandIn() as zendesk:
        yield zendesk


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def runtime(new_runtime: NewRuntime, standin: ZendeskStandIn, clock: SteppedClock) -> Runtime:
    env = {
        "TIERUP_POLICY": "lead-review",
        "ZENDESK_WEBHOOK_SECRET": SECRET,
        **standin.env(),
        **{name: str(fid) for name, fid in FIELD_IDS.items()},
    }
    return new_runtime(env, clock=clock)


def test_a_delivery_stored_later_but_stamped_earlier_still_runs(
    runtime: Runtime, standin: ZendeskStandIn, clock: SteppedClock
) -> None:
    standin.add_ticket("5701")
    request, confirm = deliveries([("request", "5701"), ("confirm", "5701")], "race")
    client: FlaskClient = runtime.create_app().test_client()

    def post(sent_at: datetime, body: bytes, invocation: str) -> int:
        clock.now = sent_at
        return client.post("/webhooks/zendesk", data=body, headers=signed_headers(body, invocation)).status_code

    start = clock.now
    # The request's process read the clock after the confirm's did, but stored first.
    assert post(start + timedelta(milliseconds=40), request.body, request.invocation) == 202
    assert post(start + timedelta(milliseconds=10), confirm.body, confirm.invocation) == 202
    stored = sorted(runtime.inbox.recent(), key=lambda r: r.id)
    assert [r.delivery_id for r in stored] == ["race-001", "race-002"]
    assert stored[0].received_at > stored[1].received_at

    clock.now = start + timedelta(seconds=1)
    runtime.tasks.run_pending()

    assert [(r.delivery_id, r.status) for r in sorted(runtime.inbox.recent(), key=lambda r: r.id)] == [
        ("race-001", DeliveryStatus.PROCESSED),
        ("race-002", DeliveryStatus.PROCESSED),
    ]
    escalation = runtime.escalations.load(Platform.ZENDESK, "5701")
    assert escalation is not None and escalation.state is State.CONFIRMED
    assert [t.delivery_id for t in escalation.history] == ["race-001", "race-002"]
    assert [c.key for c in standin.comments("5701")] == ["race-001:1", "race-002:2"]
    assert {"escalated", "escalation_confirmed"} <= standin.tags("5701")
