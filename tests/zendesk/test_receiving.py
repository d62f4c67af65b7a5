"""Receiving: the signature check, classify and parse of trigger bodies and event webhooks, echoes, the adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses

from adapters.zendesk import ZendeskAdapter, build_adapter
from adapters.zendesk.parse import (
    SUPPORTED_EVENTS,
    ParseContext,
    TriggerKind,
    ZendeskPayloadError,
    classify,
    parse,
    trigger_body,
)
from adapters.zendesk.verify import ZendeskSignatureError, verify_signature
from integration.model import (
    SYSTEM,
    Channel,
    Command,
    Decision,
    EscalationRequest,
    Ignored,
    Priority,
    Reason,
    ReviewCommand,
    Role,
    State,
)
from integration.policy import load_policy
from integration.ports import Classified, PayloadError, SignatureError
from integration.service import DryRunGateway, MemoryStore, handle_event
from integration.store import HeaderMap
from tests.zendesk.helpers import API, BOT_ID, NOW, SECRET, TICKET, FakeZendesk, changed, delivery, env, fixture
from tests.zendesk.helpers import signed_headers as signed

BODY = json.dumps(fixture("trigger_escalation_requested.json")).encode("utf-8")


@pytest.fixture
def api() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


@pytest.fixture
def adapter() -> ZendeskAdapter:
    built = build_adapter(env(), load_policy("lead-review"))
    assert built is not None
    return built


# --- signatures -----------------------------------------------------------------------------------


def test_a_good_signature_verifies(adapter: ZendeskAdapter) -> None:
    adapter.verify(signed(BODY), BODY, {}, NOW)


def test_the_signature_is_checked_over_the_raw_bytes(adapter: ZendeskAdapter) -> None:
    reformatted = json.dumps(json.loads(BODY), indent=2).encode("utf-8")  # same JSON, other bytes
    with pytest.raises(ZendeskSignatureError, match="does not match"):
        adapter.verify(signed(BODY), reformatted, {}, NOW)


def test_a_bad_signature_is_refused(adapter: ZendeskAdapter) -> None:
    with pytest.raises(ZendeskSignatureError, match="does not match"):
        adapter.verify(signed(BODY, secret="not-the-secret"), BODY, {}, NOW)


def test_the_signature_error_is_the_ports_401_error() -> None:
    assert issubclass(ZendeskSignatureError, SignatureError)


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_an_old_or_future_timestamp_is_refused(adapter: ZendeskAdapter, skew: timedelta) -> None:
    stamp = (NOW + skew).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ZendeskSignatureError, match="more than 300s away"):
        adapter.verify(signed(BODY, timestamp=stamp), BODY, {}, NOW)


def test_a_timestamp_within_the_tolerance_passes() -> None:
    stamp = (NOW - timedelta(minutes=4, seconds=59)).strftime("%Y-%m-%dT%H:%M:%SZ")
    verify_signature(signed(BODY, timestamp=stamp), BODY, [SECRET], NOW)


def test_a_rotated_secret_still_verifies() -> None:
    # During rotation both secrets are configured: the newest first, the old one still accepted.
    verify_signature(signed(BODY, secret="new-secret"), BODY, ["new-secret", "old-secret"], NOW)
    verify_signature(signed(BODY, secret="old-secret"), BODY, ["new-secret", "old-secret"], NOW)
    with pytest.raises(ZendeskSignatureError):
        verify_signature(signed(BODY, secret="retired-secret"), BODY, ["new-secret", "old-secret"], NOW)


def test_without_a_configured_secret_everything_is_refused() -> None:
    with pytest.raises(ZendeskSignatureError, match="no ZENDESK_WEBHOOK_SECRET"):
        verify_signature(signed(BODY), BODY, [], NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Zendesk-Webhook-Signature": "abc"},
        {
            "X-Zendesk-Webhook-Signature": "!!not base64!!",
            "X-Zendesk-Webhook-Signature-Timestamp": "2026-03-10T10:00:00Z",
        },
        {"X-Zendesk-Webhook-Signature": "YWJj", "X-Zendesk-Webhook-Signature-Timestamp": "yesterday"},
    ],
)
def test_missing_or_garbled_signature_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ZendeskSignatureError):
        verify_signature(headers, BODY, [SECRET], NOW)


def test_header_names_are_case_insensitive(adapter: ZendeskAdapter) -> None:
    lower = {k.lower(): v for k, v in signed(BODY).items()}
    adapter.verify(lower, BODY, {}, NOW)
    adapter.verify(HeaderMap(signed(BODY)), BODY, {}, NOW)
    assert adapter.delivery_id(lower, BODY) == "01HANA2B5D5W9XSJS3NE5SQA1J"
    assert adapter.delivery_id(HeaderMap(signed(BODY)), BODY) == "01HANA2B5D5W9XSJS3NE5SQA1J"
    assert adapter.delivery_id({}, BODY) is None


# --- classify -------------------------------------------------------------------------------------


def test_classify_a_trigger_body() -> None:
    assert classify(fixture("trigger_escalation_requested.json")) == Classified(
        kind="tierup.escalation_requested", ticket_ref=TICKET, occurred_at=NOW.replace(minute=59, hour=9)
    )


def test_classify_an_event_webhook() -> None:
    got = classify(fixture("event_ticket_tags_changed__escalation_requested.json"))
    assert got is not None and (got.kind, got.ticket_ref) == ("zen:event-type:ticket.tags_changed", TICKET)
    assert got.occurred_at is not None and got.occurred_at.isoformat() == "2026-03-10T09:59:58.139207+00:00"


def test_an_unknown_event_is_not_ours() -> None:
    # A real user.deleted payload, as Zendesk sent it (from the recorded invocation attempt).
    attempt = fixture("api_webhook_invocation_attempts_response.json")["attempts"][0]
    assert classify(json.loads(attempt["request"]["payload"])) is None
    assert classify(changed(fixture("trigger_confirm.json"), kind="reopen")) is None
    assert classify({"hello": "world"}) is None


def test_unrelated_ticket_events_are_not_stored() -> None:
    assert classify(fixture("event_ticket_tags_changed__unrelated.json")) is None
    not_solved = changed(fixture("event_ticket_status_changed__solved.json"), event__current="PENDING")
    assert classify(not_solved) is None
    private = changed(fixture("event_ticket_comment_added__lead_public.json"), event__comment__is_public=False)
    assert classify(private) is None


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        "text",
        changed(fixture("trigger_confirm.json"), ticket__id="abc"),
        changed(fixture("trigger_confirm.json"), ticket__id=""),
        changed(fixture("trigger_confirm.json"), ticket={"subject": "no id"}),
        changed(fixture("trigger_confirm.json"), ticket="4016"),
        changed(fixture("event_ticket_status_changed__solved.json"), detail__id="x", subject="zen:ticket:x"),
    ],
)
def test_malformed_payloads_are_payload_errors(payload: Any) -> None:
    with pytest.raises(ZendeskPayloadError):
        classify(payload)
    assert issubclass(ZendeskPayloadError, PayloadError)


def test_a_body_that_is_not_json_is_a_payload_error(adapter: ZendeskAdapter) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        adapter.parse(delivery(b'{"tierup": "zendesk-trigger/1", "kind": '))


def test_every_supported_event_has_a_handler() -> None:
    assert "tierup.escalation_requested" in SUPPORTED_EVENTS
    assert "zen:event-type:ticket.comment_added" in SUPPORTED_EVENTS


# --- parse: Tierup trigger bodies ----------------------------------------------------------------------


def context() -> ParseContext:
    return ParseContext(bot_user_id=BOT_ID)


def test_parse_an_escalation_request() -> None:
    event = parse(delivery(fixture("trigger_escalation_requested.json"), "inv-7"), context())
    assert isinstance(event, EscalationRequest)
    assert (event.ticket_ref, event.channel, event.reason) == (TICKET, Channel.MACRO, Reason.WRONG_RESOLUTION)
    assert event.rationale == "Members cannot check in: <b>we lose</b> revenue every hour"
    assert event.preferred_contact == "phone +48 555 0100"
    assert event.requested_priority is None and event.delivery_id == "inv-7" and event.received_at == NOW
    requester = event.requested_by
    assert (requester.id, requester.role, requester.tags) == (
        "6130907993114",
        Role.END_USER,
        frozenset({"pg_champion"}),
    )
    assert requester.organisation == "Club Warszawa"
    assert event.ticket is not None and event.ticket.group == "Support" and event.ticket.priority is Priority.NORMAL


def test_the_reason_tag_answers_when_the_field_placeholder_is_empty() -> None:
    body = changed(fixture("trigger_escalation_requested.json"), escalation__reason="")
    event = parse(delivery(body), context())
    assert isinstance(event, EscalationRequest) and event.reason is Reason.WRONG_RESOLUTION


def test_sd2_the_priority_tag_answers_when_the_field_placeholder_is_empty() -> None:
    tags = "escalation_requested gym tierup_reason_wrong_resolution tierup_priority_high"
    body = changed(fixture("trigger_escalation_requested.json"), ticket__tags=tags)
    event = parse(delivery(body), context())
    assert isinstance(event, EscalationRequest) and event.requested_priority is Priority.HIGH


def test_parse_review_commands() -> None:
    cancel = parse(delivery(fixture("trigger_cancel.json")), context())
    assert isinstance(cancel, ReviewCommand) and cancel.command is Command.CANCEL
    assert cancel.actor.id == "6130907993300" and cancel.actor.role is Role.AGENT
    assert cancel.feedback is not None and "firewall" in cancel.feedback
    for name, command in [("trigger_confirm.json", Command.CONFIRM), ("trigger_not_happy.json", Command.NOT_HAPPY),
                          ("trigger_solved.json", Command.RESOLVE)]:  # fmt: skip
        got = parse(delivery(fixture(name)), context())
        assert isinstance(got, ReviewCommand) and got.command is command and got.feedback is None


def test_parse_the_sla_breach_automation() -> None:
    event = parse(delivery(fixture("trigger_sla_breach.json")), context())
    assert isinstance(event, EscalationRequest)
    assert (event.channel, event.reason, event.requested_by) == (Channel.SLA_BREACH, Reason.SLA_VIOLATION, SYSTEM)


def test_an_update_by_tierups_own_user_is_ignored() -> None:
    echo = changed(fixture("trigger_escalation_requested.json"), current_user__id=BOT_ID)
    got = parse(delivery(echo), context())
    assert isinstance(got, Ignored) and "Tierup's own API user" in got.reason and got.ticket_ref == TICKET


def test_an_event_by_tierups_own_user_is_ignored_without_any_api_call(api: FakeZendesk) -> None:
    adapter = build_adapter(env(), load_policy("lead-review"))
    assert adapter is not None
    for name, path in [("event_ticket_tags_changed__escalation_requested.json", "detail__actor_id"),
                       ("event_ticket_comment_added__lead_public.json", "event__comment__author__id")]:  # fmt: skip
        got = adapter.parse(delivery(changed(fixture(name), **{path: BOT_ID})))
        assert isinstance(got, Ignored) and "own API user" in got.reason
    assert len(api.mock.calls) == 0


def test_without_zendesk_bot_user_id_tierups_own_reply_is_still_known_as_its_own(api: FakeZendesk) -> None:
    # Set up by hand, without install's ZENDESK_BOT_USER_ID: Tierup's own public reply came back as
    # a comment_added event and counted as a lead's contact. Zendesk is asked who Tierup is, once.
    api.mock.get(f"{API}/users/me.json", json={"user": {"id": int(BOT_ID), "name": "Tierup", "role": "admin"}})
    adapter = build_adapter(env(ZENDESK_BOT_USER_ID=""), load_policy("lead-review"))
    assert adapter is not None
    echo = changed(fixture("event_ticket_comment_added__lead_public.json"), event__comment__author__id=BOT_ID)
    for _ in range(2):
        got = adapter.parse(delivery(echo))
        assert isinstance(got, Ignored) and "own API user" in got.reason
    assert [c.request.url for c in api.mock.calls] == [f"{API}/users/me.json"]


def test_a_change_by_zendesk_itself_is_parsed_not_failed(api: FakeZendesk) -> None:
    # A trigger or automation adds the request tag: the event names no user ("-1", as audits do).
    adapter = build_adapter(env(), load_policy("lead-review"))
    assert adapter is not None
    api.show()
    got = adapter.parse(delivery(changed(fixture("event_ticket_tags_changed__escalation_requested.json"),
                                         detail__actor_id="-1")))  # fmt: skip
    assert isinstance(got, EscalationRequest)


def test_a_ticket_solved_or_tagged_by_zendesk_itself_is_a_command_by_zendesk() -> None:
    # An automation solves the ticket (SD9) or adds a review tag: detail.actor_id is "-1". The
    # delivery failed for good ("not a Zendesk id"), and the escalation was never resolved.
    solved = parse(delivery(changed(fixture("event_ticket_status_changed__solved.json"), detail__actor_id="-1")),
                   context())  # fmt: skip
    assert isinstance(solved, ReviewCommand) and solved.command is Command.RESOLVE
    assert (solved.actor.id, solved.actor.role) == ("zendesk", Role.SYSTEM)
    confirm = changed(
        fixture("event_ticket_tags_changed__escalation_requested.json"),
        detail__actor_id="-1",
        event__tags_added=["escalation_confirm"],
        detail__tags=["escalated", "escalation_confirm"],
    )
    got = parse(delivery(confirm), context())
    assert isinstance(got, ReviewCommand) and got.command is Command.CONFIRM and got.actor.id == "zendesk"


def test_a_public_comment_by_zendesk_itself_keeps_no_promise() -> None:
    system = changed(fixture("event_ticket_comment_added__lead_public.json"), event__comment__author__id="-1",
                     detail__actor_id="-1")  # fmt: skip
    got = parse(delivery(system), context())
    assert isinstance(got, Ignored) and got.reason == "a comment by Zendesk itself (an automation)"


def requester_reply(text: str) -> Any:
    """Pat's public reply on a ticket waiting for the rationale (LR3), as a comment_added event."""
    return changed(
        fixture("event_ticket_comment_added__lead_public.json"),
        event__comment__author={"id": "6130907993114", "is_staff": False, "name": "Pat Champion"},
        event__comment__body=text,
        detail__tags=["escalation_needs_info", "gym"],
    )


def test_a_requester_reply_without_text_answers_nothing() -> None:
    # As on the trigger path and on Jira: before, it asked for the rationale again (a second LR3 reply).
    got = parse(delivery(requester_reply("")), context())
    assert isinstance(got, Ignored) and got.reason == "a reply without text"


# --- parse: Zendesk event webhooks ----------------------------------------------------------------------


def test_an_event_webhook_request_reads_its_fields_once_for_parser_and_service(api: FakeZendesk) -> None:
    adapter = build_adapter(env(), load_policy("lead-review"))
    assert adapter is not None
    api.show()
    event = adapter.parse(delivery(fixture("event_ticket_tags_changed__escalation_requested.json")))
    assert isinstance(event, EscalationRequest)
    # The event carries tags only; the rationale and contact come from the ticket's custom fields.
    assert event.rationale == "Members cannot check in: <b>we lose</b> revenue every hour"
    assert event.reason is Reason.WRONG_RESOLUTION and event.requested_by.tags == frozenset({"pg_champion"})
    assert (event.preferred_contact, event.requested_priority) == ("phone +48 555 0100", None)  # SD4
    d = handle_event(event, policy=adapter_policy(), gateway=adapter.gateway, store=MemoryStore(), clock=lambda: NOW)
    assert isinstance(d, Decision) and d.state is State.ESCALATED
    assert (api.reads, api.writes) == (1, 1)  # the parser's read is the service's snapshot


def test_sd2_an_event_webhook_request_reads_the_requested_priority_field(api: FakeZendesk) -> None:
    adapter = build_adapter(env(), load_policy("service-desk"))
    assert adapter is not None
    shown = fixture("api_ticket_show_with_sideloads.json")
    shown["ticket"]["custom_fields"][3]["value"] = "tierup_priority_high"
    api.show(data=shown)
    event = adapter.parse(delivery(fixture("event_ticket_tags_changed__escalation_requested.json")))
    assert isinstance(event, EscalationRequest) and event.requested_priority is Priority.HIGH


def adapter_policy() -> Any:
    return load_policy("lead-review")


def test_a_lead_public_comment_keeps_the_contact_promise() -> None:
    got = parse(delivery(fixture("event_ticket_comment_added__lead_public.json")), context())
    assert isinstance(got, ReviewCommand) and got.command is Command.CONTACT
    assert (got.actor.id, got.actor.role) == ("6130907993300", Role.AGENT)
    not_escalated = changed(fixture("event_ticket_comment_added__lead_public.json"), detail__tags=["gym"])
    assert isinstance(parse(delivery(not_escalated), context()), Ignored)


def test_a_requester_reply_on_a_needs_info_ticket_is_a_follow_up() -> None:
    got = parse(delivery(requester_reply("We lose 2000 PLN a day.")), context())
    assert isinstance(got, EscalationRequest) and got.follow_up and got.rationale == "We lose 2000 PLN a day."


def test_a_solved_status_event_resolves() -> None:
    got = parse(delivery(fixture("event_ticket_status_changed__solved.json")), context())
    assert isinstance(got, ReviewCommand) and got.command is Command.RESOLVE
    assert got.received_at.isoformat() == "2026-03-10T09:59:58.139207+00:00"


def test_review_tags_in_an_event_are_commands() -> None:
    confirm = changed(
        fixture("event_ticket_tags_changed__escalation_requested.json"), event__tags_added=["escalation_confirm"]
    )
    got = parse(delivery(confirm), context())
    assert isinstance(got, ReviewCommand) and got.command is Command.CONFIRM


# --- the adapter ------------------------------------------------------------------------------------------


def test_without_credentials_but_with_a_secret_the_adapter_is_a_dry_run() -> None:
    adapter = build_adapter(env(ZENDESK_EMAIL="", ZENDESK_API_TOKEN=""), load_policy("lead-review"))
    assert adapter is not None and adapter.dry_run and isinstance(adapter.gateway, DryRunGateway)
    event = adapter.parse(delivery(fixture("trigger_escalation_requested.json")))
    assert isinstance(event, EscalationRequest)
    d = handle_event(event, policy=adapter_policy(), gateway=adapter.gateway, store=MemoryStore(), clock=lambda: NOW)
    assert isinstance(d, Decision) and d.state is State.ESCALATED
    # The payload's own snapshot decided: the trigger body carries tags, group and priority.
    assert d.escalation.previous_group == "Support"
    assert len(adapter.gateway.planned) == 1


def test_zendesk_off_builds_no_adapter() -> None:
    assert build_adapter({"TIERUP_POLICY": "lead-review"}, load_policy("lead-review")) is None


def test_the_trigger_body_is_json_with_zendesk_placeholders() -> None:
    rendered = trigger_body(TriggerKind.ESCALATION_REQUESTED, {"escalation_reason": 11, "business_rationale": 12})
    body = json.loads(rendered)
    assert body["ticket"]["id"] == "{{ticket.id}}" and body["ticket"]["tags"] == "{{ticket.tags}}"
    assert body["escalation"]["reason"] == "{{ticket.ticket_field_11}}"
    assert body["escalation"]["rationale"] == "{{ticket.ticket_field_12}}"
    assert body["current_user"]["id"] == "{{current_user.id}}"
    assert body["requester"]["email"] == "{{ticket.requester.email}}"
    assert body["organization"]["name"] == "{{ticket.organization.name}}"
    assert body["ticket"]["updated_at"] == "{{ticket.updated_at_with_timestamp}}"
    assert "comment" in json.loads(trigger_body(TriggerKind.CANCEL, {}))
