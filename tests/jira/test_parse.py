"""Jira payloads (Cloud and Data Center shapes) → requests, review commands, or Ignored."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.jira.parse import JiraPayloadError, reason_from_text
from integration.model import (
    Channel,
    Command,
    EscalationRequest,
    Ignored,
    Priority,
    Reason,
    ReviewCommand,
    Role,
    TicketStatus,
)
from tests.jira.conftest import BOT, DC_ENV, ENV, NOW, SITE, Site, adapter_for, delivery, fixture, raw

AT_1000 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
AT_1030 = datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
AGENT = "5c5f880629be9642ba529340"
LEAD = "5d0c2f4e1a2b3c0011d0lead"


def parse(name_or_payload: str | Any, env: dict[str, str] | None = None) -> Any:
    body = raw(name_or_payload) if isinstance(name_or_payload, str) else json.dumps(name_or_payload).encode()
    return adapter_for("lead-review", env).parse(delivery(body, "wh-parse"))


def with_labels(before: str, after: str, on_issue: list[str]) -> Any:
    payload = fixture("issue_updated__request_label_added.json")
    payload["changelog"]["items"][0].update(fromString=before, toString=after)
    payload["issue"]["fields"]["labels"] = on_issue
    return payload


# --- jira:issue_updated ---------------------------------------------------------------------


def test_request_label_added_is_a_request_with_the_issue_as_snapshot() -> None:
    event = parse("issue_updated__request_label_added.json")

    assert isinstance(event, EscalationRequest)
    assert (event.ticket_ref, event.channel, event.follow_up) == ("SUP-7", Channel.MACRO, False)
    assert event.reason is Reason.WRONG_RESOLUTION
    assert event.rationale == "Members cannot check in: <b>we lose</b> revenue *every* hour {html}"
    assert event.preferred_contact == "phone +48 555 0100"
    assert event.requested_priority is None
    assert (event.requested_by.id, event.requested_by.email, event.requested_by.role) == (
        AGENT,
        "alex.agent@support.example",
        Role.AGENT,
    )
    # The event's time is the payload's `timestamp`, not when the delivery arrived.
    assert event.received_at == AT_1000
    assert event.delivery_id == "wh-parse"
    snap = event.ticket
    assert snap is not None
    assert snap.ref == "SUP-7" and snap.tags == frozenset({"gym", "escalation_requested"})
    assert (snap.priority, snap.group, snap.region, snap.status) == (
        Priority.NORMAL,
        "Support",
        "PL",
        TicketStatus.OPEN,
    )
    assert snap.requester is not None and snap.requester.email == "champ@club.example"
    assert snap.version == "2026-03-10T09:59:58.120+0000"
    assert snap.subject == "Members cannot check in at the front desk"


def test_request_label_added_on_data_center_uses_the_username() -> None:
    event = parse("issue_updated__request_label_added_dc.json", DC_ENV)
    assert isinstance(event, EscalationRequest)
    assert event.requested_by.id == "alex.agent"
    assert event.ticket is not None and event.ticket.requester is not None
    assert event.ticket.requester.id == "pat.champion"


def test_labels_are_compared_as_sets_not_strings() -> None:
    reordered = with_labels("gym escalation_requested", "escalation_requested  gym", ["escalation_requested", "gym"])
    assert isinstance(parse(reordered), Ignored)


def test_a_removed_request_label_asks_for_nothing() -> None:
    removed = with_labels("escalation_requested gym", "gym", ["gym"])
    assert parse(removed) == Ignored("no change Tierup acts on", "SUP-7")


def test_a_label_added_and_gone_again_before_jira_sent_this_asks_for_nothing() -> None:
    gone = with_labels("gym", "escalation_requested gym", ["gym"])
    assert isinstance(parse(gone), Ignored)


@pytest.mark.parametrize(
    ("name", "env", "actor"),
    [
        ("issue_updated__confirm_label_added.json", ENV, LEAD),
        ("issue_updated__confirm_label_added_dc.json", DC_ENV, "lee.lead"),
    ],
)
def test_confirm_label_added_by_a_lead_is_confirm(name: str, env: dict[str, str], actor: str) -> None:
    event = parse(name, env)
    assert isinstance(event, ReviewCommand)
    assert (event.command, event.actor.id, event.actor.role) == (Command.CONFIRM, actor, Role.LEAD)
    assert event.received_at == AT_1030 and event.feedback is None


def test_cancel_feedback_is_the_comment_made_with_the_change() -> None:
    event = parse("issue_updated__cancel_label_added_with_comment.json")
    assert isinstance(event, ReviewCommand) and event.command is Command.CANCEL
    assert event.feedback == "The SLA was met: the first reply came within 4 hours."


def test_cancel_feedback_falls_back_to_the_feedback_field_then_the_newest_comment() -> None:
    payload = fixture("issue_updated__cancel_label_added_with_comment.json")
    del payload["comment"]
    fields = payload["issue"]["fields"]
    lead_comment = fixture("issue_updated__cancel_label_added_with_comment.json")["comment"]
    ours = copy.deepcopy(lead_comment)
    ours["author"] = {"accountId": BOT, "displayName": "Tierup"}
    ours["body"] = "Escalation accepted."
    fields["comment"] = {"comments": [dict(lead_comment, body="Not an SLA breach."), ours], "total": 2}
    event = parse(payload)
    assert isinstance(event, ReviewCommand) and event.feedback == "Not an SLA breach."  # ours is skipped

    fields["customfield_10107"] = "Resolved as designed: see KB-12."
    event = parse(payload, {**ENV, "JIRA_FIELD_FEEDBACK": "customfield_10107"})
    assert isinstance(event, ReviewCommand) and event.feedback == "Resolved as designed: see KB-12."


def test_not_happy_label_is_not_happy() -> None:
    event = parse("issue_updated__not_happy_label_added.json")
    assert isinstance(event, ReviewCommand) and event.command is Command.NOT_HAPPY


def test_two_review_labels_at_once_are_ambiguous() -> None:
    both = with_labels("gym", "escalation_confirm escalation_cancel gym", ["escalation_confirm", "escalation_cancel"])
    result = parse(both)
    assert isinstance(result, Ignored) and "several review labels" in result.reason


def test_status_into_the_done_category_resolves() -> None:
    event = parse("issue_updated__resolved.json")
    assert isinstance(event, ReviewCommand) and event.command is Command.RESOLVE
    assert event.ticket is not None and event.ticket.status is TicketStatus.SOLVED


def test_sd9_a_status_change_outside_the_done_category_resolves_nothing() -> None:
    moved = fixture("issue_updated__resolved.json")
    moved["issue"]["fields"]["status"].update(name="In Progress", id="3")
    moved["issue"]["fields"]["status"]["statusCategory"].update(key="indeterminate", name="In Progress", id=4)
    moved["changelog"]["items"] = [i for i in moved["changelog"]["items"] if i["field"] == "status"]
    moved["changelog"]["items"][0].update(to="3", toString="In Progress")
    event = parse(moved)
    assert not (isinstance(event, ReviewCommand) and event.command is Command.RESOLVE)


def test_rationale_field_changed_is_a_follow_up() -> None:
    event = parse("issue_updated__rationale_field_changed.json")
    assert isinstance(event, EscalationRequest) and event.follow_up
    assert event.rationale == "Members cannot check in: we lose revenue every hour"


def test_on_data_center_a_custom_field_is_found_by_its_name(dc_site: Site) -> None:
    # As Data Center sends a custom field's change: its display name as `field`, no fieldId.
    body = fixture("issue_updated__rationale_field_changed.json")
    body["changelog"]["items"][0].pop("fieldId")
    body["user"] = fixture("issue_updated__confirm_label_added_dc.json")["user"]
    dc_site.rsps.get(dc_site.api("field"), json=fixture("rest_api2_field_list.json"))
    adapter = adapter_for("lead-review", DC_ENV)
    event = adapter.parse(delivery(json.dumps(body).encode(), "wh-dc-field"))
    assert isinstance(event, EscalationRequest) and event.follow_up
    assert event.rationale == "Members cannot check in: we lose revenue every hour"
    adapter.parse(delivery(json.dumps(body).encode(), "wh-dc-field-2"))
    assert dc_site.calls().count(("GET", "/rest/api/2/field")) == 1  # the field list is read once


def test_a_custom_field_of_another_name_is_no_follow_up(dc_site: Site) -> None:
    body = fixture("issue_updated__rationale_field_changed.json")
    body["changelog"]["items"][0].pop("fieldId")
    body["changelog"]["items"][0]["field"] = "Story points"
    dc_site.rsps.get(dc_site.api("field"), json=fixture("rest_api2_field_list.json"))
    result = adapter_for("lead-review", DC_ENV).parse(delivery(json.dumps(body).encode(), "wh-dc-other"))
    assert result == Ignored("no change Tierup acts on", "SUP-7")


def test_priority_change_alone_decides_nothing() -> None:
    result = parse("issue_updated__priority_raised.json")
    assert result == Ignored("priority changed (Low -> High): nothing to decide", "SUP-7")


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("issue_updated__by_tierup.json", ENV),
        ("issue_updated__by_tierup_dc.json", DC_ENV),
        ("comment_created__by_tierup.json", ENV),
    ],
)
def test_our_own_changes_and_comments_are_ignored(name: str, env: dict[str, str]) -> None:
    result = parse(name, env)
    assert isinstance(result, Ignored) and result.reason.startswith("our own")


def test_without_a_configured_bot_account_tierup_asks_jira_who_it_is_once(site: Site) -> None:
    site.rsps.get(
        site.api("myself"),
        json={
            "self": f"{SITE}/rest/api/2/user?accountId={BOT}",
            "accountId": BOT,
            "displayName": "Tierup",
            "active": True,
        },
    )
    adapter = adapter_for("lead-review", {k: v for k, v in ENV.items() if k != "JIRA_BOT_ACCOUNT"})
    first = adapter.parse(delivery(raw("issue_updated__by_tierup.json")))
    again = adapter.parse(delivery(raw("comment_created__by_tierup.json")))
    assert isinstance(first, Ignored) and isinstance(again, Ignored)
    assert site.calls() == [("GET", "/rest/api/2/myself")]


def test_issues_of_other_projects_are_ignored() -> None:
    result = parse("webhook_issue_updated_labels_changed.json")
    assert result == Ignored("project TES is not in JIRA_PROJECTS", "TES-41")


def test_an_automation_rules_custom_body_is_a_request() -> None:
    # The README's "Send web request" body, as Automation renders it (no timestamp, few fields).
    body = {
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": AGENT, "displayName": "Alex Agent"},
        "issue": {
            "key": "SUP-7",
            "fields": {
                "project": {"key": "SUP"},
                "labels": ["escalation_requested", "gym"],
                "customfield_10100": "Agent conduct",
                "customfield_10101": "Rude reply on Friday",
            },
        },
        "changelog": {"items": [{"field": "labels", "fieldId": "labels", "fromString": "",
                                 "toString": "escalation_requested"}]},
    }  # fmt: skip
    event = parse(body)
    assert isinstance(event, EscalationRequest)
    assert (event.reason, event.rationale, event.received_at) == (Reason.AGENT_CONDUCT, "Rude reply on Friday", NOW)
    assert event.ticket is not None and event.ticket.priority is None


# --- comment_created ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "env", "author"),
    [
        ("comment_created__rationale.json", ENV, "557058:f1c2d3e4-0000-4000-8000-champion0001"),
        # Data Center: the comment with its issue comes as jira:issue_updated, issue_commented.
        ("issue_updated__commented_dc.json", DC_ENV, "pat.champion"),
        ("issue_updated__commented_dc.json", {**DC_ENV, "JIRA_DEPLOYMENT": "datacenter"}, "pat.champion"),
    ],
)
def test_comment_is_a_follow_up_carrying_its_text(name: str, env: dict[str, str], author: str) -> None:
    event = parse(name, env)
    assert isinstance(event, EscalationRequest) and event.follow_up
    assert event.rationale == "Every member is turned away at the door: we lose about 300 check-ins an hour."
    assert event.requested_by.id == author and event.received_at == AT_1030
    # The comment payload's issue is cut down (no labels): the gateway reads the issue instead.
    assert event.ticket is None


def adf(*paragraphs: str) -> dict[str, Any]:
    """A comment body in the Atlassian document format (API v3, Automation's smart values)."""
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs
    ]}  # fmt: skip


def test_a_comment_body_in_the_atlassian_document_format_is_read_as_its_text() -> None:
    # Before, the whole event failed ("comment.body: must be text"): a lead's cancel was lost.
    follow_up = fixture("comment_created__rationale.json")
    follow_up["comment"]["body"] = adf("We lose about 300 check-ins an hour.")
    event = parse(follow_up)
    assert isinstance(event, EscalationRequest) and event.rationale == "We lose about 300 check-ins an hour."
    cancel = fixture("issue_updated__cancel_label_added_with_comment.json")
    cancel["comment"]["body"] = adf("Not an SLA breach.")
    event = parse(cancel)
    assert isinstance(event, ReviewCommand) and event.feedback == "Not an SLA breach."


def test_data_centers_comment_created_without_its_issue_is_left_to_its_issue_commented_twin() -> None:
    ignored = parse("comment_created__rationale_dc.json", DC_ENV)
    assert isinstance(ignored, Ignored) and "Data Center sends it again" in ignored.reason


def test_on_cloud_the_issue_commented_update_is_left_to_comment_created() -> None:
    cloud = fixture("comment_created__rationale.json")
    body = {
        "timestamp": cloud["timestamp"], "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_commented",
        "user": cloud["comment"]["author"], "issue": cloud["issue"], "comment": cloud["comment"],
    }  # fmt: skip
    ignored = parse(body)
    assert isinstance(ignored, Ignored) and ignored.reason == "no change Tierup acts on"


def test_an_internal_comment_is_not_the_requesters_answer() -> None:
    internal = fixture("comment_created__rationale.json")
    internal["comment"]["jsdPublic"] = False  # an agent's internal note on the request
    ignored = parse(internal)
    assert isinstance(ignored, Ignored) and "internal comment" in ignored.reason


# --- jira:issue_created ---------------------------------------------------------------------


def test_escalation_form_request_names_the_ticket_to_escalate() -> None:
    event = parse("issue_created__escalation_form.json")
    assert isinstance(event, EscalationRequest)
    assert (event.ticket_ref, event.origin_ref, event.channel) == ("SUP-7", "SUP-12", Channel.FORM)
    assert event.reason is Reason.WRONG_RESOLUTION
    assert event.requested_by.email == "champ@club.example" and event.requested_by.role is Role.END_USER
    assert event.ticket is None  # the payload's issue is the request, not the ticket it names


def test_escalation_email_without_a_ticket_number() -> None:
    event = parse("issue_created__escalation_email_no_ticket.json")
    assert isinstance(event, EscalationRequest)
    assert (event.ticket_ref, event.origin_ref, event.channel) == (None, "SUP-13", Channel.EMAIL)
    assert event.rationale == "Hello, nobody has answered us for days. Regards, Pat"


def test_other_request_types_are_not_escalation_requests() -> None:
    result = parse("issue_created__other_request_type.json")
    assert result == Ignored("not an escalation request (request type Get IT help)", "SUP-14")


# --- classify and malformed bodies ----------------------------------------------------------


def test_classify_gives_kind_issue_and_event_time() -> None:
    adapter = adapter_for("lead-review")
    classified = adapter.classify(fixture("issue_updated__confirm_label_added.json"))
    assert classified is not None
    assert (classified.kind, classified.ticket_ref, classified.occurred_at) == ("jira:issue_updated", "SUP-7", AT_1030)


@pytest.mark.parametrize("kind", ["jira:issue_deleted", "worklog_updated", "sprint_started", None])
def test_events_we_do_not_handle_classify_as_none(kind: str | None) -> None:
    payload = fixture("issue_updated__request_label_added.json")
    payload["webhookEvent"] = kind
    assert adapter_for("lead-review").classify(payload) is None
    assert isinstance(parse(payload), Ignored)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"webhookEvent": "jira:issue_updated", "issue": "SUP-7"}',
        b'{"webhookEvent": "jira:issue_updated", "issue": {"fields": {}}}',
        b'{"webhookEvent": "jira:issue_updated", "timestamp": "yesterday", "issue": {"key": "SUP-7", "fields": {}}}',
        b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "SUP-7", "fields": {"labels": "a b"}},'
        b' "changelog": {"items": [{"field": "labels", "toString": "a b"}]}}',
    ],
)
def test_malformed_bodies_are_payload_errors(body: bytes) -> None:
    adapter = adapter_for("lead-review")
    with pytest.raises(JiraPayloadError):
        adapter.parse(delivery(body))


def test_malformed_payloads_fail_classify_with_a_payload_error() -> None:
    adapter = adapter_for("lead-review")
    with pytest.raises(JiraPayloadError):
        adapter.classify(["not", "an", "object"])
    with pytest.raises(JiraPayloadError, match="issue"):
        adapter.classify({"webhookEvent": "jira:issue_updated", "issue": {"key": 7.5}})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sla_violation", Reason.SLA_VIOLATION),
        ("SLA violation", Reason.SLA_VIOLATION),
        ("Wrong resolution", Reason.WRONG_RESOLUTION),
        ("Priority inadequately qualified", Reason.PRIORITY_MISCLASSIFIED),
        ("agent conduct", Reason.AGENT_CONDUCT),
        ("Business urgency", Reason.BUSINESS_URGENCY),
        ("other", None),
        ("", None),
    ],
)
def test_reason_field_values(text: str, reason: Reason | None) -> None:
    assert reason_from_text(text) is reason
