"""Fixtures for the infrastructure tests: a wired runtime over a scratch database and queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient

from integration.cli.ops import Runtime
from integration.model import Platform
from integration.queue import TaskQueue
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock, SignedAdapter, signed

MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def adapter() -> SignedAdapter:
    return SignedAdapter()


@pytest.fixture
def make_runtime(new_runtime: NewRuntime) -> MakeRuntime:
    """Runtimes built the way the CLI builds them, lead-review, with `adapter` as Zendesk's (none by default)."""

    def make(
        adapter: SignedAdapter | None = None, clock: Clock | None = None, *, upgrade: bool = True, **env: str
    ) -> Runtime:
        adapters = {Platform.ZENDESK: adapter} if adapter is not None else {}
        return new_runtime({"TIERUP_POLICY": "lead-review", **env}, adapters=adapters, clock=clock, upgrade=upgrade)

    return make


@pytest.fixture
def runtime(make_runtime: MakeRuntime, adapter: SignedAdapter, clock: Clock) -> Runtime:
    return make_runtime(adapter, clock)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return runtime.create_app().test_client()


def post(client: FlaskClient, payload: Any, delivery_id: str | None = None, **kwargs: Any) -> Any:
    """POST a correctly signed delivery to the test platform's receiver."""
    body, headers = signed(payload, delivery_id)
    return client.post("/webhooks/zendesk", data=body, headers=headers, **kwargs)


@contextmanager
def running_consumer(tasks: TaskQueue, workers: int = 4) -> Iterator[None]:
    """A real Huey consumer (worker threads and scheduler), without touching the test's signal handlers."""
    consumer = tasks.consumer(workers=workers, periodic=False)
    consumer.scheduler.start()
    for _, thread in consumer.worker_threads:
        thread.start()
    try:
        yield
    finally:
        consumer.stop(graceful=True)


def head_revision() -> str:
    """The newest migration: what `upgrade` must reach."""
    from alembic.script import ScriptDirectory

    from integration.store import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return str(head)


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def settled(runtime: Runtime, count: int) -> Callable[[], bool]:
    """True once `count` deliveries have reached a final status."""

    def check() -> bool:
        counts = runtime.inbox.counts()
        final = counts[DeliveryStatus.PROCESSED] + counts[DeliveryStatus.IGNORED] + counts[DeliveryStatus.FAILED]
        return final >= count

    return check
