"""The email channel on Jira Service Management (SD3, SD4, SD8): an email to the service desk, end to end.

JSM turns an email to the escalation address into a request of the type JIRA_ESCALATION_REQUEST_TYPE
(its `customfield_10010` request-type field, as in issue_created__escalation_email_no_ticket.json).
Each test signs that `jira:issue_created` delivery, posts it to the real Flask receiver, lets the
worker run it through the parser, the service-desk policy and the real `jira` client (answered by
`responses`), and checks the exact bodies Jira receives and the calls it took.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from adapters.jira.wiki import html_to_wiki
from integration.cli.ops import Runtime
from integration.model import InternalNote, LinkRole, LinkTicket, Platform, PublicReply, State, Transition
from integration.store import DeliveryStatus
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock
from tests.jira.conftest import ENV, NOW, SITE, Site, fixture, sign

TICKET = "SUP-7"  # the issue the email names: reported by Pat Champion, first-response SLA breached
REQUEST = "SUP-13"  # the email's own request
WEBHOOK_ID = "8d1f-email-1"
INTERNAL = {"key": "sd.public.comment", "value": {"internal": True}}
LINKED_REPLY = (
    "Thank you for your escalation request. We have added it to ticket SUP\\-7 and will reply to you there; this "
    "request is now closed so that the whole conversation stays in one place."
)
SD8_REPLY = (
    "Please provide the number of the existing ticket you would like to escalate before we take any further action. "
    "The escalation service is not for logging new queries or urgent tickets: please raise those with the Service "
    "Desk as usual."
)
LINK = {"type": {"name": "Relates"}, "inwardIssue": {"key": REQUEST}, "outwardIssue": {"key": TICKET}}
RESOLVE = {"transition": {"id": "761"}, "fields": {"resolution": {"name": "Done"}}}


def jsm_transitions() -> Any:
    """GET transitions?expand=transitions.fields of a JSM request: into a Done status, with a resolution to give."""
    answer = fixture("rest_api2_issue_transitions.json")
    respond = answer["transitions"][0]
    resolve = copy.deepcopy(respond)
    resolve.update(id="761", name="Resolve this issue", hasScreen=True)
    resolve["to"].update(name="Resolved", id="10005", self=f"{SITE}/rest/api/2/status/10005")
    resolve["to"]["statusCategory"] = {"self": f"{SITE}/rest/api/2/statuscategory/3", "id": 3, "key": "done",
                                       "colorName": "green", "name": "Done"}  # fmt: skip
    resolve["fields"] = {
        "resolution": {
            "required": True,
            "schema": {"type": "resolution", "system": "resolution"},
            "name": "Resolution",
            "key": "resolution",
            "operations": ["set"],
            "allowedValues": [
                {"self": f"{SITE}/rest/api/2/resolution/10000", "id": "10000", "name": "Done"},
                {"self": f"{SITE}/rest/api/2/resolution/10001", "id": "10001", "name": "Won't Do"},
            ],
        }
    }
    respond["fields"] = {}
    answer["expand"] = "transitions"
    answer["transitions"] = [respond, resolve]
    return answer


@pytest.fixture
def site() -> Iterator[Site]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_cloud.json"))
        yield Site(rsps)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def make_runtime(new_runtime: NewRuntime, clock: Clock) -> Any:
    def make(**env: str) -> Runtime:
        return new_runtime({**ENV, "TIERUP_POLICY": "service-desk", **env}, clock=clock)

    return make


@pytest.fixture
def runtime(make_runtime: Any) -> Runtime:
    return make_runtime()  # type: ignore[no-any-return]


def email(summary: str, description: str | None, **reporter: str) -> Any:
    """The `jira:issue_created` of the email's request SUP-13, with its summary and body (and another sender)."""
    payload = fixture("issue_created__escalation_email_no_ticket.json")
    fields = payload["issue"]["fields"]
    fields["summary"], fields["description"] = summary, description
    for who in (fields["reporter"], fields["creator"], payload["user"]):
        who.update(reporter)
    return payload


def deliver(runtime: Runtime, payload: Any, delivery_id: str = WEBHOOK_ID) -> int:
    """POST the delivery signed as Jira does, then let the worker run everything queued; the HTTP status."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery_id,
               "X-Hub-Signature": sign(body)}  # fmt: skip
    client: FlaskClient = runtime.create_app().test_client()
    status = client.post("/webhooks/jira", data=body, headers=headers).status_code
    runtime.tasks.run_pending()
    return status


def ticket_answers(site: Site) -> None:
    """SUP-7 exists (read once, no webhook hint) and takes one transition's writes."""
    site.rsps.get(site.api(f"issue/{TICKET}"), json=fixture("rest_api2_issue_get_jsm_sla_breached.json"))
    site.writes(TICKET)


def request_answers(site: Site) -> None:
    """The email's request takes the link, its reply (and the reply's marker), and the move to Resolved."""
    site.writes(REQUEST, transitions=False)
    site.rsps.post(site.api("issueLink"), status=201)
    site.rsps.get(site.api(f"issue/{REQUEST}/transitions"), json=jsm_transitions())
    site.rsps.post(site.api(f"issue/{REQUEST}/transitions"), status=204)


def last_transition(runtime: Runtime, ref: str) -> Transition:
    escalation = runtime.escalations.load(Platform.JIRA, ref)
    assert escalation is not None
    return escalation.history[-1]


def body_of(transition: Transition, kind: type[PublicReply] | type[InternalNote]) -> str:
    (found,) = [a.body for a in transition.actions if isinstance(a, kind)]
    return found


def assert_escalated_and_carried_over(site: Site, runtime: Runtime, delivery_id: str = WEBHOOK_ID) -> Transition:
    """SUP-7 escalated by SD5 (exact edit, comments, transition); SUP-13 linked, answered and resolved."""
    done = last_transition(runtime, TICKET)
    assert (done.rule, done.to_state) == ("SD5", State.ESCALATED)
    assert LinkTicket(REQUEST, LinkRole.ESCALATED) in done.actions
    key = f"{delivery_id}:1"
    assert site.sent("PUT", f"/issue/{TICKET}") == [
        {
            "update": {"labels": [{"add": "escalated"}]},
            "fields": {
                "customfield_10105": {"name": "Service Desk Managers"},
                "customfield_10106": "2026-03-10T11:00:00.000+0000",  # SD10: one business hour
            },
        }
    ]
    assert site.sent("POST", f"/request/{TICKET}/comment") == [
        {"body": html_to_wiki(body_of(done, PublicReply)), "public": True}
    ]
    assert site.sent("POST", f"/issue/{TICKET}/comment") == [
        {
            "body": html_to_wiki(body_of(done, InternalNote)),
            "properties": [{"key": "tierup.key", "value": {"transition": key, "part": 1}}, INTERNAL],
        }
    ]
    assert site.sent("POST", f"/issue/{TICKET}/transitions") == [{"transition": {"id": "41"}}]
    # The request: one link (shown on both issues), the public reply, then Resolved with a resolution.
    assert site.sent("POST", "/issueLink") == [LINK]
    assert site.sent("POST", f"/request/{REQUEST}/comment") == [{"body": LINKED_REPLY, "public": True}]
    assert site.sent("PUT", "/comment/10101/properties/tierup.key") == [
        {"transition": key, "part": 0},
        {"transition": f"{key}:request", "part": 0},
    ]
    assert site.query("GET", f"/issue/{REQUEST}/transitions") == {"expand": ["transitions.fields"]}
    assert site.sent("POST", f"/issue/{REQUEST}/transitions") == [RESOLVE]
    assert site.sent("PUT", f"/issue/{REQUEST}") == []
    return done


# --- a key in the summary, in the description ------------------------------------------------------------------


def test_a_key_in_the_summary_escalates_that_issue_links_both_and_resolves_the_email(
    runtime: Runtime, site: Site
) -> None:
    ticket_answers(site)
    request_answers(site)
    payload = email(
        "Escalation: SUP-7 has had no response",
        "Hello, nobody has answered us for days and members cannot check in.\n"
        "Preferred contact: phone +48 555 0100\nRegards, Pat",
    )
    payload["issue"]["fields"]["customfield_10102"] = None  # an email has no contact field: its body says it (SD4)
    assert deliver(runtime, payload) == 202

    (stored,) = runtime.inbox.recent()
    assert (stored.status, stored.kind, stored.ticket_ref) == (DeliveryStatus.PROCESSED, "jira:issue_created", REQUEST)
    escalation = runtime.escalations.load(Platform.JIRA, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
    assert escalation.reason is not None and escalation.reason.value == "sla_violation"  # the SLA is breached: no SD1
    assert escalation.preferred_contact == "phone +48 555 0100"
    assert escalation.requested_by is not None and escalation.requested_by.email == "champ@club.example"
    done = assert_escalated_and_carried_over(site, runtime)
    assert "by your preferred method (phone \\+48 555 0100) first" in html_to_wiki(body_of(done, PublicReply))

    counts = site.count()
    # Reads: SUP-7 (no hint in an email), the two workflows; comments: SUP-7's reply and note, the request's reply.
    assert (counts.reads, counts.edits, counts.comments) == (3, 1, 3)
    assert counts.other == [
        "PUT /rest/api/2/comment/10101/properties/tierup.key",
        f"POST /rest/api/2/issue/{TICKET}/transitions",
        "POST /rest/api/2/issueLink",
        "PUT /rest/api/2/comment/10101/properties/tierup.key",
        f"POST /rest/api/2/issue/{REQUEST}/transitions",
    ]


def test_a_key_in_the_description_is_found_there(runtime: Runtime, site: Site) -> None:
    ticket_answers(site)
    request_answers(site)
    assert deliver(runtime, email("Escalation", "Please escalate SUP-7: the fix did not work.")) == 202
    done = assert_escalated_and_carried_over(site, runtime)
    assert "wrong ticket resolution" in body_of(done, InternalNote)


def test_a_key_shaped_word_of_another_project_is_not_the_ticket(runtime: Runtime, site: Site) -> None:
    ticket_answers(site)
    request_answers(site)
    body = "Since the UTF-8 change in ISO-9001 audit mode the fix did not work. Please escalate SUP-7."
    assert deliver(runtime, email("Escalation", body)) == 202
    assert_escalated_and_carried_over(site, runtime)  # SUP-7, a JIRA_PROJECTS key, not UTF-8


def test_the_request_type_may_be_given_by_its_id(make_runtime: Any, site: Site) -> None:
    runtime = make_runtime(JIRA_ESCALATION_REQUEST_TYPE="31")
    ticket_answers(site)
    request_answers(site)
    assert deliver(runtime, email("Escalate SUP-7", "Nobody has answered.")) == 202
    assert_escalated_and_carried_over(site, runtime)


def test_other_request_types_are_left_alone(runtime: Runtime, site: Site) -> None:
    assert deliver(runtime, fixture("issue_created__other_request_type.json")) == 202
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.IGNORED and "Get IT help" in (stored.last_error or "")
    assert site.calls() == []


# --- no key, an unknown one, a sender who is not on the issue: SD8 on the email's own request ---------------------


def assert_only_the_sd8_reply(site: Site) -> None:
    """The one write: the SD8 reply on the request, which stays open (no link, no transition, no edit)."""
    assert site.sent("POST", f"/request/{REQUEST}/comment") == [{"body": SD8_REPLY, "public": True}]
    writes = [(m, p) for m, p in site.calls() if m != "GET"]
    assert writes == [
        ("POST", f"/rest/servicedeskapi/request/{REQUEST}/comment"),
        ("PUT", "/rest/api/2/comment/10101/properties/tierup.key"),
    ]


def test_no_key_asks_for_it_and_leaves_the_email_open(runtime: Runtime, site: Site) -> None:
    site.writes(REQUEST, transitions=False)
    assert deliver(runtime, fixture("issue_created__escalation_email_no_ticket.json")) == 202
    assert_only_the_sd8_reply(site)
    assert [c for c in site.calls() if c[0] == "GET"] == []
    done = last_transition(runtime, REQUEST)
    assert (done.rule, done.to_state, done.why) == ("SD8", State.NEEDS_INFO, "no existing ticket number")


def comment_on_the_request(runtime: Runtime, site: Site, whole_issue: bool, body: str, author: Any) -> None:
    """SD8 asked the email's sender for the number; then a comment on the request SUP-13 arrives.

    Cloud's comment_created carries a trimmed issue (no request type, no reporter); a payload
    with the whole issue (Data Center's issue_commented) shows it is an escalation request.
    SUP-7 answers as readable and writable, so it could be escalated.
    """
    site.writes(REQUEST, transitions=False)
    first = fixture("issue_created__escalation_email_no_ticket.json")
    assert deliver(runtime, first) == 202
    site.rsps.calls.reset()
    ticket_answers(site)
    request_answers(site)
    reply = fixture("comment_created__rationale.json")
    if whole_issue:
        reply["issue"] = first["issue"]
    else:
        reply["issue"]["key"] = REQUEST
    reply["comment"]["body"] = body
    reply["comment"]["author"] = author if author is not None else first["issue"]["fields"]["reporter"]
    assert deliver(runtime, reply, "wh-reply") == 202


@pytest.mark.parametrize("whole_issue", [False, True])
def test_the_senders_answer_with_the_key_escalates_that_issue_not_the_request(
    runtime: Runtime, site: Site, whole_issue: bool
) -> None:
    # The sender (the request's reporter) answers with the key.
    comment_on_the_request(
        runtime, site, whole_issue, "Sorry, the ticket is SUP-7: members still cannot check in.", None
    )

    escalation = runtime.escalations.load(Platform.JIRA, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED  # SUP-7, the issue it names
    assert escalation.requested_by is not None and escalation.requested_by.email == "champ@club.example"
    request = runtime.escalations.load(Platform.JIRA, REQUEST)
    assert request is None or request.state is not State.ESCALATED  # never the request itself
    calls = site.calls()
    assert ("POST", "/rest/api/2/issueLink") in calls  # the request is linked to SUP-7 ...
    assert ("POST", f"/rest/api/2/issue/{REQUEST}/transitions") in calls  # ... and resolved
    assert not [c for c in calls if c == ("PUT", f"/rest/api/2/issue/{REQUEST}")]  # and never edited as escalated


@pytest.mark.parametrize("whole_issue", [False, True])
def test_someone_elses_comment_on_the_request_escalates_nothing(
    runtime: Runtime, site: Site, whole_issue: bool
) -> None:
    # On the trimmed payload the parser cannot tell who the request's sender is: the service compares
    # the comment's author with it.
    agent = {"accountId": "557058:agent-0001", "displayName": "An Agent"}
    comment_on_the_request(
        runtime, site, whole_issue, "Hi Pat, is this about SUP-7? Please confirm the ticket number.", agent
    )
    assert runtime.escalations.load(Platform.JIRA, TICKET) is None
    assert {d.status for d in runtime.inbox.recent()} <= {DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED}
    assert [c for c in site.calls() if c[0] != "GET"] == []


def test_an_unknown_key_is_answered_like_none(runtime: Runtime, site: Site) -> None:
    site.writes(REQUEST, transitions=False)
    site.rsps.get(site.api("issue/SUP-999"), status=404,
                  json={"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                        "errors": {}})  # fmt: skip
    assert deliver(runtime, email("Escalate SUP-999", "The fix did not work.")) == 202
    assert_only_the_sd8_reply(site)
    assert [c for c in site.calls() if c[0] == "GET"] == [("GET", "/rest/api/2/issue/SUP-999")]
    assert last_transition(runtime, "SUP-999").why == "ticket SUP-999 does not exist"


def test_a_sender_who_is_not_on_the_issue_gets_the_same_answer_and_the_issue_is_untouched(
    runtime: Runtime, site: Site
) -> None:
    site.writes(REQUEST, transitions=False)
    site.rsps.get(site.api(f"issue/{TICKET}"), json=fixture("rest_api2_issue_get_jsm_sla_breached.json"))
    stranger = {"accountId": "557058:f1c2d3e4-0000-4000-8000-stranger0001", "emailAddress": "sam@elsewhere.example",
                "displayName": "Sam Stranger"}  # fmt: skip
    assert deliver(runtime, email("Escalate SUP-7", "The fix did not work.", **stranger)) == 202

    assert_only_the_sd8_reply(site)  # SUP-7 was read to see who is on it, and not written
    assert [c for c in site.calls() if c[0] == "GET"] == [("GET", f"/rest/api/2/issue/{TICKET}")]
    assert runtime.escalations.load(Platform.JIRA, TICKET) is None
    assert last_transition(runtime, REQUEST).rule == "SD8"


def test_the_same_jira_user_counts_when_the_email_address_is_hidden(runtime: Runtime, site: Site) -> None:
    # Jira Cloud leaves emailAddress out under its profile-visibility settings: the account id matches.
    ticket_answers(site)
    request_answers(site)
    payload = email("Escalate SUP-7", "The fix did not work.")
    for who in (payload["issue"]["fields"]["reporter"], payload["user"]):
        del who["emailAddress"]
    assert deliver(runtime, payload) == 202
    assert_escalated_and_carried_over(site, runtime)


def test_a_request_participant_of_the_issue_may_escalate_it(make_runtime: Any, site: Site) -> None:
    # JSM's Request participants are the request's CCs; Jira Cloud hides this one's e-mail address.
    runtime = make_runtime(JIRA_FIELD_PARTICIPANTS="customfield_10027")
    ticket_answers(site)
    request_answers(site)
    participant = {"accountId": "557058:f1c2d3e4-0000-4000-8000-particip0001", "displayName": "Robin Participant"}
    payload = email("Escalate SUP-7", "The fix did not work.", **participant)
    for who in (payload["issue"]["fields"]["reporter"], payload["user"]):
        who.pop("emailAddress", None)
    assert deliver(runtime, payload) == 202
    done = assert_escalated_and_carried_over(site, runtime)
    escalation = runtime.escalations.load(Platform.JIRA, TICKET)
    assert escalation is not None and escalation.requested_by is not None
    assert escalation.requested_by.id == participant["accountId"] and done.rule == "SD5"


def test_without_the_participants_field_a_participant_gets_the_sd8_answer(runtime: Runtime, site: Site) -> None:
    site.writes(REQUEST, transitions=False)
    site.rsps.get(site.api(f"issue/{TICKET}"), json=fixture("rest_api2_issue_get_jsm_sla_breached.json"))
    participant = {"accountId": "557058:f1c2d3e4-0000-4000-8000-particip0001", "displayName": "Robin Participant"}
    payload = email("Escalate SUP-7", "The fix did not work.", **participant)
    for who in (payload["issue"]["fields"]["reporter"], payload["user"]):
        who.pop("emailAddress", None)
    assert deliver(runtime, payload) == 202
    assert_only_the_sd8_reply(site)
    assert runtime.escalations.load(Platform.JIRA, TICKET) is None


# --- a retry after the escalation landed ---------------------------------------------------------------------------


def test_a_retry_links_and_comments_only_once(runtime: Runtime, site: Site, clock: Clock) -> None:
    ticket_answers(site)
    request_answers(site)
    # The request's reply fails once (503): by then SUP-7 is escalated and the two are linked.
    comment_url = site.sd(f"request/{REQUEST}/comment")
    site.rsps.replace(responses.POST, comment_url, status=503, headers={"Retry-After": "20"},
                      json={"errorMessage": "Service unavailable"})  # fmt: skip
    site.rsps.post(comment_url, status=201, json=fixture("servicedeskapi_request_comment_added.json"))
    assert deliver(runtime, email("Escalate SUP-7", "The fix did not work.")) == 202
    (stored,) = runtime.inbox.recent()
    assert stored.status is DeliveryStatus.RETRYING
    assert site.sent("POST", "/issueLink") == [LINK]

    # What the retry reads: SUP-7's comments carry both parts of the transition; SUP-13 is linked to SUP-7.
    comments = fixture("rest_api2_issue_comments_with_properties.json")
    for part, comment in enumerate(comments["comments"]):
        comment["properties"] = [{"key": "tierup.key", "value": {"transition": f"{WEBHOOK_ID}:1", "part": part}}]
    site.rsps.get(site.api(f"issue/{TICKET}/comment"), json=comments)
    site.rsps.get(site.api(f"issue/{REQUEST}/comment"), json={"startAt": 0, "maxResults": 50, "total": 0,
                                                              "comments": []})  # fmt: skip
    linked = fixture("rest_api2_issue_get_jsm_sla_breached.json")
    linked.update(key=REQUEST)
    linked["fields"]["issuelinks"] = [
        {"id": "10300", "type": {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
         "outwardIssue": {"id": "10070", "key": TICKET}}
    ]  # fmt: skip
    site.rsps.get(site.api(f"issue/{REQUEST}"), json=linked)
    site.rsps.calls.reset()
    clock.advance(seconds=21)
    runtime.worker.process(stored.id)

    after = runtime.inbox.get(stored.id)
    assert after is not None and after.status is DeliveryStatus.PROCESSED
    assert site.sent("POST", "/issueLink") == []  # already linked
    assert site.sent("POST", f"/issue/{TICKET}/comment") == [] and site.sent("POST", f"/request/{TICKET}/comment") == []
    assert site.sent("POST", f"/request/{REQUEST}/comment") == [{"body": LINKED_REPLY, "public": True}]
    assert site.sent("POST", f"/issue/{REQUEST}/transitions") == [RESOLVE]
    assert site.query("GET", f"/issue/{REQUEST}") == {"fields": ["issuelinks"]}
    escalation = runtime.escalations.load(Platform.JIRA, TICKET)
    assert escalation is not None and escalation.state is State.ESCALATED
