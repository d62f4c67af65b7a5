"""The store on SQLite and on PostgreSQL: migrations, the inbox, escalations, the audit trail, cursors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import IntegrityError

from integration.model import (
    SYSTEM,
    AddTags,
    Decision,
    Escalation,
    InternalNote,
    Platform,
    SetDue,
    State,
    Transition,
)
from integration.ports import Delivery
from integration.store import (
    Arrival,
    Base,
    Database,
    DeliveryStatus,
    HeaderMap,
    Inbox,
    Recorded,
    SqlEscalationStore,
    StaleDecision,
    SweepCursors,
    normalise_url,
    sqlite_path,
    stored_headers,
)
from tests.infra.conftest import head_revision
from tests.infra.fakes import T0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = (
        f"sqlite:///{tmp_path / 'tierup.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    database = Database(url)
    database.upgrade()
    request.addfinalizer(database.dispose)
    return database


def delivery(delivery_id: str = "d-1", ticket: str = "4016", at: datetime = T0) -> Delivery:
    headers = {"X-Zendesk-Webhook-Invocation-Id": delivery_id, "X-Zendesk-Webhook-Signature": "c2lnbmF0dXJl"}
    return Delivery(Platform.ZENDESK, delivery_id, headers, b'{"ticket": "' + ticket.encode() + b'"}', at)


def decision(ref: str = "4016", state: State = State.ESCALATED, history: tuple[Transition, ...] = ()) -> Decision:
    transition = Transition(
        at=T0,
        event="request",
        from_state=history[-1].to_state if history else None,
        to_state=state,
        actor="501",
        rule="LR5",
        why="wrong_resolution -> Technical Support Team Leaders",
        actions=(AddTags(("escalated",)), SetDue(T0 + timedelta(days=2)), InternalNote("<p>Zażółć <b>gęślą</b></p>")),
        delivery_id="d-1",
    )
    escalation = Escalation(
        platform=Platform.ZENDESK,
        ticket_ref=ref,
        state=state,
        group="Technical Support Team Leaders",
        requested_at=T0,
        first_contact_due=T0 + timedelta(days=2),
        last_event_at=T0,
        history=(*history, transition),
    )
    return Decision(escalation=escalation, transition=transition, target_ref=ref)


# --- migrations -------------------------------------------------------------------------------


def test_migrations_create_the_schema_the_models_describe(db: Database) -> None:
    assert db.current_revision() == head_revision()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        tables = set(inspect(conn).get_table_names())
    assert {"deliveries", "escalations", "transitions", "sweep_cursors", "alembic_version"} <= tables


def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    db.upgrade()
    assert db.current_revision() == head_revision()


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    # Several `tierup` processes (web, workers) start at once on a fresh database.
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = "import sys; from integration.store import Database; Database(sys.argv[1]).upgrade()"
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=root, stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert Database(url).current_revision() == head_revision()


def test_sqlite_migrates_in_one_transaction(tmp_path: Path) -> None:
    """One write lock for the whole upgrade: a process starting alongside never reads the revision between two
    migrations and runs the second one again (test_processes_starting_together_migrate_once, when it loses the race).
    """
    database = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    transactions: list[str] = []
    event.listen(database.engine, "begin", lambda _conn: transactions.append("begin"))
    event.listen(database.engine, "commit", lambda _conn: transactions.append("commit"))
    database.upgrade()
    assert transactions == ["begin", "commit"]
    assert database.current_revision() == head_revision()
    database.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    database.dispose()


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalise_url("sqlite:///tierup.db") == "sqlite:///tierup.db"
    assert sqlite_path("sqlite:///data/tierup.db") == Path("data/tierup.db")
    assert sqlite_path("postgresql://h/db") is None


# --- the inbox ----------------------------------------------------------------------------------


def test_record_stores_a_delivery_as_queued(db: Database) -> None:
    inbox = Inbox(db)
    recorded = inbox.record(delivery(), kind="tierup.trigger", ticket_ref="4016", occurred_at=T0)

    assert recorded.created
    row = inbox.get(recorded.id)
    assert row is not None
    assert (row.platform, row.delivery_id, row.kind, row.ticket_ref) == (
        Platform.ZENDESK,
        "d-1",
        "tierup.trigger",
        "4016",
    )
    assert row.status is DeliveryStatus.QUEUED and row.attempts == 0
    assert row.received_at == T0 and row.received_at.tzinfo is not None
    assert row.body == b'{"ticket": "4016"}'
    assert dict(row.headers) == {"X-Zendesk-Webhook-Invocation-Id": "d-1"}  # never the signature


def test_the_same_delivery_twice_is_one_row(db: Database) -> None:
    inbox = Inbox(db)
    first = inbox.record(delivery("d-1"), kind="k", ticket_ref="4016")
    again = inbox.record(delivery("d-1"), kind="k", ticket_ref="4016")
    other_platform = inbox.record(
        Delivery(Platform.JIRA, "d-1", {}, b"{}", T0), kind="jira:issue_updated", ticket_ref="SUP-1"
    )

    assert (again.id, again.created) == (first.id, False)
    assert other_platform.created and other_platform.id != first.id
    assert len(inbox.recent()) == 2


def test_concurrent_duplicates_store_one_row(db: Database) -> None:
    inbox = Inbox(db)
    results = []

    def record() -> None:
        results.append(inbox.record(delivery("d-race"), kind="k", ticket_ref="4016"))

    threads = [threading.Thread(target=record) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1
    assert len({r.id for r in results}) == 1


def test_deliveries_stored_together_keep_their_order_and_find_their_copies(db: Database) -> None:
    inbox = Inbox(db)
    before = inbox.record(delivery("d-old"), kind="k", ticket_ref="4016")
    arrivals = [
        Arrival(delivery("d-a"), "k", "4016"),
        Arrival(delivery("d-old"), "k", "4016"),  # stored before
        Arrival(delivery("d-b", ticket="4017"), "k", "4017", T0),
        Arrival(delivery("d-a"), "k", "4016"),  # twice in the same batch
        Arrival(Delivery(Platform.JIRA, "d-a", {}, b"{}", T0), "jira:issue_updated", "SUP-1"),
    ]

    recorded = inbox.record_many(arrivals)

    assert [r.created for r in recorded] == [True, False, True, False, True]
    assert recorded[1].id == before.id and recorded[3].id == recorded[0].id
    assert recorded[0].id < recorded[2].id  # arrival order is id order: per-ticket order follows it
    stored = {row.id: (row.platform, row.delivery_id, row.ticket_ref) for row in inbox.recent()}
    assert len(stored) == 4
    assert stored[recorded[2].id] == (Platform.ZENDESK, "d-b", "4017")
    assert stored[recorded[4].id] == (Platform.JIRA, "d-a", "SUP-1")


def test_a_delivery_the_database_refuses_fails_alone(db: Database) -> None:
    inbox = Inbox(db)
    refused = Delivery(Platform.ZENDESK, cast(str, None), {}, b"{}", T0)  # NOT NULL: the statement fails

    with pytest.raises(IntegrityError):
        inbox.record(refused, kind="k", ticket_ref="4016")
    # In a batch, the others are stored without it and only its place holds the error.
    first, second, third = inbox.record_many(
        [Arrival(delivery("d-1"), "k", "4016"), Arrival(refused, "k", "4016"), Arrival(delivery("d-2"), "k", "4016")]
    )
    assert isinstance(first, Recorded) and first.created
    assert isinstance(second, IntegrityError)
    assert isinstance(third, Recorded) and third.created
    assert [row.delivery_id for row in inbox.recent()] == ["d-2", "d-1"]


def test_a_copy_whose_first_is_gone_is_refused_so_its_sender_retries(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox(db)
    inbox.record(delivery("d-1"), kind="k", ticket_ref="4016")
    monkeypatch.setattr(inbox, "find", lambda platform, delivery_id: None)  # deleted between the two statements

    with pytest.raises(IntegrityError, match="neither stored nor found"):  # a 503 for the sender, not a 500
        inbox.record(delivery("d-1"), kind="k", ticket_ref="4016")


def test_the_inbox_keeps_one_connection_for_every_thread_and_gives_it_back(db: Database) -> None:
    # `tierup serve` runs each HTTP connection in a new thread: connections kept per thread once
    # used up the pool (5 + 10 overflow), and every later delivery waited 30 s for a 503.
    inbox = Inbox(db)
    pool = db.engine.pool
    created = []
    for n in range(20):
        thread = threading.Thread(
            target=lambda n=n: created.append(inbox.record(delivery(f"t-{n}"), kind="k", ticket_ref="4016").created)
        )
        thread.start()
        thread.join()
        assert pool.checkedout() == 1  # the same one, not one per delivery or per thread
    assert created == [True] * 20
    db.dispose()
    assert pool.checkedout() == 0


@pytest.mark.scaleout
def test_a_held_connection_the_server_dropped_is_replaced_without_losing_the_delivery(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.upgrade()
    inbox = Inbox(db)
    inbox.record(delivery("d-before"), kind="k", ticket_ref="4016")
    held = inbox._insert._raw.driver_connection.info.backend_pid
    with db.engine.connect() as admin:
        # The server ends the inbox's connection (a restart, an idle timeout, a failover).
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": held}).scalar() is True
    recorded = inbox.record(delivery("d-after"), kind="k", ticket_ref="4016")
    assert recorded.created
    assert [row.delivery_id for row in inbox.recent()] == ["d-after", "d-before"]
    db.dispose()


@pytest.mark.scaleout
def test_a_tickets_deliveries_become_visible_in_id_order_across_web_processes(postgres_url: str) -> None:
    # Two web processes, each with its inbox connection. A request's commit is slow (a WAL flush
    # standing in); the lead's confirm for the same ticket, stored 0.2 s later, got a higher id but
    # committed first, and the worker, seeing no earlier delivery of the ticket, ran it first.
    db = Database(postgres_url)
    db.upgrade()
    with db.engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$"
        ))  # fmt: skip
        conn.execute(text(
            "CREATE TRIGGER slow_commit AFTER INSERT ON deliveries FOR EACH ROW WHEN (NEW.kind = 'slow') "
            "EXECUTE FUNCTION slow_commit()"
        ))  # fmt: skip
    first, second = Inbox(db), Inbox(db)  # two processes: a connection each
    seen: dict[str, float] = {}

    def store(inbox: Inbox, delivery_id: str, kind: str, ticket: str) -> None:
        inbox.record_many([Arrival(delivery(delivery_id, ticket), kind, ticket)])
        seen[delivery_id] = time.monotonic()

    request = threading.Thread(target=store, args=(first, "d-request", "slow", "4016"))
    request.start()
    time.sleep(0.2)
    store(second, "d-confirm", "k", "4016")  # waits for the request's commit
    request.join()

    assert seen["d-confirm"] >= seen["d-request"] - 0.05
    stored = {row.delivery_id: row.id for row in Inbox(db).recent()}
    assert stored["d-request"] < stored["d-confirm"]
    other = threading.Thread(target=store, args=(first, "d-slow-2", "slow", "4017"))
    other.start()
    time.sleep(0.2)
    before = time.monotonic()
    store(second, "d-quick", "k", "5001")
    assert time.monotonic() - before < 0.5  # one ticket's slow commit holds up only that ticket
    other.join()
    db.dispose()


def test_claim_counts_attempts_and_only_one_claim_wins(db: Database) -> None:
    inbox = Inbox(db)
    row_id = inbox.record(delivery(), kind="k", ticket_ref="4016").id

    claimed = inbox.claim(row_id, T0)
    assert claimed is not None and claimed.status is DeliveryStatus.PROCESSING and claimed.attempts == 1
    assert inbox.claim(row_id, T0) is None  # a duplicate job while the first one works
    inbox.mark_processed(row_id, T0)
    assert inbox.claim(row_id, T0) is None


def test_next_for_ticket_is_the_earliest_pending_delivery(db: Database) -> None:
    inbox = Inbox(db)
    ids = [inbox.record(delivery(f"d-{i}", "4016"), kind="k", ticket_ref="4016").id for i in range(3)]
    inbox.record(delivery("d-other", "5000"), kind="k", ticket_ref="5000")

    head = inbox.next_for_ticket(Platform.ZENDESK, "4016")
    assert head is not None and head.id == ids[0]
    inbox.mark_failed(ids[0], "PermanentError: gone", T0)
    head = inbox.next_for_ticket(Platform.ZENDESK, "4016")
    assert head is not None and head.id == ids[1]
    assert inbox.next_for_ticket(Platform.JIRA, "4016") is None


def test_statuses_and_reasons_stay_visible(db: Database) -> None:
    inbox = Inbox(db)
    a, b, c = (inbox.record(delivery(f"d-{i}"), kind="k", ticket_ref=None).id for i in range(3))
    inbox.mark_failed(a, "PermanentError: 422", T0)
    inbox.mark_retrying(b, "attempt 1: 429", T0 + timedelta(seconds=30), T0)
    inbox.mark_ignored(c, "our own write", T0)

    assert [r.id for r in inbox.recent(statuses=[DeliveryStatus.FAILED])] == [a]
    row_b = inbox.get(b)
    assert row_b is not None and row_b.next_attempt_at == T0 + timedelta(seconds=30)
    counts = inbox.counts()
    assert counts[DeliveryStatus.FAILED] == counts[DeliveryStatus.RETRYING] == counts[DeliveryStatus.IGNORED] == 1
    assert counts[DeliveryStatus.QUEUED] == 0


def test_requeue_by_id_or_every_failed_one(db: Database) -> None:
    inbox = Inbox(db)
    a, b, c = (inbox.record(delivery(f"d-{i}"), kind="k", ticket_ref=None).id for i in range(3))
    inbox.mark_failed(a, "x", T0)
    inbox.mark_failed(b, "y", T0)
    inbox.mark_processed(c, T0)

    assert inbox.requeue(failed=True, now=T0) == [a, b]
    assert inbox.requeue([c, 999], now=T0) == [c]
    assert {r.status for r in inbox.recent()} == {DeliveryStatus.QUEUED}


def test_one_signed_body_under_several_delivery_ids_is_stored_once(db: Database) -> None:
    inbox = Inbox(db)
    arrive = [Arrival(delivery(f"d-{i}"), "k", "4016", replay_key="sha256:same-body") for i in range(3)]
    first, *copies = inbox.record_many(arrive[:2])  # together, in one statement
    assert isinstance(first, Recorded) and first.created
    assert copies == [Recorded(first.id, created=False)]
    assert inbox.record_many(arrive[2:]) == [Recorded(first.id, created=False)]  # later, on its own
    # Deliveries without a key (Zendesk's) are told apart by their ids alone, as before.
    plain = inbox.record_many([Arrival(delivery("z-1"), "k", "4016"), Arrival(delivery("z-2"), "k", "4016")])
    assert [r.created for r in plain if isinstance(r, Recorded)] == [True, True]


def test_recover_in_flight_takes_what_is_older_than_the_lease(db: Database) -> None:
    inbox = Inbox(db)
    queued, processing, retrying, young, done = (
        inbox.record(delivery(f"d-{i}"), kind="k", ticket_ref=None).id for i in range(5)
    )
    inbox.claim(processing, T0)
    inbox.mark_retrying(retrying, "429", T0 + timedelta(seconds=10), T0)
    inbox.mark_processed(done, T0)
    later = T0 + timedelta(minutes=10)
    inbox.claim(young, later)

    ids = inbox.recover_in_flight(older_than=later - timedelta(minutes=5), now=later)

    assert ids == [queued, processing, retrying]
    assert all(r.status is DeliveryStatus.QUEUED for r in map(inbox.get, ids) if r)
    assert inbox.recover_in_flight(older_than=later - timedelta(minutes=5), now=later) == []


def test_a_running_delivery_keeps_its_claim_only_while_it_is_its_workers(db: Database) -> None:
    inbox = Inbox(db)
    row = inbox.record(delivery("d-1"), kind="k", ticket_ref=None).id
    inbox.claim(row, T0, by="worker-1")
    later = T0 + timedelta(minutes=10)
    assert inbox.keep_claim(row, "worker-1", later)
    assert inbox.recover_in_flight(older_than=later - timedelta(minutes=5), now=later) == []  # renewed: alive
    assert not inbox.keep_claim(row, "worker-2", later)  # not its claim
    inbox.mark_processed(row, later)
    assert not inbox.keep_claim(row, "worker-1", later)  # done: nothing left to keep


def test_recovery_never_puts_back_what_a_worker_finishes_meanwhile(db: Database) -> None:
    inbox = Inbox(db)
    left, lost = (inbox.record(delivery(f"d-{i}"), kind="k", ticket_ref=None).id for i in range(2))
    inbox.claim(left, T0, by="worker-killed")  # its process ended mid-job, inside its lease
    inbox.claim(lost, T0 - timedelta(minutes=20), by="worker-1")
    inbox.mark_retrying(lost, "429", T0 - timedelta(minutes=10), T0 - timedelta(minutes=20))  # its job was lost
    now = T0 + timedelta(seconds=1)

    def run_it() -> None:  # a live worker takes the overdue retry and finishes it
        if inbox.claim(lost, now, by="worker-2") is not None:
            inbox.mark_processed(lost, now)

    worker = threading.Thread(target=run_it)

    def ended(by: str | None) -> bool:
        # Called while recovery is between reading its rows and writing them back.
        worker.start()
        worker.join(timeout=1)
        return by == "worker-killed"

    inbox.recover_in_flight(older_than=now - timedelta(minutes=5), now=now, ended=ended)
    worker.join()
    # Recovery went first and the worker ran it after, or the worker first and recovery let it be:
    # either way it ran once and is done, and the recovered job finds nothing to run.
    done = inbox.get(lost)
    assert done is not None and done.status is DeliveryStatus.PROCESSED
    assert inbox.claim(lost, now, by="worker-3") is None


def test_recover_in_flight_takes_at_once_what_an_ended_process_was_running(db: Database) -> None:
    inbox = Inbox(db)
    dead, alive, unnamed = (inbox.record(delivery(f"d-{i}"), kind="k", ticket_ref=None).id for i in range(3))
    inbox.claim(dead, T0, by="worker-killed")
    inbox.claim(alive, T0, by="worker-running")
    inbox.claim(unnamed, T0)
    seen: list[str | None] = []

    def ended(by: str | None) -> bool:
        seen.append(by)
        return by == "worker-killed"

    soon = T0 + timedelta(seconds=1)  # well inside the lease
    assert inbox.recover_in_flight(older_than=soon - timedelta(minutes=5), now=soon, ended=ended) == [dead]
    assert sorted(seen, key=str) == [None, "worker-killed", "worker-running"]
    recovered = inbox.get(dead)
    assert recovered is not None and recovered.status is DeliveryStatus.QUEUED
    assert "stopped in the middle" in (recovered.last_error or "")
    # Claimed again by a live worker, it is that worker's until its lease runs out.
    assert inbox.claim(dead, soon, by="worker-restarted") is not None
    assert inbox.recover_in_flight(older_than=soon - timedelta(minutes=5), now=soon, ended=ended) == []
    later = T0 + timedelta(minutes=10)
    assert inbox.recover_in_flight(older_than=later - timedelta(minutes=5), now=later, ended=ended) == [
        dead, alive, unnamed
    ]  # fmt: skip


def test_header_map_is_case_insensitive_and_keeps_names() -> None:
    headers = HeaderMap([("X-Zendesk-Webhook-Id", "01H"), ("Content-Type", "application/json")])
    assert headers["x-zendesk-webhook-id"] == "01H"
    assert "CONTENT-TYPE" in headers and list(headers) == ["X-Zendesk-Webhook-Id", "Content-Type"]


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("X-Zendesk-Webhook-Id", True),
        ("X-Zendesk-Webhook-Invocation-Id", True),
        ("X-Atlassian-Webhook-Identifier", True),
        ("X-Atlassian-Webhook-Retry", True),
        ("X-GitHub-Event", True),
        ("Content-Type", True),
        ("X-Zendesk-Webhook-Signature", False),
        ("X-Zendesk-Webhook-Signature-Timestamp", False),
        ("X-Hub-Signature", False),
        ("Authorization", False),
        ("Cookie", False),
        ("X-Api-Key", False),
        ("X-Webhook-Token-Id", False),
        ("Accept-Encoding", False),
    ],
)
def test_only_the_headers_that_matter_are_stored(name: str, kept: bool) -> None:
    assert (name in stored_headers({name: "v"})) is kept


def test_times_without_an_offset_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        Inbox(db).record(delivery(at=datetime(2026, 3, 10, 10, 0)), kind="k", ticket_ref=None)


# --- escalations and the audit trail --------------------------------------------------------------


def test_save_and_load_an_escalation_with_its_audit_trail(db: Database) -> None:
    store = SqlEscalationStore(db)
    first = decision()
    store.save(first)
    confirm = Transition(
        at=T0 + timedelta(hours=1), event="confirm", from_state=State.ESCALATED, to_state=State.CONFIRMED,
        actor="900", rule="LR7", why="confirmed by 900", actions=(), delivery_id="d-2",
    )  # fmt: skip
    second = Decision(
        escalation=replace(first.escalation, state=State.CONFIRMED, history=(*first.escalation.history, confirm)),
        transition=confirm,
        target_ref="4016",
    )
    store.save(second)
    store.save(second)  # saving again adds no second audit row

    loaded = store.load(Platform.ZENDESK, "4016")
    assert loaded == second.escalation
    trail = store.history(Platform.ZENDESK, "4016")
    assert [e.transition for e in trail] == list(second.escalation.history)
    assert trail[0].transition.actions[2] == InternalNote("<p>Zażółć <b>gęślą</b></p>")
    assert store.load(Platform.JIRA, "4016") is None
    assert store.platforms_of("4016") == [Platform.ZENDESK]


def test_a_decision_made_before_another_was_recorded_is_refused(db: Database) -> None:
    # Two workers read the escalated ticket; one records the lead's confirm, the other (stalled
    # past its lease) then tries to record a cancel decided from the same, now old, escalation.
    store = SqlEscalationStore(db)
    first = decision()
    store.save(first)

    def review(command: str, to: State, delivery_id: str) -> Decision:
        step = Transition(
            at=T0 + timedelta(hours=1), event=command, from_state=State.ESCALATED, to_state=to, actor="900",
            rule="LR6", why=command, actions=(), delivery_id=delivery_id,
        )  # fmt: skip
        moved = replace(first.escalation, state=to, history=(*first.escalation.history, step))
        return Decision(escalation=moved, transition=step, target_ref="4016")

    confirm, cancel = review("confirm", State.CONFIRMED, "d-2"), review("cancel", State.CANCELLED, "d-3")
    store.save(confirm)
    with pytest.raises(StaleDecision, match="zendesk:4016 moved on since it was read"):
        store.save(cancel)
    with pytest.raises(StaleDecision):
        store.save(first)  # an older one, too
    assert store.load(Platform.ZENDESK, "4016") == confirm.escalation
    assert [e.transition.delivery_id for e in store.history(Platform.ZENDESK, "4016")] == ["d-1", "d-2"]


def test_record_marks_the_delivery_processed_in_the_same_transaction(db: Database) -> None:
    inbox = Inbox(db)
    store = SqlEscalationStore(db, inbox)
    row_id = inbox.record(delivery(), kind="k", ticket_ref="4016").id
    inbox.claim(row_id, T0)

    store.record(decision(), delivery_row_id=row_id, dry_run=True)

    row = inbox.get(row_id)
    assert row is not None and row.status is DeliveryStatus.PROCESSED and row.processed_at == T0
    [entry] = store.history(Platform.ZENDESK, "4016")
    assert entry.dry_run is True


def test_a_failed_record_leaves_the_delivery_in_flight(db: Database) -> None:
    inbox = Inbox(db)
    store = SqlEscalationStore(db, inbox)
    row_id = inbox.record(delivery(), kind="k", ticket_ref="4016").id
    inbox.claim(row_id, T0)
    bad = decision()
    broken = Decision(
        escalation=replace(bad.escalation, first_contact_due=datetime(2026, 1, 1)),  # naive: refused
        transition=bad.transition,
        target_ref="4016",
    )
    with pytest.raises(Exception, match="naive datetime"):
        store.record(broken, delivery_row_id=row_id)

    row = inbox.get(row_id)
    assert row is not None and row.status is DeliveryStatus.PROCESSING
    assert store.load(Platform.ZENDESK, "4016") is None


def test_overdue_finds_open_escalations_past_first_contact_without_contact(db: Database) -> None:
    store = SqlEscalationStore(db)
    store.save(decision("late"))
    store.save(decision("cancelled", State.CANCELLED))
    contacted = decision("contacted")
    store.save(
        Decision(
            escalation=replace(contacted.escalation, contacted_at=T0 + timedelta(hours=3)),
            transition=contacted.transition,
            target_ref="contacted",
        )
    )
    due = T0 + timedelta(days=2)

    assert store.overdue(due - timedelta(seconds=1)) == []
    assert [e.ticket_ref for e in store.overdue(due)] == ["late"]
    assert [e.ticket_ref for e in store.by_state([State.CANCELLED])] == ["cancelled"]


def test_sweep_cursors_remember_where_a_sweep_left_off(db: Database) -> None:
    cursors = SweepCursors(db)
    assert cursors.get(Platform.ZENDESK, "sla") is None
    cursors.set(Platform.ZENDESK, "sla", "1767225600", T0)
    cursors.set(Platform.ZENDESK, "sla", "1767229200", T0 + timedelta(minutes=5))
    cursors.set(Platform.JIRA, "sla", "2026-01-01T00:00:00Z", T0)
    assert cursors.get(Platform.ZENDESK, "sla") == "1767229200"
    assert cursors.get(Platform.JIRA, "sla") == "2026-01-01T00:00:00Z"


def test_system_actor_is_recorded_by_id(db: Database) -> None:
    store = SqlEscalationStore(db)
    base = decision()
    deadline = Transition(
        at=datetime(2026, 3, 12, 10, 1, tzinfo=UTC), event="deadline_missed", from_state=State.ESCALATED,
        to_state=State.LEVEL_2, actor=SYSTEM.id, rule="SH4", why="first contact due missed",
    )  # fmt: skip
    store.save(
        Decision(
            escalation=replace(
                base.escalation, state=State.LEVEL_2, level=2, history=(*base.escalation.history, deadline)
            ),
            transition=deadline,
            target_ref="4016",
        )
    )
    assert [e.transition.actor for e in store.history(Platform.ZENDESK, "4016")] == ["501", "tierup"]
