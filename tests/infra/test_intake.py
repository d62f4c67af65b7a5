"""Receiving together: deliveries that arrive while another is being written share the next write."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from integration.cli.ops import Runtime
from integration.intake import GroupCommit
from integration.model import Platform
from integration.ports import Delivery
from integration.store import Arrival, DeliveryStatus, Recorded
from tests.infra.conftest import MakeRuntime, running_consumer, settled, wait_until
from tests.infra.fakes import T0, Clock, SignedAdapter, request_payload


class BlockingWrite:
    """A write that holds its first batch until released, recording every batch it is given."""

    def __init__(self, result: Callable[[int], int | BaseException] = lambda n: n * 10) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.result = result

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return [self.result(n) for n in items]


def call_together(group: GroupCommit[int, int], write: BlockingWrite, items: Sequence[int]) -> list[object]:
    """Item 0 is written alone and holds the write; the others arrive meanwhile, then it is released."""
    outcomes: list[object] = [None] * len(items)

    def call(index: int) -> None:
        try:
            outcomes[index] = group(items[index])
        except BaseException as exc:
            outcomes[index] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert write.entered.wait(10)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, len(items))]
    for thread in others:
        thread.start()
    wait_until(lambda: group.waiting == len(items) - 1, timeout=10, what="the others to wait")
    write.release.set()
    for thread in [first, *others]:
        thread.join(10)
    return outcomes


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    write = BlockingWrite()
    group: GroupCommit[int, int] = GroupCommit(write)

    outcomes = call_together(group, write, range(6))

    assert outcomes == [0, 10, 20, 30, 40, 50]  # each caller gets its own result
    assert write.batches[0] == [0]
    assert sorted(write.batches[1]) == [1, 2, 3, 4, 5] and len(write.batches) == 2
    assert (sum(len(b) for b in write.batches), group.waiting) == (6, 0)


def test_a_batch_never_exceeds_its_limit() -> None:
    write = BlockingWrite()
    group: GroupCommit[int, int] = GroupCommit(write, max_batch=2)

    outcomes = call_together(group, write, range(6))

    assert outcomes == [0, 10, 20, 30, 40, 50]
    assert [len(b) for b in write.batches] == [1, 2, 2, 1]


def test_an_error_for_one_item_reaches_its_caller_alone() -> None:
    refused = ValueError("refused")
    write = BlockingWrite(lambda n: refused if n == 3 else n * 10)
    group: GroupCommit[int, int] = GroupCommit(write)

    outcomes = call_together(group, write, range(5))

    assert outcomes == [0, 10, 20, refused, 40]


def test_a_write_that_fails_for_a_batch_fails_every_caller_in_it() -> None:
    # Not only the first: the others would get None back, stored as nothing, and answer 202 for it.
    class Down(BlockingWrite):
        def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
            super().__call__(items)
            if len(self.batches) == 2:
                raise ConnectionError("database is down")
            return [n * 10 for n in items]

    write = Down()
    outcomes = call_together(GroupCommit(write), write, range(4))
    assert outcomes[0] == 0
    assert [type(o) for o in outcomes[1:]] == [ConnectionError] * 3


def test_a_failed_write_fails_its_batch_and_the_next_write_goes_on() -> None:
    def write(items: list[int]) -> list[int]:
        if 13 in items:
            raise ConnectionError("database is down")
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(ConnectionError):
        group(13)
    assert group(1) == 1  # the lead was handed on: nothing waits for a write that failed

    wrong: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        wrong(1)
    with pytest.raises(RuntimeError):
        wrong(2)


# --- the intake on a real inbox and queue -------------------------------------------------------


def accept_at_once(runtime: Runtime, delivery_ids: Sequence[str]) -> list[Recorded]:
    """Accept escalation requests from as many threads at once, as a web server's threads would."""
    intake = runtime.web_config().intake
    start = threading.Barrier(len(delivery_ids))

    def accept(delivery_id: str) -> Recorded:
        ref = delivery_id.removeprefix("d-")
        delivery = Delivery(Platform.ZENDESK, delivery_id, {}, json.dumps(request_payload(ref)).encode(), T0)
        start.wait(10)
        return intake.accept(Arrival(delivery, "escalation.requested", ref))

    with ThreadPoolExecutor(len(delivery_ids)) as pool:
        return list(pool.map(accept, delivery_ids))


def stored_queued_and_run_once(make_runtime: MakeRuntime, **env: str) -> None:
    receiver = make_runtime(SignedAdapter(), Clock(), **env)
    ids = [f"d-{4000 + n}" for n in range(24)]

    recorded = accept_at_once(receiver, [*ids, *ids[:8]])  # eight of them posted twice

    assert sum(r.created for r in recorded) == 24
    assert {r.id for r in recorded[24:]} <= {r.id for r in recorded[:24]}
    assert receiver.inbox.counts()[DeliveryStatus.QUEUED] == 24
    assert receiver.tasks.depth() == 24  # one job per stored delivery, none for a copy

    adapter = SignedAdapter()
    worker = make_runtime(adapter, Clock(), **env)
    with running_consumer(worker.tasks):
        wait_until(settled(worker, 24), what="every delivery to run")
    assert worker.inbox.counts()[DeliveryStatus.PROCESSED] == 24
    assert sorted(adapter.parsed) == sorted(ids)  # each one once
    assert worker.tasks.depth() == 0


def test_deliveries_accepted_together_are_stored_queued_and_run_once(make_runtime: MakeRuntime) -> None:
    stored_queued_and_run_once(make_runtime)


@pytest.mark.scaleout
def test_deliveries_accepted_together_on_postgresql_and_redis(
    make_runtime: MakeRuntime, postgres_url: str, redis_url: str
) -> None:
    stored_queued_and_run_once(make_runtime, DATABASE_URL=postgres_url, REDIS_URL=redis_url)
