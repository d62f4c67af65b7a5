"""The queue on Huey's SQLite storage and on Redis: jobs, delays, periodic tasks and per-ticket locks."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from huey import Huey, RedisHuey, SqliteHuey

from integration import queue as queue_module
from integration.config import ConfigError, CoreSettings
from integration.model import Platform
from integration.processing import RetryPolicy
from integration.queue import HueyTicketLocks, TaskQueue, every, make_huey, queue_path, register_periodic


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.scaleout)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> CoreSettings:
    if request.param == "sqlite":
        return CoreSettings(database_url=f"sqlite:///{tmp_path / 'tierup.db'}")
    return CoreSettings(redis_url=request.getfixturevalue("redis_url"))


@pytest.fixture
def huey(settings: CoreSettings) -> Huey:
    return make_huey(settings)


class RecordingWorker:
    """Stands in for integration.processing.Worker at the queue's seam: records what the jobs hand it."""

    def __init__(self) -> None:
        self.processed: list[int] = []

    def process(self, row_id: int) -> list[tuple[int, str]]:
        self.processed.append(row_id)
        return [(row_id, "processed")]

    def check_deadlines(self) -> list[object]:
        return []

    def recover_in_flight(self) -> list[int]:
        return []


def tasks_on(huey: Huey) -> tuple[TaskQueue, RecordingWorker]:
    tasks = TaskQueue(huey)
    worker = RecordingWorker()
    tasks.attach(worker, deadline_interval=60, recovery_interval=150)  # type: ignore[arg-type]
    return tasks, worker


def test_huey_is_sqlite_next_to_the_database_by_default(tmp_path: Path) -> None:
    huey = make_huey(CoreSettings(database_url=f"sqlite:///{tmp_path / 'data' / 'tierup.db'}"))
    assert isinstance(huey, SqliteHuey)
    assert Path(huey.storage.filename) == tmp_path / "data" / "tierup-queue.db"
    assert queue_path("postgresql://db.internal/tierup") == Path("tierup-queue.db")


def test_a_relative_queue_file_stays_where_it_was_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Huey opens a connection per thread: one opened after a chdir must still find the queue's tables."""
    monkeypatch.chdir(tmp_path)
    huey = make_huey(CoreSettings(database_url="postgresql://db.internal/tierup"))
    tasks, _ = tasks_on(huey)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    queued = threading.Thread(target=tasks.enqueue_many, args=([7],))  # a new thread: a new connection
    queued.start()
    queued.join()
    assert huey.pending_count() == 1
    assert Path(huey.storage.filename) == tmp_path / "tierup-queue.db"
    assert not (elsewhere / "tierup-queue.db").exists()


def test_the_sqlite_queue_commits_like_the_inbox(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL: a commit survives SIGKILL without an fsync per enqueue (benchmarks/ingest.py)."""
    huey = make_huey(CoreSettings(database_url=f"sqlite:///{tmp_path / 'tierup.db'}"))
    conn = huey.storage.conn
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert conn.execute("pragma synchronous").fetchone()[0] == 1  # NORMAL; Huey's default is FULL (2)


def test_an_unreadable_redis_url_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL is not a Redis URL") as caught:
        make_huey(CoreSettings(redis_url="redis://:Redis/Pw-77@cache:6379/0"))
    assert "Redis/Pw" not in str(caught.value) and "Pw-77" not in str(caught.value)


def test_huey_is_redis_when_redis_url_is_set() -> None:
    huey = make_huey(CoreSettings(redis_url="redis://127.0.0.1:6379/15"))
    assert isinstance(huey, RedisHuey)  # connects lazily: nothing is reached here


def test_enqueue_and_run(huey: Huey) -> None:
    tasks, worker = tasks_on(huey)
    tasks.enqueue(7)
    tasks.enqueue(8)
    assert tasks.depth() == 2
    tasks.ping()

    assert tasks.run_pending() == 2
    assert worker.processed == [7, 8]
    assert tasks.depth() == 0


def test_jobs_queued_together_run_in_their_order(huey: Huey) -> None:
    tasks, worker = tasks_on(huey)
    tasks.enqueue_many([5, 3, 9])  # one write for the three (integration.intake)
    tasks.enqueue(1)

    assert tasks.depth() == 4
    assert tasks.run_pending() == 4
    assert worker.processed == [5, 3, 9, 1]


def test_schedule_puts_an_eta_on_the_job(huey: Huey) -> None:
    tasks, worker = tasks_on(huey)
    before = datetime.now(UTC).replace(tzinfo=None)
    tasks.schedule(9, 90.0)
    tasks.schedule(10, 0)  # now

    tasks.run_pending()  # the delayed job goes to the schedule, the immediate one runs

    assert worker.processed == [10]
    [later] = huey.scheduled()
    assert later.args == (9,)
    assert 89 <= (later.eta - before).total_seconds() <= 91
    assert tasks.depth() == 1


def test_periodic_tasks_run_at_their_interval() -> None:
    every_five = every(300)
    minutes = [datetime(2026, 3, 10, 10, m, tzinfo=UTC) for m in range(10)]
    assert [m.minute for m in minutes if every_five(m)] == [0, 5]
    assert all(every(30)(m) for m in minutes)  # below a minute: every minute (Huey's tick)
    assert every(60)(datetime(2026, 3, 10, 10, 7))  # Huey passes naive UTC


def test_register_periodic_adds_a_named_periodic_task(huey: Huey) -> None:
    calls: list[str] = []
    register_periodic(huey, "tierup.sla_sweep.zendesk", 300, lambda: calls.append("swept"))
    [task] = [t for t in huey._registry.periodic_tasks if t.name == "tierup.sla_sweep.zendesk"]
    assert task.validate_datetime(datetime(2026, 3, 10, 10, 5))
    assert not task.validate_datetime(datetime(2026, 3, 10, 10, 6))
    task.execute()
    assert calls == ["swept"]


def test_retry_policy_backs_off_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_seconds=5, factor=2, max_seconds=60)
    assert [policy.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert policy.delay(1, retry_after=120) == 120
    # Retry-After is the earliest to come back, not a schedule: a short one during a long outage (a 503
    # saying 2 s for a minute) would spend every attempt in seconds and fail the delivery.
    assert policy.delay(4, retry_after=2) == 40
    assert policy.delay(1, retry_after=10**9) == policy.max_retry_after


# --- per-ticket locks -----------------------------------------------------------------------------


def test_a_ticket_lock_is_exclusive_and_released(huey: Huey) -> None:
    locks = HueyTicketLocks(huey, lease_seconds=60)
    with locks.hold(Platform.ZENDESK, "4016") as first:
        assert first is not None
        assert locks.is_locked(Platform.ZENDESK, "4016")
        with locks.hold(Platform.ZENDESK, "4016") as second:
            assert second is None
        with locks.hold(Platform.JIRA, "4016") as other_platform, locks.hold(Platform.ZENDESK, "4017") as other:
            assert other_platform is not None and other is not None
    assert not locks.is_locked(Platform.ZENDESK, "4016")
    with locks.hold(Platform.ZENDESK, "4016") as again:
        assert again is not None


def test_a_lock_holds_across_huey_instances(settings: CoreSettings, huey: Huey) -> None:
    # Two processes build two Huey instances on the same storage.
    twin = make_huey(settings)
    with HueyTicketLocks(huey).hold(Platform.ZENDESK, "4016") as held:
        assert held is not None
        with HueyTicketLocks(twin).hold(Platform.ZENDESK, "4016") as other:
            assert other is None


def test_a_dead_holders_lock_is_broken_after_its_lease(huey: Huey) -> None:
    now = [1_000_000.0]
    locks = HueyTicketLocks(huey, lease_seconds=60, clock=lambda: now[0])
    key = locks.key(Platform.ZENDESK, "4016")
    assert locks._acquire(key, "killed-worker")  # SIGKILL: never released

    now[0] += 59
    with locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is None
    now[0] += 2
    with locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is not None


def test_a_lock_whose_holder_process_has_ended_is_broken_at_once(huey: Huey, monkeypatch: pytest.MonkeyPatch) -> None:
    locks = HueyTicketLocks(huey, lease_seconds=300)
    key = locks.key(Platform.ZENDESK, "4016")
    monkeypatch.setattr(queue_module, "this_process", lambda: "the-killed-worker")
    assert locks._acquire(key, "killed-worker")  # SIGKILL: never released, its lease far from over
    monkeypatch.setattr(queue_module, "this_process", lambda: "the-restarted-worker")

    monkeypatch.setattr(queue_module, "has_ended", lambda process: False)  # alive, or not to be told from here
    with locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is None
    monkeypatch.setattr(queue_module, "has_ended", lambda process: process == "the-killed-worker")
    with locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is not None
        held = json.loads(bytes(huey.storage.peek_data(key)))
        assert held["process"] == "the-restarted-worker"


def test_workers_finding_one_stale_lock_at_once_leave_it_one_holder(huey: Huey) -> None:
    # Breaking a stale lock used to pop it and put back what was not ours: a third worker
    # could take it in that gap, while the second still believed it had broken it.
    locks = HueyTicketLocks(huey, lease_seconds=300)
    key = locks.key(Platform.ZENDESK, "4016")
    rounds, workers, doubles = 60, 6, []
    for n in range(rounds):
        huey.storage.put_data(key, json.dumps({"owner": "killed", "expires": 0, "process": "x/1/-"}).encode())
        won: list[int] = []
        gate = threading.Barrier(workers)

        def take(i: int, n: int, gate: threading.Barrier, won: list[int]) -> None:
            gate.wait()
            if locks._acquire(key, f"worker-{n}-{i}"):
                won.append(i)

        threads = [threading.Thread(target=take, args=(i, n, gate, won)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        holder = json.loads(bytes(huey.storage.peek_data(key)))["owner"]
        if len(won) != 1 or holder != f"worker-{n}-{won[0]}":
            doubles.append((n, won, holder))
    assert doubles == []


def test_only_the_holder_gives_a_lock_back(huey: Huey) -> None:
    now = [1_000_000.0]
    locks = HueyTicketLocks(huey, lease_seconds=60, clock=lambda: now[0])
    key = locks.key(Platform.ZENDESK, "4016")
    assert locks._acquire(key, "first")
    now[0] += 61
    assert locks._acquire(key, "second")  # the first's lease ran out
    locks._release(key, "first")  # the first finishes late: it must not release the second's
    assert json.loads(bytes(huey.storage.peek_data(key)))["owner"] == "second"
    locks._release(key, "second")
    assert not locks.is_locked(Platform.ZENDESK, "4016")


def test_refresh_extends_the_lease(huey: Huey) -> None:
    now = [1_000_000.0]
    locks = HueyTicketLocks(huey, lease_seconds=60, clock=lambda: now[0])
    with locks.hold(Platform.ZENDESK, "4016") as lock:
        assert lock is not None
        now[0] += 50
        assert lock.refresh()
        now[0] += 50  # 100 s after taking it, 50 s after the refresh
        with locks.hold(Platform.ZENDESK, "4016") as other:
            assert other is None


def test_releasing_after_the_lease_was_broken_leaves_the_new_holder_alone(huey: Huey) -> None:
    now = [1_000_000.0]
    locks = HueyTicketLocks(huey, lease_seconds=60, clock=lambda: now[0])
    with locks.hold(Platform.ZENDESK, "4016") as slow:
        assert slow is not None
        now[0] += 61
        with locks.hold(Platform.ZENDESK, "4016") as taker:
            assert taker is not None
            assert not slow.refresh()  # the slow holder learns it lost the lock
            assert taker.refresh()
            # The slow holder finishes first and releases: the taker keeps the lock.
            locks._release(slow.key, slow.owner)
            assert locks.is_locked(Platform.ZENDESK, "4016")
            with locks.hold(Platform.ZENDESK, "4016") as third:
                assert third is None


def test_only_one_thread_holds_a_ticket_at_a_time(huey: Huey) -> None:
    locks = HueyTicketLocks(huey, lease_seconds=60)
    inside = 0
    most = 0
    guard = threading.Lock()
    got = 0

    def contend() -> None:
        nonlocal inside, most, got
        for _ in range(30):
            with locks.hold(Platform.ZENDESK, "4016") as lock:
                if lock is None:
                    continue
                with guard:
                    inside += 1
                    most = max(most, inside)
                    got += 1
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    assert got > 0
