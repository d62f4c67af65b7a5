"""Every procedure rule on the Zendesk path: trigger body -> parser -> service -> one ticket PUT, counted.

Each test feeds a rendered Tierup trigger body (tests/fixtures/zendesk/trigger_*.json) through
the adapter's parser, runs integration.service.handle_event with the real ZendeskGateway over
zenpy (answered by `responses`), and checks the exact PUT body and the API calls it took.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses

from adapters.zendesk import ZendeskAdapter, build_adapter
from adapters.zendesk.gateway import html_to_text
from integration.model import Decision, Ignored, InternalNote, Platform, PublicReply, State
from integration.policy import load_policy
from integration.service import MemoryStore, handle_event, transition_key
from tests.zendesk.helpers import (
    DUE_FIELD,
    GROUP_IDS,
    NOTE_FIELD,
    NOW,
    STAMP,
    TICKET,
    FakeZendesk,
    changed,
    delivery,
    env,
    fixture,
)

TSTL = GROUP_IDS["Technical Support Team Leaders"]
APAC = GROUP_IDS["Technical Support Team Leaders APAC"]
SUPPORT = GROUP_IDS["Support"]
MANAGERS = GROUP_IDS["Service Desk Managers"]
HEAD = GROUP_IDS["Head of Service Delivery"]


@pytest.fixture
def api() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


class World:
    """One Zendesk account, one policy, one store: deliveries go through the real adapter and service."""

    def __init__(self, policy: str, api: FakeZendesk, **settings: str) -> None:
        self.policy = load_policy(policy)
        adapter = build_adapter(env(**settings), self.policy)
        assert isinstance(adapter, ZendeskAdapter) and not adapter.dry_run
        self.adapter = adapter
        self.api = api
        self.store = MemoryStore()
        self.deliveries = 0

    def deliver(self, payload: Any, at: datetime = NOW) -> Decision | Ignored:
        """Parse and handle one delivery; the API call counters start from zero for it."""
        self.api.mock.calls.reset()
        self.deliveries += 1
        event = self.adapter.parse(delivery(payload, f"01HQINV{self.deliveries:019d}", at))
        if isinstance(event, Ignored):
            return event
        return handle_event(event, policy=self.policy, gateway=self.adapter.gateway, store=self.store, clock=lambda: at)


def request(**changes: Any) -> Any:
    return changed(fixture("trigger_escalation_requested.json"), **changes)


def body(decision: Decision | Ignored, **ticket: Any) -> dict[str, Any]:
    """The PUT body a decision must produce: its fields plus the transition key and the safe-update stamp."""
    assert isinstance(decision, Decision)
    key = transition_key(decision.transition.delivery_id, decision.escalation)
    out: dict[str, Any] = {"id": int(TICKET), **ticket, "metadata": {"tierup_key": key, "tierup_part": "main"}}
    out.update(safe_update=True, updated_stamp=STAMP)
    return {"ticket": out}


def reply(decision: Decision | Ignored) -> str:
    assert isinstance(decision, Decision)
    (r,) = [a.body for a in decision.actions if isinstance(a, PublicReply)]
    return r


def note(decision: Decision | Ignored) -> str:
    assert isinstance(decision, Decision)
    (n,) = [a.body for a in decision.actions if isinstance(a, InternalNote)]
    return n


def one_put(api: FakeZendesk, reads: int = 1) -> dict[str, Any]:
    """The single PUT of a delivery, after checking it took exactly `reads` reads and one write."""
    assert (api.reads, api.writes) == (reads, 1)
    (put,) = api.put_bodies()
    return put


# --- lead-review ----------------------------------------------------------------------------------


def test_lr1_unauthorised_requester_is_cancelled_with_an_internal_note_only(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show(users__0__tags=[], users__0__name="Sam Stranger")
    d = w.deliver(request(requester__tags="", requester__name="Sam Stranger", requester__email="sam@elsewhere.example"))
    assert isinstance(d, Decision) and d.state is State.CANCELLED and d.rule == "LR1"
    assert "not authorised" in note(d)
    # The ticket is otherwise untouched: no tags, group or priority, and the note is private.
    assert one_put(api) == body(d, comment={"html_body": note(d), "public": False})


@pytest.mark.parametrize("reason", ["sla_violation", "wrong_resolution", "priority_misclassified", "agent_conduct"])
def test_lr2_each_procedure_reason_escalates(api: FakeZendesk, reason: str) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request(escalation__reason=f"tierup_reason_{reason}"))
    assert isinstance(d, Decision) and d.state is State.ESCALATED and d.rule == "LR5"
    assert d.escalation.reason is not None and d.escalation.reason.value == reason
    put = one_put(api)
    assert put["ticket"]["additional_tags"] == ["escalated"]
    assert put["ticket"]["group_id"] == TSTL


def test_lr3_missing_rationale_needs_info_then_the_reply_escalates(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request(escalation__rationale=""))
    assert isinstance(d, Decision) and d.state is State.NEEDS_INFO and d.rule == "LR3"
    assert "business rationale" in reply(d)
    assert one_put(api) == body(
        d, additional_tags=["escalation_needs_info"], comment={"html_body": reply(d), "public": True}
    )

    # The requester answers on the ticket: the follow-up trigger carries the reply as the rationale.
    api.show(ticket__tags=["escalation_needs_info", "gym", "tierup_reason_wrong_resolution"])
    later = NOW + timedelta(hours=1)
    d2 = w.deliver(fixture("trigger_follow_up.json"), at=later)
    assert isinstance(d2, Decision) and d2.state is State.ESCALATED and d2.rule == "LR5"
    assert d2.escalation.rationale is not None and "2000 PLN" in d2.escalation.rationale
    put = one_put(api)
    assert put["ticket"]["additional_tags"] == ["escalated"]
    assert put["ticket"]["remove_tags"] == ["escalation_needs_info"]
    assert "2000 PLN" in put["ticket"]["custom_fields"][0]["value"]


def test_lr3_a_request_without_a_reason_is_completed_by_the_reply_that_gives_one(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request(escalation__reason="", ticket__tags="escalation_requested gym"))
    assert isinstance(d, Decision) and d.state is State.NEEDS_INFO and "Please tell us why" in reply(d)

    # The answer to "please tell us why" says it in words; before, every reply asked again, for ever.
    api.show(ticket__tags=["escalation_needs_info", "gym"])
    words = "The fix you sent did not work: we lose 2000 PLN a day."
    answer = changed(fixture("trigger_follow_up.json"), comment=words)
    d2 = w.deliver(answer, at=NOW + timedelta(hours=1))
    assert isinstance(d2, Decision) and d2.state is State.ESCALATED and d2.rule == "LR5"
    assert d2.escalation.reason is not None and d2.escalation.reason.value == "wrong_resolution"


def test_lr4_au_organisation_routes_to_the_apac_leads(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    # The region comes from the organisation's `region` field in the side-loaded read.
    api.show(organizations__0__organization_fields={"region": "AU"}, organizations__0__name="Club Sydney")
    d = w.deliver(request())
    assert isinstance(d, Decision) and d.escalation.group == "Technical Support Team Leaders APAC"
    assert one_put(api)["ticket"]["group_id"] == APAC


def test_lr4_region_in_the_trigger_body_wins(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request(escalation__region="NZ"))
    assert isinstance(d, Decision) and d.escalation.region == "NZ"
    assert one_put(api)["ticket"]["group_id"] == APAC


def test_lr5_escalated_in_one_put_with_reply_and_note_field(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request())
    assert isinstance(d, Decision) and d.state is State.ESCALATED and d.rule == "LR5"
    note_text = html_to_text(note(d))
    assert one_put(api) == body(
        d,
        additional_tags=["escalated"],
        group_id=TSTL,
        priority="high",
        comment={"html_body": reply(d), "public": True},
        custom_fields=[{"id": NOTE_FIELD, "value": note_text}],
    )
    assert "marked <strong>Escalated</strong>" in reply(d)
    # The note field is readable text: customer text unescaped, paragraphs kept, no markup.
    assert "Business rationale: Members cannot check in: <b>we lose</b> revenue every hour" in note_text
    assert "Preferred contact: phone +48 555 0100" in note_text
    assert "<p>" not in note_text and "&lt;" not in note_text
    # The internal note never reaches the public comment.
    assert "Business rationale" not in reply(d)


def test_lr6_lead_cancels_with_feedback_and_the_ticket_returns_to_its_group(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    w.deliver(request())
    api.show(ticket__tags=["escalated", "gym"], ticket__group_id=TSTL, ticket__priority="high")
    d = w.deliver(fixture("trigger_cancel.json"), at=NOW + timedelta(hours=3))
    assert isinstance(d, Decision) and d.state is State.CANCELLED and d.rule == "LR6"
    assert "firewall change" in reply(d)
    assert one_put(api) == body(
        d,
        additional_tags=["escalation_cancelled"],
        remove_tags=["escalated"],
        group_id=SUPPORT,
        comment={"html_body": reply(d), "public": True},
    )


def test_lr7_lead_confirms_and_first_contact_is_due_in_two_business_days(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    w.deliver(request())
    api.show(ticket__tags=["escalated", "gym"], ticket__group_id=TSTL, ticket__priority="high")
    d = w.deliver(fixture("trigger_confirm.json"), at=NOW + timedelta(hours=2))
    assert isinstance(d, Decision) and d.state is State.CONFIRMED and d.rule == "LR7"
    # Tue 10 Mar 11:00 Warsaw + 16 working hours = Thu 12 Mar 11:00 Warsaw (10:00 UTC).
    assert d.escalation.first_contact_due == datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert "Thu 12 Mar 2026 11:00 CET" in reply(d)
    assert one_put(api) == body(
        d,
        additional_tags=["escalation_confirmed"],
        custom_fields=[{"id": DUE_FIELD, "value": "2026-03-12T10:00:00Z"}],
        comment={"html_body": reply(d), "public": True},
    )


def test_lr8_business_urgency_is_an_internal_note_not_an_escalation(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    api.show()
    d = w.deliver(request(escalation__reason="tierup_reason_business_urgency"))
    assert isinstance(d, Decision) and d.state is State.URGENCY_REQUESTED and d.rule == "LR8"
    assert one_put(api) == body(
        d, additional_tags=["urgency_requested"], comment={"html_body": note(d), "public": False}
    )


def test_sh3_lead_review_breached_sla_escalates_without_a_request(api: FakeZendesk) -> None:
    w = World("lead-review", api)
    breached = [{"breach_at": "2026-03-10T09:00:00Z", "stage": "active", "metric": "first_reply_time",
                 "hours": -1, "minutes": 0, "days": 0}]  # fmt: skip
    api.show(ticket__slas={"policy_metrics": breached})
    d = w.deliver(fixture("trigger_sla_breach.json"))
    assert isinstance(d, Decision) and d.state is State.ESCALATED and d.rule == "SH3"
    # No public reply: the SLA note is the (private) comment.
    assert one_put(api) == body(
        d,
        additional_tags=["escalated", "sla_breached"],
        group_id=TSTL,
        priority="high",
        comment={"html_body": note(d), "public": False},
    )


# --- service-desk ---------------------------------------------------------------------------------


def test_sd1_within_sla_is_deferred_and_escalated_when_the_sla_breaches(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()  # first reply time active, breaching at 13:00 UTC
    d = w.deliver(request(escalation__reason="tierup_reason_sla_violation"))
    assert isinstance(d, Decision) and d.state is State.DEFERRED and d.rule == "SD1"
    assert "First reply time" in reply(d)
    assert one_put(api) == body(
        d, additional_tags=["escalation_deferred"], comment={"html_body": reply(d), "public": True}
    )

    later = NOW + timedelta(hours=3, minutes=5)
    breached = [{"breach_at": "2026-03-10T13:00:00Z", "stage": "active", "metric": "first_reply_time",
                 "hours": 0, "minutes": -5, "days": 0}]  # fmt: skip
    api.show(ticket__slas={"policy_metrics": breached}, ticket__tags=["escalation_deferred", "gym"])
    d2 = w.deliver(fixture("trigger_sla_breach.json"), at=later)
    assert isinstance(d2, Decision) and d2.state is State.ESCALATED and d2.rule == "SD1"
    assert "has now expired" in reply(d2)
    assert one_put(api) == body(
        d2,
        additional_tags=["escalated", "sla_breached"],
        remove_tags=["escalation_deferred"],
        group_id=MANAGERS,
        comment={"html_body": reply(d2), "public": True},
        custom_fields=[
            {"id": DUE_FIELD, "value": "2026-03-10T14:05:00Z"},
            {"id": NOTE_FIELD, "value": html_to_text(note(d2))},
        ],
    )


def test_sd1_a_target_met_long_ago_does_not_count_as_breached(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    # As Zendesk answers months after the first reply was met: its days run on, negative, past breach_at.
    metrics = [
        {"breach_at": "2025-12-18T03:07:32Z", "stage": "achieved", "metric": "first_reply_time", "days": -82},
        {"breach_at": "2026-03-10T13:00:00Z", "stage": "active", "metric": "next_reply_time", "hours": 3},
    ]
    api.show(ticket__slas={"policy_metrics": metrics})
    d = w.deliver(request(escalation__reason="tierup_reason_sla_violation"))
    assert isinstance(d, Decision) and d.state is State.DEFERRED and d.rule == "SD1"
    assert "Next reply time" in reply(d)


def test_sd2_misclassified_priority_is_reclassified(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()
    misclassified = "tierup_reason_priority_misclassified"
    d = w.deliver(request(escalation__reason=misclassified, escalation__requested_priority="tierup_priority_high"))
    assert isinstance(d, Decision) and d.state is State.RECLASSIFIED and d.rule == "SD2"
    assert "from normal to high" in reply(d)
    assert one_put(api) == body(
        d,
        additional_tags=["priority_reclassified"],
        group_id=MANAGERS,
        priority="high",
        comment={"html_body": reply(d), "public": True},
        custom_fields=[{"id": NOTE_FIELD, "value": html_to_text(note(d))}],
    )


def test_sd5_escalation_goes_to_the_service_desk_managers(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()
    d = w.deliver(request())
    assert isinstance(d, Decision) and d.state is State.ESCALATED and d.rule == "SD5"
    assert one_put(api) == body(
        d,
        additional_tags=["escalated"],
        group_id=MANAGERS,
        comment={"html_body": reply(d), "public": True},
        custom_fields=[
            {"id": DUE_FIELD, "value": "2026-03-10T11:00:00Z"},
            {"id": NOTE_FIELD, "value": html_to_text(note(d))},
        ],
    )
    assert "by your preferred method (phone +48 555 0100) first" in reply(d)


def test_sd8_email_without_a_ticket_number_is_asked_for_it_on_the_request_ticket(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    d = w.deliver(fixture("trigger_escalation_requested_by_email.json"))
    assert isinstance(d, Decision) and d.state is State.NEEDS_INFO and d.rule == "SD8"
    assert d.target_ref == "4101"
    # Nothing to read (no ticket to escalate); the reply goes on the email's own ticket, without a stamp.
    assert (api.reads, api.writes) == (0, 1)
    key = transition_key(d.transition.delivery_id, d.escalation)
    assert api.put_bodies() == [
        {
            "ticket": {
                "id": 4101,
                "comment": {"html_body": reply(d), "public": True},
                "metadata": {"tierup_key": key, "tierup_part": "main"},
            }
        }
    ]
    assert "number of the existing ticket" in reply(d)
    assert api.calls("PUT")[0].request.url == "https://acme.zendesk.com/api/v2/tickets/4101.json"


def test_sd8_a_ticket_number_that_does_not_exist_is_treated_as_none(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    email = changed(
        fixture("trigger_escalation_requested_by_email.json"),
        ticket__description="Please escalate ticket #999999, nobody answers.",
    )
    d = w.deliver(email)
    assert isinstance(d, Decision) and d.state is State.NEEDS_INFO and d.rule == "SD8"
    assert d.target_ref == "4101"
    assert (api.reads, api.writes) == (1, 1)  # the one read finds #999999 missing
    assert api.calls("GET")[0].request.url.startswith("https://acme.zendesk.com/api/v2/tickets/999999.json")


def test_sd9_solving_the_ticket_resolves_the_escalation_without_a_write(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()
    w.deliver(request())
    api.show(ticket__tags=["escalated", "gym"], ticket__status="solved", ticket__group_id=MANAGERS)
    d = w.deliver(fixture("trigger_solved.json"), at=NOW + timedelta(days=1))
    assert isinstance(d, Decision) and d.state is State.RESOLVED and d.rule == "SD9"
    assert (api.reads, api.writes) == (1, 0)


def test_sd10_first_contact_due_one_business_hour_after_the_request(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()
    # Tuesday 17:00 London: 30 minutes left that day, the other 30 the next morning at 08:30.
    late = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
    d = w.deliver(request(), at=late)
    assert isinstance(d, Decision) and d.escalation.first_contact_due == datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    fields = one_put(api)["ticket"]["custom_fields"]
    assert {"id": DUE_FIELD, "value": "2026-03-11T09:00:00Z"} in fields


@pytest.mark.parametrize("second", ["trigger_escalation_requested.json", "trigger_not_happy.json"])
def test_sd11_a_second_request_goes_to_the_head_of_service_delivery(api: FakeZendesk, second: str) -> None:
    w = World("service-desk", api)
    api.show()
    w.deliver(request())
    # The managers called the requester back (an outcome, SD9): now they are not happy with it.
    key = (Platform.ZENDESK, TICKET)
    w.store.escalations[key] = replace(w.store.escalations[key], contacted_at=NOW + timedelta(minutes=40))
    api.show(ticket__tags=["escalated", "gym"], ticket__group_id=MANAGERS)
    d = w.deliver(fixture(second), at=NOW + timedelta(hours=4))
    assert isinstance(d, Decision) and d.state is State.LEVEL_2 and d.rule == "SD11"
    assert d.escalation.level == 2
    assert one_put(api) == body(
        d,
        additional_tags=["escalation_level_2"],
        group_id=HEAD,
        comment={"html_body": reply(d), "public": True},
        custom_fields=[{"id": NOTE_FIELD, "value": html_to_text(note(d))}],
    )
    assert "Head of Service Delivery" in reply(d)


def test_sh3_service_desk_breach_on_an_open_escalation_only_tags_it(api: FakeZendesk) -> None:
    w = World("service-desk", api)
    api.show()
    w.deliver(request())
    api.show(ticket__tags=["escalated", "gym"], ticket__group_id=MANAGERS)
    d = w.deliver(fixture("trigger_sla_breach.json"), at=NOW + timedelta(hours=3))
    assert isinstance(d, Decision) and d.state is State.ESCALATED and d.rule == "SH3"
    assert one_put(api) == body(d, additional_tags=["sla_breached"])
