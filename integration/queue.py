"""Background jobs on Huey: SQLite storage by default, Redis when `REDIS_URL` is set.

The webhook stores a delivery and enqueues its row id; the job hands it to the Worker
(integration.processing). Periodic jobs (the deadline check here; the SLA sweep, added by
the adapters) are registered on the same Huey instance with `register_periodic`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey
from huey.constants import EmptyData
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage

from integration.config import ConfigError, CoreSettings
from integration.liveness import has_ended, this_process
from integration.model import Platform
from integration.processing import Worker
from integration.store import sqlite_path

log = logging.getLogger("tierup.queue")

QUEUE_NAME = "tierup"
PROCESS_TASK = "tierup.process_delivery"
DEADLINE_TASK = "tierup.deadline_check"
RECOVERY_TASK = "tierup.recover_in_flight"


def queue_path(database_url: str) -> Path:
    """Huey's SQLite file: next to a SQLite database (tierup.db -> tierup-queue.db), else in the working dir."""
    db = sqlite_path(database_url)
    if db is None:
        return Path("tierup-queue.db")
    return db.with_name(f"{db.stem}-queue.db")


class WalSqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite storage, committing like the inbox does (store.make_engine): WAL with synchronous=NORMAL.

    Huey leaves SQLite's default, FULL, which syncs the file on every commit: about half a
    millisecond per enqueue, the largest cost of receiving a webhook. In WAL mode NORMAL keeps
    every commit through a crash of the process (SIGKILL included); only an operating-system
    crash can lose the newest, as it can the inbox row itself, and a stored delivery whose job
    is gone is queued again by in-flight recovery.
    """

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


def make_huey(settings: CoreSettings) -> Huey:
    """The Huey instance the settings describe: Redis when `redis_url` is set, else a SQLite file."""
    if settings.redis_url:
        try:
            return RedisHuey(QUEUE_NAME, url=settings.redis_url, results=False, utc=True)
        except ValueError:
            # redis-py's message quotes the part it could not read, which may be the password.
            raise ConfigError(
                "REDIS_URL is not a Redis URL it can read (redis://[:password@]host[:port][/db]; "
                "percent-encode an @, / or : in the password)"
            ) from None
    # Absolute: Huey opens a connection per thread, and a relative path would follow a later chdir.
    path = queue_path(settings.database_url).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(
        QUEUE_NAME, filename=str(path), results=False, utc=True, timeout=30, storage_class=WalSqliteStorage
    )


# --- per-ticket locks ------------------------------------------------------------------------


class HueyTicketLock:
    """A held ticket lock; `refresh` extends its lease."""

    def __init__(self, locks: HueyTicketLocks, key: str, owner: str) -> None:
        self._locks, self.key, self.owner = locks, key, owner

    def refresh(self) -> bool:
        return self._locks.refresh(self.key, self.owner)


class _Swap:
    """Compare-and-set on Huey's key-value storage: replace or remove a key's value only if it is still `expected`.

    Huey offers put_if_empty but nothing that replaces a value atomically; taking a stale
    lock over, or giving one back, by popping and putting back lets a third worker slip into
    the gap (two holders). Each storage does it in one step: one UPDATE / DELETE on
    SQLite's kv table, a Lua script on Redis, the storage's lock in memory (immediate mode).
    """

    _REDIS = """
        if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
        if ARGV[3] == '' then
            redis.call('HDEL', KEYS[1], ARGV[1])
        else
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        end
        return 1
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        if isinstance(storage, RedisStorage):
            self._script = storage.conn.register_script(self._REDIS)
        elif not isinstance(storage, SqliteStorage | MemoryStorage):
            raise TypeError(f"ticket locks need SQLite, Redis or memory storage, not {type(storage).__name__}")

    def __call__(self, key: str, expected: bytes, new: bytes | None) -> bool:
        """Put `new` (None: remove the key) where `key` holds `expected`; False when it holds anything else."""
        storage = self.storage
        if isinstance(storage, RedisStorage):
            return bool(self._script(keys=[storage.result_key], args=[key, expected, new or b""]))
        if isinstance(storage, SqliteStorage):
            with storage.db(commit=True) as cursor:
                if new is None:
                    cursor.execute("delete from kv where queue = ? and key = ? and value = ?",
                                   (storage.name, key, storage.to_blob(expected)))  # fmt: skip
                else:
                    cursor.execute("update kv set value = ? where queue = ? and key = ? and value = ?",
                                   (storage.to_blob(new), storage.name, key, storage.to_blob(expected)))  # fmt: skip
                return bool(cursor.rowcount == 1)
        with storage._lock:
            if storage._results.get(key, EmptyData) != expected:
                return False
            if new is None:
                del storage._results[key]
            else:
                storage._results[key] = new
            return True


class HueyTicketLocks:
    """Per-ticket locks in Huey's storage, so they hold across processes and machines.

    Huey's own lock_task has no expiry on SQLite, and a worker killed while holding one
    would block its ticket for good; these carry a lease, after which another worker may
    break them, and name their holder's process, so a worker on the same machine breaks
    them at once when that process has ended (integration.liveness).
    """

    def __init__(self, huey: Huey, *, lease_seconds: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.huey = huey
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._swap = _Swap(huey.storage)

    def key(self, platform: Platform, ticket_ref: str) -> str:
        return f"{self.huey.name}.lock.ticket:{platform.value}:{ticket_ref}"

    @contextmanager
    def hold(self, platform: Platform, ticket_ref: str) -> Iterator[HueyTicketLock | None]:
        """Hold the ticket's lock for the block, or yield None when another holder has it."""
        key = self.key(platform, ticket_ref)
        owner = uuid.uuid4().hex
        if not self._acquire(key, owner):
            yield None
            return
        try:
            yield HueyTicketLock(self, key, owner)
        finally:
            self._release(key, owner)

    def is_locked(self, platform: Platform, ticket_ref: str) -> bool:
        return bool(self.huey.storage.has_data_for_key(self.key(platform, ticket_ref)))

    def _value(self, owner: str) -> bytes:
        held = {"owner": owner, "expires": self.clock() + self.lease_seconds, "process": this_process()}
        return json.dumps(held).encode()

    @staticmethod
    def _read(raw: Any) -> dict[str, Any]:
        try:
            data = json.loads(bytes(raw))
        except (TypeError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _acquire(self, key: str, owner: str) -> bool:
        storage = self.huey.storage
        if storage.put_if_empty(key, self._value(owner)):
            return True
        current = storage.peek_data(key)
        if current is EmptyData:
            return bool(storage.put_if_empty(key, self._value(owner)))
        held = self._read(current)
        expires, process = held.get("expires"), held.get("process")
        ended = isinstance(process, str) and has_ended(process)
        if isinstance(expires, int | float) and expires > self.clock() and not ended:
            return False
        # The holder died without releasing (SIGKILL): its process has ended or its lease is over.
        # Taken over only if nobody renewed, released or took it since it was read.
        if not self._swap(key, bytes(current), self._value(owner)):
            return False
        log.warning("broke the stale lock %s (%s)", key, "its holder has ended" if ended else "lease over")
        return True

    def refresh(self, key: str, owner: str) -> bool:
        """Extend `owner`'s lease; False when it is not the holder any more (its lease ran out and was broken)."""
        current = self.huey.storage.peek_data(key)
        if current is EmptyData or self._read(current).get("owner") != owner:
            return False
        return self._swap(key, bytes(current), self._value(owner))

    def _release(self, key: str, owner: str) -> None:
        current = self.huey.storage.peek_data(key)
        if current is not EmptyData and self._read(current).get("owner") == owner:
            self._swap(key, bytes(current), None)  # refused: another worker took it over since; theirs stands


# --- tasks -----------------------------------------------------------------------------------


def every(interval_seconds: float) -> Callable[[datetime], bool]:
    """A periodic-task test for Huey: true once every `interval_seconds`, in whole minutes.

    Huey's scheduler looks at periodic tasks once a minute, so intervals below a minute
    run every minute.
    """
    minutes = max(1, math.ceil(interval_seconds / 60))

    def due(timestamp: datetime) -> bool:
        # Huey passes naive UTC.
        aware = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        return int(aware.timestamp() // 60) % minutes == 0

    return due


def register_periodic(huey: Huey, name: str, interval_seconds: float, fn: Callable[[], object]) -> Any:
    """Run `fn` every `interval_seconds` on whichever consumer's scheduler is up (one call per tick each).

    Several workers each run their own scheduler, so `fn` must tolerate running twice at
    once (take the ticket locks, check before acting).
    """

    def run() -> None:
        started = time.perf_counter()
        fn()
        log.debug("%s took %.3fs", name, time.perf_counter() - started)

    run.__name__ = name.rsplit(".", 1)[-1]
    run.__module__ = __name__
    return huey.periodic_task(every(interval_seconds), name=name)(run)


class TaskQueue:
    """The service's jobs on one Huey instance: process a delivery, check deadlines, recover."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._worker: Worker | None = None
        self.process_task = huey.task(name=PROCESS_TASK)(self._process)

    def attach(self, worker: Worker, *, deadline_interval: float, recovery_interval: float) -> None:
        """Give the jobs their worker and register the periodic ones."""
        self._worker = worker
        register_periodic(self.huey, DEADLINE_TASK, deadline_interval, worker.check_deadlines)
        register_periodic(self.huey, RECOVERY_TASK, recovery_interval, worker.recover_in_flight)

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            raise RuntimeError("TaskQueue has no worker attached")
        return self._worker

    def _process(self, row_id: int) -> None:
        self.worker.process(row_id)

    def enqueue(self, row_id: int) -> None:
        """Queue delivery `row_id` for processing now."""
        self.process_task(row_id)

    def enqueue_many(self, row_ids: Sequence[int]) -> None:
        """Queue deliveries for processing now, in order, in one write to the queue's storage.

        Huey enqueues one task per write; the receiver stores deliveries that arrive together
        in one statement (integration.intake) and queues their jobs the same way: one
        transaction on SQLite, one LPUSH on Redis (Huey's RedisStorage pops from the other end).
        """
        storage = self.huey.storage
        if self.huey.immediate or type(storage) not in (WalSqliteStorage, RedisStorage):
            for row_id in row_ids:
                self.enqueue(row_id)
            return
        messages = [self.huey.serialize_task(self.process_task.s(row_id)) for row_id in row_ids]
        if isinstance(storage, RedisStorage):
            storage.conn.lpush(storage.queue_key, *messages)
            return
        # One INSERT for all, committing on its own (Huey's connection is in autocommit).
        values = ", ".join(["(?, ?, 0)"] * len(messages))
        params = [p for m in messages for p in (storage.name, storage.to_blob(m))]
        with storage.lock:
            storage.conn.execute(f"insert into task (queue, data, priority) values {values}", params)

    def schedule(self, row_id: int, delay: float) -> None:
        """Queue delivery `row_id` to run in `delay` seconds (now when <= 0)."""
        if delay <= 0:
            self.enqueue(row_id)
        else:
            self.process_task.schedule(args=(row_id,), delay=delay)

    def depth(self) -> int:
        """Jobs waiting: queued now plus scheduled for later."""
        return int(self.huey.pending_count()) + int(self.huey.scheduled_count())

    def ping(self) -> None:
        """Raise unless the queue's storage answers."""
        conn = getattr(self.huey.storage, "conn", None)
        if isinstance(self.huey, RedisHuey) and conn is not None:
            conn.ping()
        else:
            self.huey.pending_count()

    def run_pending(self, limit: int = 10_000) -> int:
        """Execute queued jobs in this thread until none is left (commands and tests); returns how many."""
        ran = 0
        while ran < limit:
            task = self.huey.dequeue()
            if task is None:
                break
            self.huey.execute(task)
            ran += 1
        return ran

    def consumer(self, *, workers: int, periodic: bool = True) -> Any:
        """A Huey consumer running `workers` threads and the periodic scheduler."""
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=periodic, initial_delay=0.05, max_delay=1.0,
            check_worker_health=True,
        )  # fmt: skip
