"""The leads' dashboard and its JSON API: the login, what it lists, the audit trail, inert HTML."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from html import unescape

import pytest
from flask.testing import FlaskClient

from integration.cli.ops import Runtime
from integration.config import ConfigError
from integration.model import Command, Person, Platform, State
from integration.service import DryRunGateway, handle_event
from tests.channels.conftest import ADMIN_TOKEN, MakeRuntime, csrf_of, login, submit
from tests.channels.fakes import KnownTickets, ticket
from tests.core.builders import command, request
from tests.infra.fakes import T0, Clock, SignedAdapter
from webhooks import dashboard
from webhooks.dashboard import LISTED_STATES, span

XSS = "<script>alert(1)</script>"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def escalate(
    runtime: Runtime, ref: str, *, platform: Platform = Platform.ZENDESK, hour: int = 10, **changes: object
) -> None:
    """Record a real decision for ticket `ref` (requested at `hour` UTC on T0's day)."""
    snap = replace(ticket(ref), platform=platform)
    event = request(ticket=snap, platform=platform, received_at=T0.replace(hour=hour), **changes)
    handle_event(event, policy=runtime.policy, gateway=DryRunGateway(platform), store=runtime.escalations,
                 clock=lambda: T0.replace(hour=hour))  # fmt: skip


def text_of(html: str) -> str:
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def rows(html: str) -> list[str]:
    """The text of each escalation row of the dashboard."""
    return [text_of(r) for r in re.findall(r"<tr id=\"escalation-\d+\".*?</tr>", html, re.S)]


# --- switched off, and the login ------------------------------------------------------------------


def test_without_an_admin_token_the_dashboard_and_api_do_not_exist(make_runtime: MakeRuntime) -> None:
    client = make_runtime(SignedAdapter(), TIERUP_ADMIN_TOKEN="").create_app().test_client()
    for path in ("/dashboard", "/dashboard/login", "/dashboard/escalations/1"):
        assert client.get(path).status_code == 404
    assert client.get("/api/escalations", headers={"Authorization": "Bearer "}).status_code == 404
    assert client.get("/escalate").status_code == 200  # the form does not need it


def test_pages_send_a_visitor_to_the_login_first(client: FlaskClient) -> None:
    for path in ("/dashboard", "/dashboard/escalations/1", "/dashboard?state=escalated"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/dashboard/login?next=")
    assert client.get("/dashboard/login").status_code == 200


def test_the_api_wants_the_bearer_token(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        response = client.get("/api/escalations", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="tierup"'
    assert client.get("/api/escalations", headers=BEARER).status_code == 200


def test_a_wrong_token_does_not_log_in(client: FlaskClient) -> None:
    response = login(client, "not-the-token")
    assert response.status_code == 401
    assert "That admin token is not right" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_the_login_form_needs_its_csrf_token(client: FlaskClient) -> None:
    client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"token": ADMIN_TOKEN}).status_code == 400
    assert client.get("/dashboard").status_code == 302


def test_login_logout_and_back_where_you_were(client: FlaskClient) -> None:
    page = client.get("/dashboard/login?next=/dashboard?state=escalated")
    response = client.post("/dashboard/login", data={"csrf_token": csrf_of(page), "token": ADMIN_TOKEN,
                                                      "next": "/dashboard?state=escalated"})  # fmt: skip
    assert (response.status_code, response.headers["Location"]) == (302, "/dashboard?state=escalated")
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert client.get("/api/escalations").status_code == 200  # the logged-in session works for the API too

    assert client.post("/dashboard/logout", data={"csrf_token": csrf_of(dashboard)}).status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_a_copy_of_the_cookie_is_worth_nothing_after_logging_out(client: FlaskClient, runtime: Runtime) -> None:
    # The cookie is signed, not stored: logging out only made this browser forget it, and a copy
    # (another tab's, a proxy's log) stayed logged in for its twelve hours.
    login(client)
    dashboard = client.get("/dashboard")
    cookie = client.get_cookie("tierup_session")
    assert cookie is not None
    copied = runtime.create_app().test_client()
    copied.set_cookie("tierup_session", cookie.value)
    assert copied.get("/dashboard").status_code == 200

    assert client.post("/dashboard/logout", data={"csrf_token": csrf_of(dashboard)}).status_code == 302
    assert copied.get("/dashboard").status_code == 302
    assert copied.get("/api/escalations").status_code == 401
    login(client)  # a new login is a new session
    assert client.get("/dashboard").status_code == 200


OFF_SITE = [
    "//evil.example/x", "https://evil.example/", "/\\evil.example",
    "/\t/evil.example", "/\n/evil.example", " //evil.example", "/dashboard\r\nSet-Cookie: x=1", "/escalate",
]  # fmt: skip


@pytest.mark.parametrize("target", OFF_SITE)
def test_the_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"csrf_token": csrf_of(page), "token": ADMIN_TOKEN, "next": target})
    assert response.headers["Location"] == "/dashboard"  # browsers drop the tab or line break: "//evil.example"


@pytest.mark.parametrize("target", OFF_SITE)
def test_a_logged_in_lead_is_never_sent_off_site_either(client: FlaskClient, target: str) -> None:
    login(client)
    response = client.get("/dashboard/login", query_string={"next": target})
    assert (response.status_code, response.headers["Location"]) == (302, "/dashboard")


def test_a_new_admin_token_ends_the_old_sessions(make_runtime: MakeRuntime, runtime: Runtime) -> None:
    old = runtime.create_app().test_client()
    login(old)
    cookie = old.get_cookie("tierup_session")
    assert cookie is not None
    rotated = make_runtime(SignedAdapter(), TIERUP_ADMIN_TOKEN="a-brand-new-admin-token").create_app().test_client()
    rotated.set_cookie("tierup_session", cookie.value)
    assert rotated.get("/dashboard").status_code == 302


def test_login_attempts_are_limited_per_client(client: FlaskClient) -> None:
    codes = [login(client, f"guess-{i}").status_code for i in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429


def test_api_tokens_guessed_count_against_the_same_limit(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    def api(token: str) -> int:
        return client.get("/api/escalations", headers={"Authorization": f"Bearer {token}"}).status_code

    assert [api(ADMIN_TOKEN) for _ in range(40)] == [200] * 40  # a right token is never counted
    with caplog.at_level("WARNING", logger="tierup.webhooks.dashboard"):
        codes = [api(f"guess-{i}") for i in range(20)] + [login(client, f"guess-{i}").status_code for i in range(10)]
    assert codes == [401] * 30
    assert sum("token refused" in r.getMessage() for r in caplog.records) == 20
    assert api("guess-31") == 429 and login(client, "guess-31").status_code == 429
    assert api(ADMIN_TOKEN) == 429  # once over the limit, no token is even compared
    response = client.get("/api/escalations", headers=BEARER)
    assert int(response.headers["Retry-After"]) > 0 and response.get_json()["error"] == "rate_limited"


def test_behind_a_proxy_clients_are_told_apart_only_when_it_is_trusted(
    make_runtime: MakeRuntime, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    def attempt(client: FlaskClient, token: str, forwarded_for: str) -> int:
        proxy = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": forwarded_for}
        page = client.get("/dashboard/login", environ_base=proxy)
        data = {"csrf_token": csrf_of(page), "token": token}
        return client.post("/dashboard/login", data=data, environ_base=proxy).status_code

    # Not trusted (the default): the header is anyone's to write, so every client is the proxy.
    untrusted = runtime.create_app().test_client()
    assert [attempt(untrusted, f"guess-{i}", f"203.0.113.{i}") for i in range(30)] == [401] * 30
    assert attempt(untrusted, ADMIN_TOKEN, "198.51.100.10") == 429

    # One trusted proxy: a guesser at 203.0.113.66 no longer locks the lead at 198.51.100.10 out.
    behind = make_runtime(SignedAdapter(), TIERUP_TRUSTED_PROXIES="1").create_app().test_client()
    with caplog.at_level("INFO", logger="tierup.webhooks.dashboard"):
        assert [attempt(behind, f"guess-{i}", "203.0.113.66") for i in range(31)] == [401] * 30 + [429]
        assert attempt(behind, ADMIN_TOKEN, "198.51.100.10") == 302
    assert "dashboard login from 198.51.100.10" in caplog.text

    with pytest.raises(ConfigError, match="TIERUP_TRUSTED_PROXIES"):
        make_runtime(SignedAdapter(), TIERUP_TRUSTED_PROXIES="yes").create_app()


def test_a_short_admin_token_is_refused_at_start(make_runtime: MakeRuntime) -> None:
    with pytest.raises(ConfigError, match="TIERUP_ADMIN_TOKEN is too short: use at least 16 random characters"):
        make_runtime(SignedAdapter(), TIERUP_ADMIN_TOKEN="1")


# --- what it shows -----------------------------------------------------------------------------------


def test_open_escalations_with_who_why_contact_and_time_left(client: FlaskClient, runtime: Runtime,
                                                             clock: Clock) -> None:  # fmt: skip
    escalate(runtime, "4016", hour=10, requested_by=Person(id="501", email="champ@club.example", name="Pat Champion"))
    escalate(runtime, "4017", hour=9, rationale="r" * 300)
    clock.advance(minutes=75)  # 11:15: 4017 (due 10:00) is overdue, 4016 (due 11:00) too, by 15 minutes
    escalate(runtime, "4018", hour=11, requested_by=Person(id="502", email="x@club.example"))
    login(client)

    html = client.get("/dashboard").get_data(as_text=True)
    found = rows(html)
    assert [r.split()[1] for r in found] == ["4017", "4016", "4018"]  # soonest due first
    assert found[1].startswith("Zendesk 4016 Tue 10 Mar 2026 11:00 GMT Overdue by 15 min escalated 1 "
                               "Service Desk Managers Pat Champion <champ@club.example>")
    assert "Wrong ticket resolution" in found[1] and "phone +48 555 0100" in found[1]
    assert "Tue 10 Mar 2026 11:00 GMT Overdue by 15 min" in found[1]
    assert "Tue 10 Mar 2026 10:00 GMT Overdue by 1 h 15 min" in found[0]
    assert "Tue 10 Mar 2026 12:00 GMT 45 min left" in found[2]
    assert "r" * 139 + "…" in found[0] and "r" * 141 not in found[0]  # the rationale is cut short
    assert len(re.findall(r'<tr id="escalation-\d+" class="overdue">', html)) == 2
    assert html.count("time-left--overdue") == 2
    assert "escalated</span> level 1: <strong>3</strong>" in html
    assert "Times are in Europe/London" in html


def test_filters_by_platform_group_and_state(client: FlaskClient, runtime: Runtime) -> None:
    escalate(runtime, "4016")
    escalate(runtime, "SUP-7", platform=Platform.JIRA)
    escalate(runtime, "4020", reason=None)  # no reason: needs info (SD8 rule id in this policy)
    login(client)

    def tickets(query: str) -> list[str]:
        return [" ".join(r.split()[:2]) for r in rows(client.get(f"/dashboard?{query}").get_data(as_text=True))]

    assert sorted(tickets("")) == ["Jira SUP-7", "Zendesk 4016", "Zendesk 4020"]
    assert tickets("platform=jira") == ["Jira SUP-7"]
    assert tickets("state=needs_info") == ["Zendesk 4020"]
    assert sorted(tickets("group=Service+Desk+Managers")) == ["Jira SUP-7", "Zendesk 4016"]
    assert tickets("group=Head+of+Service+Delivery") == []
    assert sorted(tickets("platform=nonsense&state=resolved")) == sorted(tickets(""))  # unknown values: all


def test_closed_escalations_are_not_listed(client: FlaskClient, runtime: Runtime) -> None:
    escalate(runtime, "4016")
    escalated = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalated is not None
    handle_event(command(Command.RESOLVE, escalated, received_at=T0 + timedelta(hours=1)), policy=runtime.policy,
                 gateway=DryRunGateway(Platform.ZENDESK), store=runtime.escalations, clock=lambda: T0)  # fmt: skip
    login(client)
    assert rows(client.get("/dashboard").get_data(as_text=True)) == []
    assert set(LISTED_STATES) >= {State.ESCALATED, State.CONFIRMED, State.RECLASSIFIED, State.LEVEL_2}


def test_a_contacted_escalation_is_not_overdue(client: FlaskClient, runtime: Runtime, clock: Clock) -> None:
    escalate(runtime, "4016")
    escalated = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalated is not None
    handle_event(command(Command.CONFIRM, escalated, received_at=T0 + timedelta(minutes=20)), policy=runtime.policy,
                 gateway=DryRunGateway(Platform.ZENDESK), store=runtime.escalations,
                 clock=lambda: T0 + timedelta(minutes=20))  # fmt: skip
    clock.advance(hours=3)
    login(client)
    [row] = rows(client.get("/dashboard").get_data(as_text=True))
    assert "confirmed" in row and "Contacted Tue 10 Mar 2026 10:20 GMT" in row and "Overdue" not in row


def test_the_details_page_shows_the_audit_trail(client: FlaskClient, runtime: Runtime) -> None:
    escalate(runtime, "4016")
    login(client)
    [item] = client.get("/api/escalations").get_json()["escalations"]
    html = client.get(f"/dashboard/escalations/{item['id']}").get_data(as_text=True)
    text = text_of(html)

    assert "Zendesk ticket 4016" in text
    assert "Tue 10 Mar 2026 10:00 GMT : new → escalated (SD5, request) by 501" in text
    assert "wrong_resolution -> Service Desk Managers" in text
    assert "add tags : escalated" in text and "assign group : Service Desk Managers" in text
    assert "public reply : Thank you: your escalation has been received" in text
    assert "set due : Tue 10 Mar 2026 11:00 GMT" in text
    assert "Reason: wrong ticket resolution Rationale:" in text  # line breaks in a note stay apart
    assert "Delivery d-1" in text
    assert client.get("/dashboard/escalations/999").status_code == 404
    assert client.get(f"/dashboard/escalations/{2**63}").status_code == 404  # past any row id: not a 500


def test_dry_run_transitions_say_so(client: FlaskClient, runtime: Runtime,
                                    desk: tuple[SignedAdapter, KnownTickets]) -> None:  # fmt: skip
    submit(client)
    runtime.tasks.run_pending()
    login(client)
    [item] = client.get("/api/escalations").get_json()["escalations"]
    assert "dry run: planned, not written" in client.get(f"/dashboard/escalations/{item['id']}").get_data(as_text=True)


def test_html_from_a_form_is_inert_on_the_dashboard(client: FlaskClient, runtime: Runtime) -> None:
    submit(client, rationale=XSS, contact=XSS)
    runtime.tasks.run_pending()
    login(client)
    listing = client.get("/dashboard").get_data(as_text=True)
    [item] = client.get("/api/escalations").get_json()["escalations"]
    details = client.get(f"/dashboard/escalations/{item['id']}").get_data(as_text=True)

    for html in (listing, details):
        assert "<script>" not in html
        assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2
    assert item["rationale"] == XSS  # the API gives the data as it is (JSON, not HTML)


# --- the JSON API ---------------------------------------------------------------------------------


def test_the_api_lists_open_escalations_with_due_times(client: FlaskClient, runtime: Runtime, clock: Clock) -> None:
    escalate(runtime, "4016")
    clock.advance(minutes=30)
    body = client.get("/api/escalations", headers=BEARER).get_json()

    assert body["count"] == 1
    [item] = body["escalations"]
    assert item["url"] == f"/api/escalations/{item['id']}"
    assert (item["platform"], item["ticket_ref"], item["state"], item["level"]) == ("zendesk", "4016", "escalated", 1)
    assert item["group"] == "Service Desk Managers" and item["reason"] == "wrong_resolution"
    assert item["preferred_contact"] == "phone +48 555 0100"
    assert item["first_contact_due"] == "2026-03-10T11:00:00+00:00"
    assert (item["seconds_to_first_contact_due"], item["overdue"]) == (1800, False)
    assert "history" not in item


def test_the_api_gives_one_escalation_with_its_history(client: FlaskClient, runtime: Runtime) -> None:
    escalate(runtime, "4016")
    [item] = client.get("/api/escalations", headers=BEARER).get_json()["escalations"]
    one = client.get(item["url"], headers=BEARER)

    assert one.status_code == 200 and one.headers["Cache-Control"] == "no-store"
    data = one.get_json()
    assert data["ticket_ref"] == "4016"
    [step] = data["history"]
    assert (step["rule"], step["from_state"], step["to_state"], step["dry_run"]) == ("SD5", None, "escalated", False)
    assert step["actions"][0] == {"kind": "add_tags", "tags": ["escalated"]}
    for missing_id in (999, 2**63, 10**30):
        missing = client.get(f"/api/escalations/{missing_id}", headers=BEARER)
        assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"


@pytest.mark.parametrize(
    "query", ["platform=email", "state=resolved", "state=bogus", "group=%00", "group=Leads%0Aand", "group=" + "x" * 256]
)
def test_the_api_refuses_unknown_filters(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/escalations?{query}", headers=BEARER)
    assert response.status_code == 400 and response.get_json()["error"] == "bad_filter"


def test_more_escalations_than_a_page_shows_are_counted_and_paged(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With more than a page of open escalations, the summary counted the listed ones only, and the API
    # stopped at its limit with nothing to say so.
    monkeypatch.setattr(dashboard, "LIST_LIMIT", 3)
    for n in range(7):
        escalate(runtime, str(4016 + n))
    login(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert len(rows(html)) == 3
    assert "Escalations (7, the first 3)" in text_of(html)
    assert "escalated</span> level 1: <strong>7</strong>" in html

    seen: list[str] = []
    url: str | None = "/api/escalations?state=escalated"
    pages = []
    while url:
        answer = client.get(url, headers=BEARER).get_json()
        pages.append((answer["total"], answer["count"], answer["offset"]))
        seen += [e["ticket_ref"] for e in answer["escalations"]]
        url = answer["next"]
    assert pages == [(7, 3, 0), (7, 3, 3), (7, 1, 6)]
    assert sorted(seen) == [str(4016 + n) for n in range(7)]
    for bad in ("offset=-1", "offset=x", "limit=0", "limit=4", "offset=99999999999"):
        assert client.get(f"/api/escalations?{bad}", headers=BEARER).status_code == 400


def test_the_page_ignores_a_group_no_group_is_named(client: FlaskClient, runtime: Runtime) -> None:
    # A NUL in the filter reached PostgreSQL, which refuses it in text: 503 "storage unavailable".
    escalate(runtime, "4016")
    login(client)
    page = client.get("/dashboard?group=%00")
    assert page.status_code == 200 and "4016" in page.get_data(as_text=True)


def test_the_api_filters(client: FlaskClient, runtime: Runtime) -> None:
    escalate(runtime, "4016")
    escalate(runtime, "SUP-7", platform=Platform.JIRA)
    jira = client.get("/api/escalations?platform=jira", headers=BEARER).get_json()["escalations"]
    assert [e["ticket_ref"] for e in jira] == ["SUP-7"]
    assert client.get("/api/escalations?state=confirmed", headers=BEARER).get_json()["count"] == 0


@pytest.mark.parametrize(
    ("minutes", "said"), [(4, "4 min"), (65, "1 h 5 min"), (60 * 24 * 2 + 180, "2 d 3 h"), (-30, "30 min")]
)
def test_durations_read_as_people_say_them(minutes: int, said: str) -> None:
    assert span(timedelta(minutes=minutes)) == said
