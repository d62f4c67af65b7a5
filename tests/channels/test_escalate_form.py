"""The escalation form: CSRF, validation, SD8, the rate limit, inert HTML, and the worker path behind it."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from integration.cli.ops import Runtime
from integration.forms import FORM_KIND, FORM_SOURCE_HEADER, MAX_RATIONALE
from integration.model import Platform, State
from integration.store import DeliveryStatus, EscalationQueries, RateLimits
from tests.channels.conftest import MakeRuntime, csrf_of, form_fields, login, submit
from tests.channels.fakes import CC, KnownTickets
from tests.infra.fakes import SignedAdapter, request_payload, signed
from webhooks.app import ChannelSettings, WebConfig
from webhooks.escalate import CONFIRMATION, form_platform

SD8_WORDS = "Please provide the number of the existing ticket you would like to escalate"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def status_panel(html: str) -> str:
    match = re.search(r'<div class="panel" role="status">(.*?)</div>', html, re.S)
    assert match, "no confirmation panel"
    return text_of(match.group(1))


def stored(runtime: Runtime) -> int:
    return sum(runtime.inbox.counts().values())


class _Elements(HTMLParser):
    """Every start tag with its attributes, for checking the markup's structure."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


# --- the page --------------------------------------------------------------------------------


def test_the_form_is_accessible_without_javascript(client: FlaskClient) -> None:
    response = client.get("/escalate")
    html = response.get_data(as_text=True)
    tags = elements(html)

    assert response.status_code == 200
    assert ("html", {"lang": "en"}) in tags
    assert not any(tag == "script" for tag, _ in tags)
    labelled = {a["for"] for tag, a in tags if tag == "label"}
    fields = [a for tag, a in tags if tag in ("input", "textarea", "select") and a.get("type") != "hidden"]
    assert {f["id"] for f in fields} <= labelled  # every visible field has a label
    assert re.search(r"<fieldset[^>]*>\s*<legend>Reason for the escalation</legend>", html)
    radios = [a["value"] for tag, a in tags if tag == "input" and a.get("type") == "radio"]
    assert radios == ["sla_violation", "wrong_resolution", "priority_misclassified", "agent_conduct",
                      "business_urgency"]  # fmt: skip
    assert "Wrong ticket resolution" in html  # human labels, not the values
    for field in fields:
        if field["id"] != "reason-sla_violation" and field.get("type") != "radio":
            assert (field.get("aria-describedby") or "").endswith("-hint")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert 'name="viewport"' in html


def test_the_stylesheet_is_served_and_has_a_visible_focus_style(client: FlaskClient) -> None:
    css = client.get("/static/tierup/tierup.css")
    assert css.status_code == 200
    assert ":focus-visible" in css.get_data(as_text=True)


# --- CSRF ------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused_and_stores_nothing(client: FlaskClient, runtime: Runtime) -> None:
    response = submit(client, csrf=False)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert stored(runtime) == 0


def test_a_post_with_a_wrong_csrf_token_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    response = submit(client, csrf_token="x" + csrf_of(client.get("/escalate")))
    assert response.status_code == 400
    assert stored(runtime) == 0


def test_a_token_from_another_session_does_not_work(runtime: Runtime) -> None:
    app = runtime.create_app()
    theirs = csrf_of(app.test_client().get("/escalate"))
    mine = app.test_client()
    mine.get("/escalate")
    assert mine.post("/escalate", data={**form_fields(), "csrf_token": theirs}).status_code == 400
    assert stored(runtime) == 0


def test_a_post_without_a_session_cookie_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    token = csrf_of(client.get("/escalate"))
    client.delete_cookie("tierup_session")
    assert client.post("/escalate", data={**form_fields(), "csrf_token": token}).status_code == 400


@pytest.mark.parametrize(("public_url", "secure"), [
    (" https://tierup.example.com ", True), ("HTTPS://tierup.example.com", True), ("http://localhost:8080", False),
])  # fmt: skip
def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    make_runtime: MakeRuntime, public_url: str, secure: bool
) -> None:
    client = make_runtime(SignedAdapter(), TIERUP_PUBLIC_URL=public_url).create_app().test_client()
    cookie = client.get("/escalate").headers["Set-Cookie"]
    assert ("; Secure" in cookie) is secure and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie


def test_every_web_process_on_the_database_signs_sessions_alike(make_runtime: MakeRuntime, runtime: Runtime) -> None:
    # Two gunicorn workers (two apps) share the key stored in the database: a form from one posts to the other.
    first, second = runtime.create_app().test_client(), make_runtime(SignedAdapter()).create_app().test_client()
    token = csrf_of(first.get("/escalate"))
    cookie = first.get_cookie("tierup_session")
    assert cookie is not None
    second.set_cookie("tierup_session", cookie.value)
    assert second.post("/escalate", data={**form_fields(), "csrf_token": token}).status_code == 200


def test_a_configured_secret_key_signs_the_sessions(make_runtime: MakeRuntime) -> None:
    app = make_runtime(SignedAdapter(), TIERUP_SECRET_KEY="k" * 32).create_app()
    app.test_client().get("/escalate")
    assert app.secret_key == "k" * 32


# --- what a submission does ----------------------------------------------------------------------


def test_a_valid_request_is_stored_once_queued_and_escalated_by_the_worker(
    client: FlaskClient, runtime: Runtime, desk: tuple[SignedAdapter, KnownTickets]
) -> None:
    response = submit(client)

    assert response.status_code == 200
    assert status_panel(response.get_data(as_text=True)) == f"Escalation request received {CONFIRMATION}"
    [row] = runtime.inbox.recent()
    assert (row.platform, row.kind, row.ticket_ref, row.status) == (Platform.ZENDESK, FORM_KIND, "4016",
                                                                     DeliveryStatus.QUEUED)  # fmt: skip
    assert dict(row.headers)[FORM_SOURCE_HEADER] == "form"
    body = json.loads(row.body)
    assert body["email"] == "champ@club.example" and body["reason"] == "wrong_resolution"
    assert body["submitted_at"] == "2026-03-10T10:00:00+00:00"
    assert [t.args for t in runtime.tasks.huey.pending()] == [(row.id,)]

    runtime.tasks.run_pending()

    adapter, gateway = desk
    assert adapter.parsed == []  # the platform's parser never saw it
    assert runtime.inbox.get(row.id).status is DeliveryStatus.PROCESSED  # type: ignore[union-attr]
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None
    assert (escalation.state, escalation.history[-1].rule) == (State.ESCALATED, "SD5")
    assert escalation.preferred_contact == "phone +48 555 0100"
    assert escalation.first_contact_due is not None and escalation.first_contact_due.isoformat() == (
        "2026-03-10T11:00:00+00:00"
    )  # SD10: one business hour in London
    [(ref, actions, _key)] = gateway.planned
    assert ref == "4016" and any(type(a).__name__ == "PublicReply" for a in actions)


def test_a_cc_may_escalate_too(client: FlaskClient, runtime: Runtime, desk: tuple[SignedAdapter, KnownTickets]) -> None:
    assert submit(client, email=CC).status_code == 200
    runtime.tasks.run_pending()
    assert len(desk[1].planned) == 1


def test_someone_not_on_the_ticket_gets_the_same_answer_and_nothing_is_written(
    client: FlaskClient, runtime: Runtime, desk: tuple[SignedAdapter, KnownTickets]
) -> None:
    mine = submit(client)
    theirs = submit(client, email="someone@elsewhere.example")

    assert theirs.status_code == mine.status_code == 200
    assert status_panel(theirs.get_data(as_text=True)) == status_panel(mine.get_data(as_text=True))
    runtime.tasks.run_pending()
    _, gateway = desk
    assert len(gateway.planned) == 1  # the requester's request only
    statuses = sorted(r.status.value for r in runtime.inbox.recent())
    assert statuses == ["ignored", "processed"]
    ignored = runtime.inbox.recent(statuses=[DeliveryStatus.IGNORED])[0]
    assert "not on ticket 4016" in (ignored.last_error or "")


def test_a_stranger_alone_leaves_no_trace_on_the_ticket(
    client: FlaskClient, runtime: Runtime, desk: tuple[SignedAdapter, KnownTickets]
) -> None:
    submit(client, email="someone@elsewhere.example")
    runtime.tasks.run_pending()
    assert desk[1].planned == []
    assert runtime.escalations.load(Platform.ZENDESK, "4016") is None


def test_a_ticket_that_does_not_exist_gets_the_same_answer_and_an_sd8_record(
    client: FlaskClient, runtime: Runtime, desk: tuple[SignedAdapter, KnownTickets]
) -> None:
    known = submit(client)
    unknown = submit(client, ticket="99999")

    assert unknown.status_code == 200
    assert status_panel(unknown.get_data(as_text=True)) == status_panel(known.get_data(as_text=True))
    runtime.tasks.run_pending()
    _, gateway = desk
    assert [ref for ref, _, _ in gateway.planned] == ["4016"]  # nothing written for 99999
    assert "99999" in gateway.reads
    escalation = runtime.escalations.load(Platform.ZENDESK, "99999")
    assert escalation is not None
    assert (escalation.state, escalation.history[-1].rule) == (State.NEEDS_INFO, "SD8")


@pytest.mark.parametrize("ticket", ["", "   ", "new query please", "12-34", XSS])
def test_no_usable_ticket_number_is_answered_with_sd8_and_nothing_is_stored(
    client: FlaskClient, runtime: Runtime, ticket: str
) -> None:
    response = submit(client, ticket=ticket)
    html = response.get_data(as_text=True)

    assert response.status_code == 422
    assert SD8_WORDS in html
    assert "not for logging new queries" in html
    assert re.search(r'id="ticket"[^>]*aria-describedby="ticket-hint ticket-error sd8"', html)
    assert stored(runtime) == 0
    assert runtime.tasks.huey.pending_count() == 0


def test_each_wrong_field_gets_its_own_linked_message_and_keeps_what_was_typed(
    client: FlaskClient, runtime: Runtime
) -> None:
    response = submit(client, email="not-an-address", reason=None, rationale="x" * (MAX_RATIONALE + 1),
                      contact="c" * 201)  # fmt: skip
    html = response.get_data(as_text=True)

    assert response.status_code == 422
    assert "<title>Error: Case Escalation Request" in html
    for name in ("email", "rationale", "contact"):
        assert f'id="{name}-error"' in html
        assert re.search(rf'id="{name}"[^>]*aria-describedby="{name}-hint {name}-error"[^>]*aria-invalid="true"', html)
    assert re.search(r'<fieldset aria-describedby="reason-error" aria-invalid="true">', html)
    assert 'href="#reason-sla_violation"' in html  # the summary links to the first radio
    assert 'value="not-an-address"' in html
    assert 'value="4016"' in html
    assert SD8_WORDS not in html
    assert stored(runtime) == 0


def test_a_reason_the_policy_does_not_know_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    response = submit(client, reason="because")
    assert response.status_code == 422 and "Choose the reason" in response.get_data(as_text=True)
    assert stored(runtime) == 0


def test_the_rationale_is_required_when_the_policy_requires_it(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(SignedAdapter(), TIERUP_POLICY="lead-review")
    client = runtime.create_app().test_client()
    response = submit(client, rationale="")
    assert response.status_code == 422 and "Explain the business impact" in response.get_data(as_text=True)
    assert "(optional)</span></label>" in response.get_data(as_text=True)  # the contact method still is


def test_sending_the_same_page_twice_stores_one_request(client: FlaskClient, runtime: Runtime) -> None:
    page = client.get("/escalate")
    submission = re.search(r'name="submission" value="([^"]+)"', page.get_data(as_text=True))
    assert submission
    data = {**form_fields(), "csrf_token": csrf_of(page), "submission": submission.group(1)}
    first, again = client.post("/escalate", data=data), client.post("/escalate", data=data)
    assert first.status_code == again.status_code == 200
    assert stored(runtime) == 1


def test_a_page_sent_again_takes_nothing_from_the_allowance(client: FlaskClient, runtime: Runtime) -> None:
    # The page says a resend is not needed, and a refresh stores nothing new: it must not count either.
    # Five sends of one page used to use up the hour, and the sender's next, real request got a 429.
    page = client.get("/escalate")
    submission = re.search(r'name="submission" value="([^"]+)"', page.get_data(as_text=True))
    assert submission
    data = {**form_fields(), "csrf_token": csrf_of(page), "submission": submission.group(1)}
    assert [client.post("/escalate", data=data).status_code for _ in range(6)] == [200] * 6
    assert stored(runtime) == 1
    assert [submit(client, ticket=str(5120 + i)).status_code for i in range(5)] == [200] * 4 + [429]


def test_another_request_sent_from_the_same_page_is_not_taken_for_a_resend(
    client: FlaskClient, runtime: Runtime
) -> None:
    # Back to the form (its hidden id kept), another ticket typed in, sent again: a second request.
    page = client.get("/escalate")
    submission = re.search(r'name="submission" value="([^"]+)"', page.get_data(as_text=True))
    assert submission
    same_page = {"csrf_token": csrf_of(page), "submission": submission.group(1)}
    assert client.post("/escalate", data={**form_fields(), **same_page}).status_code == 200
    assert client.post("/escalate", data={**form_fields(ticket="5120"), **same_page}).status_code == 200
    rows = runtime.inbox.recent()
    assert sorted(r.ticket_ref or "" for r in rows) == ["4016", "5120"]
    assert all(r.delivery_id.startswith(submission.group(1) + ":") for r in rows)  # the page's id, traced


def test_with_the_database_down_a_person_gets_a_page_not_json(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receivers' JSON 503 ({"error": "unavailable"}) was what a person sending the form saw.
    def down(*args: object, **kwargs: object) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    login(client)
    monkeypatch.setattr(RateLimits, "acquire", down)
    response = submit(client)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.mimetype == "text/html" and "Nothing was stored" in response.get_data(as_text=True)
    monkeypatch.setattr(EscalationQueries, "find", down)
    page = client.get("/dashboard")
    assert page.status_code == 503 and page.mimetype == "text/html"


# --- HTML is inert ---------------------------------------------------------------------------------


def test_html_in_every_text_field_comes_back_inert(client: FlaskClient, runtime: Runtime) -> None:
    # The ticket and email fields never pass validation with markup in them: the form comes back.
    refused = submit(client, ticket=XSS, email=f"{XSS}@club.example").get_data(as_text=True)
    accepted = submit(client, rationale=XSS, contact=XSS).get_data(as_text=True)

    for html in (refused, accepted):
        assert "<script>" not in html and "<img src=x" not in html
    assert refused.count("&lt;script&gt;") == 2  # echoed back in the ticket and email inputs, escaped
    assert accepted.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 2  # rationale and contact


# --- the rate limit --------------------------------------------------------------------------------


def test_one_address_is_limited_to_five_requests_an_hour(client: FlaskClient, runtime: Runtime) -> None:
    for i in range(5):
        assert submit(client, environ={"REMOTE_ADDR": f"10.0.0.{i}"}).status_code == 200
    response = submit(client, environ={"REMOTE_ADDR": "10.0.0.99"})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3600"
    assert "Too many requests" in response.get_data(as_text=True)
    assert stored(runtime) == 5


def test_one_client_is_limited_whatever_address_it_gives(client: FlaskClient, runtime: Runtime) -> None:
    for i in range(5):
        assert submit(client, email=f"user{i}@club.example").status_code == 200
    assert submit(client, email="user9@club.example").status_code == 429
    assert stored(runtime) == 5


def test_an_ipv6_client_is_limited_per_64_block_whichever_address_it_uses(
    client: FlaskClient, runtime: Runtime
) -> None:
    # One host is usually given a whole /64: rotating through it is not being several clients.
    for i in range(5):
        sent = submit(client, email=f"user{i}@club.example", environ={"REMOTE_ADDR": f"2001:db8:1:2::{i + 1}"})
        assert sent.status_code == 200
    assert submit(client, email="user9@club.example", environ={"REMOTE_ADDR": "2001:db8:1:2::99"}).status_code == 429
    assert submit(client, email="user8@club.example", environ={"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 200
    assert stored(runtime) == 6


def test_the_limit_is_a_setting_and_frees_up_after_the_hour(make_runtime: MakeRuntime) -> None:
    from tests.infra.fakes import Clock

    clock = Clock()
    client = make_runtime(SignedAdapter(), clock, TIERUP_FORM_RATE_LIMIT="2").create_app().test_client()
    assert [submit(client).status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(minutes=61)
    assert submit(client).status_code == 200


def test_the_limit_holds_across_web_processes(make_runtime: MakeRuntime, runtime: Runtime) -> None:
    one, two = runtime.create_app().test_client(), make_runtime(SignedAdapter()).create_app().test_client()
    for i in range(5):
        assert submit(one if i % 2 else two).status_code == 200
    assert submit(one).status_code == 429 and submit(two).status_code == 429


# --- settings, and the webhook receiver's side ------------------------------------------------------


def test_the_form_is_off_when_no_helpdesk_is_configured(make_runtime: MakeRuntime) -> None:
    client = make_runtime(None).create_app().test_client()
    response = client.get("/escalate")
    assert response.status_code == 404 and "not switched on" in response.get_data(as_text=True)
    assert client.post("/escalate", data=form_fields()).status_code == 404


def test_the_form_platform_setting_must_name_a_configured_platform(make_runtime: MakeRuntime) -> None:
    client = make_runtime(SignedAdapter(), TIERUP_FORM_PLATFORM="jira").create_app().test_client()
    assert client.get("/escalate").status_code == 404


def test_the_form_picks_zendesk_when_both_are_configured(runtime: Runtime) -> None:
    zendesk, jira = SignedAdapter(), SignedAdapter()
    jira.platform = Platform.JIRA
    config = runtime.web_config()
    both = WebConfig(settings=config.settings, adapters={Platform.JIRA: jira, Platform.ZENDESK: zendesk},
                     inbox=config.inbox, enqueue=config.enqueue)  # fmt: skip
    only_jira = WebConfig(settings=config.settings, adapters={Platform.JIRA: jira}, inbox=config.inbox,
                          enqueue=config.enqueue)  # fmt: skip
    chosen = WebConfig(settings=config.settings, adapters=both.adapters, inbox=config.inbox, enqueue=config.enqueue,
                       channels=ChannelSettings(form_platform=Platform.JIRA))  # fmt: skip
    assert (form_platform(both), form_platform(only_jira), form_platform(chosen)) == (
        Platform.ZENDESK, Platform.JIRA, Platform.JIRA,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"TIERUP_FORM_PLATFORM": "email"}, "TIERUP_FORM_PLATFORM"),
        ({"TIERUP_FORM_RATE_LIMIT": "0"}, "TIERUP_FORM_RATE_LIMIT"),
        ({"TIERUP_FORM_RATE_LIMIT": "five"}, "TIERUP_FORM_RATE_LIMIT"),
        ({"TIERUP_SECRET_KEY": "short"}, "TIERUP_SECRET_KEY"),
    ],
)
def test_wrong_settings_are_named(env: dict[str, str], problem: str) -> None:
    from integration.config import ConfigError

    with pytest.raises(ConfigError, match=problem):
        ChannelSettings.from_env(env)


def test_an_oversized_form_is_refused_with_413(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(SignedAdapter(), TIERUP_MAX_BODY_BYTES="2000")
    client = runtime.create_app().test_client()
    token = csrf_of(client.get("/escalate"))
    response = client.post("/escalate", data={**form_fields(rationale="x" * 5000), "csrf_token": token})
    assert response.status_code == 413 and response.mimetype == "text/html"
    assert stored(runtime) == 0


def test_a_webhook_claiming_to_be_a_form_submission_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    body, headers = signed(request_payload("4016"), "zd-forged")
    response = client.post("/webhooks/zendesk", data=body, headers={**headers, "X-Tierup-Source": "form"})
    assert response.status_code == 401
    assert stored(runtime) == 0
