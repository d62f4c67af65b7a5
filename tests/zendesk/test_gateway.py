"""ZendeskGateway over the real zenpy client: reads, the one-PUT mapping, conflicts, rate limits, idempotent retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
import zenpy.lib.api

from adapters.zendesk.gateway import ZendeskGateway, html_to_text, zenpy_client
from adapters.zendesk.mapping import sla_targets
from adapters.zendesk.settings import ZendeskSettings
from integration.config import ConfigError
from integration.model import (
    Action,
    AddTags,
    AssignGroup,
    Decision,
    EscalationRequest,
    InternalNote,
    Organisation,
    Person,
    Platform,
    Priority,
    PublicReply,
    RemoveTags,
    Role,
    SetDue,
    SetField,
    SetPriority,
    SetStatus,
    State,
    TicketSnapshot,
    TicketStatus,
)
from integration.policy import load_policy
from integration.ports import Conflict, PermanentError, TransientError
from integration.service import MemoryStore, handle_event
from tests.zendesk.helpers import (
    API,
    GROUP_IDS,
    NOTE_FIELD,
    NOW,
    STAMP,
    TICKET,
    FakeZendesk,
    Raw,
    changed,
    delivery,
    env,
    fixture,
    update_response,
)
from tests.zendesk.test_rules import World, request

REPLY = PublicReply("<p>We are on it &amp; will call you.</p>")
NOTE = InternalNote("<p>Reason: SLA violation<br>Rationale: members &lt;b&gt;locked out&lt;/b&gt;</p>")


@pytest.fixture
def api() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


def gateway(**settings: str) -> ZendeskGateway:
    s = ZendeskSettings.from_env(env(**settings))
    assert s is not None
    return ZendeskGateway.from_settings(s)


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """zenpy must never sleep in a request thread (its 429 loop calls api.sleep)."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"zenpy slept {seconds}s")

    monkeypatch.setattr(zenpy.lib.api, "sleep", refuse)


# --- reading ------------------------------------------------------------------------------------


def test_snapshot_maps_the_side_loads_in_one_read(api: FakeZendesk) -> None:
    api.show()
    snap = gateway().snapshot(TICKET)
    assert snap == TicketSnapshot(
        ref=TICKET,
        platform=Platform.ZENDESK,
        status=TicketStatus.OPEN,
        priority=Priority.NORMAL,
        group="Support",
        assignee="6130907993201",
        requester=Person(
            id="6130907993114",
            email="champ@club.example",
            name="Pat Champion",
            role=Role.END_USER,
            tags=frozenset({"pg_champion"}),
            organisation="Club Warszawa",
            region="PL",
        ),
        organisation=Organisation(id="6130869157658", name="Club Warszawa", region="PL", tags=frozenset({"poland"})),
        tags=frozenset({"gym", "tierup_reason_wrong_resolution"}),
        slas=sla_targets(fixture("api_ticket_show_with_sideloads.json")["ticket"]["slas"]["policy_metrics"]),
        subject="Members cannot check in at the front desk",
        version=STAMP,
    )
    (sla,) = snap.slas
    assert (sla.name, sla.metric, sla.breached, sla.fulfilled) == ("First reply time", "first_reply", False, False)
    assert sla.breach_at == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert api.reads == 1
    (call,) = api.calls("GET")
    assert call.request.url == f"{API}/tickets/4016.json?include=users%2Corganizations%2Cgroups%2Cslas"


def test_sla_stage_comes_from_the_api_not_our_clock() -> None:
    metrics = [
        {"breach_at": "2020-01-01T00:00:00Z", "stage": "active", "metric": "next_reply_time", "hours": 5},
        {"breach_at": "2026-03-10T09:00:00Z", "stage": "active", "metric": "first_reply_time", "minutes": -60},
        {"breach_at": None, "stage": "achieved", "metric": "requester_wait_time"},
        {"breach_at": "2026-03-10T09:00:00Z", "stage": "breached", "metric": "agent_work_time"},
        {"breach_at": "2026-03-12T09:00:00Z", "stage": "paused", "metric": "custom_metric"},
        # As a live account answers for a first reply met months ago: the days run on past breach_at.
        {"breach_at": "2025-12-18T03:07:32Z", "stage": "achieved", "metric": "first_reply_time", "days": -141},
        {"breach_at": "2026-03-10T09:00:00Z", "stage": "paused", "metric": "periodic_update_time", "hours": -2},
    ]
    targets = sla_targets(metrics)
    # A breach_at in the past is not taken as breached: only what Zendesk reports is.
    assert [(t.metric, t.breached, t.fulfilled) for t in targets] == [
        ("next_reply", False, False),
        ("first_reply", True, False),
        ("resolution", False, True),
        ("resolution", True, False),
        ("custom_metric", False, False),
        ("first_reply", False, True),
        ("periodic_update", True, False),
    ]


def test_a_missing_ticket_is_none(api: FakeZendesk) -> None:
    assert gateway().snapshot("999999") is None
    assert api.reads == 1


def test_a_deleted_ticket_is_none(api: FakeZendesk) -> None:
    api.show(ticket__status="deleted")
    assert gateway().snapshot(TICKET) is None


def test_the_parsers_read_is_handed_to_the_service_once(api: FakeZendesk) -> None:
    api.show()
    g = gateway()
    read = g.read_ticket(TICKET)
    assert read is not None and read.field_text(6130900000002) is not None
    assert g.snapshot(TICKET) == read.snapshot
    assert api.reads == 1
    # Used once: a second snapshot (the service after a conflict) reads again.
    g.snapshot(TICKET)
    assert api.reads == 2


def test_a_kept_read_goes_stale(api: FakeZendesk) -> None:
    api.show()
    clock = [100.0]
    g = gateway()
    g.monotonic = lambda: clock[0]
    g.read_ticket(TICKET)
    clock[0] += g.prefetch_seconds + 1
    g.snapshot(TICKET)
    assert api.reads == 2
    # Reads nobody took are dropped by the next read.
    api.show("4017")
    g.read_ticket(TICKET)
    clock[0] += g.prefetch_seconds + 1
    g.read_ticket("4017")
    assert list(g._prefetched) == ["4017"]


# --- writing: one PUT, mapped in one place -----------------------------------------------------------


def snapshot(version: str = STAMP) -> TicketSnapshot:
    return TicketSnapshot(ref=TICKET, platform=Platform.ZENDESK, version=version)


def test_every_action_lands_in_one_put(api: FakeZendesk) -> None:
    actions: list[Action] = [
        AddTags(("escalated", "sla_breached")),
        RemoveTags(("escalation_deferred",)),
        AssignGroup("Service Desk Managers"),
        SetPriority(Priority.URGENT),
        SetDue(datetime(2026, 3, 10, 12, 30, tzinfo=UTC)),
        SetField("preferred_contact", "phone"),
        REPLY,
        NOTE,
    ]
    gateway().apply(TICKET, actions, snapshot=snapshot(), key="d-1:1")
    assert (api.reads, api.writes) == (0, 1)
    assert api.put_bodies() == [
        {
            "ticket": {
                "id": 4016,
                "additional_tags": ["escalated", "sla_breached"],  # never the whole tag list
                "remove_tags": ["escalation_deferred"],
                "group_id": GROUP_IDS["Service Desk Managers"],
                "priority": "urgent",
                "comment": {"html_body": REPLY.body, "public": True},
                "custom_fields": [
                    {"id": 6130900000006, "value": "2026-03-10T12:30:00Z"},
                    {"id": 6130900000003, "value": "phone"},
                    {"id": NOTE_FIELD, "value": "Reason: SLA violation\nRationale: members <b>locked out</b>"},
                ],
                "metadata": {"tierup_key": "d-1:1", "tierup_part": "main"},
                "safe_update": True,
                "updated_stamp": STAMP,
            }
        }
    ]


def test_a_note_alone_is_a_private_comment(api: FakeZendesk) -> None:
    gateway().apply(TICKET, [NOTE], snapshot=snapshot(), key="d-1:1")
    (put,) = api.put_bodies()
    assert put["ticket"]["comment"] == {"html_body": NOTE.body, "public": False}
    assert "custom_fields" not in put["ticket"]


def test_without_the_note_field_the_note_is_a_second_private_put(api: FakeZendesk) -> None:
    api.put_stamps = ["2026-03-10T10:00:05Z"]  # the reply's PUT moves the ticket on
    gateway(ZENDESK_FIELD_NOTE="").apply(TICKET, [REPLY, NOTE], snapshot=snapshot(), key="d-1:1")
    first, second = api.put_bodies()
    assert first["ticket"]["comment"] == {"html_body": REPLY.body, "public": True}
    assert "Rationale" not in json.dumps(first)  # never leak the note publicly
    # Conditional on the ticket as the reply left it: a note PUT that timed out and landed later
    # makes its retry a 409 (re-read, audits checked), never a second note.
    assert second == {
        "ticket": {
            "id": 4016,
            "comment": {"html_body": NOTE.body, "public": False},
            "metadata": {"tierup_key": "d-1:1", "tierup_part": "note"},
            "safe_update": True,
            "updated_stamp": "2026-03-10T10:00:05Z",
        }
    }


def test_without_a_due_field_the_due_date_is_zendesks_due_at(api: FakeZendesk) -> None:
    gateway(ZENDESK_FIELD_DUE="").apply(
        TICKET, [SetDue(datetime(2026, 3, 12, 11, 0, tzinfo=UTC))], snapshot=snapshot(), key="d-1:1"
    )
    (put,) = api.put_bodies()
    assert put["ticket"]["due_at"] == "2026-03-12T11:00:00Z"


def test_nothing_to_write_makes_no_call(api: FakeZendesk) -> None:
    gateway().apply(TICKET, [SetField("unknown_field", "x")], snapshot=snapshot(), key="d-1:1")
    assert (api.reads, api.writes) == (0, 0)


def test_group_names_come_from_one_group_list_when_settings_lack_them(api: FakeZendesk) -> None:
    groups = {"groups": [{"url": f"{API}/groups/{gid}.json", "id": gid, "name": name, "description": "",
                          "default": False, "deleted": False, "created_at": "2023-09-18T15:40:00Z",
                          "updated_at": "2023-09-18T15:40:00Z"} for name, gid in GROUP_IDS.items()],
              "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
              "links": {"prev": None, "next": None}}  # fmt: skip
    api.mock.add(responses.GET, f"{API}/groups.json", json=groups)
    g = gateway(ZENDESK_GROUP_IDS="")
    g.apply(TICKET, [AssignGroup("Head of Service Delivery")], snapshot=snapshot(), key="d-1:1")
    g.apply(TICKET, [AssignGroup("Service Desk Managers")], snapshot=snapshot(), key="d-2:1")
    assert len([c for c in api.calls("GET") if "/groups" in c.request.url]) == 1  # cached for the process
    assert [b["ticket"]["group_id"] for b in api.put_bodies()] == [
        GROUP_IDS["Head of Service Delivery"],
        GROUP_IDS["Service Desk Managers"],
    ]
    with pytest.raises(PermanentError, match="Nobody's Group"):
        g.apply(TICKET, [AssignGroup("Nobody's Group")], snapshot=snapshot(), key="d-3:1")


def test_no_group_is_sent_as_none(api: FakeZendesk) -> None:
    # LR6 on a ticket that had no group before its escalation: back to none, no group list read.
    gateway(ZENDESK_GROUP_IDS="").apply(TICKET, [AssignGroup(None)], snapshot=snapshot(), key="d-1:1")
    assert [b["ticket"]["group_id"] for b in api.put_bodies()] == [None]
    assert not [c for c in api.calls("GET") if "/groups" in c.request.url]


# --- failures ---------------------------------------------------------------------------------------


def test_a_conflict_rereads_and_decides_again(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    first = api.show()
    newer = changed(first, ticket__updated_at="2026-03-10T10:00:01Z", ticket__tags=["gym", "vip"])
    api.later_versions[TICKET] = [newer]
    api.put_failures.append((409, fixture("api_error_409_update_conflict.json"), {}))
    d = w.deliver(request())
    assert isinstance(d, Decision) and d.state is State.ESCALATED
    # The ticket, again after the 409, and its audits (a part before a refused one may have landed).
    assert (api.reads, api.writes) == (3, 2)
    stale, fresh = api.put_bodies()
    assert stale["ticket"]["updated_stamp"] == STAMP
    assert fresh["ticket"]["updated_stamp"] == "2026-03-10T10:00:01Z"
    assert len(w.store.decisions) == 1


def test_a_conflict_on_the_note_after_the_reply_landed_sends_only_the_note_again(api: FakeZendesk) -> None:
    # Without the note field a transition is two PUTs; the second may now be refused (409) after
    # the first landed. Deciding again must not send the customer's reply a second time.
    w = World("lead-review", api, ZENDESK_FIELD_NOTE="")
    api.show()
    api.put_stamps = ["2026-03-10T10:00:05Z"]
    api.put_failures.extend([None, (409, fixture("api_error_409_update_conflict.json"), {})])
    d = w.deliver(request())
    assert isinstance(d, Decision) and d.state is State.ESCALATED
    landed = [a["metadata"]["custom"]["tierup_part"] for a in api.audits[TICKET]]
    assert landed == ["main", "note"]  # the reply once, the note once


def test_a_conflict_is_raised_as_conflict(api: FakeZendesk) -> None:
    api.put_failures.append((409, fixture("api_error_409_update_conflict.json"), {}))
    with pytest.raises(Conflict, match="Safe Update prevented the update"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


def test_429_honours_retry_after_and_nobody_sleeps(api: FakeZendesk) -> None:
    api.put_failures.append((429, {"error": "TooManyRequests"}, {"Retry-After": "37"}))
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")
    assert caught.value.retry_after == 37.0
    assert time.monotonic() - started < 2.0
    assert api.writes == 1  # zenpy did not retry on its own


def test_429_with_an_http_date_retry_after(api: FakeZendesk) -> None:
    headers = {"Retry-After": "Tue, 10 Mar 2026 10:02:00 GMT", "Date": "Tue, 10 Mar 2026 10:00:30 GMT"}
    api.put_failures.append((429, {"error": "TooManyRequests"}, headers))
    with pytest.raises(TransientError) as caught:
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")
    assert caught.value.retry_after == 90.0


def test_429_with_an_asctime_retry_after(api: FakeZendesk) -> None:
    # RFC 9110's third HTTP-date form (and a -0000 zone) parse without a zone: still GMT.
    for when in ("Tue Mar 10 10:02:00 2026", "Tue, 10 Mar 2026 10:02:00 -0000"):
        headers = {"Retry-After": when, "Date": "Tue, 10 Mar 2026 10:00:30 GMT"}
        api.put_failures.append((429, {"error": "TooManyRequests"}, headers))
        with pytest.raises(TransientError) as caught:
            gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")
        assert caught.value.retry_after == 90.0


def test_a_write_answered_without_a_ticket_did_not_land(api: FakeZendesk) -> None:
    # A proxy's sign-in page, answered 200: zenpy hands back the bare response.
    api.put_failures.append((200, Raw("<html>Sign in</html>"), {"Content-Type": "text/html"}))
    with pytest.raises(TransientError, match=r"update ticket 4016: Zendesk answered 200 without JSON \(text/html\)"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


def test_a_redirected_write_is_not_followed(api: FakeZendesk) -> None:
    # requests would send the PUT on as a GET to the sign-in page, and zenpy return that page.
    api.put_failures.append((302, Raw(""), {"Location": f"{API.removesuffix('/api/v2')}/access/unauthenticated"}))
    with pytest.raises(PermanentError, match="answered 302, sending it to /access/unauthenticated: check ZENDESK_URL"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")
    assert api.writes == 1


@pytest.mark.parametrize(("status", "body", "error"), [
    (500, "oops", TransientError), (502, ["bad", "gateway"], TransientError), (400, ["bad"], PermanentError),
])  # fmt: skip
def test_an_error_whose_body_is_not_a_json_object_is_still_classified(
    api: FakeZendesk, status: int, body: Any, error: type[Exception]
) -> None:
    api.put_failures.append((status, body, {}))
    with pytest.raises(error, match=f"PUT /api/v2/tickets/4016.json: Zendesk answered {status}"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refusal_that_is_not_about_the_status_is_not_sent_again(api: FakeZendesk, status: int) -> None:
    # Only a 422 can mean "will not solve an unassigned ticket"; bad credentials are bad for every PUT.
    api.put_failures.append((status, {"error": "Forbidden", "description": "no"}, {}))
    with pytest.raises(PermanentError):
        gateway().apply(TICKET, [REPLY, SetStatus(TicketStatus.SOLVED)], snapshot=snapshot(), key="d-1:1")
    assert api.writes == 1


def test_a_rate_limited_read_is_transient_too(api: FakeZendesk) -> None:
    api.read_failures.append((429, {"error": "TooManyRequests"}, {"Retry-After": "5"}))
    with pytest.raises(TransientError) as caught:
        gateway().snapshot(TICKET)
    assert caught.value.retry_after == 5.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(api: FakeZendesk, status: int) -> None:
    api.put_failures.append((status, {"error": "InternalError"}, {}))
    with pytest.raises(TransientError):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


def test_a_timeout_is_transient(api: FakeZendesk) -> None:
    api.read_failures.append(requests.ReadTimeout("read timed out"))
    with pytest.raises(TransientError, match="ReadTimeout"):
        gateway().snapshot("77")


def test_a_validation_error_is_permanent_with_zendesks_description(api: FakeZendesk) -> None:
    api.put_failures.append((422, fixture("api_error_422_record_invalid.json"), {}))
    with pytest.raises(PermanentError, match=r"RecordInvalid: Record validation errors.*Group: is not valid"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


def test_writing_to_a_missing_ticket_is_permanent(api: FakeZendesk) -> None:
    api.put_failures.append((404, fixture("api_error_404_record_not_found.json"), {}))
    with pytest.raises(PermanentError, match="404 RecordNotFound: Not found"):
        gateway().apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")


# --- idempotent retries --------------------------------------------------------------------------------


def test_a_retry_does_not_post_the_comment_again(api: FakeZendesk) -> None:
    g = gateway()
    g.apply(TICKET, [AddTags(("escalated",)), REPLY], snapshot=snapshot(), key="d-1:1")
    api.mock.calls.reset()
    g.apply(TICKET, [AddTags(("escalated",)), REPLY], snapshot=snapshot(), key="d-1:1", retry=True)
    assert (api.reads, api.writes) == (1, 0)
    (audits,) = api.calls("GET")
    assert audits.request.url == f"{API}/tickets/4016/audits.json?sort_order=desc&per_page=100"


def test_a_retry_finds_its_write_past_the_first_page_of_a_long_history(api: FakeZendesk) -> None:
    g = gateway()
    # A ticket with 250 updates before ours, and an audits list that does not put the newest first.
    api.audits[TICKET] = [update_response(TICKET, {"other": n})["audit"] for n in range(250)]
    api.audits_oldest_first = True
    g.apply(TICKET, [AddTags(("escalated",)), REPLY], snapshot=snapshot(), key="d-1:1")
    api.mock.calls.reset()
    g.apply(TICKET, [AddTags(("escalated",)), REPLY], snapshot=snapshot(), key="d-1:1", retry=True)
    assert api.writes == 0  # found on page 3: not posted again
    pages = [c.request.url for c in api.calls("GET")]
    assert len(pages) == 3 and pages[-1].endswith("&page=3")


def test_a_retry_of_another_transition_writes(api: FakeZendesk) -> None:
    g = gateway()
    g.apply(TICKET, [REPLY], snapshot=snapshot(), key="d-1:1")
    api.mock.calls.reset()
    g.apply(TICKET, [REPLY], snapshot=snapshot(), key="d-2:1", retry=True)
    assert (api.reads, api.writes) == (1, 1)


def test_a_retry_after_half_the_fallback_sends_only_the_note(api: FakeZendesk) -> None:
    g = gateway(ZENDESK_FIELD_NOTE="")
    sent: list[dict[str, Any]] = []
    api.on_put = lambda ref, ticket: sent.append(ticket)
    # The reply lands, then the note's PUT fails.
    api.put_failures.extend([None, (500, {"error": "InternalError"}, {})])
    with pytest.raises(TransientError):
        g.apply(TICKET, [REPLY, NOTE], snapshot=snapshot(), key="d-1:1")
    assert [t["comment"]["public"] for t in sent] == [True]
    api.mock.calls.reset()
    g.apply(TICKET, [REPLY, NOTE], snapshot=snapshot(), key="d-1:1", retry=True)
    assert [t["comment"]["public"] for t in sent] == [True, False]
    assert (api.reads, api.writes) == (1, 1)


def test_the_service_retry_path_checks_audits_before_writing(api: FakeZendesk) -> None:
    # A first attempt wrote and then died before recording: the re-run finds its key and writes nothing.
    policy = load_policy("lead-review")
    w = World("lead-review", api)
    api.show()
    event = w.adapter.parse(delivery(request(), "01HQRETRY0000000000000001"))
    assert isinstance(event, EscalationRequest)
    handle_event(event, policy=policy, gateway=w.adapter.gateway, store=MemoryStore(), clock=lambda: NOW)
    api.mock.calls.reset()
    again = handle_event(
        event, policy=policy, gateway=w.adapter.gateway, store=MemoryStore(), clock=lambda: NOW, retry=True
    )
    assert isinstance(again, Decision) and again.state is State.ESCALATED
    assert (api.reads, api.writes) == (2, 0)  # the ticket, then its audits


# --- the base URL --------------------------------------------------------------------------------------


def test_a_local_stand_in_over_http_gets_every_call() -> None:
    local = "http://127.0.0.1:8765"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        api = FakeZendesk(mock, base=f"{local}/api/v2")
        api.show()
        g = gateway(ZENDESK_URL=local)
        snap = g.snapshot(TICKET)
        assert snap is not None
        g.apply(TICKET, [REPLY], snapshot=snap, key="d-1:1")
        assert [str(c.request.url).split("?")[0] for c in mock.calls] == [
            f"{local}/api/v2/tickets/4016.json",
            f"{local}/api/v2/tickets/4016.json",
        ]


def test_a_host_without_a_dot_is_refused_with_a_reason() -> None:
    s = ZendeskSettings.from_env(env(ZENDESK_URL="http://localhost:8765"))
    assert s is not None
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1 rather than localhost"):
        zenpy_client(s)


def test_oauth_token_is_sent_as_a_bearer_token(api: FakeZendesk) -> None:
    api.show()
    gateway(ZENDESK_EMAIL="", ZENDESK_API_TOKEN="", ZENDESK_OAUTH_TOKEN="oauth-xyz").snapshot(TICKET)
    (call,) = api.calls("GET")
    assert call.request.headers["Authorization"] == "Bearer oauth-xyz"


def test_html_to_text_keeps_paragraphs_and_decodes_entities() -> None:
    html = (
        "<p>Line one &amp; more</p>\n<p>Reason: x<br>Rationale: &lt;b&gt;y&lt;/b&gt;</p><ul><li>a</li><li>b</li></ul>"
    )
    assert html_to_text(html) == "Line one & more\n\nReason: x\nRationale: <b>y</b>\n\na\n\nb"


def test_a_late_confirm_is_still_one_put(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    w.deliver(request())
    api.show(ticket__tags=["escalated"], ticket__group_id=GROUP_IDS["Technical Support Team Leaders"])
    w.deliver(fixture("trigger_confirm.json"), at=NOW + timedelta(days=1))
    assert (api.reads, api.writes) == (1, 1)
