"""`tierup install|uninstall zendesk` against a Zendesk account kept by `responses` (real zenpy client).

The fake account answers in Zendesk's shapes (list envelopes with cursor `meta`, 201 on create,
204 on webhook update and delete; the webhook list starts as the recorded one in
api_webhooks_list_response.json) and keeps what was created, so a second run sees it.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import responses

from adapters.zendesk.gateway import zenpy_client
from adapters.zendesk.install import MARKER, ZendeskInstaller
from adapters.zendesk.settings import ZendeskSettings
from integration.cli import main
from integration.config import ConfigError, load_env
from integration.policy import load_policy
from integration.ports import TransientError
from tests.zendesk.helpers import API, URL, fixture

PUBLIC_URL = "https://tierup.example.com"
ENDPOINT = f"{PUBLIC_URL}/webhooks/zendesk"
NEW_SECRET = "c2lnbmluZy1zZWNyZXQtb2YtdGhlLW5ldy13ZWJob29r"
ME = {"id": 6130907999999, "name": "Tierup", "email": "tierup@acme.example", "role": "admin", "active": True}
KINDS = {"groups": "group", "ticket_fields": "ticket_field", "triggers": "trigger", "macros": "macro",
         "automations": "automation"}  # fmt: skip
STAMP = "2026-03-10T09:00:00Z"


@dataclass
class FakeAccount:
    """A Zendesk account's admin objects: listed, created, updated and deleted through the REST API."""

    mock: responses.RequestsMock
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(6131000000001))

    def __post_init__(self) -> None:
        for plural in KINDS:
            self.objects[plural] = {}
        self.objects["webhooks"] = {w["id"]: w for w in fixture("api_webhooks_list_response.json")["webhooks"]}
        json_headers = {"Content-Type": "application/json"}
        self.mock.add(responses.GET, f"{API}/users/me.json", json={"user": ME})
        for plural in KINDS:
            base = re.escape(f"{API}/{plural}")
            self.mock.add_callback(responses.GET, re.compile(base + r"\.json(\?.*)?$"), callback=self._list(plural))
            self.mock.add_callback(responses.POST, re.compile(base + r"\.json$"), callback=self._create(plural))
            one = re.compile(base + r"/(\d+)\.json$")
            self.mock.add_callback(responses.PUT, one, callback=self._update(plural))
            self.mock.add_callback(responses.DELETE, one, callback=self._delete(plural))
        hooks = re.escape(f"{API}/webhooks")
        self.mock.add_callback(responses.GET, re.compile(hooks + r"(\?.*)?$"), callback=self._list("webhooks"))
        self.mock.add_callback(responses.POST, re.compile(hooks + "$"), callback=self._create("webhooks"))
        self.mock.add_callback(responses.GET, re.compile(hooks + r"/(\w+)/signing_secret$"), callback=self._secret)
        self.mock.add_callback(responses.PUT, re.compile(hooks + r"/(\w+)$"), callback=self._update("webhooks"))
        self.mock.add_callback(responses.DELETE, re.compile(hooks + r"/(\w+)$"), callback=self._delete("webhooks"))
        self._json = json_headers

    def _list(self, plural: str) -> Any:
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            items = list(self.objects[plural].values())
            if plural == "ticket_fields":  # offset-paginated in Zendesk
                body: dict[str, Any] = {plural: items, "next_page": None, "previous_page": None, "count": len(items)}
            else:
                body = {plural: items, "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                        "links": {"prev": None, "next": None}}  # fmt: skip
            return 200, self._json, json.dumps(body)

        return answer

    def _create(self, plural: str) -> Any:
        singular = KINDS.get(plural, "webhook")

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            sent = json.loads(request.body)[singular]
            ident: Any = next(self.ids)
            if plural == "webhooks":
                ident = f"01HQWEBHOOK{ident}"
            obj = {"url": f"{API}/{plural}/{ident}.json", "id": ident, **sent, "created_at": STAMP, "updated_at": STAMP}
            if "title" in sent:
                obj["raw_title"] = sent["title"]
            if plural == "ticket_fields" and "custom_field_options" in sent:
                obj["custom_field_options"] = [
                    {"id": next(self.ids), "raw_name": o["name"], "default": False, **o}
                    for o in sent["custom_field_options"]
                ]
            self.objects[plural][str(ident)] = obj
            return 201, self._json, json.dumps({singular: obj})

        return answer

    def _update(self, plural: str) -> Any:
        singular = KINDS.get(plural, "webhook")

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            ident = request.url.rstrip("/").rsplit("/", 1)[1].removesuffix(".json")
            sent = json.loads(request.body)[singular]
            self.objects[plural][ident].update({k: v for k, v in sent.items() if k != "id"})
            if plural == "webhooks":
                return 204, {}, ""
            return 200, self._json, json.dumps({singular: self.objects[plural][ident]})

        return answer

    def _delete(self, plural: str) -> Any:
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            ident = request.url.rstrip("/").rsplit("/", 1)[1].removesuffix(".json")
            if plural == "groups":  # a deleted group stays, marked deleted, and List Groups still lists it
                self.objects[plural][ident]["deleted"] = True
            else:
                del self.objects[plural][ident]
            return 204, {}, ""

        return answer

    def _secret(self, request: Any) -> tuple[int, dict[str, str], str]:
        return 200, self._json, json.dumps({"signing_secret": {"algorithm": "SHA256", "secret": NEW_SECRET}})

    def add(self, plural: str, **obj: Any) -> dict[str, Any]:
        """Something an admin made before Tierup came."""
        ident = next(self.ids)
        stored = {"url": f"{API}/{plural}/{ident}.json", "id": ident, "created_at": STAMP, "updated_at": STAMP, **obj}
        self.objects[plural][str(ident)] = stored
        return stored

    def named(self, plural: str, name: str) -> dict[str, Any]:
        key = "name" if plural in ("groups", "webhooks") else "title"
        (found,) = [o for o in self.objects[plural].values() if o.get(key) == name]
        return found

    def sent(self, method: str, path: str = "") -> list[Any]:
        calls = [c for c in self.mock.calls if c.request.method == method and path in str(c.request.url)]
        return [json.loads(c.request.body) if c.request.body else None for c in calls]

    @property
    def writes(self) -> int:
        return len([c for c in self.mock.calls if c.request.method in ("POST", "PUT", "PATCH", "DELETE")])


@pytest.fixture
def account() -> Iterator[FakeAccount]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        acct = FakeAccount(mock)
        # The admin's own things: a trigger, a field, an existing lead group and the default group.
        created = {"all": [{"field": "update_type", "operator": "is", "value": "Create"}], "any": []}
        notify = [{"field": "notification_user", "value": ["requester_id", "Received", "We got it"]}]
        acct.add("triggers", title="Notify requester of new ticket", description="Zendesk default", active=True,
                 conditions=created, actions=notify)  # fmt: skip
        acct.add("ticket_fields", title="Product", type="tagger", description="", active=True)
        acct.add("groups", name="Support", description="", default=True, deleted=False)
        acct.add("groups", name="Technical Support Team Leaders", description="Leads", default=False, deleted=False)
        yield acct


def installer(env_path: Path) -> ZendeskInstaller:
    settings = ZendeskSettings.from_env({"ZENDESK_URL": URL, "ZENDESK_EMAIL": "tierup@acme.example",
                                          "ZENDESK_API_TOKEN": "token"})  # fmt: skip
    assert settings is not None
    return ZendeskInstaller(zenpy_client(settings), load_policy("lead-review"), env_path)


# --- install ------------------------------------------------------------------------------------------


def test_first_run_creates_everything_and_stores_the_ids(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    report = installer(env_path).install(PUBLIC_URL)

    created = [(s.kind, s.name) for s in report.steps if s.action == "create"]
    assert ("group", "Technical Support Team Leaders APAC") in created
    assert ("group", "Technical Support Management") in created
    assert ("group", "Technical Support Team Leaders") not in created  # the existing one is mapped
    assert len([c for c in created if c[0] == "ticket field"]) == 6
    assert len([c for c in created if c[0] == "trigger"]) == 7
    assert len([c for c in created if c[0] == "macro"]) == 4
    assert ("automation", "Tierup: SLA breached") in created and ("webhook", "Tierup") in created

    # The webhook, exactly as Zendesk receives it.
    assert account.sent("POST", "/webhooks") == [
        {
            "webhook": {
                "name": "Tierup",
                "description": f"{MARKER} Tierup's triggers and automation post escalation events here. "
                "Managed by `tierup install zendesk`; `tierup uninstall zendesk` removes it.",
                "endpoint": ENDPOINT,
                "http_method": "POST",
                "request_format": "json",
                "status": "active",
                "subscriptions": ["conditional_ticket_events"],
            }
        }
    ]
    hook = account.named("webhooks", "Tierup")
    fields = {f["title"]: f for f in account.objects["ticket_fields"].values()}

    # The reason field is a dropdown of the procedure's reasons; agents-only fields stay out of the portal.
    reason = next(
        b for b in account.sent("POST", "/ticket_fields") if b["ticket_field"]["title"] == "Escalation reason"
    )
    assert reason["ticket_field"]["type"] == "tagger"
    assert [o["value"] for o in reason["ticket_field"]["custom_field_options"]] == [
        "tierup_reason_sla_violation", "tierup_reason_wrong_resolution", "tierup_reason_priority_misclassified",
        "tierup_reason_agent_conduct", "tierup_reason_business_urgency",
    ]  # fmt: skip
    assert MARKER in reason["ticket_field"]["agent_description"]
    assert fields["Tierup escalation note"]["visible_in_portal"] is False

    # A trigger: the tag, the webhook with Tierup's body (placeholders for the new fields), the tag removed.
    trigger = next(b["trigger"] for b in account.sent("POST", "/triggers") if b["trigger"]["title"] ==
                   "Tierup: escalation requested")  # fmt: skip
    assert trigger["conditions"] == {"all": [{"field": "current_tags", "operator": "includes",
                                              "value": "escalation_requested"}], "any": []}  # fmt: skip
    notify, remove = trigger["actions"]
    assert remove == {"field": "remove_tags", "value": "escalation_requested"}
    assert notify["field"] == "notification_webhook" and notify["value"][0] == hook["id"]
    body = json.loads(notify["value"][1])
    assert body["kind"] == "escalation_requested"
    assert body["escalation"]["rationale"] == f"{{{{ticket.ticket_field_{fields['Business rationale']['id']}}}}}"
    assert MARKER in trigger["description"]

    macro = next(b["macro"] for b in account.sent("POST", "/macros") if b["macro"]["title"] == "Escalate ticket")
    assert macro["actions"] == [{"field": "current_tags", "value": "escalation_requested"}]
    (automation,) = [b["automation"] for b in account.sent("POST", "/automations")]
    assert {"field": "sla_next_breach_at", "operator": "greater_than", "value": "0"} in automation["conditions"]["all"]
    assert automation["actions"][1] == {"field": "current_tags", "value": "tierup_sla_notified"}

    # The ids the service needs are in .env, where it reads them.
    stored = load_env(env_path)
    settings = ZendeskSettings.from_env({**stored, "ZENDESK_URL": URL, "ZENDESK_OAUTH_TOKEN": "x"})
    assert settings is not None
    assert settings.webhook_secrets == (NEW_SECRET,)
    assert settings.bot_user_id == str(ME["id"])
    assert settings.field_id("escalation_note") == fields["Tierup escalation note"]["id"]
    assert (
        settings.group_ids["Technical Support Team Leaders"]
        == account.named("groups", "Technical Support Team Leaders")["id"]
    )
    assert (
        settings.group_ids["Technical Support Management"]
        == account.named("groups", "Technical Support Management")["id"]
    )
    assert stored["ZENDESK_WEBHOOK_ID"] == hook["id"]
    assert report.lines()[-1].endswith("changes made")


def test_sh2_a_second_run_changes_nothing(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    before = env_path.read_text()
    account.mock.calls.reset()
    report = installer(env_path).install(PUBLIC_URL)
    assert account.writes == 0
    assert report.changes == []
    assert report.lines()[-1] == "everything is up to date: nothing to change"
    assert env_path.read_text() == before


def test_a_second_run_changes_nothing_when_zendesk_answers_booleans(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    # Zendesk may give an action's "false" back as false (the cancel macro's private comment).
    macro = account.named("macros", "Escalation: cancel — not valid")
    flags = [a for a in macro["actions"] if a["field"] == "comment_mode_is_public"]
    assert flags and all(a["value"] == "false" for a in flags)
    for action in flags:
        action["value"] = False
    account.mock.calls.reset()
    report = installer(env_path).install(PUBLIC_URL)
    assert account.writes == 0 and report.changes == []


def test_a_changed_dropdown_is_updated_with_its_options_ids(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    field = account.named("ticket_fields", "Escalation reason")
    for n, option in enumerate(field["custom_field_options"]):
        option["id"] = 36700000 + n  # Zendesk gives each option an id
    wanted = copy.deepcopy(field["custom_field_options"])
    field["custom_field_options"][0]["name"] = "An old label"  # edited by hand
    account.mock.calls.reset()
    report = installer(env_path).install(PUBLIC_URL)
    assert [(s.action, s.name) for s in report.changes] == [("update", "Escalation reason")]
    (put,) = [c for c in account.mock.calls if c.request.method == "PUT"]
    sent = json.loads(put.request.body)["ticket_field"]["custom_field_options"]

    def keys(options: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(o.get("id"), o["name"], o["value"]) for o in options]

    assert keys(sent) == keys(wanted)  # each option by its id, the label put back: none dropped and made again


def test_a_dry_run_writes_nothing(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    report = installer(env_path).install(PUBLIC_URL, dry_run=True)
    assert account.writes == 0
    assert not env_path.exists()
    lines = report.lines()
    assert "create  webhook 'Tierup' (https://tierup.example.com/webhooks/zendesk)" in lines
    assert "map     group 'Technical Support Team Leaders' (existing group" in "\n".join(lines)
    assert lines[-1].startswith("dry run:") and "nothing was written" in lines[-1]


def test_a_changed_public_url_updates_the_webhook_in_place(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    account.mock.calls.reset()
    report = installer(env_path).install("https://tierup-2.example.com/")
    assert [(s.action, s.kind) for s in report.changes] == [("update", "webhook")]
    (put,) = account.sent("PUT", "/webhooks/")
    assert put["webhook"]["endpoint"] == "https://tierup-2.example.com/webhooks/zendesk"
    assert len([w for w in account.objects["webhooks"].values() if w["name"] == "Tierup"]) == 1


def test_an_edited_trigger_is_put_back_not_duplicated(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    trigger = account.named("triggers", "Tierup: ticket solved")
    trigger["conditions"] = {"all": [{"field": "status", "operator": "is", "value": "closed"}], "any": []}
    account.mock.calls.reset()
    report = installer(env_path).install(PUBLIC_URL)
    assert [(s.action, s.name, s.detail) for s in report.changes] == [
        ("update", "Tierup: ticket solved", "changed: conditions")
    ]
    assert account.named("triggers", "Tierup: ticket solved")["conditions"]["all"][0]["operator"] == "value"
    assert len(account.objects["triggers"]) == 8  # the admin's one and Tierup's seven


def test_an_admins_own_macro_of_the_same_title_is_never_taken_over(account: FakeAccount, tmp_path: Path) -> None:
    # The team's hand-made escalation macro, from before Tierup.
    mine = account.add("macros", title="Escalate ticket", description="Forward to the team lead", active=True,
                       actions=[{"field": "comment_value", "value": "Escalating to my lead"}])  # fmt: skip
    with pytest.raises(ConfigError, match=r'Zendesk already has macro "Escalate ticket", not made by Tierup'):
        installer(tmp_path / ".env").install(PUBLIC_URL)
    assert account.writes == 0  # refused before anything was written
    assert account.named("macros", "Escalate ticket") == mine

    # Marked by the admin, it is Tierup's to manage (and uninstall's to remove).
    mine["description"] = "[tierup] Forward to the team lead"
    report = installer(tmp_path / ".env").install(PUBLIC_URL)
    assert ("update", "macro", "Escalate ticket") in [(s.action, s.kind, s.name) for s in report.changes]
    assert len([m for m in account.objects["macros"].values() if m["title"] == "Escalate ticket"]) == 1


def test_a_webhook_named_tierup_that_install_did_not_make_stops_it(account: FakeAccount, tmp_path: Path) -> None:
    hook = next(iter(account.objects["webhooks"].values()))
    hook["name"] = "Tierup"  # somebody's own webhook, as the README's event webhook would be named
    with pytest.raises(ConfigError, match=r'webhook "Tierup"'):
        installer(tmp_path / ".env").install(PUBLIC_URL)
    assert account.writes == 0


def test_install_refuses_without_tierup_public_url(account: FakeAccount, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TIERUP_PUBLIC_URL is not set"):
        installer(tmp_path / ".env").install(None)
    assert len(account.mock.calls) == 0


# --- uninstall ----------------------------------------------------------------------------------------


def test_uninstall_removes_only_what_install_created(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    env_path.write_text("TIERUP_POLICY='lead-review'\nZENDESK_WEBHOOK_SECRET='secret-of-another-webhook'\n")
    installer(env_path).install(PUBLIC_URL)
    account.mock.calls.reset()
    report = installer(env_path).uninstall()

    deleted = sorted((s.kind, s.name) for s in report.steps if s.action == "delete")
    assert len([d for d in deleted if d[0] == "trigger"]) == 7
    assert len([d for d in deleted if d[0] == "macro"]) == 4
    assert len([d for d in deleted if d[0] == "ticket field"]) == 6
    assert ("automation", "Tierup: SLA breached") in deleted and ("webhook", "Tierup") in deleted
    assert [d for d in deleted if d[0] == "group"] == [
        ("group", "Technical Support Management"), ("group", "Technical Support Team Leaders APAC"),
    ]  # fmt: skip
    # The admin's own objects, the existing groups and the other webhooks are all still there.
    assert [t["title"] for t in account.objects["triggers"].values()] == ["Notify requester of new ticket"]
    assert [f["title"] for f in account.objects["ticket_fields"].values()] == ["Product"]
    assert sorted(g["name"] for g in account.objects["groups"].values() if not g.get("deleted")) == [
        "Support",
        "Technical Support Team Leaders",
    ]
    assert len(account.objects["webhooks"]) == 4 and account.objects["macros"] == {}
    # .env forgets the deleted ids and the deleted webhook's secret, and keeps the rest.
    stored = load_env(env_path)
    assert stored["ZENDESK_WEBHOOK_SECRET"] == "secret-of-another-webhook"
    assert "ZENDESK_WEBHOOK_ID" not in stored and "ZENDESK_FIELD_NOTE" not in stored
    assert json.loads(stored["ZENDESK_GROUP_IDS"]) == {
        "Technical Support Team Leaders": account.named("groups", "Technical Support Team Leaders")["id"]
    }
    assert stored["TIERUP_POLICY"] == "lead-review"

    account.mock.calls.reset()
    again = installer(env_path).uninstall()
    assert account.writes == 0 and again.lines()[-1] == "nothing to remove"


def test_install_after_uninstall_creates_the_groups_again_rather_than_mapping_deleted_ones(
    account: FakeAccount, tmp_path: Path
) -> None:
    # Zendesk keeps a deleted group, marked deleted, in List Groups: mapped by name, every
    # escalation would be assigned to a group that no longer exists.
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    installer(env_path).uninstall()
    report = installer(env_path).install(PUBLIC_URL)

    assert sorted(s.name for s in report.steps if (s.action, s.kind) == ("create", "group")) == [
        "Technical Support Management", "Technical Support Team Leaders APAC",
    ]  # fmt: skip
    ids = json.loads(load_env(env_path)["ZENDESK_GROUP_IDS"]).values()
    deleted = {g["id"] for g in account.objects["groups"].values() if g.get("deleted")}
    assert len(deleted) == 2 and not deleted & set(ids)
    again = installer(env_path).uninstall(dry_run=True)
    assert len([s for s in again.changes if s.kind == "group"]) == 2  # the new ones, not the deleted ones again


def test_a_symlinked_env_file_is_written_where_it_points(account: FakeAccount, tmp_path: Path) -> None:
    deployed = tmp_path / "tierup.env"
    deployed.write_text("TIERUP_POLICY='lead-review'\n")
    (tmp_path / ".env").symlink_to(deployed)
    installer(tmp_path / ".env").install(PUBLIC_URL)
    installer(tmp_path / ".env").uninstall()
    assert (tmp_path / ".env").is_symlink()  # python-dotenv replaced the link with a copy before
    assert load_env(deployed)["TIERUP_POLICY"] == "lead-review" and "ZENDESK_WEBHOOK_ID" not in load_env(deployed)
    assert "ZENDESK_BOT_USER_ID" in load_env(deployed)  # written by install, where the link points


def test_a_field_and_the_webhook_an_admin_renamed_are_still_ours(account: FakeAccount, tmp_path: Path) -> None:
    # Found by the ids .env holds: before, install made a second reason dropdown (with the same
    # option tags) and a second webhook, moved the triggers to them, and uninstall left the renamed ones.
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    stored = load_env(env_path)
    account.named("ticket_fields", "Escalation reason")["title"] = "Reason for escalation"
    account.named("webhooks", "Tierup")["name"] = "Tierup (production)"
    account.mock.calls.reset()

    report = installer(env_path).install(PUBLIC_URL)

    assert report.changes == [] and account.writes == 0  # the admin's names stay
    after = load_env(env_path)
    assert (after["ZENDESK_FIELD_REASON"], after["ZENDESK_WEBHOOK_ID"]) == (
        stored["ZENDESK_FIELD_REASON"], stored["ZENDESK_WEBHOOK_ID"],
    )  # fmt: skip
    installer(env_path).uninstall()
    assert not [f for f in account.objects["ticket_fields"].values() if MARKER in str(f.get("agent_description"))]
    assert not [w for w in account.objects["webhooks"].values() if MARKER in str(w.get("description"))]


def test_uninstall_leaves_an_admins_clone_of_a_tierup_macro(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    ours = account.named("macros", "Escalate ticket")
    # Zendesk's Clone copies the description (and so the marker); the admin renames and extends the copy.
    clone = account.add("macros", title="Escalate ticket + tell customer", description=ours["description"],
                        active=True, actions=[*ours["actions"], {"field": "comment_value", "value": "Escalated."}])
    report = installer(env_path).uninstall()

    assert [m["title"] for m in account.objects["macros"].values()] == [clone["title"]]
    assert "leave   macro 'Escalate ticket + tell customer'" in "\n".join(report.lines())
    assert len([s for s in report.steps if (s.action, s.kind) == ("delete", "macro")]) == 4


def test_an_uninstall_that_stops_half_way_forgets_what_it_deleted(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    stored = load_env(env_path)
    second_field = re.compile(re.escape(f"{API}/ticket_fields/") + r"\d+\.json$")
    delete_field = account._delete("ticket_fields")
    calls = itertools.count(1)

    def unavailable_once(request: Any) -> tuple[int, dict[str, str], str]:
        return (503, {"Retry-After": "30"}, "") if next(calls) == 2 else delete_field(request)

    account.mock.remove(responses.DELETE, second_field)
    account.mock.add_callback(responses.DELETE, second_field, callback=unavailable_once)
    with pytest.raises(TransientError):
        installer(env_path).uninstall()

    # The webhook and the fields deleted before the 503: their ids and the webhook's secret (which
    # no later run can read) are forgotten now; the fields still there are not.
    after = load_env(env_path)
    assert "ZENDESK_WEBHOOK_ID" not in after and "ZENDESK_WEBHOOK_SECRET" not in after
    fields = {n: v for n, v in stored.items() if n.startswith("ZENDESK_FIELD_")}
    gone = {n for n, v in fields.items() if v not in account.objects["ticket_fields"]}
    assert gone and len(gone) < len(fields) and {n for n in fields if n not in after} == gone
    installer(env_path).uninstall()
    assert not [n for n in load_env(env_path) if n.startswith("ZENDESK_FIELD_")]


def test_uninstall_dry_run_deletes_nothing(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    installer(env_path).install(PUBLIC_URL)
    before = env_path.read_text()
    account.mock.calls.reset()
    report = installer(env_path).uninstall(dry_run=True)
    assert account.writes == 0 and env_path.read_text() == before
    assert len([s for s in report.changes if s.action == "delete"]) == 21


# --- the commands ----------------------------------------------------------------------------------------


@pytest.fixture
def zendesk_env(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Path:
    for name in ("TIERUP_PUBLIC_URL", "ZENDESK_WEBHOOK_SECRET", "ZENDESK_GROUP_IDS", "TIERUP_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZENDESK_URL", URL)
    monkeypatch.setenv("ZENDESK_EMAIL", "tierup@acme.example")
    monkeypatch.setenv("ZENDESK_API_TOKEN", "token")
    return workdir


def test_tierup_install_zendesk_dry_run(
    account: FakeAccount, zendesk_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERUP_PUBLIC_URL", PUBLIC_URL)
    assert main(["install", "zendesk", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "create  trigger 'Tierup: escalation requested'" in out and "dry run:" in out
    assert account.writes == 0 and not (zendesk_env / ".env").exists()


def test_tierup_install_then_uninstall_zendesk(
    account: FakeAccount, zendesk_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERUP_PUBLIC_URL", PUBLIC_URL)
    assert main(["install", "zendesk"]) == 0
    assert "ZENDESK_WEBHOOK_SECRET" in (zendesk_env / ".env").read_text()
    assert main(["install", "zendesk"]) == 0
    assert capsys.readouterr().out.strip().endswith("everything is up to date: nothing to change")
    assert main(["uninstall", "zendesk"]) == 0
    assert "delete  webhook 'Tierup'" in capsys.readouterr().out


def test_tierup_install_zendesk_without_public_url_is_refused(
    account: FakeAccount, zendesk_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "zendesk"]) == 2
    err = capsys.readouterr().err
    assert "TIERUP_PUBLIC_URL is not set" in err and "/webhooks/zendesk" in err
    assert len(account.mock.calls) == 0


def test_tierup_install_zendesk_reports_a_zendesk_failure_in_one_line(
    account: FakeAccount, zendesk_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERUP_PUBLIC_URL", PUBLIC_URL)
    account.mock.replace(responses.GET, f"{API}/users/me.json", status=401,
                         json={"error": "Couldn't authenticate you"})  # fmt: skip
    assert main(["install", "zendesk"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tierup: install zendesk:") and "401" in err and "\n" not in err


def test_a_429_half_way_names_the_call_it_stopped_at(
    account: FakeAccount, zendesk_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERUP_PUBLIC_URL", PUBLIC_URL)
    account.mock.replace(responses.POST, re.compile(re.escape(f"{API}/macros") + r"\.json$"), status=429,
                         headers={"Retry-After": "47"}, json={"error": "TooManyRequests"})  # fmt: skip
    assert main(["install", "zendesk"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "tierup: install zendesk: create macro 'Escalate ticket': Zendesk answered 429 (retry after 47.0s) "
        "(what was made stays: run install again to finish)"
    )


# --- the escalation email (SD3): ZENDESK_ESCALATION_ADDRESS -------------------------------------------

ADDRESS = "support-escalation@acme.example"
EMAIL_TRIGGERS = ("Tierup: escalation email", "Tierup: escalation email answered")


def email_installer(env_path: Path, address: str | None = ADDRESS) -> ZendeskInstaller:
    settings = ZendeskSettings.from_env({"ZENDESK_URL": URL, "ZENDESK_EMAIL": "tierup@acme.example",
                                          "ZENDESK_API_TOKEN": "token",
                                          "ZENDESK_ESCALATION_ADDRESS": address or ""})  # fmt: skip
    assert settings is not None and settings.escalation_address == address
    return ZendeskInstaller(zenpy_client(settings), load_policy("service-desk"), env_path, settings.escalation_address)


def test_the_escalation_address_adds_the_two_email_triggers(account: FakeAccount, tmp_path: Path) -> None:
    report = email_installer(tmp_path / ".env").install(PUBLIC_URL)
    created = [s.name for s in report.steps if s.action == "create" and s.kind == "trigger"]
    assert len(created) == 9 and created[-2:] == list(EMAIL_TRIGGERS)
    sent = {b["trigger"]["title"]: b["trigger"] for b in account.sent("POST", "/triggers")}
    to_address = [
        {"field": "via_id", "operator": "is", "value": "4"},
        {"field": "recipient", "operator": "is", "value": ADDRESS},
    ]
    email = sent["Tierup: escalation email"]
    assert email["conditions"] == {
        "all": [{"field": "update_type", "operator": "is", "value": "Create"}, *to_address],
        "any": [],
    }
    answered = sent["Tierup: escalation email answered"]
    assert answered["conditions"] == {
        "all": [
            {"field": "update_type", "operator": "is", "value": "Change"},
            *to_address,
            {"field": "comment_is_public", "operator": "is", "value": "true"},
            {"field": "role", "operator": "is", "value": "end_user"},
            {"field": "current_tags", "operator": "not_includes", "value": "tierup_escalation_request"},
        ],
        "any": [],
    }
    hook = account.named("webhooks", "Tierup")
    for trigger in (email, answered):
        assert MARKER in trigger["description"] and ADDRESS in trigger["description"]
        ((field_name, (hook_id, raw_body)),) = [(a["field"], a["value"]) for a in trigger["actions"]]
        assert (field_name, hook_id) == ("notification_webhook", hook["id"])
        body = json.loads(raw_body)
        assert (body["kind"], body["channel"]) == ("escalation_requested", "email")
        assert body["ticket"]["description"] == "{{ticket.description}}"
        assert body["comment"] == "{{ticket.latest_comment}}"


def test_the_email_triggers_are_kept_by_a_second_run_and_removed_by_uninstall(
    account: FakeAccount, tmp_path: Path
) -> None:
    env_path = tmp_path / ".env"
    email_installer(env_path).install(PUBLIC_URL)
    account.mock.calls.reset()
    assert email_installer(env_path).install(PUBLIC_URL).changes == [] and account.writes == 0
    # A changed address is put right in place, in both triggers, and nothing is duplicated.
    report = email_installer(env_path, "escalations@acme.example").install(PUBLIC_URL)
    assert [(s.action, s.name) for s in report.changes] == [("update", t) for t in EMAIL_TRIGGERS]
    assert {"field": "recipient", "operator": "is", "value": "escalations@acme.example"} in account.named(
        "triggers", "Tierup: escalation email"
    )["conditions"]["all"]
    assert len(account.objects["triggers"]) == 10  # the admin's one and Tierup's nine
    account.mock.calls.reset()
    removed = email_installer(env_path).uninstall()
    assert {s.name for s in removed.changes if s.kind == "trigger"} >= set(EMAIL_TRIGGERS)
    assert [t["title"] for t in account.objects["triggers"].values()] == ["Notify requester of new ticket"]


def test_unsetting_the_escalation_address_removes_the_email_triggers(account: FakeAccount, tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    email_installer(env_path).install(PUBLIC_URL)
    report = email_installer(env_path, None).install(PUBLIC_URL)  # "Unset: no email channel"

    assert sorted((s.action, s.name) for s in report.changes if s.kind == "trigger") == [
        ("delete", t) for t in sorted(EMAIL_TRIGGERS)
    ]
    assert not set(EMAIL_TRIGGERS) & {t["title"] for t in account.objects["triggers"].values()}
    account.mock.calls.reset()
    assert email_installer(env_path, None).install(PUBLIC_URL).changes == [] and account.writes == 0


def test_an_address_that_is_not_one_email_is_refused() -> None:
    with pytest.raises(ConfigError, match="ZENDESK_ESCALATION_ADDRESS must be one e-mail address"):
        ZendeskSettings.from_env({"ZENDESK_URL": URL, "ZENDESK_EMAIL": "tierup@acme.example", "ZENDESK_API_TOKEN": "t",
                                  "ZENDESK_ESCALATION_ADDRESS": "a@x.example, b@x.example"})  # fmt: skip


def test_tierup_install_zendesk_reads_the_escalation_address(
    account: FakeAccount, zendesk_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERUP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("ZENDESK_ESCALATION_ADDRESS", ADDRESS)
    assert main(["install", "zendesk", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "create  trigger 'Tierup: escalation email'" in out
    assert "create  trigger 'Tierup: escalation email answered'" in out
