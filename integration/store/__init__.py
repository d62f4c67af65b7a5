"""Persistence (SQLAlchemy 2): the delivery inbox, escalations, their audit trail, sweep cursors.

`DATABASE_URL` selects the database; the default is a SQLite file in the working directory,
opened in WAL mode with a busy timeout so the web server and the worker can share it. The
schema is owned by the Alembic migrations in integration/store/migrations (`Database.upgrade`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from integration.codec import action_from_json, action_to_json, escalation_from_json, escalation_to_json
from integration.model import OPEN_STATES, Decision, Escalation, Platform, State, Transition
from integration.ports import Delivery

log = logging.getLogger("tierup.store")

DEFAULT_DATABASE_URL = "sqlite:///tierup.db"
# The database went away or stayed locked: callers outside the store treat it as transient.
DatabaseUnavailable = OperationalError
SQLITE_BUSY_TIMEOUT_SECONDS = 30
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # stored, a job is (or will be) on the queue
    PROCESSING = "processing"  # a worker claimed it; left like this only by a worker that died
    RETRYING = "retrying"  # a transient failure; next_attempt_at says when
    PROCESSED = "processed"  # decided, applied and recorded
    IGNORED = "ignored"  # the adapter or the service found nothing to do
    FAILED = "failed"  # a permanent failure; `tierup redrive` runs it again


# Deliveries a worker still has to run, in the order they must run.
PENDING_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.RETRYING, DeliveryStatus.PROCESSING)


# --- columns -------------------------------------------------------------------------------


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: every stored time carries its offset")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


# SQLite only autoincrements an INTEGER PRIMARY KEY; elsewhere the ids are 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")
MAX_ROW_ID = 2**63 - 1  # both are signed 64-bit: a larger id names no row, and the drivers refuse it


class Base(DeclarativeBase):
    pass


class DeliveryRow(Base):
    """The inbox: one row per webhook delivery, unique per platform and delivery id."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(100))
    ticket_ref: Mapped[str | None] = mapped_column(String(100))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    occurred_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(200))  # the process running it (integration.liveness)
    # What the signature covers, hashed, where the delivery id is not signed (Jira): a signed body
    # sent again under another delivery id is the same delivery (a replay), stored once.
    replay_key: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (
        UniqueConstraint("platform", "delivery_id", name="uq_deliveries_platform_delivery_id"),
        Index("ix_deliveries_ticket", "platform", "ticket_ref", "status", "id"),
        Index("ix_deliveries_status", "status", "updated_at"),
        Index(
            "uq_deliveries_platform_replay_key",
            "platform",
            "replay_key",
            unique=True,
            sqlite_where=text("replay_key IS NOT NULL"),
            postgresql_where=text("replay_key IS NOT NULL"),
        ),
    )


class EscalationRow(Base):
    """One escalation per ticket: the full record as JSON plus the columns queries need."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    ticket_ref: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(Integer)
    group_name: Mapped[str | None] = mapped_column(String(255))
    first_contact_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    contacted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("platform", "ticket_ref", name="uq_escalations_platform_ticket_ref"),
        Index("ix_escalations_state_due", "state", "first_contact_due"),
        Index("ix_escalations_group", "group_name"),
        Index("ix_escalations_updated", "updated_at"),
    )


class TransitionRow(Base):
    """The audit trail: who moved which escalation where, when, why, and with which actions."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(Id, ForeignKey("escalations.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    ticket_ref: Mapped[str] = mapped_column(String(100))
    seq: Mapped[int] = mapped_column(Integer)  # position in the escalation's history
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    delivery_id: Mapped[str | None] = mapped_column(String(255))
    # True when no helpdesk credentials were configured: the actions were planned, not written.
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("escalation_id", "seq", name="uq_transitions_escalation_seq"),
        Index("ix_transitions_ticket", "platform", "ticket_ref", "seq"),
    )


class SweepCursorRow(Base):
    """Where a periodic sweep (SLA events, JQL) left off, per platform and sweep."""

    __tablename__ = "sweep_cursors"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- the database --------------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """SQLAlchemy URL for `DATABASE_URL`: plain postgresql:// means psycopg 3 (the installed driver)."""
    return re.sub(r"^postgres(?:ql)?://", "postgresql+psycopg://", url.strip())


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases (and in-memory SQLite)."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and write-ahead transactions."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # libpq waits for a connection as long as TCP does (minutes, against a host that drops packets);
        # a connect_timeout in DATABASE_URL's query wins.
        postgres = parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query
        timeout = {"connect_timeout": 10} if postgres else {}
        return create_engine(url, pool_pre_ping=True, connect_args=timeout)
    path = sqlite_path(url)
    if path is not None and path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) decide when transactions begin, instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that later writes fails at once
        # with "database is locked" when another process wrote meanwhile; the busy timeout
        # only helps a transaction that asks for the lock when it starts.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """One database: the engine, transactions, readiness and migrations."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._before_dispose: list[Callable[[], None]] = []

    def before_dispose(self, hook: Callable[[], None]) -> None:
        """Run `hook` before the engine is disposed (connections held outside the pool go back first)."""
        self._before_dispose.append(hook)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits together at the end of the block (or rolls back)."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise unless the database answers.

        On the driver's connection, outside SQLAlchemy's transaction: on SQLite that begins
        with BEGIN IMMEDIATE (make_engine), and a probe would wait behind every writer for the
        write lock, then call a busy database unreachable. A plain SELECT reads past them.
        """
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool, rolled back

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to `revision`."""
        from alembic import command

        with self.engine.connect() as connection:
            command.upgrade(alembic_config(self.url, connection), revision)
            connection.commit()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        for hook in self._before_dispose:
            hook()
        self.engine.dispose()


def alembic_config(url: str, connection: Any = None) -> Any:
    """The Alembic configuration for the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates %; a password may contain one.
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# --- the inbox ------------------------------------------------------------------------------


class HeaderMap(Mapping[str, str]):
    """Headers looked up case-insensitively, as HTTP means them; keeps the names as received."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def items(self) -> ItemsView[str, str]:  # the pairs as received, without a lookup per name
        return cast(ItemsView[str, str], dict(self._items.values()).items())

    def __repr__(self) -> str:
        return f"HeaderMap({dict(self.items())!r})"


# Header names never stored or logged, whatever the platform calls them.
_SECRET_HEADER = re.compile(r"authorization|cookie|signature|secret|token|password|api[-_]?key", re.IGNORECASE)
# Headers worth keeping: delivery ids, event types, timestamps, retry counts, and the mark of
# Tierup's own form submissions (integration.forms; webhooks carrying it are refused before this).
_USEFUL_HEADER = re.compile(
    r"^(content-type|user-agent|x-tierup-source|"
    r"x-[\w-]*(id|identifier|event|timestamp|retry|attempt|delivery|topic|hook)[\w-]*)$",
    re.IGNORECASE,
)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that matter for parsing and tracing; never a signature or credential."""
    return {k: v for k, v in headers.items() if _is_stored_header(k)}


@functools.lru_cache(maxsize=512)
def _is_stored_header(name: str) -> bool:
    # Every delivery brings the same few names: each is judged once (bounded, whatever senders invent).
    return bool(_USEFUL_HEADER.match(name)) and not _SECRET_HEADER.search(name)


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """A delivery as the inbox holds it."""

    id: int
    platform: Platform
    delivery_id: str
    kind: str
    ticket_ref: str | None
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    occurred_at: datetime | None
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    updated_at: datetime
    processed_at: datetime | None

    def to_delivery(self) -> Delivery:
        """The port's view of it for adapter.parse; `attempt` counts this run."""
        return Delivery(
            platform=self.platform,
            delivery_id=self.delivery_id,
            headers=HeaderMap(self.headers),
            body=self.body,
            received_at=self.received_at,
            attempt=max(self.attempts, 1),
        )


def _stored(row: DeliveryRow) -> StoredDelivery:
    return StoredDelivery(
        id=row.id,
        platform=Platform(row.platform),
        delivery_id=row.delivery_id,
        kind=row.kind,
        ticket_ref=row.ticket_ref,
        headers=dict(row.headers or {}),
        body=bytes(row.body),
        received_at=row.received_at,
        occurred_at=row.occurred_at,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        updated_at=row.updated_at,
        processed_at=row.processed_at,
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """A verified delivery to store, with what its receiver read from it."""

    delivery: Delivery
    kind: str
    ticket_ref: str | None
    occurred_at: datetime | None = None
    replay_key: str | None = None  # see DeliveryRow.replay_key


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of writing a delivery to the inbox."""

    id: int
    created: bool  # False: the same platform + delivery id was stored before


class _DeliveryInsert:
    """The inbox's INSERT of one or several rows, run straight on the DBAPI connection.

    Every webhook stores one delivery, and SQLAlchemy's execution machinery (events, execution
    context, result set-up, transaction bookkeeping) cost more than the database's own write
    (benchmarks/ingest.py). The columns' bind processors are SQLAlchemy's, so the stored values
    are exactly what the ORM stores. Deliveries arriving together are written by one statement
    (integration.intake), which skips the ones already stored (ON CONFLICT DO NOTHING: the
    unique constraints on platform + delivery id and platform + replay key decide, even between
    processes) and returns the ids of those it stored. The statement commits on its own
    (autocommit): on SQLite the write lock is then held only inside the statement, never while
    Python (waiting for the GIL among gunicorn's threads) runs between BEGIN and COMMIT, which
    made writers in the other processes back off and sleep. On PostgreSQL the statement also
    takes a lock per ticket its rows name, held to its commit (_ticket_locks).
    DBAPI errors come out as SQLAlchemy's.
    """

    COLUMNS = (
        "platform", "delivery_id", "kind", "ticket_ref", "headers", "body", "received_at", "occurred_at", "status",
        "attempts", "updated_at", "replay_key",
    )  # fmt: skip

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        table: Any = DeliveryRow.__table__
        self.sqlite = dialect.name == "sqlite"
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._table = table.name
        self._statements: dict[tuple[int, bool], str] = {}
        self.processors = [
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in self.COLUMNS
        ]
        # PostgreSQL: each value cast to its column's type (rows come from a VALUES list, not straight in).
        self._casts = [f"::{table.c[name].type.compile(dialect=dialect)}" for name in self.COLUMNS]
        self.dbapi_error: Any = dialect.loaded_dbapi.Error
        self._lock = threading.Lock()  # one statement at a time on the one connection
        self._raw: Any = None

    def sql(self, rows: int, *, replay_keys: bool = False) -> str:
        """The statement for `rows` rows (made once per count).

        Rows with a replay key may conflict on it as well: any conflict skips them. Without,
        only the delivery id's constraint is checked (on PostgreSQL every unique index named
        as an arbiter is probed first, the primary key's too).
        """
        statement = self._statements.get((rows, replay_keys))
        if statement is None:
            columns = ", ".join(self.COLUMNS)
            target = "" if replay_keys else "(platform, delivery_id) "
            conflict = f"ON CONFLICT {target}DO NOTHING RETURNING id, platform, delivery_id"
            if self.sqlite:
                row = "(" + ", ".join([self._mark] * len(self.COLUMNS)) + ")"
                statement = f"INSERT INTO {self._table} ({columns}) VALUES {', '.join([row] * rows)} {conflict}"
            else:
                # The tickets' locks first (every one taken before the join gives a row, so before any id
                # is drawn), held to the commit: see _ticket_locks.
                row = "(" + ", ".join(f"{self._mark}{cast}" for cast in self._casts) + ")"
                statement = (
                    f"WITH tickets AS ({_LOCK_TICKETS}) INSERT INTO {self._table} ({columns}) "
                    f"SELECT v.* FROM (VALUES {', '.join([row] * rows)}) AS v ({columns}) CROSS JOIN tickets "
                    f"{conflict}"
                )
            self._statements[rows, replay_keys] = statement
        return statement

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
        """Insert the rows not stored yet; (platform, delivery id) -> id of each row inserted."""
        params: list[Any] = []
        for values in rows:
            params.extend(process(values[name]) if process else values[name] for name, process in self.processors)
        sql = self.sql(len(rows), replay_keys=any(values["replay_key"] is not None for values in rows))
        if not self.sqlite:
            params.insert(0, _ticket_locks(rows))
        try:
            return self._insert(sql, params, reconnect=True)
        except _Reconnect:
            return self._insert(sql, params, reconnect=False)  # once more, on a fresh connection

    def _insert(self, sql: str, params: Sequence[Any], *, reconnect: bool) -> dict[tuple[str, str], int]:
        with self._lock:
            raw = self._connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, params)
                    return {(platform, delivery_id): int(id) for id, platform, delivery_id in cursor.fetchall()}
                finally:
                    cursor.close()
            except self.dbapi_error as exc:
                # In autocommit a failed statement leaves the connection usable, unless the server went away.
                if self.engine.dialect.is_disconnect(exc, raw.dbapi_connection, None):
                    # A restart, an idle timeout, a failover: that connection is gone, not the rows' fault.
                    raw.invalidate(exc)
                    self._raw = None
                    if reconnect:
                        raise _Reconnect from exc
                raise DBAPIError.instance(sql, None, exc, self.dbapi_error) from exc

    def _connection(self) -> Any:
        """The inbox's one connection, checked out of the pool once and kept (in autocommit).

        Checking a connection out and back in for every webhook cost as much as the INSERT
        itself (and on PostgreSQL a pre-ping round trip). One is enough: the receivers write
        one batch at a time (integration.intake), and SQLite takes one writer at a time anyway.
        """
        raw: Any = self._raw
        if raw is None or raw.dbapi_connection is None:
            raw = self._raw = self.engine.raw_connection()
            if not self.sqlite:
                raw.driver_connection.autocommit = True  # SQLite's is in autocommit already (make_engine)
        return raw

    def close(self) -> None:
        """Give the connection back to the pool (before the engine is disposed)."""
        with self._lock:
            raw, self._raw = self._raw, None
            if raw is None or raw.dbapi_connection is None:
                return
            try:
                if not self.sqlite:
                    raw.driver_connection.autocommit = False
                raw.close()
            except Exception:  # closing what may already be broken
                log.debug("giving back the inbox connection failed", exc_info=True)


# PostgreSQL transaction advisory locks on an array of keys (`{keys}`: the array's bind parameter),
# sorted first in the subquery, so two writers take shared keys in one order: no deadlock.
_LOCK_KEYS = (
    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM "
    "(SELECT k FROM unnest({keys}) AS k ORDER BY k) AS sorted) AS taken"
)
_LOCK_TICKETS = _LOCK_KEYS.format(keys="%s::bigint[]")


def _ticket_locks(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """One 64-bit advisory lock key per ticket the rows name (signed, as PostgreSQL's bigint).

    On PostgreSQL a row's id is drawn at INSERT and the row is seen at COMMIT, and two web
    processes commit in either order: a lead's confirm could be seen (and run) before the
    request stored just before it, whose commit was still flushing. Each INSERT takes its
    tickets' transaction locks before it draws an id and holds them to its commit, so a
    ticket's next delivery gets its id only once the one before is committed: id order is
    commit order for every ticket, and other tickets' writes do not wait. In the INSERT
    itself, so it costs no round trip; SQLite writes one transaction at a time.
    """
    keys = set()
    for values in rows:
        if values["ticket_ref"] is not None:
            keys.add(advisory_key(f"tierup:{values['platform']}:{values['ticket_ref']}"))
    return sorted(keys)


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit bigint) for `name`."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


class _Reconnect(Exception):
    """The held connection was found dead: insert once more on a new one."""


class Inbox:
    """The deliveries table: what arrived, and how far each delivery got."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = _DeliveryInsert(db.engine)
        db.before_dispose(self._insert.close)

    def record(
        self, delivery: Delivery, *, kind: str, ticket_ref: str | None, occurred_at: datetime | None = None
    ) -> Recorded:
        """Store a verified delivery as queued, or find the earlier copy of it (a sender's retry)."""
        outcome = self.record_many([Arrival(delivery, kind, ticket_ref, occurred_at)])[0]
        if isinstance(outcome, DBAPIError):
            raise outcome
        return outcome

    def record_many(self, arrivals: Sequence[Arrival]) -> list[Recorded | DBAPIError]:
        """Store deliveries that arrived together, in one statement; each one's outcome, in order.

        A delivery stored before (or twice in `arrivals`) is found instead: created=False for
        every copy but the one stored. A delivery whose values the database refuses gets its
        error in its place, and the others are stored without it. When the database itself
        fails (unreachable, locked, disconnected), nothing is stored and the error is raised.
        """
        if not arrivals:
            return []
        try:
            # Every webhook comes through here: one INSERT for all, committing on its own.
            stored = self._insert([self._values(a) for a in arrivals])
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise
            if len(arrivals) == 1:
                return [exc]
            # One delivery's values failed the statement: store the others apart, so only its sender sees the error.
            log.warning("storing %d deliveries together failed (%s); storing them one by one", len(arrivals),
                        type(exc).__name__)  # fmt: skip
            return [self.record_many([a])[0] for a in arrivals]
        outcomes: list[Recorded | DBAPIError] = []
        for arrival in arrivals:
            platform, delivery_id = arrival.delivery.platform, arrival.delivery.delivery_id
            id = stored.pop((platform.value, delivery_id), None)  # popped: a copy later in the batch is found
            if id is not None:
                outcomes.append(Recorded(id, created=True))
                continue
            existing = self.find(platform, delivery_id)
            if existing is None and arrival.replay_key is not None:
                existing = self.find_replayed(platform, arrival.replay_key)
                if existing is not None:
                    log.warning("delivery %s is a signed body stored before as %s (%s): not stored again",
                                delivery_id, existing.delivery_id, existing.id)  # fmt: skip
            if existing is None:  # refused as a copy, yet gone: let its sender try again
                gone = LookupError(f"delivery {delivery_id!r} was neither stored nor found")
                outcomes.append(IntegrityError(self._insert.sql(len(arrivals)), None, gone))
                continue
            outcomes.append(Recorded(existing.id, created=False))
        return outcomes

    @staticmethod
    def _values(arrival: Arrival) -> dict[str, Any]:
        delivery = arrival.delivery
        return {
            "platform": delivery.platform.value,
            "delivery_id": delivery.delivery_id,
            "kind": arrival.kind[:100],
            "ticket_ref": arrival.ticket_ref,
            "headers": stored_headers(delivery.headers),
            "body": delivery.body,
            "received_at": delivery.received_at,
            "occurred_at": arrival.occurred_at,
            "status": DeliveryStatus.QUEUED.value,
            "attempts": 0,
            "updated_at": delivery.received_at,
            "replay_key": arrival.replay_key,
        }

    def get(self, id: int) -> StoredDelivery | None:
        if not 0 < id <= MAX_ROW_ID:
            return None
        with self.db.transaction() as session:
            row = session.get(DeliveryRow, id)
            return _stored(row) if row else None

    def find_replayed(self, platform: Platform, replay_key: str) -> StoredDelivery | None:
        """The delivery stored with this replay key (the same signed body), if any."""
        return self._find(platform, DeliveryRow.replay_key == replay_key)

    def find(self, platform: Platform, delivery_id: str) -> StoredDelivery | None:
        return self._find(platform, DeliveryRow.delivery_id == delivery_id)

    def _find(self, platform: Platform, criterion: Any) -> StoredDelivery | None:
        with self.db.transaction() as session:
            row = session.scalars(select(DeliveryRow).where(DeliveryRow.platform == platform.value, criterion)).first()
            return _stored(row) if row else None

    def recent(self, *, statuses: Sequence[DeliveryStatus] = (), limit: int = 50) -> list[StoredDelivery]:
        """The newest deliveries first, optionally only those in `statuses`."""
        query = select(DeliveryRow).order_by(DeliveryRow.id.desc()).limit(limit)
        if statuses:
            query = query.where(DeliveryRow.status.in_([s.value for s in statuses]))
        with self.db.transaction() as session:
            return [_stored(r) for r in session.scalars(query)]

    def counts(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status."""
        with self.db.transaction() as session:
            rows = session.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()
        found = {DeliveryStatus(status): int(n) for status, n in rows}
        return {s: found.get(s, 0) for s in DeliveryStatus}

    def next_for_ticket(self, platform: Platform, ticket_ref: str) -> StoredDelivery | None:
        """The ticket's earliest delivery still to run: per-ticket order is arrival (id) order."""
        with self.db.transaction() as session:
            row = session.scalars(
                select(DeliveryRow)
                .where(
                    DeliveryRow.platform == platform.value,
                    DeliveryRow.ticket_ref == ticket_ref,
                    DeliveryRow.status.in_([s.value for s in PENDING_STATUSES]),
                )
                .order_by(DeliveryRow.id)
                .limit(1)
            ).first()
            return _stored(row) if row else None

    def received_before(self, platform: Platform, ticket_ref: str, id: int) -> datetime | None:
        """The latest receipt time among the ticket's deliveries stored before delivery `id`, if any."""
        with self.db.transaction() as session:
            latest: datetime | None = session.scalar(
                select(func.max(DeliveryRow.received_at)).where(
                    DeliveryRow.platform == platform.value, DeliveryRow.ticket_ref == ticket_ref, DeliveryRow.id < id
                )
            )
            return latest

    def claim(self, id: int, now: datetime, by: str | None = None) -> StoredDelivery | None:
        """Mark a queued or retrying delivery as being processed by process `by` and count the attempt; None otherwise.

        One claim wins, even between processes. A delivery already processing is left to
        its worker; if that worker died, recover_in_flight queues it again: at once when
        it can tell that `by` has ended, else after the lease.
        """
        claimable = [DeliveryStatus.QUEUED.value, DeliveryStatus.RETRYING.value]
        with self.db.transaction() as session:
            result = session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == id, DeliveryRow.status.in_(claimable))
                .values(
                    status=DeliveryStatus.PROCESSING.value,
                    attempts=DeliveryRow.attempts + 1,
                    next_attempt_at=None,
                    updated_at=now,
                    claimed_by=by,
                )
                .execution_options(synchronize_session=False)
            )
            if _rowcount(result) != 1:
                return None
            row = session.get(DeliveryRow, id, populate_existing=True)
            return _stored(row) if row else None

    def keep_claim(self, id: int, by: str | None, now: datetime) -> bool:
        """Renew a running delivery's lease (its worker is alive); False when it is not `by`'s to run any more."""
        with self.db.transaction() as session:
            result = session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id == id,
                    DeliveryRow.status == DeliveryStatus.PROCESSING.value,
                    DeliveryRow.claimed_by.is_(None) if by is None else DeliveryRow.claimed_by == by,
                )
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(result) == 1

    def put_off(self, id: int, reason: str, until: datetime, now: datetime) -> None:
        """A claimed delivery that must wait (another delivery goes first): due again at `until`.

        Not a failed attempt, so it does not count towards the retries.
        """
        with self.db.transaction() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == id, DeliveryRow.status == DeliveryStatus.PROCESSING.value)
                .values(
                    status=DeliveryStatus.RETRYING.value,
                    attempts=case((DeliveryRow.attempts > 0, DeliveryRow.attempts - 1), else_=0),
                    last_error=reason[:2000],
                    next_attempt_at=until,
                    updated_at=now,
                    claimed_by=None,
                )
                .execution_options(synchronize_session=False)
            )

    def mark_processed(self, id: int, now: datetime, session: Session | None = None) -> None:
        """Done: decided, applied and recorded (pass `session` to commit it with the record)."""
        self._set(id, session, status=DeliveryStatus.PROCESSED, last_error=None, processed_at=now, updated_at=now)

    def mark_ignored(self, id: int, reason: str, now: datetime) -> None:
        """Nothing to do for this delivery; `reason` says why (kept in last_error for `tierup inbox`)."""
        self._set(id, None, status=DeliveryStatus.IGNORED, last_error=reason[:2000], processed_at=now, updated_at=now)

    def mark_retrying(self, id: int, error: str, next_attempt_at: datetime, now: datetime) -> None:
        """A transient failure: run again at `next_attempt_at`."""
        self._set(
            id, None, status=DeliveryStatus.RETRYING, last_error=error[:2000], next_attempt_at=next_attempt_at,
            updated_at=now,
        )  # fmt: skip

    def mark_failed(self, id: int, error: str, now: datetime) -> None:
        """A permanent failure: stays visible with its reason until redriven."""
        self._set(id, None, status=DeliveryStatus.FAILED, last_error=error[:2000], next_attempt_at=None, updated_at=now)

    def _set(self, id: int, session: Session | None, **values: Any) -> None:
        values = {k: (v.value if isinstance(v, DeliveryStatus) else v) for k, v in values.items()}
        statement = update(DeliveryRow).where(DeliveryRow.id == id).values(**values)
        if session is not None:
            session.execute(statement.execution_options(synchronize_session=False))
            return
        with self.db.transaction() as own:
            own.execute(statement.execution_options(synchronize_session=False))

    def requeue(self, ids: Iterable[int] = (), *, failed: bool = False, now: datetime) -> list[int]:
        """Put deliveries back on the queue (`tierup redrive`): the given ids, or every failed one.

        A delivery a worker is running now is left to it: queued again, a second worker could
        run it at the same time.
        """
        wanted = [i for i in ids if 0 < i <= MAX_ROW_ID]
        with self.db.transaction() as session:
            query = select(DeliveryRow.id).order_by(DeliveryRow.id).with_for_update()
            if failed:
                query = query.where(DeliveryRow.status == DeliveryStatus.FAILED.value)
            else:
                query = query.where(DeliveryRow.id.in_(wanted), DeliveryRow.status != DeliveryStatus.PROCESSING.value)
            found = list(session.scalars(query))
            if found:
                session.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id.in_(found))
                    .values(status=DeliveryStatus.QUEUED.value, next_attempt_at=None, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
        return found

    def recover_in_flight(
        self, *, older_than: datetime, now: datetime, ended: Callable[[str | None], bool] = lambda by: False
    ) -> list[int]:
        """Deliveries a dead worker left behind (or whose job was lost): back to queued, ids to enqueue.

        Processing or queued with no change since `older_than`, retrying and overdue since
        then, or processing by a process that `ended` says has ended (however recently).
        Touching updated_at means a second worker recovering at the same time finds nothing
        left to take. The rows are locked as they are read (FOR UPDATE, on PostgreSQL; SQLite
        writes one transaction at a time): a delivery a worker claims or finishes meanwhile is
        skipped or read as it now is, never put back to queued after it was processed.
        """
        processing = DeliveryRow.status == DeliveryStatus.PROCESSING.value
        stale_queued = (DeliveryRow.status == DeliveryStatus.QUEUED.value) & (DeliveryRow.updated_at < older_than)
        stale_retry = (DeliveryRow.status == DeliveryStatus.RETRYING.value) & (DeliveryRow.next_attempt_at < older_than)
        with self.db.transaction() as session:
            query = (
                select(DeliveryRow)
                .where(processing | stale_queued | stale_retry)
                .order_by(DeliveryRow.id)
                .with_for_update(skip_locked=True)
            )
            rows = [
                row
                for row in session.scalars(query)
                if row.status != DeliveryStatus.PROCESSING.value or row.updated_at < older_than or ended(row.claimed_by)
            ]
            for row in rows:
                if row.status == DeliveryStatus.PROCESSING.value:
                    row.last_error = "the worker stopped in the middle of this delivery; running it again"
                row.status = DeliveryStatus.QUEUED.value
                row.next_attempt_at = None
                row.updated_at = now
                row.claimed_by = None
            return [row.id for row in rows]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# --- escalations and the audit trail -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of an escalation's audit trail."""

    platform: Platform
    ticket_ref: str
    transition: Transition
    dry_run: bool


class StaleDecision(Exception):
    """A decision made from an escalation that another worker has since moved on: not recorded."""


class SqlEscalationStore:
    """The EscalationStore port on the database; save() also writes the audit trail."""

    def __init__(self, db: Database, inbox: Inbox | None = None) -> None:
        self.db = db
        self.inbox = inbox or Inbox(db)

    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None:
        with self.db.transaction() as session:
            row = self._row(session, platform, ticket_ref)
            return escalation_from_json(row.data) if row else None

    def save(self, decision: Decision) -> None:
        self.record(decision)

    def load_many(self, platform: Platform, ticket_refs: Iterable[str]) -> dict[str, Escalation]:
        """The escalations of many tickets in one query (the SLA sweep's batches); absent ones are left out."""
        refs = list(dict.fromkeys(ticket_refs))
        if not refs:
            return {}
        with self.db.transaction() as session:
            query = select(EscalationRow).where(
                EscalationRow.platform == platform.value, EscalationRow.ticket_ref.in_(refs)
            )
            rows = session.scalars(query)
            return {row.ticket_ref: escalation_from_json(row.data) for row in rows}

    def record(self, decision: Decision, *, delivery_row_id: int | None = None, dry_run: bool = False) -> None:
        """Save the decision's escalation and new transitions and mark its delivery processed, atomically."""
        with self.db.transaction() as session:
            self._record(session, decision, dry_run)
            if delivery_row_id is not None:
                self.inbox.mark_processed(delivery_row_id, decision.transition.at, session=session)

    def record_many(self, decisions: Sequence[Decision], *, dry_run: bool = False) -> None:
        """Record the decisions of different tickets of one platform in one transaction (a sweep's batch).

        Two reads for the whole batch (their rows, their transitions' positions) instead of two per decision.
        """
        if not decisions:
            return
        platform = decisions[0].escalation.platform
        refs = [d.escalation.ticket_ref for d in decisions]
        if len(set(refs)) != len(refs) or any(d.escalation.platform is not platform for d in decisions):
            raise ValueError("record_many takes one decision per ticket, all of one platform")
        with self.db.transaction() as session:
            query = select(EscalationRow).where(
                EscalationRow.platform == platform.value, EscalationRow.ticket_ref.in_(refs)
            )
            rows = {row.ticket_ref: row for row in session.scalars(query)}
            for decision in decisions:
                esc = decision.escalation
                row = rows.get(esc.ticket_ref)
                if row is None:
                    row = rows[esc.ticket_ref] = EscalationRow(platform=esc.platform.value, ticket_ref=esc.ticket_ref)
                    session.add(row)
                _fill(row, decision)
            session.flush()  # new rows get their ids
            ids = [row.id for row in rows.values()]
            known: dict[int, set[int]] = {}
            for escalation_id, seq in session.execute(
                select(TransitionRow.escalation_id, TransitionRow.seq).where(TransitionRow.escalation_id.in_(ids))
            ):
                known.setdefault(escalation_id, set()).add(seq)
            for decision in decisions:
                row = rows[decision.escalation.ticket_ref]
                session.add_all(_new_transitions(row.id, decision.escalation, known.get(row.id, set()), dry_run))

    def _record(self, session: Session, decision: Decision, dry_run: bool) -> None:
        esc = decision.escalation
        row = self._row(session, esc.platform, esc.ticket_ref)
        known: set[int] = set()
        if row is None:
            row = EscalationRow(platform=esc.platform.value, ticket_ref=esc.ticket_ref)
            session.add(row)
        else:
            # Locked for the rest of the transaction (PostgreSQL; SQLite writes one at a time), so the
            # check below and the write cannot be split by another worker's record.
            session.refresh(row, with_for_update=True)
            stored = {
                seq: (delivery_id, event)
                for seq, delivery_id, event in session.execute(
                    select(TransitionRow.seq, TransitionRow.delivery_id, TransitionRow.event).where(
                        TransitionRow.escalation_id == row.id
                    )
                )
            }
            known = set(stored)
            mine = len(esc.history) - 1
            theirs = stored.get(mine)
            if max(known, default=-1) > mine or (
                theirs is not None and theirs != (decision.transition.delivery_id, decision.transition.event)
            ):
                # Another worker recorded a transition at this decision's place since the escalation
                # was read (it ran the ticket while this one stalled past its lease): its record stands.
                # The same decision saved again is no change.
                raise StaleDecision(f"escalation {esc.platform.value}:{esc.ticket_ref} moved on since it was read")
        _fill(row, decision)
        session.flush()
        session.add_all(_new_transitions(row.id, esc, known, dry_run))

    def history(self, platform: Platform, ticket_ref: str) -> list[AuditEntry]:
        """The audit trail of one ticket's escalation, oldest first."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(TransitionRow)
                .where(TransitionRow.platform == platform.value, TransitionRow.ticket_ref == ticket_ref)
                .order_by(TransitionRow.seq)
            ).all()
            return [_audit(r) for r in rows]

    def platforms_of(self, ticket_ref: str) -> list[Platform]:
        """Which platforms have an escalation for this ticket ref."""
        with self.db.transaction() as session:
            found = session.scalars(select(EscalationRow.platform).where(EscalationRow.ticket_ref == ticket_ref))
            return sorted(Platform(p) for p in found)

    def overdue(self, now: datetime) -> list[Escalation]:
        """Open escalations whose first-contact time has passed without contact (SH4)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(EscalationRow)
                .where(
                    EscalationRow.state.in_([s.value for s in OPEN_STATES]),
                    EscalationRow.first_contact_due.is_not(None),
                    EscalationRow.first_contact_due <= now,
                    EscalationRow.contacted_at.is_(None),
                )
                .order_by(EscalationRow.first_contact_due)
            ).all()
            return [escalation_from_json(r.data) for r in rows]

    def by_state(self, states: Iterable[State], limit: int = 200) -> list[Escalation]:
        """Escalations in `states`, most recently changed first (the dashboard's lists)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(EscalationRow)
                .where(EscalationRow.state.in_([s.value for s in states]))
                .order_by(EscalationRow.updated_at.desc())
                .limit(limit)
            ).all()
            return [escalation_from_json(r.data) for r in rows]

    @staticmethod
    def _row(session: Session, platform: Platform, ticket_ref: str) -> EscalationRow | None:
        query = select(EscalationRow).where(
            EscalationRow.platform == platform.value, EscalationRow.ticket_ref == ticket_ref
        )
        return session.scalars(query).first()


def _fill(row: EscalationRow, decision: Decision) -> None:
    esc = decision.escalation
    row.state = esc.state.value
    row.level = esc.level
    row.group_name = esc.group
    row.first_contact_due = esc.first_contact_due
    row.contacted_at = esc.contacted_at
    row.updated_at = decision.transition.at
    row.data = escalation_to_json(esc)


def _new_transitions(escalation_id: int, esc: Escalation, known: set[int], dry_run: bool) -> list[TransitionRow]:
    """The audit rows of `esc`'s transitions not stored yet (positions not in `known`)."""
    return [
        TransitionRow(
            escalation_id=escalation_id,
            platform=esc.platform.value,
            ticket_ref=esc.ticket_ref,
            seq=seq,
            at=t.at,
            event=t.event,
            from_state=t.from_state.value if t.from_state else None,
            to_state=t.to_state.value,
            actor=t.actor,
            rule=t.rule,
            why=t.why,
            actions=[action_to_json(a) for a in t.actions],
            delivery_id=t.delivery_id,
            dry_run=dry_run,
        )
        for seq, t in enumerate(esc.history)
        if seq not in known
    ]


def _audit(row: TransitionRow) -> AuditEntry:
    transition = Transition(
        at=row.at,
        event=row.event,
        from_state=State(row.from_state) if row.from_state else None,
        to_state=State(row.to_state),
        actor=row.actor,
        rule=row.rule,
        why=row.why,
        actions=tuple(action_from_json(a) for a in row.actions or ()),
        delivery_id=row.delivery_id,
    )
    return AuditEntry(Platform(row.platform), row.ticket_ref, transition, bool(row.dry_run))


# --- sweep cursors --------------------------------------------------------------------------


class SweepCursors:
    """Where each periodic sweep left off, so the next run starts there."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, platform: Platform, name: str) -> str | None:
        with self.db.transaction() as session:
            row = session.get(SweepCursorRow, (platform.value, name))
            return row.cursor if row else None

    def set(self, platform: Platform, name: str, cursor: str, now: datetime) -> None:
        with self.db.transaction() as session:
            row = session.get(SweepCursorRow, (platform.value, name))
            if row is None:
                session.add(SweepCursorRow(platform=platform.value, name=name, cursor=cursor, updated_at=now))
            else:
                row.cursor, row.updated_at = cursor, now


# --- the escalation form and the leads' dashboard (webhooks.escalate, webhooks.dashboard) ------

# Rate-limit hits older than this are pruned whoever asks: no limit looks further back.
MAX_RATE_WINDOW = timedelta(days=1)


class RateLimitHitRow(Base):
    """One counted attempt in a bucket (a hashed address or client IP): sliding-window rate limits."""

    __tablename__ = "rate_limit_hits"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_rate_limit_hits_bucket_at", "bucket", "at"),
        Index("ix_rate_limit_hits_at", "at"),
    )


class WebSecretRow(Base):
    """A secret the web side generates once and every process shares (the session signing key)."""

    __tablename__ = "web_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RateLimits:
    """Sliding-window limits kept in the database, so they hold across gunicorn workers and machines."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def bucket(key: str) -> str:
        # Hashed: the table says how often someone tried, not who (addresses are personal data).
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def waiting(self, keys: Iterable[str], *, limit: int, window: timedelta, now: datetime) -> float | None:
        """The seconds to wait when one of `keys` is at `limit` within `window`, else None; counts nothing."""
        buckets = sorted({self.bucket(k) for k in keys})
        with self.db.transaction() as session:
            counts = session.execute(
                select(func.count(), func.min(RateLimitHitRow.at))
                .where(RateLimitHitRow.bucket.in_(buckets), RateLimitHitRow.at > now - window)
                .group_by(RateLimitHitRow.bucket)
            ).all()
        waits = [(oldest + window - now).total_seconds() for n, oldest in counts if n >= limit]
        return max(1.0, *waits) if waits else None

    def acquire(self, keys: Iterable[str], *, limit: int, window: timedelta, now: datetime) -> float | None:
        """Count one attempt on every key, unless one is at `limit` within `window`: then the seconds to wait."""
        if window > MAX_RATE_WINDOW:
            raise ValueError(f"a rate-limit window is at most {MAX_RATE_WINDOW}")
        buckets = sorted({self.bucket(k) for k in keys})
        since = now - window
        with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Count and add as one step per bucket: under READ COMMITTED, parallel attempts all counted
                # the same rows and all got in (40 at once against a limit of 5 let 12 through). SQLite's
                # write transactions already run one at a time.
                locks = [advisory_key(f"tierup:rate:{b}") for b in buckets]
                session.execute(text(_LOCK_KEYS.format(keys="CAST(:keys AS bigint[])")), {"keys": locks})
            session.execute(delete(RateLimitHitRow).where(RateLimitHitRow.at <= now - MAX_RATE_WINDOW))
            counts = session.execute(
                select(RateLimitHitRow.bucket, func.count(), func.min(RateLimitHitRow.at))
                .where(RateLimitHitRow.bucket.in_(buckets), RateLimitHitRow.at > since)
                .group_by(RateLimitHitRow.bucket)
            ).all()
            waits = [(oldest + window - now).total_seconds() for _, n, oldest in counts if n >= limit]
            if waits:
                return max(1.0, *waits)
            session.add_all(RateLimitHitRow(bucket=b, at=now) for b in buckets)
        return None


class EndedSessionRow(Base):
    """A dashboard session ended by logging out (its id hashed), kept while its cookie could still be valid."""

    __tablename__ = "ended_sessions"

    session: Mapped[str] = mapped_column(String(64), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_ended_sessions_ended_at", "ended_at"),)


class EndedSessions:
    """Sessions ended on the server: a signed cookie is valid until it expires, so logging out must be remembered.

    Every process and machine on the database sees the same list; an entry is kept as long as
    the cookie it ends could still be presented (`lifetime`), then forgotten.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("utf-8")).hexdigest()

    def end(self, session_id: str, *, now: datetime, lifetime: timedelta) -> None:
        """Remember that `session_id` ended now; forget those whose cookies have expired since."""
        key = self._key(session_id)
        with self.db.transaction() as session:
            session.execute(delete(EndedSessionRow).where(EndedSessionRow.ended_at <= now - lifetime))
            if session.get(EndedSessionRow, key) is None:
                session.add(EndedSessionRow(session=key, ended_at=now))

    def ended(self, session_id: str) -> bool:
        """Whether `session_id` was ended by logging out."""
        with self.db.transaction() as session:
            return session.get(EndedSessionRow, self._key(session_id)) is not None


class WebSecrets:
    """Named secrets generated on first use and stored, so every web process signs alike."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get_or_create(self, name: str, make: Callable[[], str], now: datetime) -> str:
        """The stored secret `name`, generating it with `make` the first time."""
        try:
            with self.db.transaction() as session:
                row = session.get(WebSecretRow, name)
                if row is not None:
                    return row.value
                value = make()
                session.add(WebSecretRow(name=name, value=value, created_at=now))
                return value
        except IntegrityError:
            # Another process stored it first (PostgreSQL; SQLite takes turns): theirs stands.
            with self.db.transaction() as session:
                row = session.get(WebSecretRow, name)
                if row is None:
                    raise
                return row.value


@dataclass(frozen=True, slots=True)
class StoredEscalation:
    """An escalation with its row id (the dashboard's and the API's handle on it)."""

    id: int
    escalation: Escalation
    updated_at: datetime


class EscalationQueries:
    """The dashboard's reads: filtered lists and single escalations by id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(
        self,
        states: Iterable[State],
        *,
        platform: Platform | None = None,
        group: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[StoredEscalation]:
        """Escalations in `states` (optionally of one platform and group), the soonest first-contact due first."""
        query = (
            select(EscalationRow)
            .where(*self._where(states, platform, group))
            .order_by(
                EscalationRow.first_contact_due.is_(None),
                EscalationRow.first_contact_due,
                EscalationRow.updated_at.desc(),
                EscalationRow.id.desc(),
            )
            .limit(limit)
            .offset(offset)
        )
        with self.db.transaction() as session:
            return [_stored_escalation(r) for r in session.scalars(query)]

    def counts(
        self, states: Iterable[State], *, platform: Platform | None = None, group: str | None = None
    ) -> dict[tuple[State, int], int]:
        """How many escalations `find` would list without a limit, by state and level."""
        query = (
            select(EscalationRow.state, EscalationRow.level, func.count())
            .where(*self._where(states, platform, group))
            .group_by(EscalationRow.state, EscalationRow.level)
        )
        with self.db.transaction() as session:
            return {(State(state), int(level)): int(n) for state, level, n in session.execute(query)}

    @staticmethod
    def _where(states: Iterable[State], platform: Platform | None, group: str | None) -> list[Any]:
        where: list[Any] = [EscalationRow.state.in_([s.value for s in states])]
        if platform is not None:
            where.append(EscalationRow.platform == platform.value)
        if group is not None:
            where.append(EscalationRow.group_name == group)
        return where

    def get(self, id: int) -> StoredEscalation | None:
        """One escalation by row id, or None."""
        if not 0 < id <= MAX_ROW_ID:
            return None  # an id from a URL: no such row, and SQLite would overflow on it
        with self.db.transaction() as session:
            row = session.get(EscalationRow, id)
            return _stored_escalation(row) if row else None

    def groups(self) -> list[str]:
        """Every group an escalation is assigned to, for the dashboard's filter."""
        with self.db.transaction() as session:
            found = session.scalars(
                select(EscalationRow.group_name).where(EscalationRow.group_name.is_not(None)).distinct()
            )
            return sorted(g for g in found if g)


def _stored_escalation(row: EscalationRow) -> StoredEscalation:
    return StoredEscalation(id=row.id, escalation=escalation_from_json(row.data), updated_at=row.updated_at)
