"""The Zendesk adapter wired as the CLI wires it: Flask receiver → inbox → worker → one ticket PUT.

build_runtime builds the adapter from settings (build_adapter), the web app verifies and
stores, the worker parses and applies through the real zenpy client (answered by `responses`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from integration.cli.ops import Runtime
from integration.model import Platform, State
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.zendesk.helpers import NOW, FakeZendesk, changed, env, fixture, signed_headers

TIMESTAMP = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def api() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


@pytest.fixture
def runtime(new_runtime: NewRuntime) -> Runtime:
    return new_runtime({**env(), "TIERUP_POLICY": "lead-review"}, clock=lambda: NOW)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return runtime.create_app().test_client()


def post(client: FlaskClient, payload: object, invocation: str = "01HQE2E0000000000000000001", **headers: str) -> int:
    """POST a signed delivery the way Zendesk does; the HTTP status."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    sent = {**signed_headers(body, timestamp=TIMESTAMP), "X-Zendesk-Webhook-Invocation-Id": invocation, **headers}
    response: TestResponse = client.post("/webhooks/zendesk", data=body, headers=sent)
    return response.status_code


def test_sh1_the_macro_s_trigger_travels_to_one_put(client: FlaskClient, runtime: Runtime, api: FakeZendesk) -> None:
    api.show()
    assert post(client, fixture("trigger_escalation_requested.json")) == 202
    assert len(api.mock.calls) == 0  # the receiver only verifies and stores
    assert runtime.tasks.run_pending() >= 1
    (stored,) = runtime.inbox.recent()
    assert (stored.status, stored.kind, stored.ticket_ref) == (
        DeliveryStatus.PROCESSED, "tierup.escalation_requested", "4016",
    )  # fmt: skip
    assert (api.reads, api.writes) == (1, 1)
    (put,) = api.put_bodies()
    assert put["ticket"]["additional_tags"] == ["escalated"]
    assert put["ticket"]["metadata"]["tierup_key"].startswith("01HQE2E0000000000000000001:")
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED


def test_a_retried_delivery_is_stored_once(client: FlaskClient, runtime: Runtime, api: FakeZendesk) -> None:
    first = post(client, fixture("trigger_confirm.json"), "01HQE2EDUP")
    again = post(client, fixture("trigger_confirm.json"), "01HQE2EDUP")
    assert (first, again) == (202, 200)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Zendesk-Webhook-Signature": "bm90IHRoZSBzaWduYXR1cmU="}, 401),
        ({"X-Zendesk-Webhook-Signature-Timestamp": "2026-03-10T09:50:00Z"}, 401),
    ],
)
def test_bad_signatures_are_401(client: FlaskClient, api: FakeZendesk, change: dict[str, str], status: int) -> None:
    assert post(client, fixture("trigger_confirm.json"), **change) == status
    assert len(api.mock.calls) == 0


def test_malformed_bodies_are_400_and_unknown_events_200(client: FlaskClient, runtime: Runtime) -> None:
    assert post(client, b'{"tierup": "zendesk-trigger/1", "kind": "confirm", ') == 400
    bad_id = changed(fixture("trigger_confirm.json"), ticket__id="DROP TABLE")
    assert post(client, bad_id) == 400
    attempt = fixture("api_webhook_invocation_attempts_response.json")["attempts"][0]
    user_deleted = attempt["request"]["payload"].encode("utf-8")  # a real event Tierup does not handle
    assert post(client, user_deleted) == 200
    assert runtime.inbox.recent() == []


def test_tierups_own_update_is_stored_and_ignored(client: FlaskClient, runtime: Runtime, api: FakeZendesk) -> None:
    echo = changed(fixture("trigger_escalation_requested.json"), current_user__id=env()["ZENDESK_BOT_USER_ID"])
    assert post(client, echo) == 202
    runtime.tasks.run_pending()
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.IGNORED
    assert len(api.mock.calls) == 0
