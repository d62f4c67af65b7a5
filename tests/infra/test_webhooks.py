"""The Flask side: verify → record → enqueue → 202, and the error contract (401/400/413/200/404, never 500)."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.cli.ops import Runtime
from integration.model import Platform
from integration.ports import SignatureError
from integration.store import DeliveryStatus, sqlite_path
from tests.infra.conftest import MakeRuntime, post
from tests.infra.fakes import DELIVERY_HEADER, SIGNATURE_HEADER, SignedAdapter, request_payload, sign, signed
from webhooks.app import create_app


def test_accepted_delivery_is_stored_and_enqueued(client: FlaskClient, runtime: Runtime) -> None:
    response = post(client, request_payload("4016"), delivery_id="zd-inv-1")

    assert response.status_code == 202
    assert response.json == {"status": "accepted", "id": 1}
    stored = runtime.inbox.get(1)
    assert stored is not None
    assert (stored.delivery_id, stored.kind, stored.ticket_ref) == ("zd-inv-1", "escalation.requested", "4016")
    assert stored.status is DeliveryStatus.QUEUED
    assert stored.body == json.dumps(request_payload("4016")).encode()
    pending = runtime.tasks.huey.pending()
    assert [t.args for t in pending] == [(1,)]


def test_stored_headers_keep_ids_and_never_the_signature(client: FlaskClient, runtime: Runtime) -> None:
    body, headers = signed(request_payload(), "zd-inv-2")
    headers["Authorization"] = "Bearer should-never-be-stored"
    client.post("/webhooks/zendesk", data=body, headers=headers)

    stored = runtime.inbox.get(1)
    assert stored is not None
    names = {k.lower() for k in stored.headers}
    assert DELIVERY_HEADER.lower() in names and "x-signed-event" in names
    assert SIGNATURE_HEADER.lower() not in names and "authorization" not in names
    assert "should-never-be-stored" not in json.dumps(dict(stored.headers))


def test_duplicate_delivery_is_acknowledged_and_processed_once(
    client: FlaskClient, runtime: Runtime, adapter: SignedAdapter
) -> None:
    first = post(client, request_payload(), delivery_id="zd-inv-3")
    again = post(client, request_payload(), delivery_id="zd-inv-3")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "id": first.json["id"]}
    assert len(runtime.tasks.huey.pending()) == 1
    runtime.tasks.run_pending()
    assert adapter.parsed == ["zd-inv-3"]
    assert len(adapter.scripted.planned) == 1


def test_delivery_without_an_id_is_keyed_by_its_body(client: FlaskClient, runtime: Runtime) -> None:
    assert post(client, request_payload()).status_code == 202
    assert post(client, request_payload()).status_code == 200
    stored = runtime.inbox.get(1)
    assert stored is not None and stored.delivery_id.startswith("sha256:")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({SIGNATURE_HEADER: "0" * 64}, id="wrong"),
        pytest.param({SIGNATURE_HEADER: sign(b"other body")}, id="other-body"),
    ],
)
def test_bad_signature_is_401_and_nothing_is_stored(
    client: FlaskClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    response = client.post("/webhooks/zendesk", data=json.dumps(request_payload()), headers=headers)

    assert response.status_code == 401
    assert response.json is not None and response.json["error"] == "signature"
    assert runtime.inbox.recent() == []


def test_signature_is_checked_before_the_body_is_parsed(client: FlaskClient) -> None:
    # Not JSON and not signed: the answer is about the signature, so nothing was parsed.
    assert client.post("/webhooks/zendesk", data=b"{not json").status_code == 401


def test_signature_errors_of_every_platform_map_to_401(runtime: Runtime) -> None:
    class OtherPlatformSignatureError(SignatureError):
        pass

    class Rejecting(SignedAdapter):
        def verify(self, *args: object) -> None:
            raise OtherPlatformSignatureError("token in the URL does not match")

    app = runtime.create_app()
    app.extensions["tierup"].adapters[Rejecting().platform] = Rejecting()
    assert app.test_client().post("/webhooks/zendesk", data=b"{}").status_code == 401


def test_an_adapter_choking_on_signature_headers_is_still_401_not_500(runtime: Runtime) -> None:
    class Strict(SignedAdapter):
        def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
            int(headers.get("X-Signed-Timestamp", "not a number"))  # an adapter bug, met with sender input

        def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
            raise KeyError("X-Signed-Delivery-Id")

    runtime.adapters[Platform.ZENDESK] = Strict()
    client = runtime.create_app().test_client()
    assert client.post("/webhooks/zendesk", data=b"{}", headers={"X-Signed-Timestamp": "yesterday"}).status_code == 401
    response = client.post("/webhooks/zendesk", data=json.dumps(request_payload()), headers={"X-Signed-Timestamp": "1"})
    assert response.status_code == 202 and response.json is not None  # the delivery id falls back to the body's hash
    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None and stored.delivery_id.startswith("sha256:")


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"event": "escalation.requested"'])
def test_malformed_json_is_400(client: FlaskClient, runtime: Runtime, body: bytes) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.json is not None and response.json["error"] == "payload"
    assert runtime.inbox.recent() == []


def test_wrong_shape_is_400(client: FlaskClient) -> None:
    assert post(client, ["a", "list"]).status_code == 400
    assert post(client, {"event": "escalation.requested", "ticket_ref": {"nested": 1}}).status_code == 400
    assert post(client, {"event": "escalation.requested", "ticket_ref": "x" * 500}).status_code == 400


def test_unknown_event_is_200_logged_on_its_own_logger_and_not_stored(
    client: FlaskClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tierup.webhooks.unsupported"):
        response = post(client, {"event": "organization.updated", "id": 9}, delivery_id="zd-inv-9")

    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "ignored"
    assert [r.name for r in caplog.records if "unsupported" in r.getMessage()] == ["tierup.webhooks.unsupported"]
    assert runtime.inbox.recent() == []
    assert runtime.tasks.huey.pending_count() == 0


def test_unknown_platform_is_404(client: FlaskClient) -> None:
    assert client.post("/webhooks/jira", data=b"{}").status_code == 404  # not configured here
    assert client.post("/webhooks/servicenow", data=b"{}").status_code == 404


def test_get_is_405(client: FlaskClient) -> None:
    assert client.get("/webhooks/zendesk").status_code == 405


def test_body_over_the_limit_is_413_by_content_length(make_runtime: MakeRuntime, adapter: SignedAdapter) -> None:
    client = make_runtime(adapter, TIERUP_MAX_BODY_BYTES="1000").create_app().test_client()
    payload = request_payload(rationale="x" * 2000)

    response = post(client, payload)

    assert response.status_code == 413
    assert response.json is not None and response.json["error"] == "request_entity_too_large"


def test_body_over_the_limit_is_413_without_content_length(make_runtime: MakeRuntime, adapter: SignedAdapter) -> None:
    runtime = make_runtime(adapter, TIERUP_MAX_BODY_BYTES="1000")
    client = runtime.create_app().test_client()
    body, headers = signed(request_payload(rationale="x" * 2000))
    # A chunked upload announces no length; the server marks the stream as terminated
    # (werkzeug's and gunicorn's do), and the cap must hold on the read itself.
    response = client.post(
        "/webhooks/zendesk",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert runtime.inbox.recent() == []


def test_streamed_body_at_the_limit_is_accepted(make_runtime: MakeRuntime, adapter: SignedAdapter) -> None:
    body, headers = signed(request_payload())
    client = make_runtime(adapter, TIERUP_MAX_BODY_BYTES=str(len(body))).create_app().test_client()
    response = client.post(
        "/webhooks/zendesk",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 202


def test_body_at_the_limit_is_accepted(make_runtime: MakeRuntime, adapter: SignedAdapter) -> None:
    body, headers = signed(request_payload())
    client = make_runtime(adapter, TIERUP_MAX_BODY_BYTES=str(len(body))).create_app().test_client()
    assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 202


def test_storage_unavailable_is_503_so_the_sender_retries(make_runtime: MakeRuntime, adapter: SignedAdapter) -> None:
    # No migrations ran: every insert fails inside the database, as when it is down.
    client = make_runtime(adapter, upgrade=False).create_app().test_client()

    response = post(client, request_payload(), delivery_id="zd-inv-503")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


def test_enqueue_failure_still_answers_202_and_keeps_the_delivery(
    make_runtime: MakeRuntime, adapter: SignedAdapter
) -> None:
    runtime = make_runtime(adapter)

    def broken_enqueue(row_id: int) -> None:
        raise ConnectionError("queue is down")

    app = create_app(replace(runtime.web_config(), enqueue=broken_enqueue))
    response = post(app.test_client(), request_payload(), delivery_id="zd-inv-q")

    assert response.status_code == 202
    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None and stored.status is DeliveryStatus.QUEUED  # recovery will queue it


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=600),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"event": st.sampled_from(SignedAdapter.HANDLED), "ticket_ref": st.one_of(st.text(), st.integers())}
        ).map(lambda v: json.dumps(v).encode()),
    ),
    sign_it=st.booleans(),
    extra=st.dictionaries(
        st.from_regex(r"\AX-[A-Za-z-]{1,20}\Z"),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        max_size=4,
    ),
    delivery_id=st.one_of(
        st.none(), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300)
    ),
)
def test_nothing_a_sender_sends_gets_a_500(
    client: FlaskClient, body: bytes, sign_it: bool, extra: dict[str, str], delivery_id: str | None
) -> None:
    headers = dict(extra)
    if sign_it:
        headers[SIGNATURE_HEADER] = sign(body)
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    response = client.post("/webhooks/zendesk", data=body, headers=headers)
    assert response.status_code in (200, 202, 400, 401, 413), response.get_data(as_text=True)


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_checks_database_and_queue(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"database": "ok", "queue": "ok"}}


def test_readyz_is_ready_while_another_connection_writes_the_sqlite_database(
    runtime: Runtime, client: FlaskClient
) -> None:
    # A readiness probe reads: it must not queue behind a writer for the write lock (30 s busy timeout).
    path = sqlite_path(runtime.database.url)
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    answers: list[Any] = []
    try:
        probe = threading.Thread(target=lambda: answers.append(client.get("/readyz")), daemon=True)
        probe.start()
        probe.join(timeout=5)
        assert answers, "/readyz waited for the writer's lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        probe.join()
    assert answers[0].status_code == 200 and answers[0].json["checks"]["database"] == "ok"


def test_readyz_answers_in_time_while_a_dependency_hangs_and_never_piles_up_calls(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database that keeps its connection open and stops answering blocks a query for as long as TCP allows.
    from webhooks import ops

    monkeypatch.setattr(ops, "CHECK_SECONDS", 0.2)
    answering, calls = threading.Event(), []

    def database_hangs() -> None:
        calls.append(1)
        answering.wait(30)

    config = replace(runtime.web_config(), checks={"database": database_hangs, "queue": runtime.tasks.ping})
    client = create_app(config).test_client()
    for _ in range(3):
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"] == {"database": "no answer within 0.2s", "queue": "ok"}
    assert len(calls) == 1  # each probe waited for the call already running: no thread per probe left stuck
    answering.set()
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_a_dependency_is_down(runtime: Runtime) -> None:
    def queue_down() -> None:
        raise ConnectionError("redis://:hunter2@queue.internal:6379 refused")

    config = replace(runtime.web_config(), checks={"database": runtime.database.ping, "queue": queue_down})
    app = create_app(config)
    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json == {
        "status": "not ready",
        "checks": {"database": "ok", "queue": "unreachable (ConnectionError)"},
    }
    assert "hunter2" not in response.get_data(as_text=True)


def test_metrics_in_prometheus_text_format(client: FlaskClient, runtime: Runtime) -> None:
    post(client, request_payload(), delivery_id="zd-inv-m1")
    post(client, request_payload(), delivery_id="zd-inv-m1")
    client.post("/webhooks/zendesk", data=b"{}")  # unsigned
    client.post("/webhooks/no-such-platform-" + "x" * 50, data=b"{}")
    runtime.tasks.run_pending()

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    lines = set(text.splitlines())
    assert 'tierup_deliveries_received_total{platform="zendesk"} 1.0' in lines
    assert "tierup_intake_writes_total 2.0" in lines  # one after the other: the delivery, then its copy
    assert 'tierup_webhook_responses_total{platform="zendesk",status="202"} 1.0' in lines
    assert 'tierup_webhook_responses_total{platform="zendesk",status="200"} 1.0' in lines
    assert 'tierup_webhook_responses_total{platform="zendesk",status="401"} 1.0' in lines  # refusals count too
    # A platform the URL names but Tierup does not have is one label, whatever was sent.
    assert 'tierup_webhook_responses_total{platform="unknown",status="404"} 1.0' in lines
    assert 'tierup_deliveries_processed_total{outcome="processed",platform="zendesk"} 1.0' in lines
    assert 'tierup_processing_seconds_count{platform="zendesk"} 1.0' in lines
    assert 'tierup_processing_seconds_bucket{le="+Inf",platform="zendesk"} 1.0' in lines
    assert 'tierup_api_calls_total{operation="apply",platform="zendesk",status="ok"} 1.0' in lines
    assert 'tierup_inbox_deliveries{status="processed"} 1' in lines
    assert "tierup_queue_depth 0" in lines
    assert "# TYPE tierup_processing_seconds histogram" in lines
