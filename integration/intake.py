"""Receiving: store a verified delivery and queue it, with the deliveries that arrived alongside it.

Every receiver thread (a gunicorn thread, a `tierup serve` connection) calls `Intake.accept`,
which returns once its delivery is stored and queued. Deliveries accepted while another
thread is writing wait for it and are then written together by one of them: one INSERT for
all their rows and one queue write for all their jobs (group commit). Nothing waits on
purpose: a delivery that arrives alone is written at once, on its own. Together they cost
the database one commit instead of one each, which on PostgreSQL is most of a delivery's
cost (benchmarks/ingest.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from integration.store import Arrival, Inbox, Recorded

log = logging.getLogger("tierup.intake")

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 64


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done: threading.Event | None = None  # only a caller that waits needs one
        self.lead = False  # woken to write the next batch rather than with a result
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Calls from many threads, written by `write` in batches: what arrives during one write goes in the next.

    `write` takes a batch and returns one result per item, in order; a result that is an
    exception is raised to that item's caller alone. If `write` raises, every caller in the
    batch gets the exception. One thread writes at a time (the leader, itself a caller);
    when its batch is done it hands the lead to the first caller still waiting, so no
    caller keeps writing for others while its own answer is ready.
    """

    def __init__(self, write: Callable[[list[T]], Sequence[R | BaseException]], *, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T, R]] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """Callers waiting for the next write."""
        with self._lock:
            return len(self._waiting)

    def __call__(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            lead = not self._writing
            if lead:
                self._writing = True
            else:
                slot.done = threading.Event()
            self._waiting.append(slot)
        if slot.done is not None:
            slot.done.wait()
            if not slot.lead:
                return self._outcome(slot)
        self._lead()
        return self._outcome(slot)

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        try:
            results = self._write([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
            for s, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    s.error = result
                else:
                    s.result = result
        except BaseException as exc:
            for s in batch:
                s.error = exc
        finally:
            # Whatever happened, the next caller leads and this batch's callers get their outcome.
            with self._lock:
                if self._waiting:
                    after = self._waiting[0]
                    after.lead = True
                    cast(threading.Event, after.done).set()  # it waits: it came while this batch was written
                else:
                    self._writing = False
            for s in batch:
                if s.done is not None:
                    s.done.set()

    @staticmethod
    def _outcome(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # set with done when error is not


class Intake:
    """Stores deliveries in the inbox and queues the new ones, several at once when they arrive together.

    A delivery whose job could not be queued is still stored and accepted: in-flight recovery
    queues it once its lease is over.
    """

    def __init__(
        self,
        inbox: Inbox,
        enqueue: Callable[[Sequence[int]], None],
        *,
        written: Callable[[], object] = lambda: None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.inbox = inbox
        self.enqueue = enqueue
        self.written = written  # called once per write (a metric)
        self.group: GroupCommit[Arrival, Recorded] = GroupCommit(self._write, max_batch=max_batch)

    def accept(self, arrival: Arrival) -> Recorded:
        """Store `arrival` (or find its earlier copy) and, when new, queue it; returns once both are done."""
        return self.group(arrival)

    def _write(self, arrivals: list[Arrival]) -> Sequence[Recorded | Exception]:
        outcomes = self.inbox.record_many(arrivals)
        self.written()
        new = [r.id for r in outcomes if isinstance(r, Recorded) and r.created]
        if new:
            try:
                self.enqueue(new)
            except Exception:
                log.exception("stored %s but could not queue them; recovery will", ", ".join(map(str, new)))
        return outcomes
