"""The email channel on Zendesk (SD3, SD4, SD8): an email to the escalation address, end to end.

An email to ZENDESK_ESCALATION_ADDRESS becomes a ticket of its own; the trigger install creates
("Tierup: escalation email") posts Tierup's trigger body with `"channel": "email"`, rendered as
Zendesk renders it (trigger_escalation_requested_by_email.json). Each test signs that body, posts
it to the real Flask receiver, lets the worker run it through the parser, the service-desk policy
and the real zenpy client (answered by `responses`), and checks the exact PUT bodies and the
number of reads and writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from adapters.zendesk.gateway import html_to_text
from integration.cli.ops import Runtime
from integration.model import InternalNote, LinkRole, LinkTicket, Platform, PublicReply, SetDue, State, Transition
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock
from tests.zendesk.helpers import (
    BOT_ID,
    DUE_FIELD,
    GROUP_IDS,
    NOTE_FIELD,
    NOW,
    STAMP,
    FakeZendesk,
    changed,
    env,
    fixture,
    signed_headers,
)

ADDRESS = "support-escalation@acme.example"
TICKET = "4016"  # the ticket the email names (api_ticket_show_with_sideloads.json): requester Pat Champion
REQUEST = "4101"  # the email's own ticket
CHAMPION = {"id": "6130907993114", "email": "champ@club.example", "name": "Pat Champion"}
MANAGERS = GROUP_IDS["Service Desk Managers"]
INVOCATION = "01HQEMAIL000000000000000001"
LINKED_REPLY = (
    "<p>Thank you for your escalation request. We have added it to ticket 4016 and will reply to you there; this "
    "request is now closed so that the whole conversation stays in one place.</p>"
)
REQUEST_NOTE = "Escalation request for ticket #4016: https://acme.zendesk.com/agent/tickets/4016 (the escalation is "
REQUEST_NOTE += "handled there)."
TICKET_NOTE = "Escalation requested in ticket #4101: https://acme.zendesk.com/agent/tickets/4101 (the request, now "
TICKET_NOTE += "solved)."
SD8_REPLY = "Please provide the number of the existing ticket you would like to escalate"


@pytest.fixture
def api() -> Iterator[FakeZendesk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeZendesk(mock)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def runtime(new_runtime: NewRuntime, clock: Clock) -> Runtime:
    return new_runtime({**env(ZENDESK_ESCALATION_ADDRESS=ADDRESS), "TIERUP_POLICY": "service-desk"}, clock=clock)


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return runtime.create_app().test_client()


def email(subject: str, description: str, sender: dict[str, str] | None = None, **changes: Any) -> Any:
    """The email trigger's body for ticket 4101: the email's subject and text; its sender is the requester."""
    who = sender or CHAMPION
    people = {f"{role}__{k}": v for role in ("requester", "current_user") for k, v in who.items()}
    return changed(
        fixture("trigger_escalation_requested_by_email.json"),
        ticket__subject=subject,
        ticket__description=description,
        **people,
        **changes,
    )


def deliver(client: FlaskClient, runtime: Runtime, payload: Any, invocation: str = INVOCATION) -> int:
    """POST the body signed as Zendesk does, then let the worker run everything queued; the HTTP status."""
    body = json.dumps(payload).encode("utf-8")
    headers = {**signed_headers(body, timestamp=NOW.strftime("%Y-%m-%dT%H:%M:%SZ")),
               "X-Zendesk-Webhook-Invocation-Id": invocation}  # fmt: skip
    status = client.post("/webhooks/zendesk", data=body, headers=headers).status_code
    runtime.tasks.run_pending()
    return status


def last_transition(runtime: Runtime, ref: str) -> Transition:
    escalation = runtime.escalations.load(Platform.ZENDESK, ref)
    assert escalation is not None
    return escalation.history[-1]


def one(transition: Transition, kind: type[Any]) -> Any:
    (found,) = [a for a in transition.actions if isinstance(a, kind)]
    return found


def request_put(key: str) -> dict[str, Any]:
    """The one PUT on the email's own ticket: tagged, noted with the other ticket's URL, answered and solved."""
    return {
        "ticket": {
            "id": int(REQUEST),
            "additional_tags": ["tierup_escalation_request"],
            "status": "solved",
            "comment": {"html_body": LINKED_REPLY, "public": True},
            "custom_fields": [{"id": NOTE_FIELD, "value": REQUEST_NOTE}],
            "metadata": {"tierup_key": key, "tierup_part": "main"},
        }
    }


def puts_to(api: FakeZendesk, ref: str) -> list[dict[str, Any]]:
    urls = [c.request.url for c in api.calls("PUT")]
    return [b for b, url in zip(api.put_bodies(), urls, strict=True) if f"/tickets/{ref}.json" in url]


# --- a number in the subject, in the body ----------------------------------------------------------------


def test_a_number_in_the_subject_escalates_that_ticket_links_both_and_solves_the_email(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    api.show(TICKET)
    payload = email(
        "Escalation: ticket #4016 is still not fixed",
        "Hello,\nthe fix you sent did not work: members still cannot check in.\n"
        "Preferred contact: phone +44 161 496 0000\nRegards, Pat",
    )
    assert deliver(client, runtime, payload) == 202

    (stored,) = runtime.inbox.recent()
    assert (stored.status, stored.kind, stored.ticket_ref) == (
        DeliveryStatus.PROCESSED, "tierup.escalation_requested", REQUEST,
    )  # fmt: skip
    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    assert escalation.reason is not None and escalation.reason.value == "wrong_resolution"  # read from the text
    assert escalation.preferred_contact == "phone +44 161 496 0000"  # SD4, from the body
    assert escalation.requested_by is not None and escalation.requested_by.email == "champ@club.example"
    done = last_transition(runtime, TICKET)
    assert done.rule == "SD5" and LinkTicket(REQUEST, LinkRole.ESCALATED) in done.actions
    reply, note = one(done, PublicReply).body, one(done, InternalNote).body
    assert "by your preferred method (phone +44 161 496 0000) first" in reply
    assert "Rationale: Hello," in note  # the email's body is the rationale

    # One read (the named ticket), then one PUT on each ticket: the escalation first, then the email's own.
    assert (api.reads, api.writes) == (1, 2)
    assert [c.request.url.split("?")[0] for c in api.calls("GET")] == [
        f"https://acme.zendesk.com/api/v2/tickets/{TICKET}.json"
    ]
    key = f"{INVOCATION}:1"
    assert puts_to(api, TICKET) == [
        {
            "ticket": {
                "id": int(TICKET),
                "additional_tags": ["escalated"],
                "group_id": MANAGERS,
                "comment": {"html_body": reply, "public": True},
                "custom_fields": [
                    {"id": DUE_FIELD, "value": "2026-03-10T11:00:00Z"},  # SD10: one business hour
                    {"id": NOTE_FIELD, "value": html_to_text(note + "\n<p>" + TICKET_NOTE + "</p>")},
                ],
                "metadata": {"tierup_key": key, "tierup_part": "main"},
                "safe_update": True,
                "updated_stamp": STAMP,
            }
        }
    ]
    assert puts_to(api, REQUEST) == [request_put(f"{key}:request")]
    assert one(done, SetDue).due.isoformat() == "2026-03-10T11:00:00+00:00"


def test_the_rationale_is_the_emails_own_words_not_its_signature_or_history(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    api.show(TICKET)
    body = ("The fix you sent did not work: members cannot check in.\n-- \nPat Champion | Tel 555 0100\n\n"
            "On Mon, 9 Mar 2026, Acme Support wrote:\n> We have deployed the fix.")  # fmt: skip
    assert deliver(client, runtime, email("Escalation #4016", body)) == 202
    note = one(last_transition(runtime, TICKET), InternalNote).body
    assert "Rationale: The fix you sent did not work: members cannot check in." in note
    assert "Tel 555 0100" not in note and "deployed the fix" not in note


def test_a_number_in_the_body_is_found_there(client: FlaskClient, runtime: Runtime, api: FakeZendesk) -> None:
    api.show(TICKET)
    payload = email("Please escalate", "Our ticket 4016 was closed without a fix.\nReason: wrong resolution\nPat")
    assert deliver(client, runtime, payload) == 202

    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    assert (api.reads, api.writes) == (1, 2)
    (put,) = puts_to(api, TICKET)
    assert put["ticket"]["additional_tags"] == ["escalated"] and put["ticket"]["group_id"] == MANAGERS
    assert puts_to(api, REQUEST) == [request_put(f"{INVOCATION}:1:request")]


def test_the_policy_decides_as_for_any_request_here_sd1_defers_within_sla(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    # "Nobody has answered" is about the response time while the first-reply SLA still runs: SD1.
    api.show(TICKET)
    assert deliver(client, runtime, email("Escalation #4016", "Hello, nobody has answered us for days.")) == 202

    done = last_transition(runtime, TICKET)
    assert (done.rule, done.to_state) == ("SD1", State.DEFERRED)
    (put,) = puts_to(api, TICKET)
    assert put["ticket"]["additional_tags"] == ["escalation_deferred"]
    assert "still within its service level agreement" in put["ticket"]["comment"]["html_body"]
    assert put["ticket"]["custom_fields"] == [{"id": NOTE_FIELD, "value": TICKET_NOTE}]
    # The request is carried over all the same: linked, answered, solved.
    assert puts_to(api, REQUEST) == [request_put(f"{INVOCATION}:1:request")]


# --- no number, an unknown one, a sender who is not on the ticket: SD8 on the email's own ticket -------------


def sd8_put(api: FakeZendesk) -> dict[str, Any]:
    """The only write: the SD8 reply on the email's own ticket, which stays open (no status, no tag, no note)."""
    (put,) = api.put_bodies()
    assert api.calls("PUT")[0].request.url == f"https://acme.zendesk.com/api/v2/tickets/{REQUEST}.json"
    ticket = put["ticket"]
    assert set(ticket) == {"id", "comment", "metadata"}
    assert ticket["comment"]["public"] is True and SD8_REPLY in ticket["comment"]["html_body"]
    return put


def test_no_number_asks_for_it_and_leaves_the_email_open(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    assert deliver(client, runtime, fixture("trigger_escalation_requested_by_email.json")) == 202
    assert (api.reads, api.writes) == (0, 1)
    sd8_put(api)
    assert last_transition(runtime, REQUEST).rule == "SD8"
    assert runtime.escalations.load(Platform.ZENDESK, TICKET) is None


def test_an_unknown_number_is_answered_like_none(client: FlaskClient, runtime: Runtime, api: FakeZendesk) -> None:
    assert deliver(client, runtime, email("Escalate #999999", "Please escalate, the fix did not work.")) == 202
    assert (api.reads, api.writes) == (1, 1)  # the read finds no ticket 999999
    assert "/tickets/999999.json" in api.calls("GET")[0].request.url
    sd8_put(api)
    assert last_transition(runtime, "999999").why == "ticket 999999 does not exist"


def test_a_sender_who_is_not_on_the_ticket_gets_the_same_answer_and_the_ticket_is_untouched(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    api.show(TICKET)
    stranger = {"id": "6130907993777", "email": "sam@elsewhere.example", "name": "Sam Stranger"}
    payload = email("Escalate ticket #4016", "The fix did not work.", stranger)
    assert deliver(client, runtime, payload) == 202

    assert (api.reads, api.writes) == (1, 1)  # 4016 read (to check who is on it), never written
    first = sd8_put(api)
    assert runtime.escalations.load(Platform.ZENDESK, TICKET) is None
    done = last_transition(runtime, REQUEST)
    assert (done.rule, done.to_state) == ("SD8", State.NEEDS_INFO)

    # The reply is word for word the one an unknown number gets: it tells nobody that 4016 exists.
    api.mock.calls.reset()
    assert (
        deliver(client, runtime, email("Escalate #999999", "The fix did not work."), "01HQEMAIL000000000000000002")
        == 202
    )
    (second,) = api.put_bodies()
    assert second["ticket"]["comment"] == first["ticket"]["comment"]


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ("The fix you sent did not work.", "Sorry, it is ticket #4016."),
        # The email named a ticket that does not exist: the answer's number wins, or SD8 would loop.
        ("Ticket #999999 was closed but the fix did not work.", "Sorry, wrong number: it is ticket #4016."),
    ],
)
def test_the_senders_answer_with_the_number_escalates_after_all(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk, clock: Clock, body: str, answer: str
) -> None:
    # The SD8 reply asked for the number; the sender's reply fires "Tierup: escalation email answered".
    first = email("Escalation", body)
    assert deliver(client, runtime, first) == 202
    sd8_put(api)
    api.mock.calls.reset()
    api.show(TICKET)
    clock.advance(minutes=5)
    reply = changed(first, comment=answer, ticket__updated_at="2026-03-10T10:04Z")
    assert deliver(client, runtime, reply, "01HQEMAIL000000000000000002") == 202

    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    assert (api.reads, api.writes) == (1, 2)
    assert puts_to(api, REQUEST) == [request_put("01HQEMAIL000000000000000002:1:request")]


# --- failures on the email's own ticket ---------------------------------------------------------------------


def test_when_zendesk_will_not_solve_the_unassigned_email_it_is_assigned_to_tierups_user_and_solved(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    # Zendesk never solves an unassigned ticket; without "auto-assign upon solve" it refuses (422).
    # Tierup does what that setting would: assigns the email to its own agent user and solves it.
    api.show(TICKET)
    api.put_failures = [None, (422, fixture("api_error_422_record_invalid.json"), {})]
    assert deliver(client, runtime, email("Escalation #4016", "The fix did not work.")) == 202

    assert (api.reads, api.writes) == (1, 3)
    refused, sent = puts_to(api, REQUEST)
    assert refused == request_put(f"{INVOCATION}:1:request")
    assigned = request_put(f"{INVOCATION}:1:request")
    assigned["ticket"]["assignee_id"] = int(BOT_ID)  # ZENDESK_BOT_USER_ID, stored by the installer
    assert sent == assigned
    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.PROCESSED


def test_when_zendesk_will_not_solve_the_email_at_all_the_reply_and_link_still_go(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk
) -> None:
    api.show(TICKET)
    refusal = (422, fixture("api_error_422_record_invalid.json"), {})
    api.put_failures = [None, refusal, refusal]  # assigned to Tierup's user, still refused
    assert deliver(client, runtime, email("Escalation #4016", "The fix did not work.")) == 202

    assert (api.reads, api.writes) == (1, 4)
    *_, sent = puts_to(api, REQUEST)
    without_status = request_put(f"{INVOCATION}:1:request")
    del without_status["ticket"]["status"]
    assert sent == without_status  # the reply and the link land; an agent solves it
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.PROCESSED


def test_an_outage_after_the_escalation_retries_without_writing_anything_twice(
    client: FlaskClient, runtime: Runtime, api: FakeZendesk, clock: Clock
) -> None:
    api.show(TICKET)
    api.put_failures = [None, (503, {"error": "Service Unavailable"}, {"Retry-After": "30"})]
    assert deliver(client, runtime, email("Escalation #4016", "The fix did not work.")) == 202
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.RETRYING
    assert runtime.escalations.load(Platform.ZENDESK, TICKET) is None  # recorded only once everything landed
    api.show(TICKET, ticket__tags=["gym", "tierup_reason_wrong_resolution", "escalated"])

    api.mock.calls.reset()
    clock.advance(seconds=31)
    runtime.worker.process(stored.id)

    # The retry reads 4016 again and the audits of both tickets: 4016's PUT is there, the email's is not.
    assert [c.request.url.split("?")[0].removeprefix("https://acme.zendesk.com/api/v2/") for c in api.calls("GET")] == [
        f"tickets/{TICKET}.json", f"tickets/{TICKET}/audits.json", f"tickets/{REQUEST}/audits.json",
    ]  # fmt: skip
    assert puts_to(api, TICKET) == []
    assert puts_to(api, REQUEST) == [request_put(f"{INVOCATION}:1:request")]
    stored_after = runtime.inbox.get(stored.id)
    assert stored_after is not None and stored_after.status is DeliveryStatus.PROCESSED
    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    assert escalation.requested_at is not None and clock.now - escalation.requested_at < timedelta(minutes=1)


# --- lead-review: a sender on the ticket whom the policy does not authorise (LR1) ---------------------------


def test_under_lead_review_an_unauthorised_sender_is_answered_on_the_email_and_nothing_is_linked(
    new_runtime: NewRuntime, clock: Clock, api: FakeZendesk
) -> None:
    runtime = new_runtime({**env(ZENDESK_ESCALATION_ADDRESS=ADDRESS), "TIERUP_POLICY": "lead-review"}, clock=clock)
    # Pat is 4016's requester, so on the ticket, but in this copy carries none of the tags that authorise
    # escalating (the recorded Pat is a PG Champion: see the test after this one).
    shown = fixture("api_ticket_show_with_sideloads.json")
    shown["users"][0]["tags"] = []
    api.show(TICKET, shown)
    payload = email("Escalation: ticket #4016", "The fix did not work.\nReason: wrong resolution\nPat")
    assert deliver(runtime.create_app().test_client(), runtime, payload) == 202

    done = last_transition(runtime, TICKET)
    assert (done.rule, done.to_state) == ("LR1", State.CANCELLED)
    assert (api.reads, api.writes) == (1, 2)
    (on_ticket,) = puts_to(api, TICKET)  # an internal note, and nothing else: no tag, no link, no reply
    assert set(on_ticket["ticket"]) == {"id", "comment", "metadata", "safe_update", "updated_stamp"}
    assert on_ticket["ticket"]["comment"]["public"] is False
    assert "is not authorised to escalate" in on_ticket["ticket"]["comment"]["html_body"]
    (on_email,) = puts_to(api, REQUEST)  # answered and solved, not tagged or noted as linked
    assert on_email == {
        "ticket": {
            "id": int(REQUEST),
            "status": "solved",
            "comment": {
                "html_body": "<p>Thank you for your message. We could not take it as an escalation of ticket 4016: "
                "escalations can only be raised by PG Champions and authorised club employees. Please ask one of "
                "them to escalate the ticket. This request is now closed.</p>",
                "public": True,
            },
            "metadata": {"tierup_key": f"{INVOCATION}:1:request", "tierup_part": "main"},
        }
    }


def test_under_lead_review_the_requester_who_is_a_pg_champion_escalates_by_email(
    new_runtime: NewRuntime, clock: Clock, api: FakeZendesk
) -> None:
    # The email's sender is only an address; as 4016's requester they are Zendesk's Pat, tagged pg_champion
    # (LR1). Every email escalation was cancelled as "not authorised" before.
    runtime = new_runtime({**env(ZENDESK_ESCALATION_ADDRESS=ADDRESS), "TIERUP_POLICY": "lead-review"}, clock=clock)
    api.show(TICKET)
    payload = email("Escalation: ticket #4016", "The fix did not work.\nReason: wrong resolution\nPat")
    assert deliver(runtime.create_app().test_client(), runtime, payload) == 202

    done = last_transition(runtime, TICKET)
    assert (done.rule, done.to_state) == ("LR5", State.ESCALATED)
    escalation = runtime.escalations.load(Platform.ZENDESK, TICKET)
    assert escalation is not None and escalation.requested_by is not None
    assert (escalation.requested_by.id, escalation.requested_by.tags) == ("6130907993114", frozenset({"pg_champion"}))
