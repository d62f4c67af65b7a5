"""`tierup install jira` / `tierup uninstall jira` against a mocked Jira admin API, through the real CLI."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from dotenv import dotenv_values
from requests import PreparedRequest

from integration.cli import build_parser, main
from tests.jira.conftest import BOT, ENV, SITE, fixture

PUBLIC = "https://tierup.example.org"
HOOKS = f"{SITE}/rest/webhooks/1.0/webhook"
POLICY_GROUPS = (
    "Technical Support Team Leaders",
    "Technical Support Team Leaders APAC",
    "Technical Support Management",
)
INSTALL_ENV = {
    **{k: v for k, v in ENV.items() if k != "JIRA_WEBHOOK_SECRET"},
    "TIERUP_PUBLIC_URL": PUBLIC,
    "TIERUP_POLICY": "lead-review",
}


class Jira:
    """The admin side of a Jira site, with webhooks kept between calls (secrets are never shown back)."""

    def __init__(self, rsps: responses.RequestsMock, hooks: list[dict[str, Any]]) -> None:
        self.rsps = rsps
        self.hooks = copy.deepcopy(hooks)
        self.secrets: dict[str, str] = {}
        self.groups = set(POLICY_GROUPS)
        self.fields: list[Any] = fixture("rest_api2_field_list.json")
        self.statuses: list[Any] = fixture("rest_api2_project_statuses.json")
        self.request_types: Any = fixture("servicedeskapi_request_types.json")
        rsps.get(f"{SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_cloud.json"))
        rsps.add_callback("GET", HOOKS, callback=lambda r: (200, {}, json.dumps(self.hooks)))
        rsps.add_callback("POST", HOOKS, callback=self._create)
        rsps.add_callback("PUT", re.compile(rf"{HOOKS}/\d+"), callback=self._update)
        rsps.add_callback("DELETE", re.compile(rf"{HOOKS}/\d+"), callback=self._delete)
        rsps.add_callback("GET", f"{SITE}/rest/api/2/field", callback=lambda r: (200, {}, json.dumps(self.fields)))
        rsps.add_callback("GET", f"{SITE}/rest/api/2/groups/picker", callback=self._groups)
        rsps.get(f"{SITE}/rest/api/2/priority", json=fixture("rest_api2_priority_list.json"))
        rsps.add_callback("GET", f"{SITE}/rest/api/2/project/SUP/statuses",
                          callback=lambda r: (200, {}, json.dumps(self.statuses)))  # fmt: skip
        rsps.get(f"{SITE}/rest/servicedeskapi/servicedesk", json=fixture("servicedeskapi_servicedesk_list.json"))
        rsps.add_callback("GET", f"{SITE}/rest/servicedeskapi/servicedesk/1/requesttype",
                          callback=self._request_types)  # fmt: skip
        rsps.get(f"{SITE}/rest/api/2/myself", json=fixture("rest_api2_myself.json"))
        self.link_types: Any = fixture("rest_api2_issue_link_types.json")
        rsps.add_callback("GET", f"{SITE}/rest/api/2/issueLinkType", callback=self._link_types)

    def _request_types(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        """JSM's paged list: at most 50 a page here (JSM caps `limit` as it likes), `isLastPage` on the last."""
        query = parse_qs(urlsplit(request.url or "").query)
        start, limit = int(query.get("start", ["0"])[0]), min(int(query.get("limit", ["50"])[0]), 50)
        values = self.request_types["values"]
        chunk = values[start : start + limit]
        last = start + len(chunk) >= len(values)
        page = {**self.request_types, "size": len(chunk), "start": start, "limit": limit, "isLastPage": last,
                "values": chunk}  # fmt: skip
        return 200, {}, json.dumps(page)

    def _link_types(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        if self.link_types is None:  # issue linking switched off
            return 404, {}, json.dumps({"errorMessages": ["Issue linking is currently disabled."], "errors": {}})
        return 200, {}, json.dumps(self.link_types)

    def _create(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or "{}")
        hook_id = str(max([int(h["self"].rsplit("/", 1)[1]) for h in self.hooks] + [10]) + 1)
        self.secrets[hook_id] = body.pop("secret", "")
        hook = {**body, "enabled": True, "self": f"{HOOKS}/{hook_id}", "lastUpdatedUser": BOT,
                "lastUpdatedDisplayName": "Tierup", "lastUpdated": 1773136800000}  # fmt: skip
        self.hooks.append(hook)
        return 201, {}, json.dumps(hook)

    def _update(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        hook_id = (request.url or "").rsplit("/", 1)[1]
        body = json.loads(request.body or "{}")
        self.secrets[hook_id] = body.pop("secret", self.secrets.get(hook_id, ""))
        for hook in self.hooks:
            if hook["self"].endswith(f"/{hook_id}"):
                hook.update(body)
                return 200, {}, json.dumps(hook)
        return 404, {}, json.dumps({"errorMessages": ["Webhook not found"]})

    def _delete(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        hook_id = (request.url or "").rsplit("/", 1)[1]
        self.hooks = [h for h in self.hooks if not h["self"].endswith(f"/{hook_id}")]
        return 204, {}, ""

    def _groups(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url or "").query)["query"][0]
        answer = fixture("rest_api2_groups_picker.json")
        answer["groups"] = [dict(answer["groups"][0], name=g, html=f"<b>{g}</b>") for g in self.groups if query in g]
        answer["total"] = len(answer["groups"])
        return 200, {}, json.dumps(answer)

    def writes(self) -> list[tuple[str, str]]:
        return [(c.request.method or "", urlsplit(c.request.url or "").path) for c in self.rsps.calls
                if c.request.method in ("POST", "PUT", "DELETE")]  # fmt: skip


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a `.env` holding the install settings, and no Tierup settings in the environment."""
    for name in list(os.environ):
        if name.startswith(("JIRA_", "TIERUP_", "ZENDESK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    write_env(tmp_path, INSTALL_ENV)
    return tmp_path


def write_env(where: Path, values: dict[str, str]) -> None:
    (where / ".env").write_text("".join(f"{k}='{v}'\n" for k, v in values.items()), encoding="utf-8")


@pytest.fixture
def jira() -> Iterator[Jira]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield Jira(rsps, fixture("rest_webhooks_list_others.json"))


def env_file(where: Path) -> dict[str, str | None]:
    return dotenv_values(where / ".env")


def test_first_run_registers_the_webhook_and_stores_its_secret(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "jira"]) == 0

    assert jira.writes() == [("POST", "/rest/webhooks/1.0/webhook")]
    [ours] = [h for h in jira.hooks if h["name"] == "Tierup escalations"]
    assert ours["url"] == f"{PUBLIC}/webhooks/jira"
    assert ours["events"] == ["jira:issue_created", "jira:issue_updated", "comment_created"]
    assert ours["filters"] == {"issue-related-events-section": "project in (SUP)"}
    assert ours["excludeBody"] is False
    stored = env_file(here)["JIRA_WEBHOOK_SECRET"]
    assert stored and len(stored) >= 40 and jira.secrets[ours["self"].rsplit("/", 1)[1]] == stored
    out = capsys.readouterr().out
    assert 'webhook: register "Tierup escalations" -> https://tierup.example.org/webhooks/jira' in out
    assert "store JIRA_WEBHOOK_SECRET in .env" in out and stored not in out


def test_a_new_env_file_is_readable_by_its_owner_only(here: Path, jira: Jira, monkeypatch: pytest.MonkeyPatch) -> None:
    (here / ".env").unlink()
    for name, value in INSTALL_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["install", "jira"]) == 0
    assert (here / ".env").stat().st_mode & 0o777 == 0o600
    assert env_file(here)["JIRA_WEBHOOK_SECRET"]


def test_a_symlinked_env_file_is_written_where_it_points(here: Path, jira: Jira) -> None:
    deployed = here / "tierup.env"
    (here / ".env").rename(deployed)
    (here / ".env").symlink_to(deployed)
    assert main(["install", "jira"]) == 0
    assert (here / ".env").is_symlink()  # still the deployed file: python-dotenv replaced the link before
    assert dotenv_values(deployed)["JIRA_WEBHOOK_SECRET"]


def test_an_env_file_that_cannot_be_written_is_one_line(
    here: Path, jira: Jira, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / ".env").unlink()
    (here / ".env").mkdir()  # anything that refuses the write (permissions, a read-only volume) answers alike
    for name, value in INSTALL_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["install", "jira"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tierup: cannot write .env (Is a directory)") and len(err.splitlines()) == 1
    assert "run the command again" in err


def test_sh2_a_second_run_changes_nothing(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "jira"]) == 0
    before = (here / ".env").read_text()
    jira.rsps.calls.reset()
    capsys.readouterr()

    assert main(["install", "jira"]) == 0

    assert jira.writes() == []
    assert (here / ".env").read_text() == before
    assert len([h for h in jira.hooks if h["name"] == "Tierup escalations"]) == 1
    assert "is up to date; nothing to change" in capsys.readouterr().out


def test_dry_run_writes_nothing(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    before = (here / ".env").read_text()
    assert main(["install", "jira", "--dry-run"]) == 0
    assert jira.writes() == []
    assert (here / ".env").read_text() == before
    out = capsys.readouterr().out
    assert "(dry run: nothing changed)" in out
    assert "webhook: would register" in out and "would store JIRA_WEBHOOK_SECRET" in out


def test_a_changed_setting_updates_our_webhook_in_place(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_SECRET": "kept-secret", "JIRA_PROJECTS": "SUP,OPS"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, fixture("rest_webhooks_list_with_ours.json"))
        rsps.add_callback("GET", f"{SITE}/rest/api/2/project/OPS/statuses",
                          callback=lambda r: (200, {}, json.dumps(jira.statuses)))  # fmt: skip
        assert main(["install", "jira"]) == 0
        assert jira.writes() == [("PUT", "/rest/webhooks/1.0/webhook/7")]
        assert jira.hooks[1]["filters"] == {"issue-related-events-section": "project in (SUP, OPS)"}
        assert jira.secrets["7"] == "kept-secret"  # Jira keeps no secret we do not send
    assert "update id 7 (JQL filter 'project in (SUP)')" in capsys.readouterr().out


def test_our_webhook_switched_off_by_an_admin_is_switched_on_again(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_SECRET": "kept-secret-0123456789"})
    hooks = fixture("rest_webhooks_list_with_ours.json")
    hooks[1]["enabled"] = False  # Administration > System > WebHooks: Disable
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, hooks)
        assert main(["install", "jira"]) == 0
        assert "(disabled)" in capsys.readouterr().out
        [sent] = [json.loads(c.request.body) for c in rsps.calls if c.request.method == "PUT"]
        assert sent["enabled"] is True and jira.hooks[1]["enabled"] is True
        rsps.calls.reset()
        assert main(["install", "jira"]) == 0
        assert jira.writes() == []  # switched on: nothing more to do


def test_our_webhook_without_a_stored_secret_gets_a_new_one(here: Path) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, fixture("rest_webhooks_list_with_ours.json"))
        assert main(["install", "jira"]) == 0
        assert jira.writes() == [("PUT", "/rest/webhooks/1.0/webhook/7")]
        assert jira.secrets["7"] == env_file(here)["JIRA_WEBHOOK_SECRET"]


def test_a_rotation_sends_the_newest_secret_and_then_rests(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The README's rotation: the new secret in front of the old one, then install again.
    write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_SECRET": "new-secret-0123456789,old-secret-0123456789"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, fixture("rest_webhooks_list_with_ours.json"))
        jira.secrets["7"] = "old-secret-0123456789"
        assert main(["install", "jira"]) == 0
        assert jira.writes() == [("PUT", "/rest/webhooks/1.0/webhook/7")]
        assert jira.secrets["7"] == "new-secret-0123456789"  # Jira signs with the new one from now on
        assert "secret rotation: the newest of 2 secrets" in capsys.readouterr().out
        # Once the old secret is dropped, install has nothing to change.
        write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_SECRET": "new-secret-0123456789"})
        rsps.calls.reset()
        assert main(["install", "jira"]) == 0
        assert jira.writes() == []


@pytest.mark.parametrize("command", [["install", "jira"], ["uninstall", "jira"]])
def test_data_center_10_is_told_to_register_the_webhook_by_hand(
    here: Path, jira: Jira, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_DEPLOYMENT": "datacenter"})
    server = {**fixture("rest_api2_serverinfo_dc.json"), "version": "10.3.1", "versionNumbers": [10, 3, 1]}
    jira.rsps.replace("GET", f"{SITE}/rest/api/2/serverInfo", json=server)
    assert main(command) != 0
    assert jira.writes() == []
    err = capsys.readouterr().err
    assert "Jira Data Center 10.3.1 keeps webhooks at /rest/jira-webhook/1.0/webhooks" in err
    assert "by hand" in err


def test_data_center_9_installs_through_the_webhook_resource(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_DEPLOYMENT": "datacenter"})
    jira.rsps.replace("GET", f"{SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_dc.json"))
    assert main(["install", "jira"]) == 0
    assert jira.writes() == [("POST", "/rest/webhooks/1.0/webhook")]
    # Whether this version signs its deliveries cannot be told from here: the admin is told what to do if not.
    assert "set JIRA_WEBHOOK_URL_TOKEN" in capsys.readouterr().out


def test_uninstall_deletes_only_ours(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, fixture("rest_webhooks_list_with_ours.json"))
        assert main(["uninstall", "jira", "--dry-run"]) == 0
        assert jira.writes() == []
        assert main(["uninstall", "jira"]) == 0
        assert jira.writes() == [("DELETE", "/rest/webhooks/1.0/webhook/7")]
        assert [h["name"] for h in jira.hooks] == ["Slack sync"]
        assert main(["uninstall", "jira"]) == 0
    out = capsys.readouterr().out
    assert "would remove webhook 7" in out and "removed webhook 7" in out
    assert "no Tierup webhook is registered in Jira" in out


def staging_hook() -> dict[str, Any]:
    """Another Tierup's webhook on the same site: same name, its own address (with its URL token)."""
    (_, ours) = fixture("rest_webhooks_list_with_ours.json")
    return {**ours, "url": "https://tierup-staging.example.org/webhooks/jira?token=staging-url-token",
            "filters": {"issue-related-events-section": "project in (TEST)"},
            "self": f"{HOOKS}/9"}  # fmt: skip


def test_a_webhook_of_the_same_name_sending_elsewhere_is_left_alone(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = Jira(rsps, [*fixture("rest_webhooks_list_others.json"), staging_hook()])
        assert main(["install", "jira"]) == 0
        assert jira.writes() == [("POST", "/rest/webhooks/1.0/webhook")]  # ours made; staging's not redirected
        assert jira.hooks[-2] == staging_hook()
        created = jira.hooks[-1]
        assert created["url"] == f"{PUBLIC}/webhooks/jira"
        rsps.calls.reset()
        assert main(["uninstall", "jira"]) == 0
        assert jira.writes() == [("DELETE", urlsplit(created["self"]).path)]
        assert jira.hooks[-1] == staging_hook()  # still there, still sending to staging
    out = capsys.readouterr().out
    staging = "https://tierup-staging.example.org/webhooks/jira"
    assert f'webhook 9, also named "Tierup escalations", sends to {staging}' in out
    assert out.count("is left as it is") == 2  # said by install and by uninstall
    assert "staging-url-token" not in out  # another Tierup's URL token is a credential too


def test_missing_fields_are_reported_precisely(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    env = {k: v for k, v in INSTALL_ENV.items() if k not in ("JIRA_FIELD_LEAD_GROUP", "JIRA_FIELD_RATIONALE")}
    env["JIRA_FIELD_FIRST_CONTACT_DUE"] = "customfield_10102"  # a text field, not a date-time
    env["JIRA_FIELD_REASON"] = "customfield_19999"  # no such field
    write_env(here, env)
    jira.fields = [f for f in jira.fields if f["name"] != "Business rationale"]

    assert main(["install", "jira"]) == 1

    out = capsys.readouterr().out
    assert "to do in Jira (4):" in out
    assert (
        'JIRA_FIELD_REASON=customfield_19999: Jira has no such field; create a "Select List (single choice)" '
        'custom field named "Escalation reason", add it to the projects\' edit screens and set its id'
    ) in out
    assert (
        'JIRA_FIELD_RATIONALE is not set: create a "Paragraph (multi-line text)" custom field named "Business '
        "rationale\", add it to the projects' edit screens, then set JIRA_FIELD_RATIONALE to its id (customfield_NNNNN)"
    ) in out
    # A field with the expected name exists: the setting to add is spelled out.
    assert (
        "JIRA_FIELD_LEAD_GROUP is not set: set JIRA_FIELD_LEAD_GROUP=customfield_10105 "
        '(the field named "Escalation lead group")' in out
    )
    assert (
        "JIRA_FIELD_FIRST_CONTACT_DUE=customfield_10102 (Preferred contact) is a field of type string; Tierup needs a "
        '"Date Time Picker" field there'
    ) in out
    # The webhook is registered all the same: fixing the fields needs no second registration.
    assert jira.writes() == [("POST", "/rest/webhooks/1.0/webhook")]


def test_missing_groups_priorities_status_and_request_type_are_reported(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_PRIORITIES": "urgent=Critical"})
    jira.groups = {"Technical Support Team Leaders"}
    jira.statuses[0]["statuses"] = [s for s in jira.statuses[0]["statuses"] if s["name"] != "Escalated"]
    jira.request_types["values"] = jira.request_types["values"][:1]

    assert main(["install", "jira", "--dry-run"]) == 1

    out = capsys.readouterr().out
    assert 'group "Technical Support Team Leaders APAC" (policy lead-review) does not exist: create it' in out
    assert 'group "Technical Support Management" (policy lead-review) does not exist' in out
    assert (
        'priority "Critical" (JIRA_PRIORITIES urgent=Critical) does not exist: create it, or map urgent to one of: '
        "Highest, High, Medium, Low, Lowest"
    ) in out
    assert 'project SUP: its workflow has no status "Escalated": add the status and a transition to it' in out
    assert 'JSM request type "Escalation request" (JIRA_ESCALATION_REQUEST_TYPE) not found (SUP): create it' in out
    assert "checked groups: 1 of 3 found" in out


def test_everything_present_is_checked_and_reported_ok(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "jira", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in ("checked custom fields: 7 OK", "checked groups: 3 of 3 found", "checked priorities: 4 of 4 found",
                 "checked project SUP: workflow has status Escalated",
                 'checked project SUP: request type "Escalation request" found',
                 'checked issue link type "Relates" found'):  # fmt: skip
        assert line in out
    assert "note: JIRA_FIELD_FEEDBACK is not set" in out
    assert (
        "note: JIRA_FIELD_PARTICIPANTS is not set, so request participants are not taken as CCs: only the reporter "
        'may escalate an issue by form or email; to use it: set JIRA_FIELD_PARTICIPANTS=customfield_10027 (the field '
        'named "Request participants")'
    ) in out


def test_the_request_type_is_found_on_a_later_page(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    first, ours = jira.request_types["values"]
    others = [{**first, "id": str(100 + n), "name": f"IT request {n}"} for n in range(120)]
    jira.request_types["values"] = [*others, ours]
    assert main(["install", "jira", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert 'request type "Escalation request" found' in out and "not found" not in out


def test_a_missing_link_type_is_reported_with_the_ones_that_exist(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_LINK_TYPE": "Escalates"})
    assert main(["install", "jira", "--dry-run"]) == 1
    assert (
        'issue link type "Escalates" (JIRA_LINK_TYPE) does not exist: create it (Jira settings > Issues > Issue '
        "linking) or set JIRA_LINK_TYPE to one of: Blocks, Cloners, Duplicate, Relates"
    ) in capsys.readouterr().out

    write_env(here, {**INSTALL_ENV, "JIRA_LINK_TYPE": "relates"})
    assert main(["install", "jira", "--dry-run"]) == 1
    assert "set JIRA_LINK_TYPE=Relates (names are matched exactly)" in capsys.readouterr().out


def test_issue_linking_switched_off_is_reported(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    jira.link_types = None
    assert main(["install", "jira", "--dry-run"]) == 1
    assert "issue linking is off: switch it on (Jira settings > Issues > Issue linking)" in capsys.readouterr().out


def test_without_a_public_url_install_refuses(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    write_env(here, {k: v for k, v in INSTALL_ENV.items() if k != "TIERUP_PUBLIC_URL"})
    assert main(["install", "jira"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tierup: TIERUP_PUBLIC_URL is not set") and err.count("\n") == 1
    assert [c.request.url for c in jira.rsps.calls] == []  # refused before talking to Jira


def test_without_jira_settings_install_refuses(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_env(here, {"TIERUP_PUBLIC_URL": PUBLIC})
    assert main(["install", "jira"]) == 2
    assert capsys.readouterr().err == "tierup: JIRA_URL is not set (environment or .env)\n"


def test_without_projects_install_refuses(here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]) -> None:
    write_env(here, {k: v for k, v in INSTALL_ENV.items() if k != "JIRA_PROJECTS"})
    assert main(["install", "jira"]) == 2
    assert "JIRA_PROJECTS is not set" in capsys.readouterr().err


def test_the_bot_account_is_stored_when_missing(here: Path, jira: Jira) -> None:
    write_env(here, {k: v for k, v in INSTALL_ENV.items() if k != "JIRA_BOT_ACCOUNT"})
    assert main(["install", "jira"]) == 0
    assert env_file(here)["JIRA_BOT_ACCOUNT"] == BOT


def test_url_token_goes_into_the_webhook_url_and_never_into_the_output(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1"})
    assert main(["install", "jira"]) == 0
    assert [h["url"] for h in jira.hooks if h["name"] == "Tierup escalations"] == [
        f"{PUBLIC}/webhooks/jira?token=dc-token-77c1"
    ]
    out = capsys.readouterr().out
    assert "dc-token-77c1" not in out and "token=***" in out


@pytest.mark.parametrize("new_token", ["dc-token-88d2", None])
def test_a_url_token_change_never_prints_the_live_one(
    here: Path, jira: Jira, capsys: pytest.CaptureFixture[str], new_token: str | None
) -> None:
    write_env(here, {**INSTALL_ENV, "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1"})
    assert main(["install", "jira"]) == 0
    env = {**INSTALL_ENV, **({"JIRA_WEBHOOK_URL_TOKEN": new_token} if new_token else {})}
    write_env(here, {**env, "JIRA_WEBHOOK_SECRET": str(env_file(here)["JIRA_WEBHOOK_SECRET"])})
    capsys.readouterr()
    assert main(["install", "jira", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would update id" in out and "url 'https://tierup.example.org/webhooks/jira?token=***'" in out
    assert "dc-token-77c1" not in out  # what Jira sends, and a running service accepts, right now


def test_a_jira_error_is_one_line(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{SITE}/rest/api/2/serverInfo", json=fixture("rest_api2_serverinfo_cloud.json"))
        rsps.get(HOOKS, status=403, json={"errorMessages": ["You are not an administrator."]})
        assert main(["install", "jira"]) == 2
    assert capsys.readouterr().err == "tierup: Jira: list webhooks: HTTP 403: You are not an administrator.\n"


def test_install_and_uninstall_parse_with_the_shared_parsers() -> None:
    parser = build_parser()
    args = parser.parse_args(["install", "jira", "--dry-run"])
    assert (args.command, args.target, args.dry_run) == ("install", "jira", True)
    args = parser.parse_args(["uninstall", "jira"])
    assert (args.command, args.target, args.dry_run) == ("uninstall", "jira", False)
