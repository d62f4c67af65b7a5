"""The Zendesk SLA sweep under the real zenpy client, with Zendesk answered by `responses`.

The metric events export pages by time, the page's tickets are read with show_many, the
escalations go out as update_many jobs (polled), and every decision lands in the SQLite
store with the sweep as its actor.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from adapters.zendesk.gateway import ZendeskGateway, zenpy_client
from adapters.zendesk.settings import ZendeskSettings
from adapters.zendesk.sweep import CURSOR_NAME, RateLimiter, ZendeskSweepSource, still_real_breaches
from integration.cli.ops import Runtime
from integration.cli.sweep import SWEEP_TASK_PREFIX, sweep_once
from integration.model import Platform, State
from integration.policy import Policy, load_policy
from integration.sweep import SWEEP_ACTOR, SweepReport, run_sweep, sweep_source_of
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock
from tests.sweep.conftest import T0, Sleeps, SweepStorage, ZendeskSweepApi, epoch, metric_event
from tests.zendesk.helpers import GROUP_IDS, NOTE_FIELD, NOW, changed, env, fixture, signed_headers

LEADS = "Technical Support Team Leaders"


def make_source(sleeps: Sleeps, clock: Any = lambda: NOW) -> tuple[ZendeskGateway, ZendeskSweepSource]:
    settings = ZendeskSettings.from_env(env())
    assert settings is not None
    gateway = ZendeskGateway(settings=settings, client=zenpy_client(settings), sleep=sleeps)
    return gateway, ZendeskSweepSource(gateway, clock=clock, sleep=sleeps, monotonic=sleeps.monotonic)


def sweep(
    storage: SweepStorage,
    source: ZendeskSweepSource,
    sleeps: Sleeps,
    *,
    policy: Policy | None = None,
    since: datetime | None = None,
    clock: Any = lambda: NOW,
) -> SweepReport:
    return run_sweep(
        source,
        policy=policy or load_policy("lead-review"),
        gateway=source.gateway,
        store=storage.escalations,
        cursors=storage.cursors,
        locks=storage.locks,
        clock=clock,
        since=since,
        sleep=sleeps,
    )


def fillers(start_id: int, first: datetime, count: int, ticket: int = 999) -> list[dict[str, Any]]:
    """`count` activate events one second apart: the bulk of a real export page."""
    return [metric_event(start_id + i, ticket, "activate", first + timedelta(seconds=i)) for i in range(count)]


def escalated_transitions(storage: SweepStorage, ref: str) -> int:
    return sum(
        1
        for e in storage.escalations.history(Platform.ZENDESK, ref)
        if e.transition.to_state is State.ESCALATED and e.transition.from_state is not State.ESCALATED
    )


# --- which breaches are still real ---------------------------------------------------------------


def test_a_breach_stands_unless_zendesk_deleted_it_a_late_fulfil_does_not_undo_it() -> None:
    # Zendesk dates a breach event ahead, when the target is set, and marks it deleted when the
    # target is met in time. A fulfil after the breach is a target met late: the SLA was breached
    # all the same, whether the sweep read the breach before the fulfil or on the same page.
    at = T0
    events = [
        metric_event(1, 101, "apply_sla", at),
        metric_event(2, 101, "breach", at + timedelta(minutes=5)),  # stands
        metric_event(3, 102, "breach", at + timedelta(minutes=5)),  # stands: fulfilled late
        metric_event(4, 102, "fulfill", at + timedelta(minutes=9)),
        metric_event(5, 103, "breach", at + timedelta(minutes=6), deleted=True),  # Zendesk withdrew it
        metric_event(10, 106, "breach", at + timedelta(minutes=7)),  # stands: fulfilled late, times updated
        metric_event(11, 106, "update_status", at + timedelta(minutes=9)),
        metric_event(12, 107, "fulfill", at + timedelta(minutes=1)),
        metric_event(13, 107, "breach", at + timedelta(minutes=2)),  # stands
        {"id": 14, "type": "breach", "metric": "reply_time", "time": "not a time", "ticket_id": 108},
        "not an event",
    ]
    kept = still_real_breaches(events)
    assert [(e["id"], e["ticket_id"]) for e, _ in kept] == [(13, 107), (2, 101), (3, 102), (10, 106)]
    assert kept[1][1] == at + timedelta(minutes=5)


def test_sh3_a_breach_met_late_escalates_though_its_fulfil_is_on_the_same_page(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    # Before, a fulfil on the same page undid the breach, while one read a run later did not:
    # whether the ticket escalated hung on when the sweep happened to run.
    zendesk.events = [
        metric_event(8001, 301, "breach", T0 + timedelta(seconds=100)),
        metric_event(8002, 301, "fulfill", T0 + timedelta(seconds=400)),  # the reply came five minutes late
        metric_event(8003, 301, "update_status", T0 + timedelta(seconds=400)),
    ]
    zendesk.open_tickets([301])
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)

    assert (report.breaches, report.tickets_escalated) == (1, 1)
    esc = storage.escalations.load(Platform.ZENDESK, "301")
    assert esc is not None and esc.state is State.ESCALATED
    assert esc.history[-1].rule == "SH3" and esc.history[-1].delivery_id == "zendesk-sla:8001"
    assert "sla_breached" in zendesk.tags("301")


# --- a paged export -----------------------------------------------------------------------------


def paged_events() -> list[dict[str, Any]]:
    """Page one: 1,000 events with breaches of 101, 103, 105 standing and 102, 104 not; page two: 106."""
    events = fillers(1, T0, 1000)
    interesting = [
        metric_event(5001, 101, "breach", T0 + timedelta(seconds=100)),
        metric_event(5002, 102, "breach", T0 + timedelta(seconds=110), deleted=True),  # met in time
        metric_event(5003, 102, "fulfill", T0 + timedelta(seconds=105)),
        metric_event(5004, 103, "breach", T0 + timedelta(seconds=130), metric="agent_work_time"),
        metric_event(5005, 104, "breach", T0 + timedelta(seconds=140), deleted=True),
        metric_event(5006, 105, "breach", T0 + timedelta(seconds=150)),
        metric_event(5007, 105, "breach", T0 + timedelta(seconds=151), metric="requester_wait_time"),
    ]
    # Replace fillers at those seconds so every event keeps a second of its own.
    taken = {e["time"] for e in interesting}
    events = [e for e in events if e["time"] not in taken] + interesting
    assert len(events) == 1000
    page_two = [
        metric_event(6001, 106, "breach", T0 + timedelta(seconds=2000)),
        metric_event(6002, 107, "breach", T0 + timedelta(seconds=2001), deleted=True),  # met in time
        metric_event(6003, 107, "fulfill", T0 + timedelta(seconds=2000, milliseconds=500)),
        *fillers(7000, T0 + timedelta(seconds=2003), 10),
    ]
    return events + page_two


def test_a_paged_export_escalates_each_standing_breach_once_in_bulk(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = paged_events()
    zendesk.open_tickets(range(101, 108))
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)

    first_end = epoch(T0 + timedelta(seconds=999))
    assert zendesk.export_starts() == [epoch(T0), first_end]
    assert zendesk.show_many_calls() == [["101", "103", "105"], ["106"]]
    bodies = zendesk.bulk_bodies()
    # Page one's three tickets wait for page two's: one bulk write for the run, not one per page.
    assert [[t["id"] for t in body] for body in bodies] == [[101, 103, 105, 106]]
    item = bodies[0][0]
    assert item["additional_tags"] == ["escalated", "sla_breached"]
    assert item["group_id"] == GROUP_IDS[LEADS]
    assert item["priority"] == "high"
    assert item["comment"] == {
        "html_body": f"<p>An SLA was breached: escalated automatically to {LEADS}.</p>",
        "public": False,
    }
    assert item["metadata"] == {"tierup_key": "zendesk-sla:5001:1", "tierup_part": "main"}
    assert "safe_update" not in item
    assert zendesk.single_puts() == []
    assert "sla_breached" in zendesk.tags("101") and "sla_breached" not in zendesk.tags("102")

    for ref in ("101", "103", "105", "106"):
        esc = storage.escalations.load(Platform.ZENDESK, ref)
        assert esc is not None and esc.state is State.ESCALATED and esc.group == LEADS
        (entry,) = storage.escalations.history(Platform.ZENDESK, ref)
        assert (entry.transition.actor, entry.transition.rule) == (SWEEP_ACTOR.id, "SH3")
        assert entry.dry_run is False
    # Ticket 105 breached twice (two metrics): one escalation, dated by the first breach.
    (entry,) = storage.escalations.history(Platform.ZENDESK, "105")
    assert entry.transition.delivery_id == "zendesk-sla:5006"
    for ref in ("102", "104", "107"):
        assert storage.escalations.load(Platform.ZENDESK, ref) is None

    last_end = epoch(T0 + timedelta(seconds=2012))
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(last_end)
    assert (report.pages, report.events_read, report.breaches) == (2, 1000 + 14, 5)
    assert (report.tickets_escalated, report.bulk_writes, report.single_writes) == (4, 1, 0)
    assert report.complete and report.errors == []
    # 2 exports + 2 show_many + 1 update_many + 2 polls (working, then completed).
    assert report.api_calls == len(zendesk.mock.calls) == 7
    assert source.limiter.waited == 0.0 and sleeps.waits == [0.25, 0.5]


def test_the_next_run_starts_from_the_stored_cursor_and_finds_nothing_new(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = paged_events()
    zendesk.open_tickets(range(101, 108))
    _, source = make_source(sleeps)
    sweep(storage, source, sleeps, since=T0)
    calls = len(zendesk.mock.calls)

    again = sweep(storage, source, sleeps)
    starts = zendesk.export_starts()
    assert starts[-1] == epoch(T0 + timedelta(seconds=2012))  # the stored cursor, not T0
    assert len(zendesk.mock.calls) == calls + 1  # one export call, nothing to read or write
    assert (again.events_read, again.breaches, again.tickets_escalated) == (1, 0, 0)


# --- a crash between pages ------------------------------------------------------------------------


def test_a_failed_second_bulk_write_keeps_the_cursor_after_page_one_and_the_rerun_escalates_nothing_twice(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    # 180 tickets breaching one second apart, 60 events a page: pages of 60, 60, 60 and 3 events (the
    # event at each boundary comes again on the next page), 60 + 59 + 59 + 2 tickets.
    refs = list(range(1000, 1180))
    zendesk.events = [metric_event(i + 1, ref, "breach", T0 + timedelta(seconds=i)) for i, ref in enumerate(refs)]
    zendesk.open_tickets(refs)
    zendesk.page_size, zendesk.working_polls = 60, 0
    zendesk.bulk_failures = [None, (500, {"error": "InternalError", "description": "try later"}, {})]
    _, source = make_source(sleeps)
    source.page_size = 60
    first = sweep(storage, source, sleeps, since=T0)

    ends = [epoch(T0 + timedelta(seconds=s)) for s in (59, 118, 177, 179)]
    assert zendesk.export_starts() == [epoch(T0), *ends[:3]]
    # Each ticket is read once, the one at a page boundary too (1059 and 1118 are not asked for again).
    assert [[int(i) for i in ids] for ids in zendesk.show_many_calls()] == [
        refs[:60], refs[60:119], refs[119:178], refs[178:]
    ]  # fmt: skip
    # Two writes for the run: 100 (page one and 40 of page two), then the other 80, which fails.
    assert [[t["id"] for t in body] for body in zendesk.bulk_bodies()] == [refs[:100], refs[100:]]
    assert not first.complete and "Zendesk answered 500" in first.errors[0]
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(ends[0])  # page one's: all of it landed
    assert all(escalated_transitions(storage, str(r)) == 1 for r in refs[:100])
    assert all(storage.escalations.load(Platform.ZENDESK, str(r)) is None for r in refs[100:])
    assert zendesk.single_puts() == []  # a 5xx on the bulk write is not retried ticket by ticket now

    # The rerun (no --since) reads from page two: its first 41 tickets are recognised, the other 80 are one write.
    second = sweep(storage, source, sleeps)
    assert zendesk.export_starts()[4:] == ends[:3]
    assert [[t["id"] for t in body] for body in zendesk.bulk_bodies()][2:] == [refs[100:]]
    assert (second.complete, second.tickets_escalated, second.already_handled, second.bulk_writes) == (True, 80, 41, 1)
    assert all(escalated_transitions(storage, str(r)) == 1 for r in refs)
    assert all(len(storage.escalations.history(Platform.ZENDESK, str(r))) == 1 for r in refs)
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(ends[3])


def test_a_bulk_write_that_landed_unreported_is_not_sent_again_on_the_rerun(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0), metric_event(2, 102, "breach", T0 + timedelta(seconds=1))]
    zendesk.open_tickets([101, 102])
    zendesk.working_polls = 10_000  # the job lands, but its status never says so within the wait
    _, source = make_source(sleeps)
    first = sweep(storage, source, sleeps, since=T0)
    assert not first.complete and "still" in first.errors[0]
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) is None  # read again next run
    assert [len(zendesk.comments[r]) for r in ("101", "102")] == [1, 1]  # yet it landed

    zendesk.working_polls = 0
    second = sweep(storage, source, sleeps)
    assert second.complete and second.tickets_escalated == 2
    assert [len(zendesk.comments[r]) for r in ("101", "102")] == [1, 1]  # not posted twice
    assert [c for c in zendesk.mock.calls if "/audits.json" in c.request.url]  # what landed was asked of each
    assert all(escalated_transitions(storage, r) == 1 for r in ("101", "102"))


def test_a_page_read_again_recognises_the_breaches_it_already_handled(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0), metric_event(2, 102, "breach", T0 + timedelta(seconds=1))]
    zendesk.open_tickets([101, 102])
    _, source = make_source(sleeps)
    sweep(storage, source, sleeps, since=T0)
    again = sweep(storage, source, sleeps, since=T0)  # e.g. a run that died before storing the cursor
    assert again.already_handled == 2 and again.tickets_escalated == 0
    assert len(zendesk.bulk_bodies()) == 1
    assert [len(storage.escalations.history(Platform.ZENDESK, r)) for r in ("101", "102")] == [1, 1]


AHEAD = NOW + timedelta(hours=2)  # when ticket 202's target will be missed, unless met first


def sweep_with_a_breach_ahead(storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps) -> SweepReport:
    """A sweep at NOW of a page with 201's breach in the past and 202's dated AHEAD."""
    zendesk.events = [
        metric_event(7001, 201, "activate", T0),
        metric_event(7002, 201, "breach", T0 + timedelta(minutes=5)),
        metric_event(7003, 202, "activate", T0 + timedelta(minutes=10)),
        metric_event(7004, 202, "breach", AHEAD),
    ]
    zendesk.open_tickets([201, 202])
    _, source = make_source(sleeps)
    return sweep(storage, source, sleeps, since=T0)


def sweep_again_once_due(storage: SweepStorage, sleeps: Sleeps) -> SweepReport:
    later = AHEAD + timedelta(minutes=2)
    _, source = make_source(sleeps, clock=lambda: later)
    return sweep(storage, source, sleeps, clock=lambda: later)


def test_a_breach_dated_after_now_is_escalated_once_it_is_due(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    report = sweep_with_a_breach_ahead(storage, zendesk, sleeps)

    assert escalated_transitions(storage, "201") == 1
    assert storage.escalations.load(Platform.ZENDESK, "202") is None  # not breached yet
    assert zendesk.show_many_calls() == [["201"]]
    assert (report.breaches, report.tickets_escalated) == (1, 1)
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(epoch(NOW))  # never past now

    again = sweep_again_once_due(storage, sleeps)
    assert zendesk.export_starts()[-1] == epoch(NOW)
    assert escalated_transitions(storage, "202") == 1
    assert escalated_transitions(storage, "201") == 1
    assert (again.breaches, again.tickets_escalated) == (1, 1)


def test_a_breach_dated_after_now_that_zendesk_deletes_is_never_escalated(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    sweep_with_a_breach_ahead(storage, zendesk, sleeps)

    # The agent replies in time: Zendesk fulfils the target and deletes the breach it had dated ahead.
    zendesk.events[3]["deleted"] = True
    zendesk.events.insert(3, metric_event(7005, 202, "fulfill", NOW + timedelta(hours=1)))
    again = sweep_again_once_due(storage, sleeps)
    assert storage.escalations.load(Platform.ZENDESK, "202") is None
    assert (again.breaches, again.tickets_escalated) == (0, 0)


def test_a_ticket_on_several_pages_is_read_and_decided_once_per_run(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.page_size, zendesk.working_polls = 3, 0
    zendesk.events = [
        metric_event(1, 101, "breach", T0, metric="reply_time"),
        metric_event(2, 102, "breach", T0 + timedelta(seconds=1)),  # deleted: show_many leaves it out
        metric_event(3, 103, "breach", T0 + timedelta(seconds=2)),
        metric_event(4, 101, "breach", T0 + timedelta(seconds=3), metric="agent_work_time"),
        metric_event(5, 102, "breach", T0 + timedelta(seconds=4), metric="agent_work_time"),
        metric_event(6, 104, "breach", T0 + timedelta(seconds=5)),
        metric_event(7, 101, "breach", T0 + timedelta(seconds=6), metric="requester_wait_time"),
    ]
    zendesk.open_tickets([101, 103, 104])
    _, source = make_source(sleeps)
    source.page_size = 3
    report = sweep(storage, source, sleeps, since=T0)

    # Pages [1 2 3], [3 4 5], [5 6 7], [7]: 101, 102 and 103 are asked for once, 104 when it first comes.
    assert zendesk.show_many_calls() == [["101", "102", "103"], ["104"]]
    assert [[t["id"] for t in body] for body in zendesk.bulk_bodies()] == [[101, 103, 104]]
    (entry,) = storage.escalations.history(Platform.ZENDESK, "101")
    assert entry.transition.delivery_id == "zendesk-sla:1"  # dated by its first breach
    assert storage.escalations.load(Platform.ZENDESK, "102") is None
    assert (report.pages, report.breaches, report.tickets, report.tickets_escalated) == (4, 7, 3, 3)
    assert (report.already_handled, report.complete) == (0, True)


# --- 100 tickets per bulk write ---------------------------------------------------------------------


def test_250_breached_tickets_make_three_bulk_writes_of_100_100_and_50(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    refs = list(range(1000, 1250))
    zendesk.events = [metric_event(i, ref, "breach", T0 + timedelta(seconds=i)) for i, ref in enumerate(refs)]
    zendesk.open_tickets(refs)
    zendesk.working_polls = 0
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)

    bodies = zendesk.bulk_bodies()
    assert [len(b) for b in bodies] == [100, 100, 50]
    assert [t["id"] for b in bodies for t in b] == refs
    assert [len(ids) for ids in zendesk.show_many_calls()] == [100, 100, 50]
    assert zendesk.single_puts() == [] and zendesk.count(lambda m, u: "/tickets/1" in u and m == "GET") == 0
    assert report.tickets_escalated == 250 and report.bulk_writes == 3
    assert report.api_calls == 1 + 3 + 3 + 3  # export, show_many, update_many, one poll each
    assert all(escalated_transitions(storage, str(r)) == 1 for r in refs[::25])


def test_a_ticket_the_job_could_not_update_is_written_alone_and_recorded(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0), metric_event(2, 102, "breach", T0 + timedelta(seconds=1))]
    zendesk.open_tickets([101, 102])
    zendesk.failing_ids = {"102"}
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)

    [[ok, failed]] = zendesk.bulk_bodies()
    assert (ok["id"], failed["id"]) == (101, 102)
    [(ref, put)] = zendesk.single_puts()
    # Written alone with the same transition key, after checking what of it already landed.
    assert ref == "102" and put["metadata"]["tierup_key"] == "zendesk-sla:2:1"
    assert put["additional_tags"] == ["escalated", "sla_breached"] and put["safe_update"] is True
    assert zendesk.count(lambda m, u: m == "GET" and "/tickets/102/audits.json" in u) == 1
    assert report.tickets_escalated == 2 and report.single_writes == 1 and report.failed == 0
    assert escalated_transitions(storage, "102") == 1


def test_deleted_and_closed_tickets_are_skipped(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0), metric_event(2, 102, "breach", T0 + timedelta(seconds=1))]
    zendesk.open_tickets([102], ticket__status="closed")  # 101 is gone: show_many leaves it out
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)
    assert zendesk.bulk_bodies() == [] and zendesk.single_puts() == []
    assert (report.breaches, report.skipped, report.tickets_escalated) == (1, 1, 0)
    assert report.complete and storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(epoch(T0) + 1)


# --- the export's limits ---------------------------------------------------------------------------


def test_a_429_waits_out_its_retry_after_and_carries_on(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0)]
    zendesk.open_tickets([101])
    zendesk.export_failures = [(429, {"error": "TooManyRequests"}, {"Retry-After": "37"})]
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)
    assert sleeps.waits[0] == 37.0
    assert zendesk.export_starts() == [epoch(T0), epoch(T0)]
    assert report.complete and report.tickets_escalated == 1


def test_a_long_retry_after_ends_the_run_without_moving_the_cursor(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.events = [metric_event(1, 101, "breach", T0)]
    zendesk.export_failures = [(429, {"error": "TooManyRequests"}, {"Retry-After": "3600"})]
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)
    assert not report.complete and "429" in report.errors[0]
    assert sleeps.waits == [] and storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) is None


def test_an_unreadable_export_page_stops_the_run_without_moving_the_cursor(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.export_failures = [(200, {"end_time": epoch(NOW), "count": 3}, {})]
    _, source = make_source(sleeps)
    report = sweep(storage, source, sleeps, since=T0)
    assert not report.complete and "without a ticket_metric_events list" in report.errors[0]
    assert storage.cursors.get(Platform.ZENDESK, CURSOR_NAME) is None


def test_the_export_is_limited_to_ten_requests_a_minute(sleeps: Sleeps) -> None:
    limiter = RateLimiter(10, 60.0, sleep=sleeps, monotonic=sleeps.monotonic)
    for _ in range(10):
        limiter.wait()
        sleeps.now += 1.0  # each export takes a second
    limiter.wait()  # the 11th, 10 s after the first: waits until the first is a minute old
    assert sleeps.waits == [50.0]
    limiter.wait()
    assert sleeps.waits == [50.0, 1.0]


def test_twelve_pages_make_the_sweep_wait_for_the_export_limit(
    storage: SweepStorage, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.page_size = 10
    zendesk.events = fillers(1, T0, 111)
    _, source = make_source(sleeps)
    source.page_size = 10
    report = sweep(storage, source, sleeps, since=T0)
    assert report.pages == 13 and len(zendesk.export_starts()) == 13
    # No time passes between calls here: the 11th waits a full minute, after which the window is free again.
    assert sleeps.waits == [60.0] and source.limiter.waited == 60.0
    assert report.complete


# --- push and sweep for the same ticket --------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def runtime(new_runtime: NewRuntime, clock: Clock, sleeps: Sleeps) -> Runtime:
    return with_sleeps(new_runtime({**env(), "TIERUP_POLICY": "lead-review"}, clock=clock), sleeps)


def with_sleeps(runtime: Runtime, sleeps: Sleeps) -> Runtime:
    """The runtime, its Zendesk gateway recording the waits of the export's rate limit instead of sleeping them."""
    gateway = runtime.adapters[Platform.ZENDESK].gateway
    assert isinstance(gateway, ZendeskGateway)
    gateway.sleep = sleeps
    return runtime


def push(runtime: Runtime, payload: Any, invocation: str) -> None:
    """The push path: a signed trigger delivery through the receiver, then the worker."""
    client: FlaskClient = runtime.create_app().test_client()
    body = json.dumps(payload).encode("utf-8")
    stamp = runtime.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {**signed_headers(body, timestamp=stamp), "X-Zendesk-Webhook-Invocation-Id": invocation}
    assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 202
    assert runtime.tasks.run_pending() >= 1


def sweep_runtime(runtime: Runtime, sleeps: Sleeps, since: datetime | None = None) -> SweepReport:
    adapter = runtime.adapters[Platform.ZENDESK]
    gateway = adapter.gateway
    assert isinstance(gateway, ZendeskGateway)
    source = ZendeskSweepSource(gateway, clock=runtime.clock, sleep=sleeps, monotonic=sleeps.monotonic)
    return sweep_once(runtime, adapter, source, since=since, sleep=sleeps)


def test_push_then_sweep_escalates_the_ticket_once(runtime: Runtime, zendesk: ZendeskSweepApi, sleeps: Sleeps) -> None:
    zendesk.open_tickets(["4016"])
    push(runtime, fixture("trigger_sla_breach.json"), "01HQSLAPUSH0000000000000001")
    [(ref, put)] = zendesk.single_puts()
    assert ref == "4016" and put["additional_tags"] == ["escalated", "sla_breached"]

    zendesk.events = [metric_event(77, 4016, "breach", NOW - timedelta(minutes=10))]
    report = sweep_runtime(runtime, sleeps, since=NOW - timedelta(hours=1))
    assert (report.breaches, report.already_handled, report.tickets_escalated) == (1, 1, 0)
    assert zendesk.bulk_bodies() == [] and len(zendesk.single_puts()) == 1
    history = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert [(e.transition.to_state, e.transition.rule) for e in history] == [(State.ESCALATED, "SH3")]


def test_sweep_then_push_escalates_the_ticket_once(runtime: Runtime, zendesk: ZendeskSweepApi, sleeps: Sleeps) -> None:
    zendesk.open_tickets(["4016"])
    zendesk.events = [metric_event(77, 4016, "breach", NOW - timedelta(minutes=10))]
    report = sweep_runtime(runtime, sleeps, since=NOW - timedelta(hours=1))
    assert report.tickets_escalated == 1 and len(zendesk.bulk_bodies()) == 1

    push(runtime, fixture("trigger_sla_breach.json"), "01HQSLAPUSH0000000000000002")
    assert zendesk.single_puts() == []  # already escalated and tagged: nothing to write
    history = runtime.escalations.history(Platform.ZENDESK, "4016")
    assert [(e.transition.from_state, e.transition.to_state, e.transition.actions) for e in history] == [
        (None, State.ESCALATED, history[0].transition.actions),
        (State.ESCALATED, State.ESCALATED, ()),
    ]
    assert history[0].transition.actor == SWEEP_ACTOR.id
    assert escalated_transitions_rt(runtime, "4016") == 1


def escalated_transitions_rt(runtime: Runtime, ref: str) -> int:
    history = runtime.escalations.history(Platform.ZENDESK, ref)
    return sum(1 for e in history if e.transition.to_state is State.ESCALATED and e.transition.from_state is None)


def test_a_ticket_the_worker_holds_is_swept_on_the_next_run(
    runtime: Runtime, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    zendesk.open_tickets(["4016", "4017"])
    zendesk.events = [
        metric_event(77, 4016, "breach", NOW - timedelta(minutes=10)),
        metric_event(78, 4017, "breach", NOW - timedelta(minutes=9)),
    ]
    with runtime.locks.hold(Platform.ZENDESK, "4016") as held:
        assert held is not None
        report = sweep_runtime(runtime, sleeps, since=NOW - timedelta(hours=1))
    assert (report.busy, report.tickets_escalated, report.complete) == (1, 1, False)
    assert sleeps.waits.count(2.0) == 3  # three more tries, a pause before each
    assert runtime.cursors.get(Platform.ZENDESK, CURSOR_NAME) is None  # the page is read again
    assert [[t["id"] for t in b] for b in zendesk.bulk_bodies()] == [[4017]]

    again = sweep_runtime(runtime, sleeps)  # from the lookback: no cursor was stored
    assert (again.tickets_escalated, again.already_handled, again.complete) == (1, 1, True)
    assert [[t["id"] for t in b] for b in zendesk.bulk_bodies()] == [[4017], [4016]]


def test_sh3_a_breach_shown_after_a_request_waiting_for_its_rationale_is_still_escalated(
    new_runtime: NewRuntime, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    # 09:58 the reply-time target breaches; 10:00 a request without rationale (LR3: needs info);
    # 10:05 the sweep sees the breach. Dated 09:58 it was "older than the last event" and lost.
    clock = Clock(NOW)
    runtime = with_sleeps(new_runtime({**env(), "TIERUP_POLICY": "lead-review"}, clock=clock), sleeps)
    zendesk.open_tickets(["4016"])
    push(runtime, changed(fixture("trigger_escalation_requested.json"), escalation__rationale=""), "01HQNEEDINFO0001")
    waiting = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert waiting is not None and waiting.state is State.NEEDS_INFO
    zendesk.events = [metric_event(501, 4016, "breach", NOW - timedelta(minutes=2))]
    clock.now = NOW + timedelta(minutes=5)

    report = sweep_runtime(runtime, sleeps, since=NOW - timedelta(hours=1))

    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED
    assert report.tickets_escalated == 1 and "sla_breached" in zendesk.tags("4016")


# --- SD1: a deferred request wakes up ------------------------------------------------------------


def test_a_deferred_request_is_escalated_with_a_reply_when_its_sla_breaches(
    new_runtime: NewRuntime, zendesk: ZendeskSweepApi, sleeps: Sleeps
) -> None:
    clock = Clock(NOW)
    runtime = with_sleeps(new_runtime({**env(), "TIERUP_POLICY": "service-desk"}, clock=clock), sleeps)
    zendesk.open_tickets(["4016"])  # first reply time pending until 13:00
    request = changed(
        fixture("trigger_escalation_requested.json"), escalation__reason="tierup_reason_sla_violation"
    )
    push(runtime, request, "01HQDEFER000000000000000001")
    deferred = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert deferred is not None and deferred.state is State.DEFERRED
    [(_, put)] = zendesk.single_puts()
    assert put["additional_tags"] == ["escalation_deferred"] and put["comment"]["public"] is True

    breach_at = datetime.fromisoformat("2026-03-10T13:00:00+00:00")
    clock.now = breach_at + timedelta(minutes=5)
    zendesk.events = [
        metric_event(90, 4016, "apply_sla", NOW, metric="reply_time"),
        metric_event(91, 4016, "breach", breach_at, metric="reply_time"),
    ]
    report = sweep_runtime(runtime, sleeps, since=NOW - timedelta(minutes=1))
    assert report.tickets_escalated == 1

    [[item]] = zendesk.bulk_bodies()
    assert item["id"] == 4016
    assert item["additional_tags"] == ["escalated", "sla_breached"]
    assert item["remove_tags"] == ["escalation_deferred"]
    assert item["group_id"] == GROUP_IDS["Service Desk Managers"]
    assert item["comment"]["public"] is True
    assert "your earlier escalation request has been taken up" in item["comment"]["html_body"]
    note = {f["id"]: f["value"] for f in item["custom_fields"]}[NOTE_FIELD]
    assert note.startswith("A service level was breached: escalated automatically to Service Desk Managers")
    woken = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert woken is not None and woken.state is State.ESCALATED
    last = woken.history[-1]
    assert (last.from_state, last.to_state, last.rule, last.actor) == (
        State.DEFERRED, State.ESCALATED, "SD1", SWEEP_ACTOR.id,
    )  # fmt: skip
    assert woken.first_contact_due == breach_at + timedelta(hours=1)  # SD10: one business hour


# --- the periodic task ------------------------------------------------------------------------------


def test_the_sweep_runs_as_a_periodic_huey_task(runtime: Runtime, zendesk: ZendeskSweepApi) -> None:
    names = {t.name for t in runtime.tasks.huey._registry.periodic_tasks}
    assert f"{SWEEP_TASK_PREFIX}zendesk" in names
    [task] = [t for t in runtime.tasks.huey._registry.periodic_tasks if t.name == f"{SWEEP_TASK_PREFIX}zendesk"]
    assert task.validate_datetime(datetime(2026, 3, 10, 10, 5))  # every 300 s by default
    assert not task.validate_datetime(datetime(2026, 3, 10, 10, 6))

    zendesk.open_tickets(["4016"])
    zendesk.events = [metric_event(77, 4016, "breach", NOW - timedelta(minutes=10))]
    runtime.cursors.set(Platform.ZENDESK, CURSOR_NAME, str(epoch(NOW - timedelta(hours=1))), NOW)
    runtime.tasks.huey.enqueue(task)
    assert runtime.tasks.run_pending() == 1
    assert [[t["id"] for t in b] for b in zendesk.bulk_bodies()] == [[4016]]
    assert runtime.cursors.get(Platform.ZENDESK, CURSOR_NAME) == str(epoch(NOW - timedelta(minutes=10)))
    esc = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert esc is not None and esc.state is State.ESCALATED


def test_the_interval_comes_from_settings(new_runtime: NewRuntime) -> None:
    runtime = new_runtime({**env(), "TIERUP_SWEEP_INTERVAL": "900"}, upgrade=False)
    [task] = [t for t in runtime.tasks.huey._registry.periodic_tasks if t.name.startswith(SWEEP_TASK_PREFIX)]
    assert [m for m in range(60) if task.validate_datetime(datetime(2026, 3, 10, 10, m))] == [0, 15, 30, 45]


def test_a_dry_run_has_no_sweep(new_runtime: NewRuntime) -> None:
    runtime = new_runtime(env(ZENDESK_API_TOKEN="", ZENDESK_EMAIL=""), upgrade=False)
    assert runtime.adapters[Platform.ZENDESK].dry_run
    assert sweep_source_of(runtime.adapters[Platform.ZENDESK]) is None
    assert not [t for t in runtime.tasks.huey._registry.periodic_tasks if t.name.startswith(SWEEP_TASK_PREFIX)]


# --- tierup sweep ---------------------------------------------------------------------------------


def write_env(workdir: Path, values: dict[str, str]) -> None:
    (workdir / ".env").write_text("".join(f"{k}='{v}'\n" for k, v in values.items()), encoding="utf-8")


def test_tierup_sweep_prints_a_summary(
    workdir: Path, zendesk: ZendeskSweepApi, capsys: pytest.CaptureFixture[str]
) -> None:
    from integration.cli import main

    write_env(workdir, {**env(), "DATABASE_URL": f"sqlite:///{workdir / 'tierup.db'}"})
    zendesk.working_polls = 0
    zendesk.open_tickets(["4016", "4017"])
    zendesk.events = [
        metric_event(77, 4016, "breach", NOW - timedelta(minutes=10)),
        metric_event(78, 4017, "breach", NOW - timedelta(minutes=9), deleted=True),  # met in time
        metric_event(79, 4017, "fulfill", NOW - timedelta(minutes=10, seconds=30)),
    ]
    assert main(["sweep", "--platform", "zendesk", "--since", "2026-03-10T09:00:00Z"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "zendesk sweep (ticket_metric_events): complete"
    rows = dict(line.strip().split("  ", 1) for line in out[1:])
    assert {k: v.strip() for k, v in rows.items() if k != "time"} == {
        "events read": "3", "breaches": "1", "tickets escalated": "1", "tickets updated": "1",
        "already handled": "0", "skipped": "0", "API calls": "4", "bulk writes": "1",
    }  # fmt: skip
    assert rows["time"].strip().endswith("s")
    assert zendesk.export_starts() == [epoch(datetime.fromisoformat("2026-03-10T09:00:00+00:00"))]
    assert [[t["id"] for t in b] for b in zendesk.bulk_bodies()] == [[4016]]


def test_tierup_sweep_without_credentials_has_nothing_to_sweep(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from integration.cli import main

    dry = env(ZENDESK_API_TOKEN="", ZENDESK_EMAIL="")
    write_env(workdir, {**dry, "DATABASE_URL": f"sqlite:///{workdir / 'tierup.db'}"})
    assert main(["sweep"]) == 0
    assert capsys.readouterr().out.strip() == (
        "nothing to sweep: no platform is configured with API credentials (dry run or off)"
    )
    assert main(["sweep", "--platform", "zendesk"]) == 0
    assert capsys.readouterr().out.strip() == (
        "nothing to sweep: zendesk is not configured with API credentials (dry run or off)"
    )


def test_tierup_sweep_refuses_a_bad_since(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from integration.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["sweep", "--since", "last tuesday"])
    assert exited.value.code == 2
    assert "not an ISO 8601 time: 'last tuesday'" in capsys.readouterr().err


def test_the_progress_line_draws_a_bar_in_place() -> None:
    import io

    from integration.cli.sweep import ProgressLine

    stream = io.StringIO()
    line = ProgressLine(stream, "zendesk sweep", min_interval=0.0)
    report = SweepReport(Platform.ZENDESK, CURSOR_NAME, events_read=2500, breaches=40, tickets_escalated=12)
    report.api_calls, report.progress = 7, 0.5
    line(report)
    line.close()
    assert stream.getvalue() == (
        "\r\x1b[2Kzendesk sweep: [############............]  50%  2,500 events, 40 breaches, 12 escalated, "
        "7 API calls\r\x1b[2K"
    )
