"""Shared fixtures: a scratch working directory, runtimes built as the CLI builds them, and the
PostgreSQL / Redis servers of scale-out tests.

Scale-out tests (marked `scaleout`) skip with the reason when their server is unreachable,
except under CI=true, where an unreachable server is a failure: CI starts them (.ci/run).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from integration.cli.ops import Runtime
    from integration.model import Platform
    from integration.ports import PlatformAdapter

POSTGRES_URL = os.environ.get("TIERUP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIERUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(what: str, url: str, problem: str) -> None:
    """Skip (or, under CI, fail) a test whose server is not there."""
    reason = f"{what} at {urlsplit(url).hostname}:{urlsplit(url).port} is not reachable ({problem})"
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _port_open(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory (where `.env`, tierup.db and the queue file go)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class NewRuntime(Protocol):
    """Builds a runtime from settings (tests/conftest.py `new_runtime`)."""

    def __call__(
        self,
        env: Mapping[str, str],
        *,
        adapters: Mapping[Platform, PlatformAdapter] | None = None,
        clock: Callable[[], datetime] | None = None,
        upgrade: bool = True,
    ) -> Runtime: ...


@pytest.fixture
def new_runtime(tmp_path: Path) -> Iterator[NewRuntime]:
    """`build_runtime` as the CLI runs it, on a scratch SQLite database unless `env` names another.

    The database is migrated unless `upgrade=False`; every runtime built is closed after the test.
    """
    from integration.cli.ops import build_runtime

    built: list[Runtime] = []

    def new(
        env: Mapping[str, str],
        *,
        adapters: Mapping[Platform, PlatformAdapter] | None = None,
        clock: Callable[[], datetime] | None = None,
        upgrade: bool = True,
    ) -> Runtime:
        settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'tierup.db'}", **env}
        runtime = build_runtime(settings, adapters=adapters, **({"clock": clock} if clock is not None else {}))
        if upgrade:
            runtime.database.upgrade()
        built.append(runtime)
        return runtime

    yield new
    for runtime in built:
        runtime.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    problem = _port_open(POSTGRES_URL)
    if problem:
        unavailable("PostgreSQL", POSTGRES_URL, problem)
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        unavailable("PostgreSQL", POSTGRES_URL, str(exc).splitlines()[0])
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The Redis test database, emptied before and after."""
    problem = _port_open(REDIS_URL)
    if problem:
        unavailable("Redis", REDIS_URL, problem)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unavailable("Redis", REDIS_URL, str(exc))
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()
