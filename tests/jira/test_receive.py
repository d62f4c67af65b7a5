"""POST /webhooks/jira through the real app, inbox and worker, with the adapter the composition root builds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from integration.cli.ops import Runtime
from integration.model import Platform, State
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.jira.conftest import ENV, NOW, Site, fixture, raw, sign


@pytest.fixture
def runtime(new_runtime: NewRuntime) -> Runtime:
    env = {**ENV, "TIERUP_POLICY": "lead-review", "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1",
           "TIERUP_MAX_BODY_BYTES": "65536"}  # fmt: skip
    return new_runtime(env, clock=lambda: NOW)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return runtime.create_app().test_client()


def post(client: FlaskClient, body: bytes, delivery_id: str = "6f1c-22", signature: str | None = "sign") -> Any:
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery_id}
    if signature == "sign":
        headers["X-Hub-Signature"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature"] = signature
    return client.post("/webhooks/jira", data=body, headers=headers)


def test_the_composition_root_builds_the_jira_adapter(runtime: Runtime) -> None:
    adapter = runtime.adapters[Platform.JIRA]
    assert adapter.platform is Platform.JIRA and not adapter.dry_run


def test_signed_delivery_is_stored_by_its_identifier_with_the_event_time(client: FlaskClient, runtime: Runtime) -> None:
    response = post(client, raw("issue_updated__request_label_added.json"))
    assert response.status_code == 202
    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None
    assert (stored.delivery_id, stored.kind, stored.ticket_ref) == ("6f1c-22", "jira:issue_updated", "SUP-7")
    assert stored.occurred_at is not None and stored.occurred_at.isoformat().startswith("2026-03-10T10:00:00")


def test_jiras_retry_of_the_same_delivery_is_a_duplicate(client: FlaskClient) -> None:
    body = raw("issue_updated__request_label_added.json")
    assert post(client, body).status_code == 202
    again = post(client, body)
    assert again.status_code == 200 and again.json["status"] == "duplicate"


def test_a_signed_body_sent_again_under_a_new_identifier_is_stored_once(
    client: FlaskClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Jira signs the body, not X-Atlassian-Webhook-Identifier, and the body has no time limit: whoever
    # holds one signed delivery could send it again under new identifiers, for ever, and make Tierup act.
    body = raw("issue_updated__not_happy_label_added.json")
    first = post(client, body, delivery_id="wh-1")
    assert first.status_code == 202
    for replayed in ("attacker-1", "attacker-2"):
        again = post(client, body, delivery_id=replayed)
        assert again.status_code == 200 and again.json == {"status": "duplicate", "id": first.json["id"]}
    assert [r.delivery_id for r in runtime.inbox.recent()] == ["wh-1"]
    assert "a signed body stored before as wh-1" in caplog.text
    # Another event (another body) under a new identifier is a new delivery, as ever.
    assert post(client, raw("issue_updated__confirm_label_added.json"), delivery_id="wh-2").status_code == 202


def test_an_automation_request_sent_again_under_a_new_identifier_is_a_new_delivery(
    client: FlaskClient, runtime: Runtime
) -> None:
    # The README's Automation rule sends the same body each time the label goes on (a request, a
    # cancel, the label back on: ask again), with a fresh X-Atlassian-Webhook-Identifier. A URL
    # token proves nothing about a body, so a body's hash is no replay key there.
    body = raw("issue_updated__request_label_added.json")
    for n in (1, 2):
        headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": f"SUP-7-2026031010000{n}"}
        answer = client.post("/webhooks/jira?token=dc-token-77c1", data=body, headers=headers)
        assert answer.status_code == 202, answer.json
    assert len(runtime.inbox.recent()) == 2


@pytest.mark.parametrize(("signature", "status"), [(None, 401), ("sha256=" + "0" * 64, 401), ("sign", 202)])
def test_signature_decides_between_401_and_202(client: FlaskClient, signature: str | None, status: int) -> None:
    assert post(client, raw("issue_updated__request_label_added.json"), signature=signature).status_code == status


def test_url_token_is_accepted_when_configured(client: FlaskClient) -> None:
    body = raw("issue_updated__request_label_added.json")
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "dc-1"}
    assert client.post("/webhooks/jira?token=dc-token-77c1", data=body, headers=headers).status_code == 202
    assert client.post("/webhooks/jira?token=nope", data=body, headers=headers).status_code == 401


@pytest.mark.parametrize("body", [
    b"{not json", b'{"webhookEvent": "jira:issue_updated", "issue": "SUP-7"}', b"[]",
    # Valid JSON, signed, but a lone surrogate no database can store: 400, not a 500.
    b'{"webhookEvent": "jira:issue_updated", "timestamp": 1773136800000, "issue": {"key": "SUP-\\ud800"}}',
    # A key with a control character in it is no issue key (it would reach logs and the database as is).
    b'{"webhookEvent": "jira:issue_updated", "timestamp": 1773136800000, "issue": {"key": "SUP-7\\u0007"}}',
])  # fmt: skip
def test_malformed_bodies_are_400(client: FlaskClient, body: bytes) -> None:
    assert post(client, body).status_code == 400


@pytest.mark.parametrize("given", ["x" * 201, "dc\tid-1"], ids=["over 200 characters", "a control character"])
def test_a_delivery_id_no_column_should_hold_is_replaced_by_a_hash(
    client: FlaskClient, runtime: Runtime, given: str
) -> None:
    response = post(client, raw("issue_updated__request_label_added.json"), delivery_id=given)
    assert response.status_code == 202
    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None and stored.delivery_id.startswith("sha256:") and len(stored.delivery_id) == 71


def test_events_we_do_not_handle_are_200_and_not_stored(client: FlaskClient, runtime: Runtime) -> None:
    payload = fixture("issue_updated__request_label_added.json")
    payload["webhookEvent"] = "jira:issue_deleted"
    response = post(client, json.dumps(payload).encode())
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert runtime.inbox.get(1) is None


def test_oversized_bodies_are_413(client: FlaskClient) -> None:
    body = json.dumps({"webhookEvent": "jira:issue_updated", "pad": "x" * 70000}).encode()
    assert post(client, body).status_code == 413


def test_sh1_the_request_label_s_delivery_is_processed_by_the_worker_against_jira(
    client: FlaskClient, runtime: Runtime, site: Site
) -> None:
    site.writes("SUP-7")
    response = post(client, raw("issue_updated__request_label_added.json"))
    assert response.status_code == 202

    runtime.tasks.run_pending()

    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None and stored.status is DeliveryStatus.PROCESSED
    escalation = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert escalation is not None and escalation.state is State.ESCALATED
    assert site.sent("PUT", "/issue/SUP-7")[0]["update"] == {"labels": [{"add": "escalated"}]}
    # Our own edit comes back as a webhook: it is recorded and ignored, and writes nothing.
    site.rsps.calls.reset()
    echo = post(client, raw("issue_updated__by_tierup.json"), delivery_id="6f1c-23")
    runtime.tasks.run_pending()
    echoed = runtime.inbox.get(echo.json["id"])
    assert echoed is not None and echoed.status is DeliveryStatus.IGNORED
    assert site.calls() == []


def test_a_replayed_identifier_and_a_late_older_delivery_change_nothing(
    client: FlaskClient, runtime: Runtime, site: Site
) -> None:
    site.writes("SUP-7")
    assert post(client, raw("issue_updated__request_label_added.json"), delivery_id="wh-req").status_code == 202
    runtime.tasks.run_pending()
    cancel = raw("issue_updated__cancel_label_added_with_comment.json")
    assert post(client, cancel, delivery_id="wh-cancel").status_code == 202
    runtime.tasks.run_pending()
    after_cancel = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert after_cancel is not None and after_cancel.state is State.CANCELLED
    site.rsps.calls.reset()

    # Jira retries the escalation request with the same identifier: acknowledged, not processed again.
    replay = post(client, raw("issue_updated__request_label_added.json"), delivery_id="wh-req")
    assert replay.status_code == 200 and replay.json["status"] == "duplicate"
    # A confirm made before the cancel, delivered half an hour late under a new identifier.
    late = fixture("issue_updated__confirm_label_added.json")
    late["timestamp"] -= 15 * 60 * 1000
    response = post(client, json.dumps(late).encode(), delivery_id="wh-late-confirm")
    assert response.status_code == 202
    runtime.tasks.run_pending()

    stored = runtime.inbox.get(response.json["id"])
    assert stored is not None and stored.status is DeliveryStatus.IGNORED
    assert stored.last_error is not None and "older than the last event applied" in stored.last_error
    assert site.calls() == []  # nothing written to Jira
    final = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert final is not None and final.state is State.CANCELLED and final.history == after_cancel.history
