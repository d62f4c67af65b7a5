"""SD8: the ticket number an escalation email names, in the subject or the body."""

from __future__ import annotations

import pytest

from integration.model import Platform
from integration.references import email_rationale, find_ticket_reference


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Escalation for #12345", "", "12345"),
        ("Please escalate", "Our ticket 4016 has waited three days.", "4016"),
        ("Re: Ticket #98765 still broken", None, "98765"),
        ("Escalation", "Request no. 555 and case: 777", "555"),
        ("Urgent!!!", "Nothing works since this morning.", None),
        ("Escalate #12 please", "see ticket 34", "12"),  # the subject wins
        ("Escalation for ticket #004016", "", "4016"),  # one ticket, one escalation record, however written
        ("Meeting at 10:30", "Call me on 0161 496 0000", None),  # bare numbers are not tickets
        ("Escalate ticket #\u0663\u0664\u0665", "", None),  # Arabic-Indic digits: no ticket is numbered so
        # Numbers that are something else: a rank, a count of days, an order, an invoice, a phone.
        ("Urgent", "This is our #1 priority. Please escalate ticket #4016.", "4016"),
        ("Escalation", "I opened a ticket 3 days ago (#4016) and nobody answered.", "4016"),
        ("Escalation", "Order #12345 is stuck, see ticket 4016.", "4016"),
        ("Escalation", "Invoice #2026-0042 was wrong; it is request no. 4016", "4016"),
        ("Escalation", "In case 2 days pass, call me. Tel: #5551234", None),
    ],
)
def test_zendesk_numbers(subject: str, body: str | None, expected: str | None) -> None:
    assert find_ticket_reference(Platform.ZENDESK, subject, body) == expected


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Escalate SUP-123", "", "SUP-123"),
        ("Please escalate", "Issue HELP-42 has been open for a week", "HELP-42"),
        ("no key here", "ticket 123", None),
        ("lowercase sup-123 is not a key", "", None),
        ("Escalate SUP-\u0663", "", None),
    ],
)
def test_jira_keys(subject: str, body: str, expected: str | None) -> None:
    assert find_ticket_reference(Platform.JIRA, subject, body) == expected


def test_the_request_ticket_itself_is_skipped() -> None:
    subject = "Re: [SUP-900] Escalation received"
    assert find_ticket_reference(Platform.JIRA, subject, "about SUP-12", exclude="SUP-900") == "SUP-12"
    assert find_ticket_reference(Platform.ZENDESK, "Re: #9001", "about #12", exclude="9001") == "12"


@pytest.mark.parametrize(
    ("text", "rationale"),
    [
        ("The fix did not work.\n-- \nPat Champion\nTel 0161 496 0000", "The fix did not work."),
        ("Still broken.\n\nOn Tue, 10 Mar 2026 at 09:00, Acme Support wrote:\n> Please try again", "Still broken."),
        ("We lose money.\n-----Original Message-----\nFrom: x", "We lose money."),
        ("> all quoted, no words of its own", "> all quoted, no words of its own"),  # kept rather than lost
        ("Members cannot check in.\n\n##- Please type your reply above this line -##\nold", "Members cannot check in."),
        ("x" * 5000, "x" * 1999 + "…"),
        (None, None),
    ],
)
def test_an_emails_rationale_is_its_own_words(text: str | None, rationale: str | None) -> None:
    assert email_rationale(text) == rationale
