"""JiraGateway under the real `jira` client: the exact requests it sends and how it reads Jira's answers."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from jira.exceptions import JIRAError

from adapters.jira.gateway import JiraGateway, gateway_error, retry_after_seconds
from adapters.jira.parse import ProjectTypes
from adapters.jira.settings import Deployment, JiraSettings
from integration.model import (
    Action,
    AddTags,
    AssignGroup,
    AssignUser,
    InternalNote,
    Platform,
    Priority,
    PublicReply,
    RemoveTags,
    SetDue,
    SetField,
    SetPriority,
    SetStatus,
    TicketSnapshot,
    TicketStatus,
)
from integration.ports import Conflict, PermanentError, TransientError
from tests.jira.conftest import DC_ENV, DC_SITE, ENV, NOW, SITE, Site, fixture

SOFTWARE = "TES-41"  # a Jira Software project: no JSM request endpoints


def gateway(env: dict[str, str] | None = None, *, service_desk: bool | None = True, **kwargs: Any) -> JiraGateway:
    settings = JiraSettings.from_env(env or ENV)
    assert settings is not None
    types = ProjectTypes()
    if service_desk is not None:
        types.note("SUP", "service_desk" if service_desk else "software")
    types.note("TES", "software")
    return JiraGateway(settings, escalated_label="escalated", project_types=types, clock=lambda: NOW, **kwargs)


def hint(ref: str = "SUP-7") -> TicketSnapshot:
    return TicketSnapshot(ref=ref, platform=Platform.JIRA, priority=Priority.NORMAL, tags=frozenset({"gym"}))


# --- the edit ---------------------------------------------------------------------------


def test_one_edit_carries_labels_priority_group_assignee_and_due(site: Site) -> None:
    site.rsps.put(site.api("issue/SUP-7"), status=204)
    due = datetime(2026, 3, 12, 11, 0, tzinfo=UTC)
    actions: list[Action] = [
        AddTags(("escalation_level_2", "sla_breached")),
        RemoveTags(("escalation_needs_info",)),
        AssignGroup("Technical Support Team Leaders APAC"),
        SetPriority(Priority.URGENT),
        AssignUser("5c5f880629be9642ba529340"),
        SetDue(due),
        SetField("region", "AU"),
        SetField("escalation_state", "escalated"),  # no Jira field for it: left alone
    ]
    gateway().apply("SUP-7", actions, snapshot=None, key="k:1")

    assert site.sent("PUT", "/issue/SUP-7") == [
        {
            "update": {
                "labels": [{"add": "escalation_level_2"}, {"add": "sla_breached"}, {"remove": "escalation_needs_info"}]
            },
            "fields": {
                "customfield_10105": {"name": "Technical Support Team Leaders APAC"},
                "priority": {"name": "Highest"},
                "assignee": {"accountId": "5c5f880629be9642ba529340"},
                "customfield_10106": "2026-03-12T11:00:00.000+0000",
                "customfield_10104": "AU",
            },
        }
    ]
    # The library's Issue.update() would GET the issue again; we do not.
    assert site.calls() == [("PUT", "/rest/api/2/issue/SUP-7")]


def test_without_a_due_field_the_due_date_is_the_local_date_of_the_due_time(site: Site) -> None:
    site.rsps.put(site.api("issue/SUP-7"), status=204)
    env = {k: v for k, v in ENV.items() if k != "JIRA_FIELD_FIRST_CONTACT_DUE"}
    # 00:30 in Sydney is still the 11th in UTC: the date is taken where the calendar put the time.
    due = datetime(2026, 3, 12, 0, 30, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Australia/Sydney"))
    gateway(env).apply("SUP-7", [SetDue(due)], snapshot=None, key="k:1")
    assert site.sent("PUT", "/issue/SUP-7") == [{"fields": {"duedate": "2026-03-12"}}]


def test_assignee_is_a_username_on_data_center(dc_site: Site) -> None:
    dc_site.rsps.put(dc_site.api("issue/SUP-7"), status=204)
    gateway(DC_ENV).apply("SUP-7", [AssignUser("lee.lead")], snapshot=None, key="k:1")
    assert dc_site.sent("PUT", "/issue/SUP-7") == [{"fields": {"assignee": {"name": "lee.lead"}}}]
    # Data Center authenticates with the personal access token.
    auth = [c.request.headers["Authorization"] for c in dc_site.rsps.calls]
    assert auth and all(a == "Bearer pat-dc-1" for a in auth)


def test_cloud_authenticates_with_email_and_api_token(site: Site) -> None:
    site.rsps.put(site.api("issue/SUP-7"), status=204)
    gateway().apply("SUP-7", [AddTags(("x",))], snapshot=None, key="k:1")
    assert all(c.request.headers["Authorization"].startswith("Basic ") for c in site.rsps.calls)


def test_nothing_to_write_sends_nothing(site: Site) -> None:
    gateway().apply("SUP-7", [], snapshot=None, key="k:1")
    assert site.calls() == []


# --- comments ---------------------------------------------------------------------------


def test_internal_note_is_marked_internal_and_keyed(site: Site) -> None:
    site.writes("SUP-7")
    gateway().apply("SUP-7", [InternalNote("<p>Reason: <b>x</b> [~accountid:1]</p>")], snapshot=None, key="wh-9:2")
    assert site.sent("POST", "/issue/SUP-7/comment") == [
        {
            "body": "Reason: *x* \\[\\~accountid:1\\]",
            "properties": [
                {"key": "tierup.key", "value": {"transition": "wh-9:2", "part": 0}},
                {"key": "sd.public.comment", "value": {"internal": True}},
            ],
        }
    ]


def test_public_reply_on_a_jsm_request_is_a_request_comment_then_marked(site: Site) -> None:
    site.writes("SUP-7")
    gateway().apply("SUP-7", [PublicReply("<p>Hello &amp; welcome</p>")], snapshot=None, key="wh-9:2")
    assert site.sent("POST", "/request/SUP-7/comment") == [{"body": "Hello & welcome", "public": True}]
    assert site.sent("PUT", "/comment/10101/properties/tierup.key") == [{"transition": "wh-9:2", "part": 0}]
    assert site.calls() == [
        ("POST", "/rest/servicedeskapi/request/SUP-7/comment"),
        ("PUT", "/rest/api/2/comment/10101/properties/tierup.key"),
    ]


def test_public_reply_outside_jsm_is_a_plain_comment(site: Site) -> None:
    site.writes(SOFTWARE)
    gateway().apply(SOFTWARE, [PublicReply("<p>Hello</p>")], snapshot=None, key="wh-9:2")
    assert site.sent("POST", f"/issue/{SOFTWARE}/comment") == [
        {"body": "Hello", "properties": [{"key": "tierup.key", "value": {"transition": "wh-9:2", "part": 0}}]}
    ]


def test_an_unknown_project_is_looked_up_once(site: Site) -> None:
    site.writes("SUP-7")
    site.rsps.get(site.api("project/SUP"), json={"key": "SUP", "id": "10010", "projectTypeKey": "service_desk"})
    gw = gateway(service_desk=None)
    gw.apply("SUP-7", [PublicReply("<p>a</p>")], snapshot=None, key="k:1")
    gw.apply("SUP-7", [PublicReply("<p>b</p>")], snapshot=None, key="k:2")
    assert [c for c in site.calls() if c[0] == "GET"] == [("GET", "/rest/api/2/project/SUP")]
    assert len(site.sent("POST", "/request/SUP-7/comment")) == 2


def test_a_reply_on_a_jsm_issue_that_is_no_customer_request_is_a_plain_comment(site: Site) -> None:
    # An agent made SUP-9 without a request type: the request endpoints answer 404. The reply failed
    # the delivery after the edit had landed, so nothing was recorded.
    site.rsps.put(site.api("issue/SUP-9"), status=204)
    site.rsps.post(site.sd("request/SUP-9/comment"), status=404, json={"errorMessage": "Request not found"})
    site.rsps.post(site.api("issue/SUP-9/comment"), status=201, json=fixture("rest_api2_comment_added.json"))
    actions: list[Action] = [AddTags(("escalation_needs_info",)), PublicReply("<p>Which ticket?</p>")]
    gateway().apply("SUP-9", actions, snapshot=None, key="k:1")
    assert site.sent("POST", "/issue/SUP-9/comment") == [
        {"body": "Which ticket\\?", "properties": [{"key": "tierup.key", "value": {"transition": "k:1", "part": 0}}]}
    ]


def test_retry_reads_the_newest_comments_and_posts_only_what_is_missing(site: Site) -> None:
    site.writes("SUP-7", transitions=False)
    site.rsps.get(site.api("issue/SUP-7/comment"), json=fixture("rest_api2_issue_comments_with_properties.json"))
    actions: list[Action] = [AddTags(("escalation_deferred",)), PublicReply("<p>reply</p>"), InternalNote("<p>n</p>")]

    gateway().apply("SUP-7", actions, snapshot=None, key="wh-req-1:1", retry=True)

    # The public reply (part 0) is already there with our key: only the note is posted.
    assert site.query("GET", "/issue/SUP-7/comment") == {
        "orderBy": ["-created"],
        "maxResults": ["50"],
        "expand": ["properties"],
    }
    assert site.sent("POST", "/request/SUP-7/comment") == []
    assert [b["body"] for b in site.sent("POST", "/issue/SUP-7/comment")] == ["n"]
    assert len(site.sent("PUT", "/issue/SUP-7")) == 1  # the edit is idempotent: it is simply sent again


def test_retry_of_another_transition_posts_everything(site: Site) -> None:
    site.writes("SUP-7", transitions=False)
    site.rsps.get(site.api("issue/SUP-7/comment"), json=fixture("rest_api2_issue_comments_with_properties.json"))
    gateway().apply("SUP-7", [PublicReply("<p>r</p>")], snapshot=None, key="wh-req-2:1", retry=True)
    assert len(site.sent("POST", "/request/SUP-7/comment")) == 1


def test_a_retry_does_not_move_an_issue_that_is_done_already(site: Site) -> None:
    site.writes("SUP-7")
    done = fixture("rest_api2_issue_get_jsm_sla_breached.json")
    done["fields"]["status"]["statusCategory"]["key"] = "done"  # the solve landed before the failure
    site.rsps.get(site.api("issue/SUP-7"), json=done)
    gateway().apply("SUP-7", [SetStatus(TicketStatus.SOLVED)], snapshot=None, key="k:1", retry=True)
    assert site.query("GET", "/issue/SUP-7") == {"fields": ["status"]}
    assert [c for c in site.calls() if "/transitions" in c[1]] == []  # not moved on, e.g. Resolved -> Closed


def test_a_retry_moves_an_issue_that_is_not_done_yet(site: Site) -> None:
    site.writes("SUP-7")
    site.rsps.get(site.api("issue/SUP-7"), json=fixture("rest_api2_issue_get_jsm_sla_breached.json"))
    gateway().apply("SUP-7", [SetStatus(TicketStatus.SOLVED)], snapshot=None, key="k:1", retry=True)
    assert ("GET", "/rest/api/2/issue/SUP-7/transitions?expand=transitions.fields") in site.calls()


def test_first_attempts_do_not_look_back(site: Site) -> None:
    site.writes("SUP-7", transitions=False)
    gateway().apply("SUP-7", [InternalNote("<p>n</p>")], snapshot=None, key="k:1")
    assert [c for c in site.calls() if c[0] == "GET"] == []


# --- the workflow transition --------------------------------------------------------------


def test_adding_the_escalated_label_moves_the_issue_to_escalated(site: Site) -> None:
    site.writes("SUP-7")
    gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")
    assert site.sent("POST", "/issue/SUP-7/transitions") == [{"transition": {"id": "41"}}]


def test_the_transition_is_read_once_per_project(site: Site) -> None:
    site.writes("SUP-7")
    site.writes("SUP-8")
    gw = gateway()
    gw.apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")
    gw.apply("SUP-8", [AddTags(("escalated",))], snapshot=None, key="k:2")
    assert [c for c in site.calls() if c[0] == "GET"] == [("GET", "/rest/api/2/issue/SUP-7/transitions")]
    assert site.sent("POST", "/issue/SUP-8/transitions") == [{"transition": {"id": "41"}}]


def test_a_remembered_transition_that_is_refused_is_looked_up_again(site: Site) -> None:
    site.writes("SUP-7")
    gw = gateway()
    gw.apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")
    # SUP-9 follows another workflow: Jira refuses id 41 there and offers 51 to the same status.
    site.rsps.put(site.api("issue/SUP-9"), status=204)
    site.rsps.post(
        site.api("issue/SUP-9/transitions"),
        status=400,
        json={"errorMessages": ["Transition id '41' is not valid for this issue."], "errors": {}},
    )
    site.rsps.post(site.api("issue/SUP-9/transitions"), status=204)
    other = fixture("rest_api2_issue_transitions.json")
    for t in other["transitions"]:
        t["id"] = "51" if t["id"] == "41" else t["id"]
    site.rsps.get(site.api("issue/SUP-9/transitions"), json=other)
    gw.apply("SUP-9", [AddTags(("escalated",))], snapshot=None, key="k:2")
    assert site.sent("POST", "/issue/SUP-9/transitions") == [{"transition": {"id": "41"}}, {"transition": {"id": "51"}}]
    assert gw._to_escalated["SUP"] == "51"


def test_a_transition_jira_refuses_leaves_the_status_the_first_time_as_every_time(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    # The Escalate transition is offered, but its screen requires a field: Jira answers 400 each time.
    # The first move in the project (no id known yet) failed the delivery after the edit and the
    # comments had landed; a later one said "not offered". Both now keep the changes and say why.
    caplog.set_level(logging.INFO, logger="tierup.jira")
    refused = {"errorMessages": [], "errors": {"customfield_10200": "Root cause is required."}}
    gw = gateway()
    for ref in ("SUP-7", "SUP-8"):
        site.rsps.put(site.api(f"issue/{ref}"), status=204)
        site.rsps.get(site.api(f"issue/{ref}/transitions"), json=fixture("rest_api2_issue_transitions.json"))
        site.rsps.post(site.api(f"issue/{ref}/transitions"), status=400, json=refused)
        gw.apply(ref, [AddTags(("escalated",))], snapshot=None, key=f"{ref}:1")
        assert site.sent("POST", f"/issue/{ref}/transitions") == [{"transition": {"id": "41"}}]
        assert f"Jira refused to move {ref} to Escalated" in caplog.text
        assert "Root cause is required." in caplog.text
        caplog.clear()
    assert "offered" not in caplog.text


@pytest.mark.parametrize(("status", "moved"), [("Escalated", False), ("Waiting for support", True)])
def test_a_retry_moves_the_issue_to_escalated_only_when_it_is_not_there_yet(
    site: Site, status: str, moved: bool
) -> None:
    # The move landed, then the sweep's label after it got a 503: the retry must not post the move again
    # (a workflow whose Escalate transition is global offers it from Escalated too).
    site.writes("SUP-7")
    issue = fixture("rest_api2_issue_get_jsm_sla_breached.json")
    issue["fields"]["status"]["name"] = status
    site.rsps.get(site.api("issue/SUP-7"), json=issue)
    gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1", retry=True)
    assert site.query("GET", "/issue/SUP-7") == {"fields": ["status"]}
    assert len(site.sent("POST", "/issue/SUP-7/transitions")) == (1 if moved else 0)


def test_no_transition_when_the_workflow_does_not_offer_it(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierup.jira")
    site.writes("SUP-7")
    gateway({**ENV, "JIRA_ESCALATED_STATUS": "Escalated to L2"}).apply(
        "SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1"
    )
    assert site.sent("POST", "/issue/SUP-7/transitions") == []
    assert "no transition to Escalated to L2 offered on SUP-7" in caplog.text


def test_other_labels_do_not_move_the_workflow(site: Site) -> None:
    site.writes("SUP-7")
    gateway().apply("SUP-7", [AddTags(("escalation_needs_info",))], snapshot=None, key="k:1")
    assert [c for c in site.calls() if "transitions" in c[1]] == []


# --- errors ---------------------------------------------------------------------------------


def test_429_becomes_transient_with_retry_after_and_the_library_does_not_sleep(site: Site) -> None:
    site.rsps.put(
        site.api("issue/SUP-7"),
        status=429,
        headers={"Retry-After": "30"},
        json={"errorMessages": ["Rate limit exceeded."]},
    )
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")
    assert caught.value.retry_after == 30.0
    assert time.monotonic() - started < 2.0
    assert site.calls() == [("PUT", "/rest/api/2/issue/SUP-7")]  # one attempt: the worker schedules the retry


def test_429_with_an_http_date(site: Site) -> None:
    when = (NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    site.rsps.get(site.sd("request/SUP-7/sla"), status=429, headers={"Retry-After": when})
    with pytest.raises(TransientError) as caught:
        gateway().snapshot("SUP-7", hint())
    assert caught.value.retry_after == 90.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(site: Site, status: int) -> None:
    site.rsps.put(site.api("issue/SUP-7"), status=status, body="<html>Bad gateway</html>")
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")
    assert len(site.calls()) == 1


@pytest.mark.parametrize("error", [
    requests.ConnectTimeout("connect"), requests.ReadTimeout("read"), requests.ConnectionError("refused"),
    requests.exceptions.ChunkedEncodingError("connection broken mid-body"),
    requests.exceptions.ContentDecodingError("gzip cut off"), requests.exceptions.SSLError("handshake"),
])  # fmt: skip
def test_timeouts_and_connection_errors_are_transient(site: Site, error: Exception) -> None:
    site.rsps.put(site.api("issue/SUP-7"), body=error)
    with pytest.raises(TransientError):
        gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")


def test_a_request_jira_url_makes_impossible_is_permanent(site: Site) -> None:
    site.rsps.put(site.api("issue/SUP-7"), body=requests.exceptions.TooManyRedirects("30 redirects"))
    with pytest.raises(PermanentError, match="TooManyRedirects"):
        gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")


def test_a_proxy_page_in_place_of_jiras_answer_is_transient(site: Site) -> None:
    site.rsps.post(site.api("issue/SUP-7/comment"), status=200, body="<html>Maintenance</html>",
                   content_type="text/html")  # fmt: skip
    with pytest.raises(TransientError, match=r"Jira answered 200 without JSON \(text/html"):
        gateway().apply("SUP-7", [InternalNote("<p>x</p>")], snapshot=None, key="k:1")


def test_a_redirected_call_is_permanent_and_says_where_it_went(site: Site) -> None:
    # requests would send the POST on as a GET to the sign-in page: nothing is written there.
    site.rsps.post(site.api("issue/SUP-7/comment"), status=302, headers={"Location": f"{SITE}/login.jsp"})
    site.rsps.get(f"{SITE}/login.jsp", status=200, body="<html>Log in</html>", content_type="text/html")
    with pytest.raises(PermanentError, match=r"answered 302, sending it to /login\.jsp: check JIRA_URL"):
        gateway().apply("SUP-7", [InternalNote("<p>x</p>")], snapshot=None, key="k:1")


def test_409_is_a_conflict(site: Site) -> None:
    site.rsps.put(site.api("issue/SUP-7"), status=409, json={"errorMessages": ["The issue was changed."]})
    with pytest.raises(Conflict):
        gateway().apply("SUP-7", [AddTags(("escalated",))], snapshot=None, key="k:1")


def test_other_4xx_are_permanent_with_jiras_messages(site: Site) -> None:
    site.rsps.put(
        site.api("issue/SUP-7"),
        status=400,
        json={"errorMessages": [], "errors": {"customfield_10105": "Field 'customfield_10105' cannot be set."}},
    )
    with pytest.raises(
        PermanentError, match=re.escape("edit issue: HTTP 400: Field 'customfield_10105' cannot be set.")
    ):
        gateway().apply("SUP-7", [AssignGroup("Nope")], snapshot=None, key="k:1")
    site.rsps.post(
        site.api("issue/SUP-7/comment"),
        status=403,
        json={"errorMessages": ["You do not have the permission to comment on this issue."]},
    )
    with pytest.raises(PermanentError, match="permission to comment"):
        gateway().apply("SUP-7", [InternalNote("<p>x</p>")], snapshot=None, key="k:2")


def test_an_unreachable_jira_at_first_use_is_transient() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{SITE}/rest/api/2/serverInfo", body=requests.ConnectionError("refused"))
        with pytest.raises(TransientError, match="connect"):
            gateway().snapshot("SUP-7")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("12", 12.0), ("0", 0.0), ("-3", 0.0), ("soon", None), (None, None), ("Tue, 10 Mar 2026 10:01:05 GMT", 60.0)],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


# --- reading ----------------------------------------------------------------------------------


def test_snapshot_with_a_webhook_hint_reads_only_the_sla(site: Site) -> None:
    site.sla("SUP-7", "servicedeskapi_request_sla_breached.json")
    snap = gateway().snapshot("SUP-7", hint())
    assert snap is not None and snap.tags == frozenset({"gym"})
    first, resolution = snap.slas
    assert (first.name, first.metric, first.breached) == ("Time to first response", "first_reply", True)
    assert first.breach_at == datetime(2026, 3, 10, 8, 55, tzinfo=UTC)
    assert (resolution.metric, resolution.breached) == ("resolution", False)
    assert site.calls() == [("GET", "/rest/servicedeskapi/request/SUP-7/sla?limit=50")]


def test_sla_without_a_breach_time_is_due_when_the_time_left_runs_out(site: Site) -> None:
    site.rsps.get(site.sd("request/SUP-7/sla"), json=fixture("servicedeskapi_request_sla_list_docs_example.json"))
    snap = gateway().snapshot("SUP-7", hint())
    assert snap is not None
    assert [(s.name, s.breach_at, s.breached) for s in snap.slas] == [
        ("Time To First Response", NOW + timedelta(milliseconds=8760000), False),
        ("Time To Resolution", NOW + timedelta(milliseconds=66360000), False),
        ("Time To Retrospective", NOW + timedelta(milliseconds=138360000), False),
    ]


def test_a_finished_sla_is_dated_by_its_breach_time_when_jira_gives_one(site: Site) -> None:
    answer = fixture("servicedeskapi_request_sla_list_docs_example.json")
    cloud, data_center = answer["values"][0], answer["values"][1]
    for value in (cloud, data_center):
        value["ongoingCycle"] = None  # finished: the last completed cycle tells
        value["completedCycles"][-1]["breached"] = True
    # As Cloud answers (an SLA field seen on a live site): the finished cycle keeps its breachTime.
    missed = cloud["completedCycles"][-1]["stopTime"]["epochMillis"] - 3_600_000
    cloud["completedCycles"][-1]["breachTime"] = {"iso8601": "-", "jira": "-", "friendly": "-", "epochMillis": missed}
    answer["values"] = [cloud, data_center]
    site.rsps.get(site.sd("request/SUP-7/sla"), json=answer)
    snap = gateway().snapshot("SUP-7", hint())
    assert snap is not None
    first, second = snap.slas
    assert (first.breached, first.fulfilled) == (True, True)
    assert first.breach_at == datetime.fromtimestamp(missed / 1000, UTC)  # when it breached, not when it stopped
    stopped = data_center["completedCycles"][-1]["stopTime"]["epochMillis"]
    assert second.breach_at == datetime.fromtimestamp(stopped / 1000, UTC)  # no breachTime: when it stopped


def test_snapshot_of_a_non_jsm_issue_reads_nothing(site: Site) -> None:
    assert gateway().snapshot(SOFTWARE, hint(SOFTWARE)) == hint(SOFTWARE)
    assert site.calls() == []


def test_snapshot_for_a_policy_without_an_sla_gate_reads_nothing(site: Site) -> None:
    assert gateway(read_slas=False).snapshot("SUP-7", hint()) == hint()
    assert site.calls() == []


def test_sla_404_means_not_a_request_and_is_remembered(site: Site) -> None:
    site.sla("SUP-7", None)
    gw = gateway(service_desk=None)
    assert gw.snapshot("SUP-7", hint()) == hint()
    assert gw.snapshot("SUP-7", replace(hint(), subject="again")) is not None
    assert len(site.calls()) == 1


def test_snapshot_without_a_hint_is_one_issue_get_with_its_sla_fields(site: Site) -> None:
    site.rsps.get(site.api("issue/SUP-7"), json=fixture("rest_api2_issue_get_jsm_sla_breached.json"))
    snap = gateway(service_desk=None).snapshot("SUP-7")
    assert snap is not None
    assert (snap.ref, snap.priority, snap.group, snap.region) == ("SUP-7", Priority.NORMAL, "Support", "PL")
    assert [(s.name, s.breached) for s in snap.slas] == [("Time to first response", True)]
    assert site.calls() == [("GET", "/rest/api/2/issue/SUP-7")]


def test_captured_issue_get_reads_as_a_snapshot(site: Site) -> None:
    site.rsps.get(site.api("issue/BBCOM-1398"), json=fixture("rest_api2_issue_get_unicode.json"))
    snap = gateway().snapshot("BBCOM-1398")
    assert snap is not None
    assert (snap.priority, snap.tags, snap.assignee) == (Priority.URGENT, frozenset(), "5b912f5c8a96e82b9549361c")
    assert snap.subject is not None and snap.status is TicketStatus.NEW


def test_missing_issue_is_none(site: Site) -> None:
    site.rsps.get(
        site.api("issue/SUP-404"),
        status=404,
        json={"errorMessages": ["Issue does not exist or you do not have permission to see it."]},
    )
    assert gateway().snapshot("SUP-404") is None


# --- searching, both ways --------------------------------------------------------------------


def _issues(*keys: str) -> list[dict[str, Any]]:
    return [{"id": str(10000 + i), "key": k, "fields": {"labels": []}} for i, k in enumerate(keys)]


def test_cloud_search_pages_with_a_token(site: Site) -> None:
    site.rsps.post(site.api("search/jql"), json={"issues": _issues("SUP-1", "SUP-2"), "nextPageToken": "tok-2"})
    site.rsps.post(site.api("search/jql"), json={"issues": _issues("SUP-3"), "isLast": True})
    found = [i["key"] for i in gateway().search_issues("project = SUP AND labels = escalated", ["labels"], 2)]
    assert found == ["SUP-1", "SUP-2", "SUP-3"]
    assert site.sent("POST", "/search/jql") == [
        {"jql": "project = SUP AND labels = escalated", "fields": ["labels"], "maxResults": 2},
        {
            "jql": "project = SUP AND labels = escalated",
            "fields": ["labels"],
            "maxResults": 2,
            "nextPageToken": "tok-2",
        },
    ]
    # No GET /field first (the library's search_issues does that to translate field names).
    assert [m for m, _ in site.calls()] == ["POST", "POST"]


def test_data_center_search_pages_by_offset(dc_site: Site) -> None:
    dc_site.rsps.post(
        dc_site.api("search"), json={"startAt": 0, "maxResults": 2, "total": 3, "issues": _issues("SUP-1", "SUP-2")}
    )
    dc_site.rsps.post(
        dc_site.api("search"), json={"startAt": 2, "maxResults": 2, "total": 3, "issues": _issues("SUP-3")}
    )
    found = [i["key"] for i in gateway(DC_ENV).search_issues("project = SUP", ["labels", "status"], 2)]
    assert found == ["SUP-1", "SUP-2", "SUP-3"]
    assert [b["startAt"] for b in dc_site.sent("POST", "/search")] == [0, 2]


def test_cloud_search_never_uses_the_retired_endpoint(site: Site) -> None:
    site.rsps.post(site.api("search"), status=410, json={"errorMessages": ["The requested API has been removed."]})
    site.rsps.post(site.api("search/jql"), json={"issues": [], "isLast": True})
    assert list(gateway().search_issues("project = SUP", ["labels"])) == []


# --- the client ----------------------------------------------------------------------------------


def test_client_never_retries_inside_the_library(site: Site) -> None:
    assert gateway().client()._session.max_retries == 0


def test_deployment_comes_from_server_info_unless_set(site: Site) -> None:
    assert gateway().deployment is Deployment.CLOUD
    assert gateway({**ENV, "JIRA_DEPLOYMENT": "datacenter"}).deployment is Deployment.DATACENTER


def test_data_center_server_info_says_server(dc_site: Site) -> None:
    assert gateway(DC_ENV).deployment is Deployment.DATACENTER


def test_any_base_url_works_including_loopback() -> None:
    local = "http://127.0.0.1:8089"
    with responses.RequestsMock() as rsps:
        rsps.get(f"{local}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_dc.json"))
        rsps.put(f"{local}/rest/api/2/issue/SUP-7", status=204)
        gateway({**DC_ENV, "JIRA_URL": local + "/"}).apply("SUP-7", [AddTags(("x",))], snapshot=None, key="k")
        assert [c.request.url for c in rsps.calls][-1] == f"{local}/rest/api/2/issue/SUP-7"


def test_dc_site_fixture_is_data_center() -> None:
    assert fixture("rest_api2_serverinfo_dc.json")["baseUrl"] == DC_SITE


def test_a_jira_error_without_a_status_is_retried() -> None:
    # The library raises JIRAError with no status for an answer it could not read (a proxy's page cut
    # off): that is the network's, not a refusal (and `None >= 500` would be a TypeError).
    assert isinstance(gateway_error(JIRAError("no answer", status_code=None), "edit issue", NOW), TransientError)
    assert isinstance(gateway_error(JIRAError("bad", status_code=400), "edit issue", NOW), PermanentError)
