"""The Zendesk SLA sweep source: breaches from the incremental ticket metric events export (SH3, SD1).

`GET /api/v2/incremental/ticket_metric_events.json?start_time=` is a time-based export:
up to 1,000 events a page in time order, with `end_time` to start the next page from. zenpy's
`client.ticket_metric_events(start_time=)` generator follows `next_page` on its own and hides
`end_time`, and the cursor must move one page at a time (only once that page is handled), so
the pages are read through the same zenpy session with the gateway's `_get`.

A `breach` event is dated ahead, when the target is set, and Zendesk marks it `deleted` when
the target is met in time (or changes). So a breach is real when it is not `deleted` and is
not dated after now; one dated after now is not a breach yet, and the cursor never moves past
now, so it is read again once due (if Zendesk has not deleted it by then, the target was
missed). A `fulfill` after the breach is the target met late: the SLA was breached all the
same, as Jira's `breached()` also says of a cycle completed late, and whether the sweep read
the breach before the fulfil or on the same page makes no difference. The
page's tickets are read together (`show_many`, 100 at a time), so the sweep does not read
them one by one, and each ticket once per run: a ticket an earlier page already gave comes
again without a snapshot (run_sweep decides each ticket once per run, from the first). The
export allows 10 requests a minute: a sliding-window limiter sleeps (through an injectable
sleep) before the 11th, and a 429 waits out its Retry-After.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from adapters.zendesk.gateway import ZendeskGateway
from adapters.zendesk.mapping import parse_time, text
from integration.model import Platform, TicketSnapshot
from integration.ports import TransientError, utcnow
from integration.sweep import Breach, SweepPage

log = logging.getLogger("tierup.zendesk.sweep")

EXPORT_PATH = "incremental/ticket_metric_events.json"
CURSOR_NAME = "ticket_metric_events"
PAGE_SIZE = 1000  # a full time-based export page; a shorter one is the last
EXPORT_REQUESTS_PER_MINUTE = 10
# Zendesk refuses a start_time less than a minute in the past.
MIN_AGE = timedelta(minutes=1)


class RateLimiter:
    """At most `limit` calls in any `window` seconds: waits (via `sleep`) before a call that would exceed it."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.sleep, self.monotonic = limit, window, sleep, monotonic
        self._calls: deque[float] = deque()
        self.waited = 0.0  # seconds slept so far (the benchmark reports it)

    def wait(self) -> None:
        """Block until one more call fits in the window, then count it."""
        now = self.monotonic()
        while self._calls and now - self._calls[0] >= self.window:
            self._calls.popleft()
        if len(self._calls) >= self.limit:
            pause = self.window - (now - self._calls[0])
            if pause > 0:
                self.sleep(pause)
                self.waited += pause
            self._calls.popleft()
            now = max(now + pause, self.monotonic())
        self._calls.append(now)


def _key(event: Mapping[str, Any]) -> tuple[str, str, str]:
    return (text(event.get("ticket_id")) or "", text(event.get("metric")) or "", text(event.get("instance_id")) or "")


def still_real_breaches(events: Sequence[Any]) -> list[tuple[Mapping[str, Any], datetime]]:
    """The page's breach events that still stand, in time order, each with its time.

    Dropped: breaches Zendesk marked `deleted` (the target was met in time, the SLA changed,
    or the ticket did); a later `fulfill` / `update_status` (the target met late) leaves a
    breach standing. Several breaches of the same ticket, metric and instance count as the
    newest. Events without a ticket, metric or readable time are skipped with a warning: one
    odd event must not stop the sweep.
    """
    readable: list[tuple[datetime, int, Mapping[str, Any]]] = []
    for position, event in enumerate(events):
        if not isinstance(event, Mapping):
            log.warning("skipping a ticket metric event that is not an object: %r", event)
            continue
        when = parse_time(event.get("time"))
        ticket, metric, _ = _key(event)
        if when is None or not ticket.isdigit() or not metric:
            log.warning("skipping ticket metric event %s: no ticket, metric or time", event.get("id"))
            continue
        readable.append((when, position, event))
    readable.sort(key=lambda item: (item[0], item[1]))
    standing: dict[tuple[str, str, str], tuple[Mapping[str, Any], datetime]] = {}
    for when, _, event in readable:
        if text(event.get("type")) == "breach" and event.get("deleted") is not True:
            standing[_key(event)] = (event, when)
    return sorted(standing.values(), key=lambda item: item[1])


@dataclass
class ZendeskSweepSource:
    """integration.sweep.SweepSource for Zendesk: still-real breaches from the metric events export."""

    gateway: ZendeskGateway
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    lookback: timedelta = timedelta(days=1)  # where a sweep with no cursor and no --since starts
    read_tickets: bool = True  # read each page's tickets with show_many (100 per call)
    page_size: int = PAGE_SIZE  # a page shorter than this is the export's last
    max_retry_after: float = 120.0  # a longer Retry-After ends this run; the next one resumes
    max_throttled: int = 3  # 429s in a row before this run gives up
    platform: Platform = field(default=Platform.ZENDESK, init=False)
    name: str = field(default=CURSOR_NAME, init=False)
    limiter: RateLimiter = field(init=False)
    _calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(EXPORT_REQUESTS_PER_MINUTE, 60.0, sleep=self.sleep, monotonic=self.monotonic)

    def api_calls(self) -> int:
        return self._calls

    def start_time(self, cursor: str | None, since: datetime | None) -> int:
        """The export's start_time: `since` when given, else the stored cursor, else now minus the lookback."""
        if since is not None:
            return int(since.timestamp())
        if cursor is not None and cursor.strip().isdigit():
            return int(cursor.strip())
        if cursor is not None:
            log.warning("ignoring unreadable sweep cursor %r; starting %s back", cursor, self.lookback)
        return int((self.clock() - self.lookback).timestamp())

    def pages(self, cursor: str | None, since: datetime | None) -> Iterator[SweepPage]:
        """Export pages from the start time, oldest first, each with its still-real breaches and its end_time."""
        start = first = self.start_time(cursor, since)
        given: set[str] = set()  # tickets read on an earlier page of this run
        gone: set[str] = set()  # tickets show_many did not return (deleted)
        while True:
            if start > (self.clock() - MIN_AGE).timestamp():
                return  # caught up: Zendesk would refuse a start_time this recent
            data = self._export(start)
            events = data.get("ticket_metric_events")
            if not isinstance(events, list):
                # Moving the cursor past a page we could not read would lose its breaches.
                raise TransientError("export ticket metric events: a page without a ticket_metric_events list")
            end_time = data.get("end_time")
            end = int(end_time) if isinstance(end_time, int | float) and not isinstance(end_time, bool) else None
            now = self.clock()
            standing = still_real_breaches(events)
            due = [(event, when) for event, when in standing if when <= now]
            if len(due) < len(standing):
                # A breach event dated after now is not a breach yet (the target may still be met,
                # and the event deleted): the cursor stops at now, so it is read again when due.
                first_ahead = min(when for _, when in standing if when > now)
                log.info("%d breach events are dated after now (the first %s): read again when due",
                         len(standing) - len(due), first_ahead.isoformat())  # fmt: skip
            breaches = self._breaches(due, given, gone)
            until = now.timestamp()
            resume = min(end, int(until)) if end is not None else None  # never past now
            done = min(max((end - first) / (until - first), 0.0), 1.0) if end is not None and until > first else None
            yield SweepPage(breaches, len(events), str(resume) if resume is not None else None, progress=done)
            if end is None or end <= start or end > until or len(events) < self.page_size:
                return
            if data.get("end_of_stream") is True:
                return
            if not data.get("next_page"):
                return
            start = end

    def _export(self, start: int) -> dict[str, Any]:
        throttled = 0
        while True:
            self.limiter.wait()
            self._calls += 1
            try:
                data = self.gateway._get(EXPORT_PATH, "export ticket metric events", {"start_time": str(start)})
            except TransientError as exc:
                throttled += 1
                after = exc.retry_after
                if after is None or after > self.max_retry_after or throttled > self.max_throttled:
                    raise
                log.info("metric events export throttled; waiting %.0fs as Zendesk asked", after)
                self.sleep(after)
                continue
            if not isinstance(data, dict):
                raise TransientError("export ticket metric events: Zendesk answered without an export page")
            return data

    def _breaches(
        self, standing: Sequence[tuple[Mapping[str, Any], datetime]], given: set[str], gone: set[str]
    ) -> list[Breach]:
        found = [
            Breach(
                ticket_ref=_key(event)[0],
                metric=_key(event)[1],
                breached_at=when,
                event_id=f"zendesk-sla:{text(event.get('id')) or '-'.join(_key(event))}",
            )
            for event, when in standing
        ]
        if not found or not self.read_tickets:
            return found
        refs = [r for r in dict.fromkeys(b.ticket_ref for b in found) if r not in given and r not in gone]
        snapshots: dict[str, TicketSnapshot] = {}
        for start in range(0, len(refs), self.gateway.max_batch):
            chunk = refs[start : start + self.gateway.max_batch]
            self._calls += 1
            snapshots.update(self.gateway.snapshots(chunk))
        kept: list[Breach] = []
        for breach in found:
            snapshot = snapshots.get(breach.ticket_ref)
            if snapshot is not None:
                kept.append(replace(breach, snapshot=snapshot))
            elif breach.ticket_ref in given:
                kept.append(breach)  # read on an earlier page: the run has its snapshot (and decides it once)
            elif breach.ticket_ref not in gone:
                gone.add(breach.ticket_ref)
                log.info("ticket %s breached %s but is gone (deleted); nothing to escalate", breach.ticket_ref,
                         breach.metric)  # fmt: skip
        given.update(snapshots)
        return kept
