"""What an escalation email says besides the ticket it names: the reason and the preferred contact (SD3, SD4)."""

from __future__ import annotations

import pytest

from integration.model import Reason
from integration.references import find_preferred_contact, find_reason


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        # A "Reason:" line wins over the words around it, by value, label or the label's first words.
        ("Escalation #4016", "Nobody has answered.\nReason: wrong resolution", Reason.WRONG_RESOLUTION),
        ("Escalation #4016", "> Escalation reason - SLA violation", Reason.SLA_VIOLATION),
        ("Escalation #4016", "Reason: priority inadequately qualified", Reason.PRIORITY_MISCLASSIFIED),
        ("Escalation #4016", "Reason: business_urgency", Reason.BUSINESS_URGENCY),
        # Otherwise the words, the most specific reason first.
        ("Escalation #4016", "The agent was rude to our staff and nobody has answered since.", Reason.AGENT_CONDUCT),
        ("Ticket 4016 is misclassified", "It stops all check-ins.", Reason.PRIORITY_MISCLASSIFIED),
        ("Escalation #4016", "The fix you sent didn't work, still broken.", Reason.WRONG_RESOLUTION),
        ("Escalation #4016", "Hello, nobody has answered us for days.", Reason.SLA_VIOLATION),
        ("Re: ticket 4016 - no response", None, Reason.SLA_VIOLATION),
        # Urgency is never guessed (LR8 is not an escalation), and silence is None: the policy asks why.
        ("URGENT: ticket 4016", "This is urgent for our business.", None),
        ("Escalation #4016", "Please escalate.", None),
        ("Escalation #4016", "Reason: because", None),
        # A bold label, as Jira's wiki markup of an email or Markdown writes it.
        ("Escalation SUP-7", "*Reason:* wrong resolution", Reason.WRONG_RESOLUTION),
        ("Escalation SUP-7", "**Reason**: SLA violation", Reason.SLA_VIOLATION),
        # A reason's name, then why.
        ("Escalation #4016", "Reason: business urgency - our clinic reopens Monday", Reason.BUSINESS_URGENCY),
        # What the sender says it is not about is not the reason.
        ("Escalation #4016", "Not about the response time: the update did not fix it.", Reason.WRONG_RESOLUTION),
        ("Escalation #4016", "Your agent was helpful and not rude at all, but it still fails.", None),
        ("Escalation #4016", "It has nothing to do with the SLA. Please escalate.", None),
    ],
)
def test_the_reason_an_email_gives(subject: str, body: str | None, expected: Reason | None) -> None:
    assert find_reason(subject, body) is expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Hello\nPreferred contact: phone +44 161 496 0000\nPat", "phone +44 161 496 0000"),
        ("Preferred method of contact - email to pat@club.example", "email to pat@club.example"),
        ("Our preferred contact method is a call after 2pm.", "a call after 2pm."),
        ("Please call me on 0161 496 0000", None),  # only a line that says it is the preferred contact
        ("Preferred contact:", None),
        ("Preferred contact: " + "x" * 500, "x" * 200),  # kept short: it is shown in notes and on the dashboard
        # A bold label, as Jira's wiki markup of an email or Markdown writes it.
        ("*Preferred contact:* phone +44 161 496 0000", "phone +44 161 496 0000"),
        ("**Preferred contact**: phone +44 161 496 0000", "phone +44 161 496 0000"),
        ("_Preferred contact_ - email", "email"),
    ],
)
def test_the_preferred_contact_an_email_gives(body: str, expected: str | None) -> None:
    assert find_preferred_contact(body) == expected
