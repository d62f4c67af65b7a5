"""The Zendesk SLA sweep at scale: 10,000 breach events over 2,000 tickets, Zendesk answered by `responses`.

Run: `.venv/bin/python benchmarks/sweep.py [--events 10000] [--tickets 2000]`. The real zenpy
client, the real run_sweep, a SQLite store and Huey ticket locks; only HTTP is mocked. Each
ticket breaches several metrics spread over the export, so later pages bring tickets the run
has already escalated. Prints a table of API calls, audit rows and time; the targets are at
most one export call per 1,000 events read (or per page served), one bulk write per 100
tickets written over the whole run, each ticket read (show_many) and decided once per run,
and one audit row per ticket (a breach that changes nothing is not recorded). Sleeps (the
export limiter, job polls) are recorded, not slept, and reported.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import responses
from huey import SqliteHuey
from sqlalchemy import func, select

from adapters.zendesk.gateway import ZendeskGateway, zenpy_client
from adapters.zendesk.settings import ZendeskSettings
from adapters.zendesk.sweep import ZendeskSweepSource
from integration.model import Platform, State
from integration.policy import load_policy
from integration.queue import HueyTicketLocks
from integration.store import Database, SqlEscalationStore, SweepCursors, TransitionRow
from integration.sweep import run_sweep
from tests.sweep.conftest import EXPORT_URL, T0, ZendeskSweepApi, metric_event
from tests.zendesk.helpers import NOW, env

METRICS = ("reply_time", "agent_work_time", "requester_wait_time", "periodic_update_time", "pausable_update_time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=2_000)
    args = parser.parse_args()
    per_ticket = max(1, args.events // args.tickets)
    refs = [str(100_000 + i) for i in range(args.tickets)]
    # Event n: ticket n % tickets, its (n // tickets)-th metric, one second apart.
    events = [
        metric_event(
            n + 1, refs[n % args.tickets], "breach", T0 + timedelta(seconds=n), metric=METRICS[(n // args.tickets) % 5]
        )
        for n in range(args.events)
    ]
    waits: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = ZendeskSweepApi(mock)
        api.events = events
        api.working_polls = 0
        api.open_tickets(refs)
        database = Database(f"sqlite:///{Path(tmp) / 'tierup.db'}")
        database.upgrade()
        store = SqlEscalationStore(database)
        locks = HueyTicketLocks(SqliteHuey("bench", filename=str(Path(tmp) / "queue.db"), results=False, utc=True))
        settings = ZendeskSettings.from_env(env())
        assert settings is not None
        gateway = ZendeskGateway(settings=settings, client=zenpy_client(settings), sleep=waits.append)
        source = ZendeskSweepSource(gateway, clock=lambda: NOW, sleep=waits.append)

        started = time.perf_counter()
        report = run_sweep(
            source, policy=load_policy("lead-review"), gateway=gateway, store=store, cursors=SweepCursors(database),
            locks=locks, clock=lambda: NOW, since=T0, sleep=waits.append,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        with database.transaction() as session:
            audit_rows = session.scalar(select(func.count()).select_from(TransitionRow)) or 0
        read_ids = [i for ids in api.show_many_calls() for i in ids]
        calls = [(c.request.method, c.request.url) for c in mock.calls]
        escalated = sum(
            1
            for r in refs[:: max(1, args.tickets // 50)]
            if (e := store.load(Platform.ZENDESK, r)) and e.state is State.ESCALATED
        )
        database.dispose()

    exports = sum(1 for _, u in calls if u.startswith(EXPORT_URL))
    show_many = sum(1 for _, u in calls if "/tickets/show_many.json" in u)
    bulk = sum(1 for m, u in calls if m == "PUT" and u.endswith("/tickets/update_many.json"))
    polls = sum(1 for _, u in calls if "/job_statuses/" in u)
    other = len(calls) - exports - show_many - bulk - polls
    rows = [
        ("breach events", f"{args.events:,} over {args.tickets:,} tickets ({per_ticket} each)"),
        ("events read", f"{report.events_read:,} in {report.pages} pages"),
        ("breaches", f"{report.breaches:,} on {report.tickets:,} distinct tickets"),
        ("export calls", f"{exports:,}  ({report.events_read / max(exports, 1):,.0f} events per call)"),
        ("show_many reads", f"{show_many:,}  ({len(read_ids):,} ids, {len(set(read_ids)):,} distinct)"),
        ("bulk writes", f"{bulk:,}  ({report.tickets_updated / max(bulk, 1):,.0f} tickets per write)"),
        ("job status polls", f"{polls:,}"),
        ("other calls", f"{other:,}"),
        ("all API calls", f"{len(calls):,} (report: {report.api_calls:,})"),
        ("tickets escalated", f"{report.tickets_escalated:,}  (sampled in the store: {escalated} escalated)"),
        ("already handled", f"{report.already_handled:,}"),
        ("audit rows", f"{audit_rows:,}"),
        ("seconds", f"{seconds:.2f}"),
        ("events/s", f"{report.events_read / seconds:,.0f}"),
        ("waits (recorded)", f"{sum(waits):.1f}s: export limiter {source.limiter.waited:.1f}s, job polls"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    export_ok = exports <= max(report.pages, -(-report.events_read // 1000))
    bulk_bound = -(-report.tickets_updated // 100)
    bulk_ok = bulk <= bulk_bound
    read_once = len(read_ids) == len(set(read_ids))
    audit_ok = audit_rows == report.tickets_updated
    targets = [
        ("<= 1 export call per 1,000 events or per page", export_ok, f"{exports} calls, {report.pages} pages"),
        ("1 bulk write per 100 tickets written, over the whole run", bulk_ok,
         f"{bulk} writes for {report.tickets_updated:,} tickets, bound {bulk_bound}"),
        ("each ticket read once per run", read_once, f"{len(read_ids):,} ids read for {len(set(read_ids)):,} tickets"),
        ("one audit row per ticket written", audit_ok, f"{audit_rows:,} rows for {report.tickets_updated:,} tickets"),
    ]  # fmt: skip
    print()
    for name, ok, detail in targets:
        print(f"target: {name}: {'met' if ok else 'MISSED'} ({detail})")
    return 0 if all(ok for _, ok, _ in targets) and report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
