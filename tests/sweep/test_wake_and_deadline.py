"""SD1 wake-up and SH4 deadlines end to end, on Zendesk and on Jira: receiver → inbox → Huey → Worker → real client.

Unit level already proves the decisions (tests/core: SD1, SH4; tests/infra/test_worker: the
deadline check once, on a made-up adapter). Here the same rules run on the real paths: signed
(or URL-token) deliveries through the Flask receiver into the SQLite inbox, Huey's SQLite queue
running the worker, the real zenpy / jira clients answered by `responses`, and the deadline
check run the way the consumer's scheduler runs it: the registered periodic task, enqueued and
executed by Huey.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses

from adapters.zendesk.gateway import html_to_text
from integration.cli.ops import Runtime
from integration.model import SYSTEM, Platform, State
from integration.queue import DEADLINE_TASK
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock
from tests.jira.conftest import ENV as JIRA_ENV
from tests.jira.conftest import NOW as JIRA_NOW
from tests.jira.conftest import fixture as jira_fixture
from tests.jira.conftest import sign
from tests.sweep.test_jira_sweep import FIRST_RESPONSE, TOKEN, FakeJira, automation_body, issue_json, sla_value
from tests.zendesk.helpers import DUE_FIELD, GROUP_IDS, NOTE_FIELD, FakeZendesk, changed, signed_headers
from tests.zendesk.helpers import env as zendesk_env
from tests.zendesk.helpers import fixture as zendesk_fixture

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # Tuesday 10:00 in London: the service desk's working hours
MANAGERS, HEAD = GROUP_IDS["Service Desk Managers"], GROUP_IDS["Head of Service Delivery"]


@pytest.fixture
def runtimes(new_runtime: NewRuntime) -> Callable[..., Runtime]:
    """Runtimes built as the CLI builds them (service-desk policy), on a scratch SQLite database and queue."""

    def make(env: dict[str, str], clock: Clock) -> Runtime:
        return new_runtime({**env, "TIERUP_POLICY": "service-desk"}, clock=clock)

    return make


def run_deadline_task(runtime: Runtime) -> int:
    """What the consumer's scheduler does each minute for the deadline check: enqueue the periodic task, run it."""
    huey = runtime.tasks.huey
    due = [t for t in huey.read_periodic(datetime(2026, 3, 10, 12, 0)) if t.name == DEADLINE_TASK]
    assert len(due) == 1, [t.name for t in huey.read_periodic(datetime(2026, 3, 10, 12, 0))]
    huey.enqueue(due[0])
    return runtime.tasks.run_pending()


def rules(runtime: Runtime, platform: Platform, ref: str) -> list[tuple[str, str, State]]:
    """(event, rule, state) of every transition of `ref`, oldest first."""
    return [(e.transition.event, e.transition.rule, e.transition.to_state)
            for e in runtime.escalations.history(platform, ref)]  # fmt: skip


def all_processed(runtime: Runtime) -> None:
    assert {r.status for r in runtime.inbox.recent()} == {DeliveryStatus.PROCESSED}, [
        (r.delivery_id, r.status, r.last_error) for r in runtime.inbox.recent()
    ]


# --- Zendesk -----------------------------------------------------------------------------------------


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


def zendesk_post(runtime: Runtime, payload: Any, invocation: str) -> None:
    """A signed Zendesk delivery (signed at the runtime's now) through the receiver, then the worker."""
    body = json.dumps(payload).encode("utf-8")
    stamp = runtime.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {**signed_headers(body, timestamp=stamp), "X-Zendesk-Webhook-Invocation-Id": invocation}
    response = runtime.create_app().test_client().post("/webhooks/zendesk", data=body, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert runtime.tasks.run_pending() >= 1


def zendesk_request(ref: str, reason: str) -> Any:
    return changed(zendesk_fixture("trigger_escalation_requested.json"), ticket__id=ref, escalation__reason=reason)


ZD_WOKEN = (
    "<p>The service level on this ticket has now expired, so your earlier escalation request has been taken up: "
    "the ticket is marked <strong>Escalated</strong> and you should hear from us by Tue 10 Mar 2026 14:05 GMT.</p>"
)


def test_zendesk_deferred_request_is_escalated_when_the_sla_breach_arrives(
    zendesk: FakeZendesk, runtimes: Callable[..., Runtime]
) -> None:
    clock = Clock(T0)
    runtime = runtimes(zendesk_env(), clock)
    zendesk.show()  # first reply time active, breaching at 13:00 UTC
    zendesk_post(runtime, zendesk_request("4016", "tierup_reason_sla_violation"), "01HQWAKE0000000000000000001")
    deferred = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert deferred is not None and deferred.state is State.DEFERRED
    [put] = zendesk.put_bodies()
    assert put["ticket"]["additional_tags"] == ["escalation_deferred"] and put["ticket"]["comment"]["public"] is True

    # 13:00 the first reply target breaches; Tierup's SLA automation fires at 13:05.
    clock.now = T0 + timedelta(hours=3, minutes=5)
    breached = [{"breach_at": "2026-03-10T13:00:00Z", "stage": "active", "metric": "first_reply_time",
                 "hours": 0, "minutes": -5, "days": 0}]  # fmt: skip
    zendesk.show(ticket__slas={"policy_metrics": breached}, ticket__tags=["escalation_deferred", "gym"])
    zendesk_post(runtime, zendesk_fixture("trigger_sla_breach.json"), "01HQWAKE0000000000000000002")

    all_processed(runtime)
    after = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert after is not None and after.state is State.ESCALATED and after.group == "Service Desk Managers"
    assert rules(runtime, Platform.ZENDESK, "4016") == [
        ("request", "SD1", State.DEFERRED),
        ("request", "SD1", State.ESCALATED),
    ]
    [_, woken] = zendesk.put_bodies()
    ticket = woken["ticket"]
    assert (ticket["additional_tags"], ticket["remove_tags"], ticket["group_id"]) == (
        ["escalated", "sla_breached"], ["escalation_deferred"], MANAGERS,
    )  # fmt: skip
    assert ticket["comment"] == {"html_body": ZD_WOKEN, "public": True}
    fields = {f["id"]: f["value"] for f in ticket["custom_fields"]}
    assert fields[DUE_FIELD] == "2026-03-10T14:05:00Z"  # one business hour after the breach arrived
    assert fields[NOTE_FIELD].startswith("A service level was breached: escalated automatically to Service Desk")


def test_zendesk_missed_first_contact_goes_to_level_2_once_and_a_confirmed_one_does_not(
    zendesk: FakeZendesk, runtimes: Callable[..., Runtime]
) -> None:
    clock = Clock(T0)
    runtime = runtimes(zendesk_env(), clock)
    zendesk.show("4016")
    zendesk.show("4017")
    zendesk_post(runtime, zendesk_request("4016", "tierup_reason_wrong_resolution"), "01HQDEAD0000000000000000001")
    zendesk_post(runtime, zendesk_request("4017", "tierup_reason_wrong_resolution"), "01HQDEAD0000000000000000002")
    clock.now = T0 + timedelta(minutes=30)
    zendesk.show("4017", ticket__tags=["escalated", "gym"])
    confirm = changed(zendesk_fixture("trigger_confirm.json"), ticket__id="4017")
    zendesk_post(runtime, confirm, "01HQDEAD0000000000000000003")
    missed = runtime.escalations.load(Platform.ZENDESK, "4016")
    kept = runtime.escalations.load(Platform.ZENDESK, "4017")
    assert missed is not None and missed.first_contact_due == T0 + timedelta(hours=1)  # SD10: one business hour
    assert kept is not None and kept.state is State.CONFIRMED and kept.contacted_at is not None
    writes_before = len(zendesk.put_bodies())

    clock.now = T0 + timedelta(hours=1, minutes=1)
    assert run_deadline_task(runtime) == 1
    assert run_deadline_task(runtime) == 1  # the next minute's check: nothing left to do

    assert rules(runtime, Platform.ZENDESK, "4016")[-1] == ("deadline_missed", "SH4", State.LEVEL_2)
    assert [r for r in rules(runtime, Platform.ZENDESK, "4016") if r[0] == "deadline_missed"] == [
        ("deadline_missed", "SH4", State.LEVEL_2)
    ]
    after = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert after is not None and (after.level, after.group) == (2, "Head of Service Delivery")
    assert runtime.escalations.history(Platform.ZENDESK, "4016")[-1].transition.actor == SYSTEM.id
    assert rules(runtime, Platform.ZENDESK, "4017")[-1] == ("confirm", "SD9", State.CONFIRMED)
    new_puts = zendesk.put_bodies()[writes_before:]
    assert len(new_puts) == 1
    ticket = new_puts[0]["ticket"]
    assert (ticket["id"], ticket["additional_tags"], ticket["group_id"], ticket["comment"]["public"]) == (
        4016, ["escalation_level_2"], HEAD, False,
    )  # fmt: skip
    assert html_to_text(ticket["comment"]["html_body"]).startswith("No first contact by Tue 10 Mar 2026 11:00 GMT")


# --- Jira ----------------------------------------------------------------------------------------------


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeJira(rsps, cloud=True)


def jira_env() -> dict[str, str]:
    return {**JIRA_ENV, "JIRA_WEBHOOK_URL_TOKEN": TOKEN}


def jira_signed(runtime: Runtime, payload: Any, delivery_id: str) -> None:
    """A signed Jira webhook delivery through the receiver, then the worker."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body),
               "X-Atlassian-Webhook-Identifier": delivery_id}  # fmt: skip
    response = runtime.create_app().test_client().post("/webhooks/jira", data=body, headers=headers)
    assert response.status_code == 202, response.json
    assert runtime.tasks.run_pending() >= 1


def jira_payload(name: str, key: str, **fields: Any) -> Any:
    """A captured webhook payload moved to issue `key`, with some of the issue's fields changed."""
    payload = copy.deepcopy(jira_fixture(name))
    payload["issue"]["key"] = key
    payload["issue"]["fields"].update(fields)
    return payload


JIRA_WOKEN = (
    "The service level on this ticket has now expired, so your earlier escalation request has been taken up: "
    "the ticket is marked *Escalated* and you should hear from us by Tue 10 Mar 2026 13:05 GMT."
)


def test_jira_deferred_request_is_escalated_when_the_automation_reports_the_breach(
    jira: FakeJira, runtimes: Callable[..., Runtime]
) -> None:
    clock = Clock(JIRA_NOW)
    breach_at = JIRA_NOW + timedelta(hours=2)  # 12:00:05
    jira.add(issue_json("SUP-7", labels=["escalation_requested", "gym"], first_response=(breach_at, False)))
    runtime = runtimes(jira_env(), clock)
    request = jira_payload("issue_updated__request_label_added.json", "SUP-7",
                           customfield_10100={"value": "SLA violation"})  # fmt: skip
    jira_signed(runtime, request, "wh-request")
    deferred = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert deferred is not None and deferred.state is State.DEFERRED
    assert jira.bodies("PUT", "/issue/SUP-7") == [{"update": {"labels": [{"add": "escalation_deferred"}]}}]

    # The SLA breaches; the Automation rule's web request arrives at 12:05 (URL token, no signature).
    jira.issues["SUP-7"]["fields"][FIRST_RESPONSE] = sla_value("Time to first response", breach_at, breached=True)
    clock.now = breach_at + timedelta(minutes=5)
    response = (
        runtime.create_app()
        .test_client()
        .post(
            f"/webhooks/jira?token={TOKEN}", data=automation_body("SUP-7"), headers={"Content-Type": "application/json"}
        )
    )
    assert response.status_code == 202
    runtime.tasks.run_pending()

    all_processed(runtime)
    assert rules(runtime, Platform.JIRA, "SUP-7") == [
        ("request", "SD1", State.DEFERRED),
        ("request", "SD1", State.ESCALATED),
    ]
    assert jira.bodies("PUT", "/issue/SUP-7")[1:] == [
        {
            "update": {"labels": [{"add": "escalated"}, {"remove": "escalation_deferred"}]},
            "fields": {"customfield_10105": {"name": "Service Desk Managers"},
                       "customfield_10106": "2026-03-10T13:05:05.000+0000"},
        },
        {"update": {"labels": [{"add": "sla_breached"}]}},  # last: the sweep's query leaves labelled issues out
    ]  # fmt: skip
    assert [c["body"] for c in jira.bodies("POST", "/request/SUP-7/comment")][1:] == [JIRA_WOKEN]
    [note] = jira.bodies("POST", "/issue/SUP-7/comment")
    assert note["body"].startswith("A service level was breached: escalated automatically to Service Desk Managers")
    assert jira.log.count("GET /rest/api/2/issue/SUP-7") == 1  # the push names the key: one read of the issue
    assert jira.labels("SUP-7") == {"escalation_requested", "gym", "escalated", "sla_breached"}


def test_jira_missed_first_contact_goes_to_level_2_once_and_a_confirmed_one_does_not(
    jira: FakeJira, runtimes: Callable[..., Runtime]
) -> None:
    clock = Clock(JIRA_NOW)
    jira.add(issue_json("SUP-7", labels=["escalation_requested", "gym"], first_response=None),
             issue_json("SUP-8", labels=["escalation_requested", "gym"], first_response=None))  # fmt: skip
    runtime = runtimes(jira_env(), clock)
    jira_signed(runtime, jira_payload("issue_updated__request_label_added.json", "SUP-7"), "wh-7")
    jira_signed(runtime, jira_payload("issue_updated__request_label_added.json", "SUP-8"), "wh-8")
    clock.now = JIRA_NOW + timedelta(minutes=30)
    jira_signed(runtime, jira_payload("issue_updated__confirm_label_added.json", "SUP-8"), "wh-8-confirm")
    missed = runtime.escalations.load(Platform.JIRA, "SUP-7")
    kept = runtime.escalations.load(Platform.JIRA, "SUP-8")
    assert missed is not None and missed.state is State.ESCALATED
    assert missed.first_contact_due == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # SD10, from the 10:00 request
    assert kept is not None and kept.state is State.CONFIRMED and kept.contacted_at is not None
    jira.log.clear()

    clock.now = datetime(2026, 3, 10, 11, 1, tzinfo=UTC)
    assert run_deadline_task(runtime) == 1
    assert run_deadline_task(runtime) == 1

    assert [r for r in rules(runtime, Platform.JIRA, "SUP-7") if r[0] == "deadline_missed"] == [
        ("deadline_missed", "SH4", State.LEVEL_2)
    ]
    after = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert after is not None and (after.level, after.group) == (2, "Head of Service Delivery")
    assert rules(runtime, Platform.JIRA, "SUP-8")[-1] == ("confirm", "SD9", State.CONFIRMED)
    # One edit and one internal note on SUP-7, nothing on SUP-8; the check looked for its own comment first.
    assert [c for c in jira.log if "SUP-8" in c] == []
    assert jira.bodies("PUT", "/issue/SUP-7")[-1] == {
        "update": {"labels": [{"add": "escalation_level_2"}]},
        "fields": {"customfield_10105": {"name": "Head of Service Delivery"}},
    }
    assert jira.log == [
        "GET /rest/api/2/issue/SUP-7",  # the deadline command carries no snapshot: one read
        "GET /rest/api/2/issue/SUP-7/comment",
        "PUT /rest/api/2/issue/SUP-7",
        "POST /rest/api/2/issue/SUP-7/comment",
    ]
    [note] = jira.bodies("POST", "/issue/SUP-7/comment")[-1:]
    assert (
        note["body"]
        == "No first contact by Tue 10 Mar 2026 11:00 GMT: escalation sent to Head of Service Delivery (level 2)."
    )
    assert note["properties"][0]["value"] == {"transition": "deadline:2026-03-10T11:00:00+00:00:2", "part": 0}
