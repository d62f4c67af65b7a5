"""Rules SD1-SD11 of the service-desk procedure, and SH3/SH4 as the core decides them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from integration.model import (
    AddTags,
    AssignGroup,
    Channel,
    Command,
    Decision,
    InternalNote,
    Person,
    Priority,
    PublicReply,
    Reason,
    RemoveTags,
    SetDue,
    SetPriority,
    State,
)
from integration.policy import Policy, decide, load_policy
from tests.core.builders import NOW, STRANGER, command, request, sla, ticket

MANAGERS = "Service Desk Managers"
HEAD = "Head of Service Delivery"
# SD10: Tue 10 Mar 2026 10:00 London (GMT) + 1 business hour.
DUE = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
SWEEP = Person(id="tierup-sla-sweep", name="Tierup SLA sweep")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("service-desk")


def only(decision: Decision, kind: type) -> list:
    return [a for a in decision.actions if isinstance(a, kind)]


def reply(decision: Decision) -> str:
    (r,) = only(decision, PublicReply)
    return r.body


def within_sla() -> dict:
    return {"reason": Reason.SLA_VIOLATION, "ticket": ticket(slas=(sla(breach_at=NOW + timedelta(hours=3)),))}


def test_sd1_within_sla_is_deferred(policy: Policy) -> None:
    d = decide(policy, None, request(**within_sla()), NOW)
    assert d.state is State.DEFERRED
    assert d.rule == "SD1"
    assert d.actions[0] == AddTags(("escalation_deferred",))
    assert "give the assigned agent time" in reply(d)
    assert not only(d, AssignGroup)


def test_sd1_a_target_past_its_breach_time_is_not_within_sla(policy: Policy) -> None:
    # The platform has not marked it breached yet, but its time has passed: nothing to wait for.
    snap = ticket(slas=(sla(breach_at=NOW - timedelta(minutes=1)),))
    d = decide(policy, None, request(reason=Reason.SLA_VIOLATION, ticket=snap), NOW)
    assert d.state is State.ESCALATED


def test_sd1_a_target_without_a_breach_time_is_named_without_one(policy: Policy) -> None:
    d = decide(policy, None, request(reason=Reason.SLA_VIOLATION, ticket=ticket(slas=(sla(breach_at=None),))), NOW)
    assert d.state is State.DEFERRED
    assert "which expires" not in reply(d) and "()" not in reply(d) and ")," in reply(d)


def test_sd1_deferred_request_escalated_when_the_sla_breaches(policy: Policy) -> None:
    deferred = decide(policy, None, request(**within_sla()), NOW).escalation
    later = NOW + timedelta(hours=3, minutes=1)
    breach = request(
        channel=Channel.SLA_BREACH, reason=Reason.SLA_VIOLATION, received_at=later, requested_by=SWEEP,
        rationale=None, preferred_contact=None,
        ticket=ticket(tags=frozenset({"escalation_deferred"}), slas=(sla(breach_at=later, breached=True),)),
    )  # fmt: skip
    d = decide(policy, deferred, breach, later)
    assert d.state is State.ESCALATED
    assert d.rule == "SD1"
    assert d.actions[:3] == (
        AddTags(("escalated", "sla_breached")),
        RemoveTags(("escalation_deferred",)),
        AssignGroup(MANAGERS),
    )
    assert "service level on this ticket has now expired" in reply(d)
    # Still the customer's request (SD4): who asked, why, and how to reach them.
    assert d.escalation.requested_by == deferred.requested_by and d.transition.actor == SWEEP.id
    assert d.escalation.rationale == deferred.rationale and d.escalation.preferred_contact == deferred.preferred_contact


def test_sd1_breached_sla_escalates_at_once(policy: Policy) -> None:
    snap = ticket(slas=(sla(breach_at=NOW - timedelta(minutes=5), breached=True),))
    assert decide(policy, None, request(reason=Reason.SLA_VIOLATION, ticket=snap), NOW).state is State.ESCALATED


def test_sd1_one_target_breached_is_not_within_sla_whatever_the_others_say(policy: Policy) -> None:
    # "Within SLA" means no target is breached: a pending reply target does not defer a breached one.
    snap = ticket(slas=(sla("Next reply time", breach_at=NOW + timedelta(hours=3)),
                        sla(breach_at=NOW - timedelta(minutes=5), breached=True)))  # fmt: skip
    d = decide(policy, None, request(reason=Reason.SLA_VIOLATION, ticket=snap), NOW)
    assert d.state is State.ESCALATED


def test_sd2_misclassified_priority_is_reclassified(policy: Policy) -> None:
    r = request(reason=Reason.PRIORITY_MISCLASSIFIED, requested_priority=Priority.HIGH)
    d = decide(policy, None, r, NOW)
    assert d.state is State.RECLASSIFIED
    assert d.rule == "SD2"
    assert d.actions[:3] == (AddTags(("priority_reclassified",)), AssignGroup(MANAGERS), SetPriority(Priority.HIGH))
    assert "from normal to high" in reply(d)


def test_sd2_above_the_ceiling_goes_to_a_manager(policy: Policy) -> None:
    r = request(reason=Reason.PRIORITY_MISCLASSIFIED, requested_priority=Priority.URGENT)
    d = decide(policy, None, r, NOW)
    assert d.state is State.ESCALATED
    assert AssignGroup(MANAGERS) in d.actions
    assert SetPriority(Priority.URGENT) not in d.actions


@pytest.mark.parametrize("channel", [Channel.FORM, Channel.EMAIL])
def test_sd3_form_and_email_get_the_same_attention(policy: Policy, channel: Channel) -> None:
    by_macro = decide(policy, None, request(), NOW)
    by_channel = decide(policy, None, request(channel=channel), NOW)
    assert by_channel.actions == by_macro.actions
    assert by_channel.state is State.ESCALATED


def test_sd4_preferred_contact_in_the_note_and_reply_on_the_ticket(policy: Policy) -> None:
    d = decide(policy, None, request(preferred_contact="call me on 0161 <496> 0000"), NOW)
    (note,) = only(d, InternalNote)
    assert "call me on 0161 &lt;496&gt; 0000" in note.body
    assert "by your preferred method" in reply(d)
    assert d.escalation.preferred_contact == "call me on 0161 <496> 0000"


def test_sd5_reviewed_by_the_service_desk_managers(policy: Policy) -> None:
    d = decide(policy, None, request(), NOW)
    assert d.rule == "SD5"
    assert d.escalation.group == MANAGERS
    assert AssignGroup(MANAGERS) in d.actions


def test_sd6_requested_priority_not_higher_is_assessed_by_a_manager(policy: Policy) -> None:
    r = request(reason=Reason.PRIORITY_MISCLASSIFIED, requested_priority=Priority.NORMAL)
    d = decide(policy, None, r, NOW)
    assert d.state is State.ESCALATED
    assert not only(d, SetPriority)


def test_sd7_deferral_names_the_sla_and_when_it_expires(policy: Policy) -> None:
    d = decide(policy, None, request(**within_sla()), NOW)
    assert "First reply time" in reply(d)
    assert "Tue 10 Mar 2026 13:00 GMT" in reply(d)


@pytest.mark.parametrize("channel", [Channel.FORM, Channel.EMAIL])
def test_sd8_no_existing_ticket_number_asks_for_it(policy: Policy, channel: Channel) -> None:
    r = replace(request(channel=channel), ticket=None, ticket_ref=None, origin_ref="9001")
    d = decide(policy, None, r, NOW)
    assert d.state is State.NEEDS_INFO
    assert d.rule == "SD8"
    assert d.target_ref == "9001"  # the reply goes on the request itself
    assert d.actions == (PublicReply(reply(d)),)
    assert "number of the existing ticket" in reply(d)


def test_sd8_unknown_ticket_number_is_treated_the_same(policy: Policy) -> None:
    # The service passes ticket=None when the gateway finds no such ticket.
    r = replace(request(channel=Channel.FORM), ticket=None, ticket_ref="123456789", origin_ref=None)
    d = decide(policy, None, r, NOW)
    assert d.state is State.NEEDS_INFO and d.rule == "SD8"


def test_sd9_solving_the_ticket_resolves_the_escalation(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    d = decide(policy, escalated, command(Command.RESOLVE, escalated), NOW)
    assert d.state is State.RESOLVED
    assert d.rule == "SD9"
    assert d.actions == ()


def test_sd10_first_contact_within_one_business_hour(policy: Policy) -> None:
    d = decide(policy, None, request(), NOW)
    assert d.escalation.first_contact_due == DUE
    assert SetDue(DUE) in d.actions
    assert "Tue 10 Mar 2026 11:00 GMT" in reply(d)


def test_sd10_after_hours_request_due_next_morning(policy: Policy) -> None:
    evening = datetime(2026, 3, 13, 18, 0, tzinfo=UTC)  # Friday 18:00 London
    d = decide(policy, None, request(received_at=evening), evening)
    assert d.escalation.first_contact_due == datetime(2026, 3, 16, 9, 30, tzinfo=UTC)  # Monday 09:30


def test_sd11_not_happy_goes_to_the_head_of_service_delivery(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    contacted = replace(escalated, contacted_at=NOW + timedelta(minutes=40))  # the outcome (SD9)
    d = decide(policy, contacted, request(delivery_id="d-9"), NOW + timedelta(days=1))
    assert d.state is State.LEVEL_2
    assert d.rule == "SD11"
    assert d.escalation.level == 2 and d.escalation.group == HEAD
    assert d.actions[:2] == (AddTags(("escalation_level_2",)), AssignGroup(HEAD))
    assert "Head of Service Delivery" in reply(d)


def test_sd11_asking_again_before_any_outcome_changes_nothing(policy: Policy) -> None:
    # A second click of the macro, a second email: not "unhappy with the outcome" (there is none yet).
    escalated = decide(policy, None, request(), NOW).escalation
    d = decide(policy, escalated, request(delivery_id="d-2"), NOW + timedelta(minutes=5))
    assert d.state is State.ESCALATED and d.escalation.level == 1 and d.actions == ()


def test_sd11_not_happy_command_after_cancel(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    cancelled = decide(policy, escalated, command(Command.CANCEL, escalated, feedback="Within SLA."), NOW).escalation
    unhappy = command(
        Command.NOT_HAPPY, cancelled, actor=STRANGER, ticket=ticket(tags=frozenset({"escalation_cancelled"}))
    )
    d = decide(policy, cancelled, unhappy, NOW)
    assert d.state is State.LEVEL_2 and d.escalation.group == HEAD
    assert d.actions[:2] == (AddTags(("escalation_level_2",)), RemoveTags(("escalation_cancelled",)))


def test_sd11_not_happy_after_the_ticket_was_solved(policy: Policy) -> None:
    # SD9: solving the ticket resolves the escalation; the outcome is then what SD11 is about.
    escalated = decide(policy, None, request(), NOW).escalation
    resolved = decide(policy, escalated, command(Command.RESOLVE, escalated), NOW).escalation
    d = decide(policy, resolved, command(Command.NOT_HAPPY, resolved, actor=STRANGER), NOW + timedelta(days=1))
    assert d.state is State.LEVEL_2 and d.escalation.group == HEAD


def test_sd11_a_new_request_after_the_ticket_was_solved_goes_one_level_up(policy: Policy) -> None:
    # Not only the NOT_HAPPY command: the requester escalating the solved ticket again is unhappy with it.
    escalated = decide(policy, None, request(), NOW).escalation
    resolved = decide(policy, escalated, command(Command.RESOLVE, escalated), NOW).escalation
    d = decide(policy, resolved, request(delivery_id="d-again"), NOW + timedelta(days=1))
    assert (d.state, d.rule, d.escalation.group) == (State.LEVEL_2, "SD11", HEAD)


def test_sh3_sla_breach_tags_and_escalates(policy: Policy) -> None:
    breach = request(channel=Channel.SLA_BREACH, reason=Reason.SLA_VIOLATION, rationale=None)
    d = decide(policy, None, breach, NOW)
    assert d.state is State.ESCALATED and d.rule == "SH3"
    assert d.actions[0] == AddTags(("escalated", "sla_breached"))


def test_sh3_a_breach_found_after_its_promise_would_have_passed_is_promised_from_now(policy: Policy) -> None:
    # The sweep's first run (or one after an outage) finds a breach of 09:00 at 14:00.
    found = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    breach = request(channel=Channel.SLA_BREACH, reason=Reason.SLA_VIOLATION, rationale=None, received_at=NOW)
    d = decide(policy, None, breach, found)
    assert d.escalation.first_contact_due == found + timedelta(hours=1)  # not 10:00, already past
    assert SetDue(found + timedelta(hours=1)) in d.actions
    for found_soon in (NOW, NOW + timedelta(minutes=5)):  # found in time: the promise runs from the breach
        assert decide(policy, None, breach, found_soon).escalation.first_contact_due == DUE


def test_sh4_missed_hour_goes_to_level_2_once(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    late = DUE + timedelta(minutes=1)
    d = decide(policy, escalated, command(Command.DEADLINE_MISSED, escalated, received_at=late), late)
    assert d.state is State.LEVEL_2 and d.rule == "SH4" and d.escalation.group == HEAD
    assert not only(d, PublicReply)
    again = decide(policy, d.escalation, command(Command.DEADLINE_MISSED, d.escalation, received_at=late), late)
    assert again.actions == () and again.escalation.level == 2


def test_sh4_confirm_counts_as_contact(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    confirmed = decide(policy, escalated, command(Command.CONFIRM, escalated), NOW).escalation
    late = DUE + timedelta(hours=5)
    d = decide(policy, confirmed, command(Command.DEADLINE_MISSED, confirmed, received_at=late), late)
    assert d.state is State.CONFIRMED and d.actions == ()


def test_sd10_an_english_bank_holiday_is_not_a_business_hour(policy: Policy) -> None:
    # Fri 1 May 2026 17:00 London: half an hour left; Mon 4 May is the Early May bank holiday.
    start = datetime(2026, 5, 1, 16, 0, tzinfo=UTC)
    due = policy.calendar_for(None).add_business_time(start, policy.first_contact_within)
    assert due == datetime(2026, 5, 5, 8, 0, tzinfo=UTC)  # Tue 09:00 BST
