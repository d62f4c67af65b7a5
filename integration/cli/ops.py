"""Operations commands (serve, web, worker, inbox, redrive, history, db) and build_runtime, the wiring.

Part of the composition root: it may import adapters and webhooks, inside functions, so that
`tierup decide` does not pay for SQLAlchemy, Huey and Flask.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from integration.cli import CommandError
from integration.config import METRICS_DIR_SETTING, ConfigError, CoreSettings, load_env
from integration.model import Platform
from integration.ports import PlatformAdapter, utcnow

if TYPE_CHECKING:
    from flask import Flask

    from integration.policy import Policy
    from integration.processing import Worker
    from integration.queue import HueyTicketLocks, TaskQueue
    from integration.store import AuditEntry, Database, Inbox, SqlEscalationStore, StoredDelivery, SweepCursors
    from webhooks.app import WebConfig
    from webhooks.metrics import Metrics

log = logging.getLogger("tierup")

DEFAULT_LEASE_SECONDS = 300
ADAPTER_MODULES = ("adapters.zendesk", "adapters.jira")


Handler = Callable[[argparse.Namespace], int]


def one_line_errors(handler: Handler) -> Handler:
    """An unreachable database or queue ends the command with one line on stderr and status 2.

    (Bad input, CommandError, is answered the same way by integration.cli.main.)
    """

    def run(args: argparse.Namespace) -> int:
        import sqlite3

        from alembic.util.exc import CommandError as MigrationError
        from redis.exceptions import RedisError
        from sqlalchemy.exc import SQLAlchemyError

        from integration.logs import Redactor, secret_values

        try:
            return handler(args)
        except MigrationError as exc:
            # "Can't locate revision identified by '0005'": a database a newer Tierup has upgraded.
            print(f"tierup: database migrations: {exc} (is the database newer than this Tierup?)", file=sys.stderr)
        except (SQLAlchemyError, RedisError, OSError, sqlite3.Error) as exc:  # sqlite3: Huey's queue file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"tierup: {Redactor(secret_values(load_env()))(first)}", file=sys.stderr)
        return 2

    run.__doc__ = handler.__doc__
    return run


# --- the runtime ------------------------------------------------------------------------------


@dataclass
class Runtime:
    """Everything one process needs, wired from settings: store, queue, worker, adapters, web config."""

    env: Mapping[str, str]
    settings: CoreSettings
    policy: Policy
    adapters: dict[Platform, PlatformAdapter]
    database: Database
    inbox: Inbox
    escalations: SqlEscalationStore
    cursors: SweepCursors
    tasks: TaskQueue
    locks: HueyTicketLocks
    worker: Worker
    metrics: Metrics
    clock: Callable[[], datetime] = utcnow
    # Said once logging is up, after the mode line (which must come first).
    notes: list[str] = field(default_factory=list)

    @property
    def dry_run(self) -> bool:
        """True when nothing will be written to a helpdesk (no platform has credentials)."""
        return all(a.dry_run for a in self.adapters.values())

    def mode_line(self) -> str:
        """The first log line of every long-running command: dry run or live, per platform."""
        platforms = ", ".join(
            f"{p.value}: {'dry run' if a.dry_run else 'live'}" for p, a in sorted(self.adapters.items())
        )
        if self.dry_run:
            return (
                "dry-run mode: no helpdesk credentials, so decisions and planned actions are recorded "
                f"and nothing is written to Zendesk or Jira ({platforms or 'no platform configured'})"
            )
        return f"live mode: {platforms}"

    def web_config(self) -> WebConfig:
        from webhooks.app import ChannelSettings, WebConfig

        return WebConfig(
            settings=self.settings,
            adapters=self.adapters,
            inbox=self.inbox,
            enqueue=self.tasks.enqueue_many,
            metrics=self.metrics,
            checks={"database": self.database.ping, "queue": self.tasks.ping},
            queue_depth=self.tasks.depth,
            clock=self.clock,
            # The escalation form and the dashboard.
            policy=self.policy,
            escalations=self.escalations,
            channels=ChannelSettings.from_env(self.env),
        )

    def create_app(self) -> Flask:
        from webhooks.app import create_app

        return create_app(self.web_config())

    def create_ops_app(self) -> Flask:
        """Health, readiness and metrics only (a worker's own port): no receivers, form or dashboard."""
        from webhooks.app import create_ops_app

        return create_ops_app(self.web_config())

    def close(self) -> None:
        self.database.dispose()
        close = getattr(self.tasks.huey.storage, "close", None)
        if callable(close):
            close()


def _setting_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def build_adapters(env: Mapping[str, str], policy: Policy) -> tuple[dict[Platform, PlatformAdapter], list[str]]:
    """Each platform's adapter from `adapters.<platform>.build_adapter(env, policy)`; None means not configured."""
    adapters: dict[Platform, PlatformAdapter] = {}
    notes: list[str] = []
    for name in ADAPTER_MODULES:
        module = importlib.import_module(name)
        build = getattr(module, "build_adapter", None)
        if build is None:
            # The adapters are built in parallel with this module; until one lands, its platform is off.
            notes.append(f"{name} has no build_adapter yet; that platform is off")
            continue
        adapter = build(env, policy)
        if adapter is not None:
            adapters[adapter.platform] = adapter
    return adapters, notes


def build_runtime(
    env: Mapping[str, str],
    *,
    adapters: Mapping[Platform, PlatformAdapter] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Runtime:
    """Wire settings → policy → adapters → store → Huey → worker (the web app is built from it on demand).

    Nothing is migrated or started here; commands do that. `adapters` replaces the
    configured ones (tests).
    """
    from integration.forms import FormAwareAdapter
    from integration.logs import Redactor, secret_values
    from integration.policy import load_policy
    from integration.processing import RetryPolicy, Worker
    from integration.queue import HueyTicketLocks, TaskQueue, make_huey
    from integration.store import Database, Inbox, SqlEscalationStore, SweepCursors
    from webhooks.metrics import Metrics

    settings = CoreSettings.from_env(env)
    lease = _setting_seconds(env, "TIERUP_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)
    # The first wait after a transient failure (then doubling); a Retry-After from the server wins.
    retry = RetryPolicy(base_seconds=_setting_seconds(env, "TIERUP_RETRY_BASE_SECONDS", RetryPolicy().base_seconds))
    policy = load_policy(settings.policy)
    notes: list[str] = []
    if adapters is None:
        built, notes = build_adapters(env, policy)
    else:
        built = dict(adapters)
    # Form submissions are stored as deliveries of their platform: they must not reach its parser.
    built = {platform: FormAwareAdapter(adapter) for platform, adapter in built.items()}
    database = Database(settings.database_url)
    inbox = Inbox(database)
    escalations = SqlEscalationStore(database, inbox)
    tasks = TaskQueue(make_huey(settings))
    locks = HueyTicketLocks(tasks.huey, lease_seconds=lease)
    metrics = Metrics()
    worker = Worker(
        inbox=inbox,
        escalations=escalations,
        adapters=built,
        policy=policy,
        locks=locks,
        schedule=tasks.schedule,
        clock=clock,
        metrics=metrics,
        lease_seconds=lease,
        retry=retry,
        redact=Redactor(secret_values(env)),
    )
    tasks.attach(worker, deadline_interval=settings.deadline_interval_seconds, recovery_interval=max(60.0, lease / 2))
    runtime = Runtime(
        env=env, settings=settings, policy=policy, adapters=built, database=database, inbox=inbox,
        escalations=escalations, cursors=SweepCursors(database), tasks=tasks, locks=locks, worker=worker,
        metrics=metrics, clock=clock, notes=notes,
    )  # fmt: skip
    # The SLA sweeps: one periodic task per adapter that offers a sweep source (issue #6).
    from integration.cli.sweep import register_sweep_tasks

    register_sweep_tasks(runtime)
    return runtime


def _start(args: argparse.Namespace, *, announce: bool) -> Runtime:
    """Settings, logging, runtime and migrations for a command; long-running ones announce their mode first."""
    from integration.logs import configure_logging, secret_values

    env = load_env()
    settings = CoreSettings.from_env(env)
    configure_logging(settings.log_level if announce else "WARNING", secrets=secret_values(env))
    runtime = build_runtime(env)
    if announce:
        log.info(runtime.mode_line(), extra={"dry_run": runtime.dry_run})
    for note in runtime.notes:
        log.info(note)
    runtime.database.upgrade()
    return runtime


# --- commands -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Web server and worker in one process on the embedded defaults."""
    from werkzeug.serving import make_server

    runtime = _start(args, announce=True)
    runtime.worker.recover_in_flight()
    consumer = runtime.tasks.consumer(workers=args.workers)
    server = make_server(args.host, args.port, runtime.create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    log.info("listening on http://%s:%d", args.host, server.server_port)
    try:
        # The consumer owns the main thread: it handles SIGINT/SIGTERM and returns on either.
        consumer.run()
    finally:
        server.shutdown()
        runtime.close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """The worker alone: run it on as many machines as needed (with DATABASE_URL and REDIS_URL).

    With --metrics-port it also answers /healthz, /readyz and /metrics there: what it
    processed, failed and retried, its latency and its API calls are counted in this process,
    so a worker running apart from the web server shows them only on its own port.
    """
    from werkzeug.serving import make_server

    runtime = _start(args, announce=True)
    runtime.worker.recover_in_flight()
    server = None
    if args.metrics_port is not None:
        server = make_server(args.host, args.metrics_port, runtime.create_ops_app(), threaded=True)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", args.host, server.server_port)
    try:
        runtime.tasks.consumer(workers=args.workers).run()
    finally:
        if server is not None:
            server.shutdown()
        runtime.close()
    return 0


WEB_THREADS = 4


def web_server_options(host: str, port: int, workers: int, threads: int = WEB_THREADS) -> dict[str, Any]:
    """Gunicorn's settings for `tierup web` (benchmarks/ingest.py serves its bare endpoint with the same)."""
    return {"bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": threads}


def cmd_web(args: argparse.Namespace) -> int:
    """The web server alone, under gunicorn."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    from integration.logs import JsonFormatter, Redactor, secret_values

    # Several processes answer /metrics on one port: each keeps its counts in a file here, and whichever
    # answers sums them all. Set before prometheus_client is imported (by the runtime below), which reads it.
    if not os.environ.get(METRICS_DIR_SETTING):
        shared = os.environ[METRICS_DIR_SETTING] = tempfile.mkdtemp(prefix="tierup-metrics-")
        master = os.getpid()

        def remove_counts() -> None:
            if os.getpid() == master:  # the workers, forked from here, inherit this hook
                shutil.rmtree(shared, ignore_errors=True)

        atexit.register(remove_counts)
    runtime = _start(args, announce=True)
    runtime.close()  # each gunicorn worker builds its own after the fork
    formatter = JsonFormatter(Redactor(secret_values(runtime.env)))

    class JsonGunicornLogger(Logger):  # type: ignore[misc]
        """Gunicorn's own lines (start, workers, errors) as JSON like the rest."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.setFormatter(formatter)

    def load_app() -> Any:
        from integration.logs import configure_logging, secret_values

        env = load_env()
        configure_logging(CoreSettings.from_env(env).log_level, secrets=secret_values(env))
        return build_runtime(env).create_app()

    options = web_server_options(args.host, args.port, args.workers, args.threads)
    options["logger_class"] = JsonGunicornLogger

    class TierupWeb(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load_app()

    TierupWeb().run()
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    """List deliveries, newest first."""
    from integration.store import DeliveryStatus

    runtime = _start(args, announce=False)
    try:
        statuses: list[DeliveryStatus] = [DeliveryStatus.FAILED] if args.failed else []
        if args.status:
            statuses.append(DeliveryStatus(args.status))
        rows = runtime.inbox.recent(statuses=statuses, limit=args.limit)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps([_delivery_json(r) for r in rows], indent=2, ensure_ascii=False))
    else:
        print(_inbox_table(rows))
    return 0


def _delivery_json(row: StoredDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "platform": row.platform.value,
        "delivery_id": row.delivery_id,
        "kind": row.kind,
        "ticket_ref": row.ticket_ref,
        "status": row.status.value,
        "attempts": row.attempts,
        "received_at": row.received_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_error": row.last_error,
        "headers": dict(row.headers),
    }


def _inbox_table(rows: Sequence[StoredDelivery]) -> str:
    if not rows:
        return "no deliveries"
    header = ("id", "received", "platform", "kind", "ticket", "status", "tries", "delivery id", "last error")
    lines = [
        (
            str(r.id), r.received_at.strftime("%Y-%m-%d %H:%M:%S"), r.platform.value, r.kind, r.ticket_ref or "-",
            r.status.value, str(r.attempts), r.delivery_id, _one_line(r.last_error or "", 80),
        )
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_redrive(args: argparse.Namespace) -> int:
    """Queue deliveries again: the ids given, or every failed one."""
    from integration.store import DeliveryStatus

    if bool(args.ids) == bool(args.failed):
        raise CommandError("redrive: give delivery ids or --failed (not both)")
    runtime = _start(args, announce=False)
    try:
        ids = runtime.inbox.requeue(args.ids, failed=args.failed, now=runtime.clock())
        left = sorted(set(args.ids) - set(ids))
        running = [i for i in left if (row := runtime.inbox.get(i)) and row.status is DeliveryStatus.PROCESSING]
        if running:
            raise CommandError(
                f"redrive: delivery {', '.join(map(str, running))} is being run by a worker now; "
                "redrive it once `tierup inbox` shows it finished"
            )
        if left:
            raise CommandError(f"redrive: no delivery with id {', '.join(map(str, left))}")
        try:
            for row_id in ids:
                runtime.tasks.enqueue(row_id)
        except Exception as exc:
            # They are queued in the inbox now: the worker's in-flight recovery queues them once the queue answers.
            raise CommandError(
                f"redrive: {_ids(ids)} marked queued, but the queue did not take them ({type(exc).__name__}): "
                f"the worker's recovery queues them once their {runtime.worker.lease_seconds:g}s lease is over "
                "and the queue answers"
            ) from None
    finally:
        runtime.close()
    print(f"requeued {len(ids)} deliver{'y' if len(ids) == 1 else 'ies'}" + (f": {_ids(ids)}" if ids else ""))
    return 0


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:50]))
    return shown + (f" and {len(ids) - 50} more" if len(ids) > 50 else "")


def cmd_history(args: argparse.Namespace) -> int:
    """Print an escalation's audit trail."""
    from integration.codec import escalation_to_json

    runtime = _start(args, announce=False)
    try:
        platform = _history_platform(runtime, args.ticket, args.platform)
        if args.json:
            escalation = runtime.escalations.load(platform, args.ticket)
            assert escalation is not None
            print(json.dumps(escalation_to_json(escalation), indent=2, ensure_ascii=False))
            return 0
        entries = runtime.escalations.history(platform, args.ticket)
    finally:
        runtime.close()
    print(_history_text(platform, args.ticket, entries))
    return 0


def _history_platform(runtime: Runtime, ticket: str, given: str | None) -> Platform:
    found = runtime.escalations.platforms_of(ticket)
    if given:
        platform = Platform(given)
        if platform not in found:
            raise CommandError(f"history: no escalation for {platform.value} ticket {ticket}")
        return platform
    if not found:
        raise CommandError(f"history: no escalation for ticket {ticket}")
    if len(found) > 1:
        raise CommandError(f"history: ticket {ticket} exists on {' and '.join(p.value for p in found)}; "
                           "choose one with --platform")  # fmt: skip
    return found[0]


def _history_text(platform: Platform, ticket: str, entries: Sequence[AuditEntry]) -> str:
    from integration.codec import action_to_json

    lines = [f"{platform.value} ticket {ticket}: {len(entries)} transition{'s' if len(entries) != 1 else ''}"]
    for e in entries:
        t = e.transition
        lines.append(
            f"{t.at.isoformat()}  {t.rule:<5} {t.event:<16} {t.from_state or '-'} -> {t.to_state}"
            f"  by {t.actor}{'  (dry run)' if e.dry_run else ''}"
        )
        lines.append(f"    why: {_one_line(t.why, 200)}")
        if t.delivery_id:
            lines.append(f"    delivery: {t.delivery_id}")
        for action in t.actions:
            data = action_to_json(action)
            kind = data.pop("kind")
            detail = " ".join(f"{k}={_one_line(str(v), 100)}" for k, v in data.items())
            lines.append(f"    - {kind}: {detail}".rstrip())
    return "\n".join(lines)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Run the database migrations."""
    from sqlalchemy.engine import make_url

    runtime = _start(args, announce=False)
    try:
        revision = runtime.database.current_revision()
        shown = make_url(runtime.database.url).render_as_string(hide_password=True)
    finally:
        runtime.close()
    print(f"database at revision {revision} ({shown})")
    return 0


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def _ticket_ref(text: str) -> str:
    """A ticket number or issue key as typed: one line of text, as the receiver takes them."""
    if not text.strip() or len(text) > 100 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"not a ticket number or issue key: {text!r}")
    try:
        text.encode("utf-8")  # a command line that was not UTF-8 arrives as lone surrogates
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not a ticket number or issue key: {text!r}") from None
    return text


def register(sub: Any) -> None:
    """Add this module's subcommands to the `tierup` parser."""
    serve = sub.add_parser("serve", help="run the web server and the worker in one process (embedded defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    serve.set_defaults(handler=one_line_errors(cmd_serve))

    web = sub.add_parser("web", help="run the web server alone (gunicorn)")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    web.add_argument(
        "--threads", type=int, default=WEB_THREADS, help=f"request threads per worker process (default {WEB_THREADS})"
    )
    web.set_defaults(handler=one_line_errors(cmd_web))

    worker = sub.add_parser("worker", help="run the worker alone")
    worker.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
    worker.add_argument("--metrics-port", type=int, help="answer /healthz, /readyz and /metrics on this port")
    worker.add_argument("--host", default="127.0.0.1", help="the address --metrics-port listens on")
    worker.set_defaults(handler=one_line_errors(cmd_worker))

    inbox = sub.add_parser("inbox", help="list webhook deliveries, newest first")
    inbox.add_argument("--failed", action="store_true", help="only the failed ones")
    inbox.add_argument(
        "--status", choices=("queued", "processing", "retrying", "processed", "ignored", "failed"), default=None
    )
    inbox.add_argument("--limit", type=_count(1, 10_000), default=50, help="how many (1-10000, default 50)")
    inbox.add_argument("--json", action="store_true")
    inbox.set_defaults(handler=one_line_errors(cmd_inbox))

    redrive = sub.add_parser("redrive", help="run deliveries again: by id, or every failed one")
    redrive.add_argument("ids", nargs="*", type=int, metavar="ID")
    redrive.add_argument("--failed", action="store_true", help="every failed delivery")
    redrive.set_defaults(handler=one_line_errors(cmd_redrive))

    history = sub.add_parser("history", help="print an escalation's audit trail")
    history.add_argument("ticket", metavar="TICKET", type=_ticket_ref)
    history.add_argument("--platform", choices=[p.value for p in Platform], default=None)
    history.add_argument("--json", action="store_true", help="the escalation with its history, as JSON")
    history.set_defaults(handler=one_line_errors(cmd_history))

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    upgrade = dbsub.add_parser("upgrade", help="run the migrations up to the newest")
    upgrade.set_defaults(handler=one_line_errors(cmd_db_upgrade))
