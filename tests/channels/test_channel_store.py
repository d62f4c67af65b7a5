"""The store's form and dashboard tables: rate-limit hits, the shared web secret, the dashboard's queries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from integration.forms import FORM_KIND, form_headers
from integration.model import Platform, State
from integration.policy import load_policy
from integration.ports import Delivery
from integration.service import handle_event
from integration.store import (
    Database,
    EscalationQueries,
    Inbox,
    RateLimitHitRow,
    RateLimits,
    SqlEscalationStore,
    WebSecrets,
)
from tests.channels.fakes import helpdesk, ticket
from tests.core.builders import request
from tests.infra.fakes import T0

HOUR = timedelta(hours=1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'tierup.db'}")
    database.upgrade()
    yield database
    database.dispose()


def test_a_key_is_let_through_up_to_its_limit_then_told_how_long_to_wait(db: Database) -> None:
    limits = RateLimits(db)
    for minute in range(3):
        assert limits.acquire(["email:a@x.example"], limit=3, window=HOUR, now=T0 + timedelta(minutes=minute)) is None
    wait = limits.acquire(["email:a@x.example"], limit=3, window=HOUR, now=T0 + timedelta(minutes=10))
    assert wait == 50 * 60  # the first attempt leaves the window at T0 + 1h
    assert limits.acquire(["email:b@x.example"], limit=3, window=HOUR, now=T0 + timedelta(minutes=10)) is None
    assert limits.acquire(["email:a@x.example"], limit=3, window=HOUR, now=T0 + HOUR) is None


def test_one_key_at_its_limit_stops_the_attempt_for_all_and_counts_nothing(db: Database) -> None:
    limits = RateLimits(db)
    assert limits.acquire(["ip:10.0.0.1"], limit=1, window=HOUR, now=T0) is None
    assert limits.acquire(["email:new@x.example", "ip:10.0.0.1"], limit=1, window=HOUR, now=T0) == HOUR.seconds
    # The refused attempt did not use up the address's allowance.
    assert limits.acquire(["email:new@x.example"], limit=1, window=HOUR, now=T0) is None


def test_the_table_keeps_hashes_not_addresses_and_forgets_old_hits(db: Database) -> None:
    limits = RateLimits(db)
    limits.acquire(["email:a@x.example"], limit=5, window=HOUR, now=T0)
    limits.acquire(["email:b@x.example"], limit=5, window=HOUR, now=T0 + timedelta(days=2))
    with db.transaction() as session:
        buckets = list(session.scalars(select(RateLimitHitRow.bucket)))
    assert buckets == [RateLimits.bucket("email:b@x.example")]
    assert "x.example" not in buckets[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_attempts_at_once_are_counted_one_after_the_other(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # 40 form posts from one address at the same moment, limit 5: under READ COMMITTED each counted the
    # same rows and 12 got in on PostgreSQL.
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 't.db'}"
    database = Database(url)
    database.upgrade()
    limits = RateLimits(database)
    start = threading.Barrier(20)
    outcomes: list[float | None] = []

    def attempt() -> None:
        start.wait()
        outcomes.append(limits.acquire(["form-email:a@x.example", "form-ip:10.0.0.1"], limit=5, window=HOUR, now=T0))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    assert sum(o is None for o in outcomes) == 5 and len(outcomes) == 20


def test_the_web_secret_is_made_once_and_shared(db: Database, tmp_path: Path) -> None:
    made: list[str] = []

    def make() -> str:
        made.append(f"secret-{len(made)}")
        return made[-1]

    first = WebSecrets(db).get_or_create("session", make, T0)
    other_process = Database(f"sqlite:///{tmp_path / 'tierup.db'}")
    try:
        assert WebSecrets(other_process).get_or_create("session", make, T0) == first == "secret-0"
    finally:
        other_process.dispose()
    assert made == ["secret-0"]


def test_form_deliveries_keep_their_source_header_in_the_inbox(db: Database) -> None:
    delivery = Delivery(Platform.ZENDESK, "f-1", {**form_headers(), "Cookie": "session=x"}, b"{}", T0)
    Inbox(db).record(delivery, kind=FORM_KIND, ticket_ref="4016")
    stored = Inbox(db).find(Platform.ZENDESK, "f-1")
    assert stored is not None and dict(stored.headers) == form_headers()


def test_dashboard_queries_filter_by_state_platform_and_group(db: Database) -> None:
    store = SqlEscalationStore(db)
    _, gateway = helpdesk(ticket("1"), ticket("2"), ticket("3"))
    policy = load_policy("service-desk")
    for ref, hour in (("1", 10), ("2", 9), ("3", 11)):
        event = request(ticket=ticket(ref), received_at=T0.replace(hour=hour))
        handle_event(event, policy=policy, gateway=gateway, store=store, clock=lambda: T0)
    queries = EscalationQueries(db)

    found = queries.find([State.ESCALATED])
    assert [f.escalation.ticket_ref for f in found] == ["2", "1", "3"]  # soonest first-contact due first
    assert queries.find([State.ESCALATED], group="Service Desk Managers") == found
    assert queries.find([State.ESCALATED], group="Nobody") == []
    assert queries.find([State.ESCALATED], platform=Platform.JIRA) == []
    assert queries.find([State.CONFIRMED]) == []
    assert queries.get(found[0].id) == found[0]
    assert queries.get(999) is None
    assert queries.groups() == ["Service Desk Managers"]
