"""Rules LR1-LR8 of the lead-review procedure, and SH3/SH4 as the core decides them."""

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
    LinkRole,
    LinkTicket,
    Organisation,
    Person,
    Priority,
    PublicReply,
    Reason,
    RemoveTags,
    SetDue,
    SetPriority,
    SetStatus,
    State,
    TicketStatus,
)
from integration.policy import Authorisation, Policy, decide, load_policy
from tests.core.builders import CHAMPION, NOW, STRANGER, command, request, ticket

GLOBAL = "Technical Support Team Leaders"
APAC = "Technical Support Team Leaders APAC"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("lead-review")


def only(decision: Decision, kind: type) -> list:
    return [a for a in decision.actions if isinstance(a, kind)]


def reply(decision: Decision) -> str:
    (r,) = only(decision, PublicReply)
    return r.body


def test_lr1_unauthorised_requester_cancelled_with_internal_note(policy: Policy) -> None:
    d = decide(policy, None, request(requested_by=STRANGER), NOW)
    assert d.state is State.CANCELLED
    assert d.rule == "LR1"
    # Internal note only: the ticket is otherwise untouched.
    assert len(d.actions) == 1
    (note,) = only(d, InternalNote)
    assert "not authorised" in note.body
    assert d.escalation.group is None


def test_lr1_an_unauthorised_email_request_is_told_so_on_its_own_ticket_and_nothing_is_linked(
    policy: Policy,
) -> None:
    d = decide(policy, None, request(requested_by=STRANGER, channel=Channel.EMAIL, origin_ref="4101"), NOW)
    assert (d.state, d.rule, d.target_ref) == (State.CANCELLED, "LR1", "4016")
    (note,) = d.actions  # the named ticket: the internal note, and no link
    assert isinstance(note, InternalNote) and "not authorised" in note.body
    answer, solved = d.origin_actions  # the email's own ticket: told why, and closed
    assert isinstance(answer, PublicReply) and solved == SetStatus(TicketStatus.SOLVED)
    assert "could not take it as an escalation of ticket 4016" in answer.body
    assert "PG Champions and authorised club employees" in answer.body
    assert "will reply to you there" not in answer.body


def test_an_authorised_email_request_is_linked_and_answered_on_its_own_ticket(policy: Policy) -> None:
    d = decide(policy, None, request(channel=Channel.EMAIL, origin_ref="4101"), NOW)
    assert d.state is State.ESCALATED and LinkTicket("4101", LinkRole.ESCALATED) in d.actions
    link, answer, solved = d.origin_actions
    assert link == LinkTicket("4016", LinkRole.REQUEST) and solved == SetStatus(TicketStatus.SOLVED)
    assert isinstance(answer, PublicReply) and "will reply to you there" in answer.body


def test_lr1_an_unauthorised_request_leaves_an_authorised_one_waiting_for_its_rationale(policy: Policy) -> None:
    waiting = decide(policy, None, request(rationale=None), NOW).escalation  # the champion's: needs info
    assert waiting.state is State.NEEDS_INFO
    d = decide(policy, waiting, request(requested_by=STRANGER, delivery_id="d-2"), NOW + timedelta(minutes=5))
    assert d.state is State.NEEDS_INFO and d.rule == "LR1"  # not cancelled under the champion
    assert [type(a) for a in d.actions] == [InternalNote]
    assert d.escalation.requested_by == CHAMPION  # whose rationale is still awaited


def test_lr3_a_reason_a_follow_up_mentions_never_replaces_the_one_given(policy: Policy) -> None:
    waiting = decide(policy, None, request(rationale=None), NOW).escalation  # wrong resolution, no rationale
    answer = request(reason=Reason.SLA_VIOLATION, rationale="We have waited two days for an answer.",
                     follow_up=True, delivery_id="d-2")  # fmt: skip
    d = decide(policy, waiting, answer, NOW + timedelta(hours=1))
    assert d.state is State.ESCALATED and d.escalation.reason is Reason.WRONG_RESOLUTION


def test_lr1_authorised_by_role_or_tag(policy: Policy) -> None:
    employee = Person(id="7", tags=frozenset({"club_employee"}))
    assert decide(policy, None, request(requested_by=employee), NOW).state is State.ESCALATED


def test_lr1_authorised_by_organisation_or_allow_listed_address(policy: Policy) -> None:
    # PROCEDURES: "user tag, role, organisation, or allow-list"; any one match authorises.
    listed = replace(policy, authorisation=Authorisation(organisations=frozenset({"club warszawa"}),
                                                         emails=frozenset({"ops@club.example"})))  # fmt: skip
    by_org = Person(id="8", organisation="Club Warszawa")
    by_address = Person(id="9", email="OPS@club.example")
    for person in (by_org, by_address):
        assert decide(listed, None, request(requested_by=person), NOW).state is State.ESCALATED
    assert decide(listed, None, request(requested_by=STRANGER), NOW).state is State.CANCELLED


def test_lr1_an_unauthorised_request_leaves_a_deferred_one_as_it_is(policy: Policy) -> None:
    deferred = decide(policy, None, request(), NOW).escalation
    deferred = replace(deferred, state=State.DEFERRED)
    d = decide(policy, deferred, request(requested_by=STRANGER, delivery_id="d-2"), NOW + timedelta(minutes=5))
    assert (d.state, d.rule) == (State.DEFERRED, "LR1")
    assert [type(a) for a in d.actions] == [InternalNote]


def test_lr5_a_ticket_with_no_priority_is_raised_to_high(policy: Policy) -> None:
    # A new Zendesk ticket has no priority: "raise to at least high" must set it.
    d = decide(policy, None, request(ticket=ticket(priority=None)), NOW)
    assert only(d, SetPriority) == [SetPriority(Priority.HIGH)]


@pytest.mark.parametrize(
    "reason",
    [Reason.SLA_VIOLATION, Reason.WRONG_RESOLUTION, Reason.PRIORITY_MISCLASSIFIED, Reason.AGENT_CONDUCT],
)
def test_lr2_the_four_reasons_escalate(policy: Policy, reason: Reason) -> None:
    d = decide(policy, None, request(reason=reason), NOW)
    assert d.state is State.ESCALATED
    assert d.rule == "LR5"


def test_lr2_a_reason_the_policy_does_not_escalate_for_is_cancelled_with_a_reply(policy: Policy) -> None:
    # Neither shipped policy leaves one of the four reasons out; a team's own policy may.
    narrow = replace(policy, escalation_reasons=frozenset({Reason.SLA_VIOLATION, Reason.WRONG_RESOLUTION}))
    d = decide(narrow, None, request(reason=Reason.AGENT_CONDUCT), NOW)
    assert (d.state, d.rule) == (State.CANCELLED, "LR2")
    assert d.actions[0] == AddTags(("escalation_cancelled",)) and len(only(d, PublicReply)) == 1
    assert not only(d, AssignGroup)


def test_lr2_missing_reason_asks_for_it(policy: Policy) -> None:
    d = decide(policy, None, request(reason=None), NOW)
    assert d.state is State.NEEDS_INFO
    assert "why you want to escalate" in reply(d)


def test_lr3_missing_rationale_needs_info(policy: Policy) -> None:
    d = decide(policy, None, request(rationale="  "), NOW)
    assert d.state is State.NEEDS_INFO
    assert d.rule == "LR3"
    assert d.actions[0] == AddTags(("escalation_needs_info",))
    assert "business rationale" in reply(d)
    # Nothing else changes: no group, no priority.
    assert not only(d, AssignGroup) and not only(d, SetPriority)


def test_lr3_rationale_arriving_later_is_evaluated_again(policy: Policy) -> None:
    waiting = decide(policy, None, request(rationale=None), NOW).escalation
    later = NOW + timedelta(hours=1)
    follow_up = request(
        rationale="Front desk is down", reason=None, follow_up=True, received_at=later,
        ticket=ticket(tags=frozenset({"gym", "escalation_needs_info"})),
    )  # fmt: skip
    d = decide(policy, waiting, follow_up, later)
    assert d.state is State.ESCALATED
    assert d.escalation.reason is Reason.WRONG_RESOLUTION  # kept from the first request
    assert RemoveTags(("escalation_needs_info",)) in d.actions


@pytest.mark.parametrize(
    ("org_region", "requester_region", "group"),
    [
        ("AU", None, APAC), ("NZ", None, APAC), ("PL", None, GLOBAL), ("US", None, GLOBAL), (None, "nz", APAC),
        (" NZ", None, APAC), (None, "au ", APAC),  # as typed in a field
    ],
)  # fmt: skip
def test_lr4_routing_by_region(
    policy: Policy, org_region: str | None, requester_region: str | None, group: str
) -> None:
    requester = replace(CHAMPION, region=requester_region)
    snap = ticket(organisation=Organisation(id="1", region=org_region), requester=requester)
    d = decide(policy, None, request(ticket=snap, requested_by=requester), NOW)
    assert d.escalation.group == group
    assert AssignGroup(group) in d.actions


def test_lr5_escalated_tags_assigns_raises_priority_and_replies(policy: Policy) -> None:
    d = decide(policy, None, request(), NOW)
    assert d.state is State.ESCALATED
    assert d.rule == "LR5"
    assert d.actions[:3] == (AddTags(("escalated",)), AssignGroup(GLOBAL), SetPriority(Priority.HIGH))
    assert "marked <strong>Escalated</strong>" in reply(d)
    assert "Next steps" in reply(d)
    (note,) = only(d, InternalNote)
    assert "wrong ticket resolution" in note.body
    # Customer text is escaped in everything Tierup writes.
    assert "&lt;b&gt;we lose&lt;/b&gt;" in note.body and "<b>we lose" not in note.body
    # Lead review shows the due date on confirm, not before.
    assert not only(d, SetDue)


def test_lr5_priority_never_lowered(policy: Policy) -> None:
    d = decide(policy, None, request(ticket=ticket(priority=Priority.URGENT)), NOW)
    assert not only(d, SetPriority)


def test_lr6_lead_cancels_with_feedback(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    feedback = "Resolution was correct; see KB-12 <script>"
    d = decide(policy, escalated, command(Command.CANCEL, escalated, feedback=feedback), NOW)
    assert d.state is State.CANCELLED
    assert d.rule == "LR6"
    assert d.actions[:3] == (
        AddTags(("escalation_cancelled",)),
        RemoveTags(("escalated",)),
        AssignGroup("Support"),  # back to the group it had before
    )
    assert "Resolution was correct; see KB-12 &lt;script&gt;" in reply(d)


def test_lr6_a_cancel_without_feedback_sends_no_empty_feedback_line(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    d = decide(policy, escalated, command(Command.CANCEL, escalated), NOW)
    assert d.state is State.CANCELLED and "does not qualify" in reply(d)
    assert "Feedback:" not in reply(d)


def test_lr7_confirm_sets_first_contact_two_business_days(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    d = decide(policy, escalated, command(Command.CONFIRM, escalated), NOW + timedelta(hours=2))
    assert d.state is State.CONFIRMED
    assert d.rule == "LR7"
    # Tue 10 Mar 2026 11:00 Warsaw + 16 working hours (09-17) = Thu 12 Mar 11:00 Warsaw.
    due = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert d.escalation.first_contact_due == due
    assert SetDue(due) in d.actions
    assert "Thu 12 Mar 2026 11:00 CET" in reply(d)
    assert AddTags(("escalation_confirmed",)) in d.actions
    assert not any(isinstance(a, RemoveTags) and "escalated" in a.tags for a in d.actions)


def test_lr7_due_uses_the_region_calendar(policy: Policy) -> None:
    snap = ticket(organisation=Organisation(id="1", region="AU"))
    # Friday 13 March 2026 16:00 Sydney: 1 hour left that day, then Mon + Tue.
    friday = datetime(2026, 3, 13, 5, 0, tzinfo=UTC)
    escalated = decide(policy, None, request(ticket=snap, received_at=friday), friday).escalation
    d = decide(policy, escalated, command(Command.CONFIRM, escalated), friday)
    assert d.escalation.first_contact_due == datetime(2026, 3, 17, 5, 0, tzinfo=UTC)  # Tue 16:00 AEDT


def test_lr8_business_urgency_is_not_an_escalation(policy: Policy) -> None:
    d = decide(policy, None, request(reason=Reason.BUSINESS_URGENCY), NOW)
    assert d.state is State.URGENCY_REQUESTED
    assert d.rule == "LR8"
    assert d.actions[0] == AddTags(("urgency_requested",))
    assert only(d, InternalNote)
    assert not only(d, AssignGroup) and not only(d, PublicReply)
    assert d.escalation.group is None


def test_sh3_sla_breach_escalates_without_anyone_asking(policy: Policy) -> None:
    breach = request(channel=Channel.SLA_BREACH, reason=Reason.SLA_VIOLATION, requested_by=STRANGER, rationale=None)
    d = decide(policy, None, breach, NOW)
    assert d.state is State.ESCALATED
    assert d.rule == "SH3"
    assert d.actions[0] == AddTags(("escalated", "sla_breached"))
    assert not only(d, PublicReply)
    # The same breach seen again (sweep and push) does not escalate twice.
    again = decide(policy, d.escalation, replace(breach, ticket=ticket(tags=frozenset({"escalated", "sla_breached"}))),
                   NOW)  # fmt: skip
    assert again.state is State.ESCALATED and again.actions == ()


def test_sh4_missed_first_contact_goes_one_level_up_once(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    confirmed = decide(policy, escalated, command(Command.CONFIRM, escalated), NOW).escalation
    late = confirmed.first_contact_due + timedelta(minutes=1)  # type: ignore[operator]
    d = decide(policy, confirmed, command(Command.DEADLINE_MISSED, confirmed, received_at=late), late)
    assert d.state is State.LEVEL_2
    assert d.rule == "SH4"
    assert d.escalation.level == 2
    assert AssignGroup("Technical Support Management") in d.actions
    assert AddTags(("escalation_level_2",)) in d.actions
    again = decide(policy, d.escalation, command(Command.DEADLINE_MISSED, d.escalation, received_at=late), late)
    assert again.state is State.LEVEL_2 and again.actions == () and again.escalation.level == 2


def test_sh4_contact_kept_means_no_level_up(policy: Policy) -> None:
    escalated = decide(policy, None, request(), NOW).escalation
    contacted = decide(policy, escalated, command(Command.CONTACT, escalated), NOW).escalation
    late = NOW + timedelta(days=10)
    d = decide(policy, contacted, command(Command.DEADLINE_MISSED, contacted, received_at=late), late)
    assert d.state is State.ESCALATED and d.actions == ()


@pytest.mark.parametrize(
    ("region", "start", "due"),
    [
        # Tue 10 Nov 2026 16:00 Warsaw; Wed 11 Nov is Independence Day (PL): Thu, then Fri 16:00.
        (None, datetime(2026, 11, 10, 15, 0, tzinfo=UTC), datetime(2026, 11, 13, 15, 0, tzinfo=UTC)),
        # Fri 2 Oct 2026 16:00 Sydney; Mon 5 Oct is Labour Day in NSW (not Australia-wide): Wed 16:00 AEDT.
        ("AU", datetime(2026, 10, 2, 6, 0, tzinfo=UTC), datetime(2026, 10, 7, 5, 0, tzinfo=UTC)),
        # Fri 13 Mar 2026 09:00 Auckland (NZDT, UTC+13), still 07:00 in Sydney: two whole days, Mon 17:00 Auckland.
        ("NZ", datetime(2026, 3, 12, 20, 0, tzinfo=UTC), datetime(2026, 3, 16, 4, 0, tzinfo=UTC)),
    ],
    ids=["PL holiday", "NSW Labour Day", "Auckland hours"],
)
def test_lr7_each_region_s_calendar_keeps_its_own_holidays_and_hours(
    policy: Policy, region: str | None, start: datetime, due: datetime
) -> None:
    assert policy.calendar_for(region).add_business_time(start, policy.first_contact_within) == due
