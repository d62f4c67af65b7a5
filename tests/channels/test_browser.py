"""Browser tests in real headless Chromium: fill in the form, see the confirmation, find it on the dashboard.

They drive Debian's /usr/bin/chromium through Playwright (never a downloaded browser) against
a real server: the app built by build_runtime, served by werkzeug in a thread, on a scratch
SQLite database and Huey queue; the worker runs the queued jobs in between. Screenshots of
each page go to test-artifacts/channels/. Without Chromium or Playwright the tests skip,
except under CI=true, where that is a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import make_server

from integration.cli.ops import Runtime
from integration.model import Platform, State
from tests.channels.conftest import ADMIN_TOKEN, MakeRuntime
from tests.channels.fakes import REQUESTER, KnownTickets, helpdesk
from tests.conftest import in_ci
from tests.infra.fakes import Clock

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "channels"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed in this environment")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(make_runtime: MakeRuntime) -> Iterator[tuple[str, Runtime, KnownTickets]]:
    """A real HTTP server on a free loopback port; Tuesday 10 March 2026, 10:00 UTC on its clock."""
    adapter, gateway = helpdesk()
    runtime = make_runtime(adapter, Clock())
    http = make_server("127.0.0.1", 0, runtime.create_app(), threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}", runtime, gateway
    finally:
        http.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        # alert() from markup that should have stayed text: recorded, and the test fails.
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", dismiss)
    try:
        yield opened
    finally:
        context.close()
    assert dialogs == [], f"a script ran and opened dialogs: {dialogs}"


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fill_form(page: Page, *, ticket: str = "4016", email: str = REQUESTER.email or "", **fields: str) -> None:
    page.get_by_label("Existing ticket number").fill(ticket)
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Wrong ticket resolution").check()
    page.get_by_label("Business rationale").fill(fields.get("rationale", "Members cannot check in: we lose revenue"))
    page.get_by_label("Preferred contact method").fill(fields.get("contact", "phone +48 555 0100"))


def test_a_request_sent_with_the_form_shows_up_on_the_dashboard_with_its_due_time(
    page: Page, server: tuple[str, Runtime, KnownTickets]
) -> None:
    base, runtime, gateway = server

    page.goto(f"{base}/escalate")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Case Escalation Request"
    assert shot(page, "01-escalate-form").exists()

    fill_form(page)
    page.get_by_role("button", name="Send escalation request").click()
    page.get_by_role("heading", name="Escalation request received").wait_for()
    assert "You do not need to send it again" in page.get_by_role("status").inner_text()
    shot(page, "02-escalate-confirmation")

    assert runtime.tasks.run_pending() == 1  # the worker: parse, decide, apply (dry run), record
    escalation = runtime.escalations.load(Platform.ZENDESK, "4016")
    assert escalation is not None and escalation.state is State.ESCALATED
    assert len(gateway.planned) == 1

    page.goto(f"{base}/dashboard")
    assert page.url.startswith(f"{base}/dashboard/login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    shot(page, "03-dashboard-login")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Open escalations").wait_for()
    row = page.locator("tr", has_text="Zendesk 4016")
    assert row.count() == 1
    due = row.locator("td.due").inner_text()
    assert "Tue 10 Mar 2026 11:00 GMT" in due  # SD10: one business hour after 10:00 in London
    assert "1 h 0 min left" in due
    assert row.locator("time").get_attribute("datetime") == "2026-03-10T11:00:00+00:00"
    assert "Service Desk Managers" in row.inner_text() and "phone +48 555 0100" in row.inner_text()
    shot(page, "04-dashboard")

    row.get_by_role("link", name="Zendesk 4016").click()
    page.get_by_role("heading", name="Audit trail").wait_for()
    trail = page.locator("ol.trail").inner_text()
    assert "new → escalated" in trail and "SD5" in trail and "dry run: planned, not written" in trail
    shot(page, "05-escalation-details")

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Admin token").wait_for()


def test_overdue_escalations_are_red_and_say_so(page: Page, server: tuple[str, Runtime, KnownTickets]) -> None:
    base, runtime, _ = server
    page.goto(f"{base}/escalate")
    fill_form(page)
    page.get_by_role("button", name="Send escalation request").click()
    page.get_by_role("heading", name="Escalation request received").wait_for()
    runtime.tasks.run_pending()
    assert isinstance(runtime.clock, Clock)
    runtime.clock.advance(hours=2)

    page.goto(f"{base}/dashboard/login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    row = page.locator("tr", has_text="Zendesk 4016")
    assert "Overdue by 1 h 0 min" in row.inner_text()
    colour = row.locator(".time-left").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(179, 38, 30)"
    shot(page, "06-dashboard-overdue")


def test_the_form_explains_what_is_missing_without_javascript_and_fits_320px(
    browser: Browser, server: tuple[str, Runtime, KnownTickets]
) -> None:
    base, runtime, _ = server
    context = browser.new_context(viewport={"width": 320, "height": 640}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{base}/escalate")
        assert _scroll_width(page) <= 320
        shot(page, "07-escalate-form-320px")

        page.get_by_role("button", name="Send escalation request").click()
        page.get_by_role("heading", name="There is a problem").wait_for()
        assert "Please provide the number of the existing ticket" in page.locator("#sd8").inner_text()
        ticket = page.get_by_label("Existing ticket number")
        assert ticket.get_attribute("aria-invalid") == "true"
        assert "ticket-error" in (ticket.get_attribute("aria-describedby") or "")
        assert _scroll_width(page) <= 320
        shot(page, "08-escalate-errors-320px")
        assert sum(runtime.inbox.counts().values()) == 0
    finally:
        context.close()


def test_markup_typed_into_the_form_never_runs(page: Page, server: tuple[str, Runtime, KnownTickets]) -> None:
    base, runtime, _ = server
    page.goto(f"{base}/escalate")
    fill_form(page, rationale=XSS, contact=XSS)
    page.get_by_role("button", name="Send escalation request").click()
    page.get_by_role("heading", name="Escalation request received").wait_for()
    assert page.evaluate("window.__pwned") is None
    assert XSS in page.locator("dl.summary").inner_text()  # shown as the text that was typed
    runtime.tasks.run_pending()

    page.goto(f"{base}/dashboard/login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.locator("tr", has_text="Zendesk 4016").get_by_role("link").click()
    page.get_by_role("heading", name="Audit trail").wait_for()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0


def test_the_focus_is_visible(page: Page, server: tuple[str, Runtime, KnownTickets]) -> None:
    base, _, _ = server
    page.goto(f"{base}/escalate")
    page.keyboard.press("Tab")  # the skip link first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.get_by_label("Existing ticket number").focus()
    outline: dict[str, Any] = page.get_by_label("Existing ticket number").evaluate(
        "e => { const s = getComputedStyle(e); return {style: s.outlineStyle, width: s.outlineWidth}; }"
    )
    assert outline == {"style": "solid", "width": "3px"}


def _scroll_width(page: Page) -> int:
    # Measured without running page scripts: Playwright evaluates in its own isolated world.
    return int(page.evaluate("document.documentElement.scrollWidth"))
