"""Fixtures for the form and dashboard tests: a runtime wired like the CLI's, a helpdesk stand-in, a client."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from integration.cli.ops import Runtime
from integration.model import Platform
from tests.channels.fakes import REQUESTER, KnownTickets, helpdesk
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock, SignedAdapter

ADMIN_TOKEN = "admin-token-5c0d1e9f7a2b"
MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def desk() -> tuple[SignedAdapter, KnownTickets]:
    """The Zendesk stand-in: knows ticket 4016 (raised by REQUESTER, one CC)."""
    return helpdesk()


@pytest.fixture
def make_runtime(new_runtime: NewRuntime) -> MakeRuntime:
    """Runtimes built like the CLI builds them, on one scratch database, with the service-desk policy."""

    def make(adapter: SignedAdapter | None = None, clock: Clock | None = None, **env: str) -> Runtime:
        settings = {"TIERUP_POLICY": "service-desk", "TIERUP_ADMIN_TOKEN": ADMIN_TOKEN, **env}
        adapters = {Platform.ZENDESK: adapter} if adapter is not None else {}
        return new_runtime(settings, adapters=adapters, clock=clock or Clock())

    return make


@pytest.fixture
def runtime(make_runtime: MakeRuntime, desk: tuple[SignedAdapter, KnownTickets], clock: Clock) -> Runtime:
    return make_runtime(desk[0], clock)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return runtime.create_app().test_client()


def csrf_of(response: TestResponse) -> str:
    """The CSRF token a rendered form carries."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "the page has no CSRF token"
    return match.group(1)


def form_fields(**changes: Any) -> dict[str, Any]:
    """A valid submission by ticket 4016's requester; `changes` replace fields (None drops one)."""
    fields: dict[str, Any] = {
        "ticket": "4016",
        "email": REQUESTER.email,
        "reason": "wrong_resolution",
        "rationale": "Members cannot check in at the front desk: we lose revenue every hour",
        "contact": "phone +48 555 0100",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def submit(
    client: FlaskClient, *, csrf: bool = True, environ: dict[str, str] | None = None, **changes: Any
) -> TestResponse:
    """Open the form and send it (with its CSRF token unless `csrf` is False)."""
    page = client.get("/escalate", environ_base=environ or {})
    data = form_fields(**changes)
    if csrf:
        data.setdefault("csrf_token", csrf_of(page))
    return client.post("/escalate", data=data, environ_base=environ or {})


def login(client: FlaskClient, token: str = ADMIN_TOKEN) -> TestResponse:
    page = client.get("/dashboard/login")
    return client.post("/dashboard/login", data={"csrf_token": csrf_of(page), "token": token})
