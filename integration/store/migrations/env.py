"""Alembic environment: runs the packaged migrations on the connection Database.upgrade passes in."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import text

from integration.store import Base, make_engine

# An arbitrary constant: concurrent `tierup` processes starting on PostgreSQL take turns migrating.
_PG_MIGRATION_LOCK = 7_351_221


def _run(connection: Any) -> None:
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        # Alembic runs each SQLite migration in a transaction of its own, so a process starting
        # alongside could read the revision between two of them and run the second one again
        # ("table ... already exists"). One transaction for them all, begun here as make_engine
        # begins every SQLite transaction (BEGIN IMMEDIATE), lets one process migrate at a time;
        # the others wait for it and then find nothing to do. Database.upgrade commits it.
        connection.begin()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
