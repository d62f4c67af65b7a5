"""Every rule of both procedures on the Jira path: a fixture-shaped delivery → parse → handle_event → JiraGateway.

Each test asserts the exact issue edit and comment bodies Jira receives and counts the API
calls (serverInfo, read once when the client is built, is not counted): reads are GETs,
edits are `PUT issue`, comments are `POST …/comment`; the rest (the comment marker on a
JSM request comment, the workflow transition) is listed as it is.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from integration.model import SYSTEM, Channel, EscalationRequest, Ignored, Platform, Reason, State
from integration.policy import REASON_LABELS
from integration.ports import TransientError
from integration.service import handle_event
from tests.jira.conftest import DC_ENV, ENV, NOW, Run, Site, fixture, raw

KEY = "SUP-7"
INTERNAL = {"key": "sd.public.comment", "value": {"internal": True}}


def marker(key: str, part: int) -> dict[str, Any]:
    return {"key": "tierup.key", "value": {"transition": key, "part": part}}


def request_payload(**fields: Any) -> Any:
    """The request-label delivery with some of the issue's fields changed."""
    payload = fixture("issue_updated__request_label_added.json")
    payload["issue"]["fields"].update(fields)
    return payload


def issue_get(*labels: str) -> Any:
    """GET issue SUP-7 (first-response SLA breached) carrying `labels`."""
    answer = fixture("rest_api2_issue_get_jsm_sla_breached.json")
    answer["fields"]["labels"] = list(labels)
    return answer


def ready(site: Site, sla: str | None = "servicedeskapi_request_sla_within.json") -> Site:
    site.sla(KEY, sla)
    site.writes(KEY)
    return site


def reset(site: Site) -> None:
    site.rsps.calls.reset()


FORM_REQUEST = "SUP-12"  # the form's own request issue naming SUP-7 (issue_created__escalation_form.json)
LINKED_REPLY = (
    "Thank you for your escalation request. We have added it to ticket SUP\\-7 and will reply to you there; this "
    "request is now closed so that the whole conversation stays in one place."
)


def answer_request(site: Site) -> None:
    """Answers to the writes on the form's request issue: the link, the reply, its marker, the workflow."""
    site.writes(FORM_REQUEST)
    site.rsps.post(site.api("issueLink"), status=201)


def assert_request_answered(site: Site, key: str) -> None:
    """The request issue is linked to SUP-7 and answered; the workflow offers no Done status, so it stays open."""
    assert site.sent("POST", "/issueLink") == [
        {"type": {"name": "Relates"}, "inwardIssue": {"key": FORM_REQUEST}, "outwardIssue": {"key": KEY}}
    ]
    assert site.sent("POST", f"/request/{FORM_REQUEST}/comment") == [{"body": LINKED_REPLY, "public": True}]
    assert site.sent("PUT", "/comment/10101/properties/tierup.key")[-1] == {"transition": key, "part": 0}
    assert site.sent("POST", f"/issue/{FORM_REQUEST}/transitions") == []


LR5_REPLY = (
    "Your escalation has been accepted and this ticket is now marked *Escalated*.\n\n"
    "Next steps: a Team Leader (Technical Support Team Leaders) will review the escalation and verify the reason. "
    "If it is valid, it will be processed internally and the assigned agent will contact you within 2 business days. "
    "If it is not, it will be set to Cancelled and we will tell you why."
)
# The rationale came from the issue field; wiki markup characters in it are escaped, HTML shows as text.
LR5_NOTE = (
    "Escalation requested by Alex Agent.\n\n"
    "Reason: wrong ticket resolution\n"
    "Business rationale: Members cannot check in: <b>we lose</b> revenue \\*every\\* hour \\{html\\}\n"
    "Preferred contact: phone \\+48 555 0100\n\n"
    "Assigned to Technical Support Team Leaders for review; first contact due Thu 12 Mar 2026 11:00 CET once confirmed."
)


def escalate_lead_review(run: Run, site: Site, **fields: Any) -> None:
    """The request delivered (with some of the issue's fields changed), then the calls it made forgotten."""
    run.deliver(request_payload(**fields) if fields else "issue_updated__request_label_added.json", "wh-req")
    reset(site)


# --- lead-review --------------------------------------------------------------------------------


def test_lr5_escalated_one_edit_two_comments_and_the_escalated_status(site: Site) -> None:
    ready(site)
    decision = Run("lead-review").deliver("issue_updated__request_label_added.json", "wh-req")

    assert (decision.rule, decision.state) == ("LR5", State.ESCALATED)
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalated"}]},
            "fields": {"customfield_10105": {"name": "Technical Support Team Leaders"}, "priority": {"name": "High"}},
        }
    ]
    assert site.sent("POST", f"/request/{KEY}/comment") == [{"body": LR5_REPLY, "public": True}]
    assert site.sent("PUT", "/comment/10101/properties/tierup.key") == [marker("wh-req:1", 0)["value"]]
    assert site.sent("POST", f"/issue/{KEY}/comment") == [
        {"body": LR5_NOTE, "properties": [marker("wh-req:1", 1), INTERNAL]}
    ]
    assert site.sent("POST", f"/issue/{KEY}/transitions") == [{"transition": {"id": "41"}}]
    counts = site.count()
    # lead-review has no SLA gate: the webhook's fields are the snapshot, no read before deciding.
    assert (counts.reads, counts.edits, counts.comments) == (1, 1, 2)  # the read: the workflow's transitions
    assert counts.other == [
        "PUT /rest/api/2/comment/10101/properties/tierup.key",
        f"POST /rest/api/2/issue/{KEY}/transitions",
    ]


def test_lr5_on_data_center(dc_site: Site) -> None:
    ready(dc_site)
    run = Run("lead-review", DC_ENV)
    decision = run.deliver(raw("issue_updated__request_label_added_dc.json"), "wh-req")
    assert decision.rule == "LR5" and decision.escalation.requested_by is not None
    assert decision.escalation.requested_by.id == "alex.agent"
    assert dc_site.sent("PUT", f"/issue/{KEY}")[0]["update"] == {"labels": [{"add": "escalated"}]}
    assert dc_site.sent("POST", f"/issue/{KEY}/comment")[0]["body"] == LR5_NOTE
    assert all(c.request.url.startswith("https://jira.example.org/") for c in dc_site.rsps.calls)


def test_lr1_not_authorised_internal_note_only(site: Site) -> None:
    ready(site)
    answer_request(site)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get("gym"))
    # A customer's escalation form naming SUP-7: customers are not authorised under lead-review.
    decision = Run("lead-review").deliver("issue_created__escalation_form.json", "wh-form")

    assert (decision.rule, decision.state, decision.target_ref) == ("LR1", State.CANCELLED, KEY)
    assert site.sent("PUT", f"/issue/{KEY}") == []  # the ticket is otherwise untouched
    assert site.sent("POST", f"/issue/{KEY}/comment") == [
        {
            "body": "Escalation request not accepted: Pat Champion is not authorised to escalate "
            "(only PG Champions and authorised club employees may). The ticket was left as it is.",
            "properties": [marker("wh-form:1", 0), INTERNAL],
        }
    ]
    # The request issue is told why, and not linked (a link would show on SUP-7 as well).
    assert site.sent("POST", "/issueLink") == []
    assert site.sent("POST", f"/request/{FORM_REQUEST}/comment") == [
        {
            "body": "Thank you for your message. We could not take it as an escalation of ticket SUP\\-7: escalations "
            "can only be raised by PG Champions and authorised club employees. Please ask one of them to escalate "
            "the ticket. This request is now closed.",
            "public": True,
        }
    ]
    marked = site.sent("PUT", "/comment/10101/properties/tierup.key")[-1]
    assert marked == {"transition": "wh-form:1:request", "part": 0}
    counts = site.count()
    # The reads: GET issue, the request's transitions; the comments: the note here, the reply on the request.
    assert (counts.reads, counts.edits, counts.comments) == (2, 0, 2)
    assert counts.other == ["PUT /rest/api/2/comment/10101/properties/tierup.key"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SLA violation", Reason.SLA_VIOLATION),
        ("Wrong resolution", Reason.WRONG_RESOLUTION),
        ("Priority inadequately qualified", Reason.PRIORITY_MISCLASSIFIED),
        ("Agent conduct", Reason.AGENT_CONDUCT),
    ],
)
def test_lr2_the_four_reasons_are_escalations(site: Site, text: str, reason: Reason) -> None:
    ready(site)
    decision = Run("lead-review").deliver(request_payload(customfield_10100={"value": text, "id": "1"}))
    assert (decision.rule, decision.state, decision.escalation.reason) == ("LR5", State.ESCALATED, reason)
    [note] = site.sent("POST", f"/issue/{KEY}/comment")
    assert f"Reason: {REASON_LABELS[reason]}" in note["body"]


def test_lr3_no_rationale_asks_for_it_then_the_answer_escalates(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    decision = run.deliver(request_payload(customfield_10101=None), "wh-req")

    assert (decision.rule, decision.state) == ("LR3", State.NEEDS_INFO)
    assert site.sent("PUT", f"/issue/{KEY}") == [{"update": {"labels": [{"add": "escalation_needs_info"}]}}]
    assert site.sent("POST", f"/request/{KEY}/comment") == [
        {
            "body": "To escalate this ticket we need a justifiable business rationale: please reply with why this "
            "case needs higher urgency and what impact it has on your business. We will look at the escalation "
            "again as soon as you reply.",
            "public": True,
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (0, 1, 1)

    # The requester answers in a comment (a cut-down payload): one issue read, then the escalation.
    reset(site)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get("escalation_needs_info", "escalation_requested", "gym"))
    decision = run.deliver("comment_created__rationale.json", "wh-comment")

    assert (decision.rule, decision.state) == ("LR5", State.ESCALATED)
    assert decision.escalation.requested_by is not None and decision.escalation.requested_by.id == (
        "5c5f880629be9642ba529340"  # the agent who asked stays the requester
    )
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalated"}, {"remove": "escalation_needs_info"}]},
            "fields": {"customfield_10105": {"name": "Technical Support Team Leaders"}, "priority": {"name": "High"}},
        }
    ]
    [note] = site.sent("POST", f"/issue/{KEY}/comment")
    assert (
        "Business rationale: Every member is turned away at the door: we lose about 300 check\\-ins an hour."
        in (note["body"])
    )
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (2, 1, 2)  # GET issue, GET transitions


def test_lr3_answer_in_the_rationale_field_escalates_without_a_read(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site, customfield_10101=None)
    decision = run.deliver("issue_updated__rationale_field_changed.json", "wh-field")
    assert (decision.rule, decision.state) == ("LR5", State.ESCALATED)
    assert site.sent("PUT", f"/issue/{KEY}")[0]["update"] == {
        "labels": [{"add": "escalated"}, {"remove": "escalation_needs_info"}]
    }
    assert site.count().reads == 1  # only the workflow's transitions


def test_lr3_comments_when_nothing_is_missing_change_nothing(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site)
    result = run.deliver_any("comment_created__rationale.json", "wh-comment")
    assert isinstance(result, Ignored) and "not waiting for information" in result.reason
    assert site.calls() == []


def test_lr4_au_routes_to_the_apac_leads(site: Site) -> None:
    ready(site)
    decision = Run("lead-review").deliver(request_payload(customfield_10104={"value": "AU", "id": "10211"}))
    assert decision.rule == "LR5" and decision.escalation.group == "Technical Support Team Leaders APAC"
    assert site.sent("PUT", f"/issue/{KEY}")[0]["fields"] == {
        "customfield_10105": {"name": "Technical Support Team Leaders APAC"},
        "priority": {"name": "High"},
    }
    [note] = site.sent("POST", f"/issue/{KEY}/comment")
    assert note["body"].endswith("first contact due Thu 12 Mar 2026 17:00 AEDT once confirmed.")


def test_lr6_lead_cancels_with_feedback_back_to_the_previous_group(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site)
    decision = run.deliver("issue_updated__cancel_label_added_with_comment.json", "wh-cancel")

    assert (decision.rule, decision.state) == ("LR6", State.CANCELLED)
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalation_cancelled"}, {"remove": "escalated"}]},
            "fields": {"customfield_10105": {"name": "Support"}},
        }
    ]
    assert site.sent("POST", f"/request/{KEY}/comment") == [
        {
            "body": "A Team Leader reviewed your escalation and found that it does not qualify, so it has been set "
            "to Cancelled.\n\nFeedback: The SLA was met: the first reply came within 4 hours.",
            "public": True,
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (0, 1, 1)
    assert counts.other == ["PUT /rest/api/2/comment/10101/properties/tierup.key"]


def test_lr6_an_issue_that_had_no_lead_group_goes_back_to_none(site: Site) -> None:
    # The lead-group field is usually empty before an escalation: the cancel left the leads' group on
    # the issue while the record said it had none.
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site, customfield_10105=None)
    decision = run.deliver("issue_updated__cancel_label_added_with_comment.json", "wh-cancel")

    assert (decision.rule, decision.state, decision.escalation.group) == ("LR6", State.CANCELLED, None)
    (edit,) = site.sent("PUT", f"/issue/{KEY}")
    assert edit["fields"] == {"customfield_10105": None}


@pytest.mark.parametrize(
    ("thread", "feedback"),
    [
        ([("champion", True, "Please hurry, we are losing members every hour!")], None),
        ([("agent", False, "Internal: this customer is on the watch list.")], None),
        ([("lead", False, "The SLA was met."), ("champion", True, "Please hurry!")], "The SLA was met."),
    ],
    ids=["the customer's words", "another agent's internal note", "the lead's own comment"],
)
def test_lr6_a_cancel_without_a_comment_takes_feedback_only_from_the_leads_own_comment(
    site: Site, thread: list[tuple[str, bool, str]], feedback: str | None
) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site)
    payload = fixture("issue_updated__cancel_label_added_with_comment.json")
    comment = payload.pop("comment")  # the label went on without a comment of its own
    who = {"lead": comment["author"], "champion": {**comment["author"], "accountId": "557058:champion0001"},
           "agent": {**comment["author"], "accountId": "557058:agent0002"}}  # fmt: skip
    payload["issue"]["fields"]["comment"] = {"comments": [
        {**comment, "id": str(20000 + n), "author": who[author], "body": body, "jsdPublic": public}
        for n, (author, public, body) in enumerate(thread)
    ]}  # fmt: skip

    decision = run.deliver(payload, "wh-cancel")

    assert (decision.rule, decision.state) == ("LR6", State.CANCELLED)
    [reply] = site.sent("POST", f"/request/{KEY}/comment")
    said = "A Team Leader reviewed your escalation and found that it does not qualify, so it has been set to Cancelled."
    assert reply["body"] == (said if feedback is None else f"{said}\n\nFeedback: {feedback}")


def test_lr7_lead_confirms_first_contact_due_two_business_days(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site)
    decision = run.deliver("issue_updated__confirm_label_added.json", "wh-confirm")

    assert (decision.rule, decision.state) == ("LR7", State.CONFIRMED)
    # Requested Tuesday 11:00 in Warsaw: two business days later, Thursday 11:00 CET.
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalation_confirmed"}]},
            "fields": {"customfield_10106": "2026-03-12T11:00:00.000+0100"},
        }
    ]
    assert site.sent("POST", f"/request/{KEY}/comment") == [
        {
            "body": "A Team Leader has confirmed your escalation. It is being processed internally and the assigned "
            "agent will contact you by Thu 12 Mar 2026 11:00 CET.",
            "public": True,
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (0, 1, 1)


def test_lr7_confirm_on_data_center(dc_site: Site) -> None:
    ready(dc_site)
    run = Run("lead-review", DC_ENV)
    run.deliver(raw("issue_updated__request_label_added_dc.json"), "wh-req")
    decision = run.deliver(raw("issue_updated__confirm_label_added_dc.json"), "wh-confirm")
    assert (decision.rule, decision.transition.actor) == ("LR7", "lee.lead")


def test_lr8_business_urgency_is_not_an_escalation(site: Site) -> None:
    ready(site)
    decision = Run("lead-review").deliver(request_payload(customfield_10100={"value": "Business urgency"}))

    assert (decision.rule, decision.state) == ("LR8", State.URGENCY_REQUESTED)
    assert site.sent("PUT", f"/issue/{KEY}") == [{"update": {"labels": [{"add": "urgency_requested"}]}}]
    assert site.sent("POST", f"/issue/{KEY}/comment") == [
        {
            "body": "The requester asked for higher urgency (not an escalation). Business rationale: Members cannot "
            "check in: <b>we lose</b> revenue \\*every\\* hour \\{html\\}. Please consider prioritising this "
            "conversation.",
            "properties": [marker("wh-1:1", 0), INTERNAL],
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments, counts.other) == (0, 1, 1, [])  # no group, no transition


def sla_breach(delivery_id: str = "sweep:SUP-7:1") -> EscalationRequest:
    """The request the SLA sweep raises for a breached issue."""
    return EscalationRequest(platform=Platform.JIRA, ticket_ref=KEY, requested_by=SYSTEM, channel=Channel.SLA_BREACH,
                             reason=Reason.SLA_VIOLATION, received_at=NOW, delivery_id=delivery_id)  # fmt: skip


def test_sh3_sla_breach_escalates_without_anyone_asking(site: Site) -> None:
    ready(site)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get("gym"))
    run = Run("lead-review")
    decision = handle_event(sla_breach(), policy=run.policy, gateway=run.adapter.gateway, store=run.store,
                            clock=lambda: NOW)  # fmt: skip

    assert not isinstance(decision, Ignored)
    assert (decision.rule, decision.state) == ("SH3", State.ESCALATED)
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalated"}]},
            "fields": {"customfield_10105": {"name": "Technical Support Team Leaders"}, "priority": {"name": "High"}},
        },
        # After the note and the workflow move: the sweep's query leaves issues with this label out.
        {"update": {"labels": [{"add": "sla_breached"}]}},
    ]
    assert site.sent("POST", f"/request/{KEY}/comment") == []  # nobody asked: no public reply
    assert site.sent("POST", f"/issue/{KEY}/comment") == [
        {
            "body": "An SLA was breached: escalated automatically to Technical Support Team Leaders.",
            "properties": [marker("sweep:SUP-7:1:1", 0), INTERNAL],
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (2, 2, 1)  # GET issue, GET transitions


# --- service-desk --------------------------------------------------------------------------------


def test_sd1_within_sla_is_deferred_naming_the_sla(site: Site) -> None:
    ready(site)
    decision = Run("service-desk").deliver(request_payload(customfield_10100={"value": "SLA violation"}), "wh-req")

    assert (decision.rule, decision.state) == ("SD1", State.DEFERRED)
    assert site.sent("PUT", f"/issue/{KEY}") == [{"update": {"labels": [{"add": "escalation_deferred"}]}}]
    assert site.sent("POST", f"/request/{KEY}/comment") == [
        {
            "body": "This ticket is still within its service level agreement (Time to first response, which expires "
            "Tue 10 Mar 2026 12:00 GMT), and we believe its priority is appropriate, so we ask that you give the "
            "assigned agent time to respond and resolve it. If the service level expires first, your escalation "
            "will be taken up automatically.",
            "public": True,
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (1, 1, 1)  # the read: the JSM SLAs


def test_sd1_deferred_request_is_escalated_when_the_sla_breaches(site: Site) -> None:
    ready(site)
    run = Run("service-desk")
    run.deliver(request_payload(customfield_10100={"value": "SLA violation"}), "wh-req")
    reset(site)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get("escalation_deferred", "escalation_requested", "gym"))

    decision = handle_event(sla_breach(), policy=run.policy, gateway=run.adapter.gateway, store=run.store,
                            clock=lambda: NOW)  # fmt: skip

    assert not isinstance(decision, Ignored)
    assert (decision.rule, decision.state) == ("SD1", State.ESCALATED)
    # One business hour from the breach the sweep saw (10:00:05).
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalated"}, {"remove": "escalation_deferred"}]},
            "fields": {
                "customfield_10105": {"name": "Service Desk Managers"},
                "customfield_10106": "2026-03-10T11:00:05.000+0000",
            },
        },
        {"update": {"labels": [{"add": "sla_breached"}]}},
    ]
    assert [b["body"] for b in site.sent("POST", f"/request/{KEY}/comment")] == [
        "The service level on this ticket has now expired, so your earlier escalation request has been taken up: "
        "the ticket is marked *Escalated* and you should hear from us by Tue 10 Mar 2026 11:00 GMT."
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (2, 2, 2)  # the fields, then sla_breached


def test_sd2_misclassified_priority_is_reclassified(site: Site) -> None:
    ready(site)
    payload = request_payload(
        customfield_10100={"value": "Priority misclassified"}, customfield_10103={"value": "High"}
    )
    decision = Run("service-desk").deliver(payload)

    assert (decision.rule, decision.state) == ("SD2", State.RECLASSIFIED)
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "priority_reclassified"}]},
            "fields": {"customfield_10105": {"name": "Service Desk Managers"}, "priority": {"name": "High"}},
        }
    ]
    assert [b["body"] for b in site.sent("POST", f"/request/{KEY}/comment")] == [
        "We have assessed this ticket against our Service Level Agreements and re\\-classified its priority from "
        "normal to high. The Service Desk Manager will keep monitoring it until it is resolved."
    ]
    assert site.sent("POST", f"/issue/{KEY}/transitions") == []  # re-classified is not Escalated
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (1, 1, 2)


def test_lr5_and_sd2_never_lower_a_priority_that_maps_to_none_of_ours(site: Site) -> None:
    # Data Center's "Blocker" is in no JIRA_PRIORITIES mapping: it cannot be ranked, so "raise to at
    # least High" (LR5) and "re-classify up to High" (SD2) must leave it, not set it to High.
    ready(site)
    Run("lead-review").deliver(request_payload(priority={"name": "Blocker"}), "wh-blocker")
    (edit,) = site.sent("PUT", f"/issue/{KEY}")
    assert edit["fields"] == {"customfield_10105": {"name": "Technical Support Team Leaders"}}

    reset(site)
    payload = request_payload(
        priority={"name": "Blocker"}, customfield_10100={"value": "Priority misclassified"},
        customfield_10103={"value": "High"},
    )  # fmt: skip
    decision = Run("service-desk").deliver(payload, "wh-blocker-sd")
    assert decision.rule != "SD2"
    assert all("priority" not in e.get("fields", {}) for e in site.sent("PUT", f"/issue/{KEY}"))


def test_sd5_escalated_to_the_service_desk_managers(site: Site) -> None:
    ready(site)
    decision = Run("service-desk").deliver("issue_updated__request_label_added.json", "wh-req")

    assert (decision.rule, decision.state, decision.escalation.group) == (
        "SD5",
        State.ESCALATED,
        "Service Desk Managers",
    )
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            "update": {"labels": [{"add": "escalated"}]},
            "fields": {
                "customfield_10105": {"name": "Service Desk Managers"},
                "customfield_10106": "2026-03-10T11:00:00.000+0000",
            },
        }
    ]
    assert site.sent("POST", f"/request/{KEY}/comment") == [
        {
            "body": "Thank you: your escalation has been received and this ticket is now marked *Escalated*. The "
            "Service Desk Manager or the Practice Experience Manager will review it and contact you by your "
            "preferred method (phone \\+48 555 0100) first; you should hear from us by Tue 10 Mar 2026 11:00 GMT, "
            "usually sooner. We will also keep you up to date on this ticket.",
            "public": True,
        }
    ]
    assert site.sent("POST", f"/issue/{KEY}/transitions") == [{"transition": {"id": "41"}}]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (2, 1, 2)  # the JSM SLAs, the transitions


def test_sd5_by_form_names_the_ticket_and_replies_on_it(site: Site) -> None:
    ready(site)
    answer_request(site)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get("gym"))
    decision = Run("service-desk").deliver("issue_created__escalation_form.json", "wh-form")
    assert (decision.rule, decision.state, decision.target_ref) == ("SD5", State.ESCALATED, KEY)
    assert decision.escalation.requested_by is not None
    assert decision.escalation.requested_by.email == "champ@club.example"
    assert_request_answered(site, "wh-form:1:request")
    counts = site.count()
    # GET issue (no hint), GET transitions of SUP-7 and of the request; the reply, the note, the request's reply.
    assert (counts.reads, counts.edits, counts.comments) == (3, 1, 3)


def test_sd8_no_ticket_number_asks_for_it_on_the_request(site: Site) -> None:
    site.writes("SUP-13")
    decision = Run("service-desk").deliver("issue_created__escalation_email_no_ticket.json", "wh-mail")

    assert (decision.rule, decision.state, decision.target_ref) == ("SD8", State.NEEDS_INFO, "SUP-13")
    assert site.sent("PUT", "/issue/SUP-13") == []
    assert site.sent("POST", "/request/SUP-13/comment") == [
        {
            "body": "Please provide the number of the existing ticket you would like to escalate before we take any "
            "further action. The escalation service is not for logging new queries or urgent tickets: please raise "
            "those with the Service Desk as usual.",
            "public": True,
        }
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (0, 0, 1)


def test_sd9_solving_the_issue_resolves_the_escalation(site: Site) -> None:
    ready(site)
    run = Run("service-desk")
    run.deliver("issue_updated__request_label_added.json", "wh-req")
    reset(site)
    decision = run.deliver("issue_updated__resolved.json", "wh-done")
    assert (decision.rule, decision.state, decision.actions) == ("SD9", State.RESOLVED, ())
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (1, 0, 0)  # the SLA read before deciding; no writes


def test_sd10_first_contact_due_one_business_hour(site: Site) -> None:
    ready(site)
    decision = Run("service-desk").deliver("issue_updated__request_label_added.json")
    assert decision.escalation.first_contact_due is not None
    assert decision.escalation.first_contact_due.isoformat() == "2026-03-10T11:00:00+00:00"
    assert site.sent("PUT", f"/issue/{KEY}")[0]["fields"]["customfield_10106"] == "2026-03-10T11:00:00.000+0000"


def test_sd11_not_happy_goes_to_the_head_of_service_delivery(site: Site) -> None:
    ready(site)
    run = Run("service-desk")
    run.deliver("issue_updated__request_label_added.json", "wh-req")
    reset(site)
    decision = run.deliver("issue_updated__not_happy_label_added.json", "wh-unhappy")

    assert (decision.rule, decision.state, decision.escalation.level) == ("SD11", State.LEVEL_2, 2)
    assert site.sent("PUT", f"/issue/{KEY}") == [
        {
            # The issue still carried the cancel's label (the lead had cancelled it): it goes.
            "update": {"labels": [{"add": "escalation_level_2"}, {"remove": "escalation_cancelled"}]},
            "fields": {"customfield_10105": {"name": "Head of Service Delivery"}},
        }
    ]
    assert [b["body"] for b in site.sent("POST", f"/request/{KEY}/comment")] == [
        "We are sorry you are not happy with the outcome. Your escalation has been sent to the Head of Service "
        "Delivery for review."
    ]
    assert [b["body"] for b in site.sent("POST", f"/issue/{KEY}/comment")] == [
        "Escalation sent to Head of Service Delivery (level 2)."
    ]
    counts = site.count()
    assert (counts.reads, counts.edits, counts.comments) == (1, 1, 2)


def test_sd11_asking_again_after_a_cancel_also_goes_up(site: Site) -> None:
    ready(site)
    run = Run("service-desk")
    run.deliver("issue_updated__request_label_added.json", "wh-req")
    run.deliver("issue_updated__cancel_label_added_with_comment.json", "wh-cancel")
    # The label taken off and put back: a second request on the same ticket.
    again = fixture("issue_updated__request_label_added.json")
    again["timestamp"] += 3600 * 1000 + 1
    decision = run.deliver(again, "wh-again")
    assert (decision.rule, decision.state) == ("SD11", State.LEVEL_2)


# --- ordering and retries ------------------------------------------------------------------------


def test_a_late_older_delivery_does_not_undo_a_newer_state(site: Site) -> None:
    ready(site)
    run = Run("lead-review")
    escalate_lead_review(run, site)
    run.deliver("issue_updated__cancel_label_added_with_comment.json", "wh-cancel")  # 10:30
    reset(site)
    # A confirm made at 10:15, retried by Jira and arriving after the cancel.
    late = fixture("issue_updated__confirm_label_added.json")
    late["timestamp"] -= 15 * 60 * 1000

    result = run.deliver_any(late, "wh-late-confirm")

    assert isinstance(result, Ignored) and "older than the last event applied" in result.reason
    assert site.calls() == []
    escalation = run.store.load(Platform.JIRA, KEY)
    assert escalation is not None and escalation.state is State.CANCELLED


def answer_lr5_with_one_failure(site: Site, *, fails: str) -> None:
    """Answers to LR5's writes on KEY; the call `fails` ("note" or "mark") answers 503 once (Jira is overloaded)."""
    busy = {"errorMessages": ["Service unavailable"]}
    site.sla(KEY, "servicedeskapi_request_sla_within.json")
    site.rsps.put(site.api(f"issue/{KEY}"), status=204)
    site.rsps.post(site.sd(f"request/{KEY}/comment"), status=201,
                   json=fixture("servicedeskapi_request_comment_added.json"))  # fmt: skip
    if fails == "mark":
        site.rsps.put(site.api("comment/10101/properties/tierup.key"), status=503, json=busy)
    site.rsps.put(site.api("comment/10101/properties/tierup.key"), status=201)
    if fails == "note":
        site.rsps.post(site.api(f"issue/{KEY}/comment"), status=503, json=busy)
    site.rsps.post(site.api(f"issue/{KEY}/comment"), status=201, json=fixture("rest_api2_comment_added.json"))
    site.rsps.get(site.api(f"issue/{KEY}/transitions"), json=fixture("rest_api2_issue_transitions.json"))
    site.rsps.post(site.api(f"issue/{KEY}/transitions"), status=204)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get())  # a retry's look at the status: Waiting for support


def test_a_retry_after_a_failure_never_posts_a_comment_twice(site: Site) -> None:
    # The internal note fails the first time, then works.
    answer_lr5_with_one_failure(site, fails="note")
    run = Run("lead-review")

    with pytest.raises(TransientError):
        run.deliver("issue_updated__request_label_added.json", "wh-req")
    assert run.store.decisions == []  # nothing recorded: the worker retries the delivery

    # On the retry, Jira shows the public reply already posted with this transition's key.
    posted = fixture("rest_api2_issue_comments_with_properties.json")
    posted["comments"][0]["properties"] = [marker("wh-req:1", 0)]
    site.rsps.get(site.api(f"issue/{KEY}/comment"), json=posted)
    reset(site)
    decision = run.deliver("issue_updated__request_label_added.json", "wh-req", retry=True)

    assert decision.rule == "LR5"
    assert site.sent("POST", f"/request/{KEY}/comment") == []  # not posted again
    assert [b["properties"][0] for b in site.sent("POST", f"/issue/{KEY}/comment")] == [marker("wh-req:1", 1)]
    counts = site.count()
    # + the look back at the newest comments, and at the status before the move
    assert (counts.reads, counts.edits, counts.comments) == (3, 1, 1)
    assert site.sent("POST", f"/issue/{KEY}/transitions") == [{"transition": {"id": "41"}}]


def test_a_reply_whose_mark_never_landed_is_marked_on_the_retry_not_posted_again(site: Site) -> None:
    # The customer's reply is posted, then marking it fails the first time.
    answer_lr5_with_one_failure(site, fails="mark")
    run = Run("lead-review")

    with pytest.raises(TransientError):
        run.deliver("issue_updated__request_label_added.json", "wh-req")
    (reply,) = site.sent("POST", f"/request/{KEY}/comment")

    # On the retry Jira shows that reply, by Tierup's account, with no tierup.key on it.
    shown = fixture("rest_api2_issue_comments_with_properties.json")
    shown["comments"][0].update(body=reply["body"] + "\r\n", properties=[])
    site.rsps.get(site.api(f"issue/{KEY}/comment"), json=shown)
    reset(site)
    decision = run.deliver("issue_updated__request_label_added.json", "wh-req", retry=True)

    assert decision.rule == "LR5"
    assert site.sent("POST", f"/request/{KEY}/comment") == []  # the customer is not told twice
    assert site.sent("PUT", "/comment/10101/properties/tierup.key") == [{"transition": "wh-req:1", "part": 0}]
    assert [b["properties"][0] for b in site.sent("POST", f"/issue/{KEY}/comment")] == [marker("wh-req:1", 1)]


def test_an_unmarked_reply_by_someone_else_is_not_taken_for_ours(site: Site) -> None:
    ready(site)
    shown = fixture("rest_api2_issue_comments_with_properties.json")
    run = Run("lead-review")
    run.deliver("issue_updated__request_label_added.json", "wh-first")
    (reply,) = site.sent("POST", f"/request/{KEY}/comment")
    shown["comments"][0].update(body=reply["body"], properties=[])
    shown["comments"][0]["author"]["accountId"] = "5b10a2844c20165700ede21g"  # an agent pasted the same text
    site.rsps.get(site.api(f"issue/{KEY}/comment"), json=shown)
    site.rsps.get(site.api(f"issue/{KEY}"), json=issue_get())
    reset(site)
    Run("lead-review").deliver("issue_updated__request_label_added.json", "wh-other", retry=True)
    assert len(site.sent("POST", f"/request/{KEY}/comment")) == 1


def test_the_same_delivery_twice_keys_the_same_transition(site: Site) -> None:
    ready(site)
    first = Run("lead-review")
    second = Run("lead-review")
    a = first.deliver("issue_updated__request_label_added.json", "wh-req")
    b = second.deliver(copy.deepcopy(fixture("issue_updated__request_label_added.json")), "wh-req")
    assert a.transition.delivery_id == b.transition.delivery_id == "wh-req"
    keys = [p[0]["value"]["transition"] for p in (b["properties"] for b in site.sent("POST", f"/issue/{KEY}/comment"))]
    assert keys == ["wh-req:1", "wh-req:1"]


def test_dry_run_without_credentials_writes_nothing() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("JIRA_EMAIL", "JIRA_API_TOKEN")}
    run = Run("lead-review", env)
    assert run.adapter.dry_run
    decision = run.deliver("issue_updated__request_label_added.json", "wh-req")
    assert decision.rule == "LR5"
    planned = run.adapter.gateway.planned  # type: ignore[attr-defined]
    assert [(ref, key) for ref, _, key in planned] == [(KEY, "wh-req:1")]
    assert replace(decision.escalation, history=()).group == "Technical Support Team Leaders"
