"""The Jira half of the SLA sweeps (SH3, SD1): the Automation push body and the JQL sweep, under the real client."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses

from adapters.jira.parse import JiraPayloadError
from adapters.jira.settings import JiraSettings
from adapters.jira.sweep import JiraSweepSource, breached_jql, jql_string
from integration.model import SYSTEM, Channel, EscalationRequest, Ignored, Priority, Reason
from tests.jira.conftest import DC_ENV, DC_SITE, ENV, NOW, SITE, adapter_for, delivery, fixture

README = Path(__file__).parent.parent.parent / "adapters" / "jira" / "README.md"


# --- the push: a Jira Automation rule's "Send web request" ------------------------------------------


def automation_body(issue_key: str = "SUP-7") -> bytes:
    """The README's Automation body, exactly as written there, with the smart values Jira fills in."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    [block] = [b for b in blocks if "tierup:sla_breached" in b]
    return block.replace("{{issue.key}}", issue_key).encode()


def test_the_readme_automation_body_is_an_sla_breach_by_the_system() -> None:
    body = automation_body()
    assert json.loads(body) == {
        "webhookEvent": "tierup:sla_breached",
        "sla": "Time to resolution",
        "issue": {"key": "SUP-7"},
    }
    event = adapter_for("service-desk").parse(delivery(body, "sha256:automation"))

    assert event == EscalationRequest(
        platform=event.platform,
        ticket_ref="SUP-7",
        requested_by=SYSTEM,
        channel=Channel.SLA_BREACH,
        reason=Reason.SLA_VIOLATION,
        received_at=NOW,  # no timestamp in the body: the delivery's arrival counts
        rationale="Time to resolution breached",
        ticket=None,  # the gateway reads the issue once, as for every event without the issue's fields
        delivery_id="sha256:automation",
    )


def test_the_automation_body_classifies_with_its_issue() -> None:
    classified = adapter_for("lead-review").classify(json.loads(automation_body("SUP-12")))
    assert classified is not None
    assert (classified.kind, classified.ticket_ref, classified.occurred_at) == ("tierup:sla_breached", "SUP-12", None)


def test_an_automation_body_from_another_project_is_ignored() -> None:
    result = adapter_for("lead-review").parse(delivery(automation_body("OPS-3"), "sha256:other"))
    assert isinstance(result, Ignored) and result.reason == "project OPS is not in JIRA_PROJECTS"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"webhookEvent": "tierup:sla_breached"}, "issue: missing"),
        ({"webhookEvent": "tierup:sla_breached", "issue": {"key": ["SUP-7"]}}, "issue.key: must be text"),
        ({"webhookEvent": "tierup:sla_breached", "issue": {"key": "SUP-7"}, "sla": {"x": 1}}, "sla: must be text"),
    ],
)
def test_a_malformed_automation_body_is_a_payload_error(payload: Any, problem: str) -> None:
    with pytest.raises(JiraPayloadError, match=re.escape(problem)):
        adapter_for("lead-review").parse(delivery(json.dumps(payload).encode(), "sha256:bad"))


# --- a Jira site that keeps state: searches see the labels earlier edits added ---------------------

FIRST_RESPONSE, RESOLUTION = "customfield_10030", "customfield_10031"
SLA_FIELDS = {FIRST_RESPONSE: "Time to first response", RESOLUTION: "Time to resolution"}


def sla_value(name: str, breach_at: datetime, *, breached: bool, sla_id: str = "1") -> dict[str, Any]:
    """A JSM SLA as the SLA field on an issue and `/request/{key}/sla` give it (the captured shape)."""
    value = copy.deepcopy(fixture("rest_api2_issue_get_jsm_sla_breached.json")["fields"][FIRST_RESPONSE])
    millis = int(breach_at.timestamp() * 1000)
    cycle = value["ongoingCycle"]
    cycle["breached"] = breached
    cycle["breachTime"] = {
        "iso8601": breach_at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": breach_at.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "friendly": breach_at.strftime("%d/%b/%y %I:%M %p"),
        "epochMillis": millis,
    }
    left = int((breach_at - NOW).total_seconds() * 1000)
    cycle["remainingTime"] = {"millis": left, "friendly": f"{left // 60000}m"}
    return {**value, "name": name, "id": sla_id}


def issue_json(key: str, *, labels: list[str] | None = None, region: str = "PL", done: bool = False,
               first_response: tuple[datetime, bool] | None = (NOW - timedelta(hours=1), True),
               resolution: tuple[datetime, bool] | None = None, base: str = SITE) -> dict[str, Any]:  # fmt: skip
    """`GET issue` for `key`: the captured JSM issue, with its own labels, region, status and SLAs."""
    issue = fixture("rest_api2_issue_get_jsm_sla_breached.json")
    number = int(key.rsplit("-", 1)[1])
    issue.update(id=str(10000 + number), key=key, self=f"{base}/rest/api/2/issue/{10000 + number}")
    fields = issue["fields"]
    fields["labels"] = list(labels if labels is not None else ["gym"])
    fields["customfield_10104"] = {"value": region, "id": "10210"}
    fields[FIRST_RESPONSE] = None
    if first_response:
        fields[FIRST_RESPONSE] = sla_value(SLA_FIELDS[FIRST_RESPONSE], first_response[0], breached=first_response[1])
    fields[RESOLUTION] = None
    if resolution:
        fields[RESOLUTION] = sla_value(SLA_FIELDS[RESOLUTION], resolution[0], breached=resolution[1], sla_id="2")
    if done:
        fields["status"] = {
            "name": "Resolved",
            "id": "10005",
            "statusCategory": {"id": 3, "key": "done", "name": "Done"},
        }
    return issue


def field_list() -> list[dict[str, Any]]:
    """`GET field`: the captured list plus the two JSM SLA fields (their type is what the sweep looks for)."""
    sla_fields = [
        {"id": ident, "key": ident, "name": name, "custom": True, "orderable": True, "navigable": True,
         "searchable": True, "clauseNames": [f"cf[{ident.rsplit('_', 1)[1]}]", name],
         "schema": {"type": "sd-servicelevelagreement", "custom": "com.atlassian.servicedesk:sd-sla-field",
                    "customId": int(ident.rsplit("_", 1)[1])}}
        for ident, name in SLA_FIELDS.items()
    ]  # fmt: skip
    return [*fixture("rest_api2_field_list.json"), *sla_fields]


def _number(key: str) -> tuple[str, int]:
    project, _, number = key.rpartition("-")
    return project, int(number)


class FakeJira:
    """Jira Cloud or Data Center on `responses`: issues kept as state, JQL evaluated on each search.

    Searches evaluate the sweep's query against the issues *as they are now* (a label added by
    an edit takes the issue out of the next page), page by offset (Data Center's `startAt`;
    Cloud's token here is an offset too, as nothing promises it is a snapshot), and follow JQL's
    rule that `labels not in (…)` never matches an issue without labels.
    """

    def __init__(self, rsps: responses.RequestsMock, *, cloud: bool = True) -> None:
        self.rsps, self.cloud = rsps, cloud
        self.base = SITE if cloud else DC_SITE
        self.issues: dict[str, dict[str, Any]] = {}
        self.log: list[str] = []  # "METHOD /path" of every call after serverInfo, in order
        api, sd = re.escape(f"{self.base}/rest/api/2/"), re.escape(f"{self.base}/rest/servicedeskapi/")
        info = "rest_api2_serverinfo_cloud.json" if cloud else "rest_api2_serverinfo_dc.json"
        rsps.get(f"{self.base}/rest/api/2/serverInfo", json=fixture(info))
        rsps.add_callback("GET", f"{self.base}/rest/api/2/field", self._fields)
        rsps.add_callback("POST", f"{self.base}/rest/api/2/search/jql" if cloud else f"{self.base}/rest/api/2/search",
                          self._search)  # fmt: skip
        rsps.add_callback("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+/transitions"), self._transitions)
        rsps.add_callback("POST", re.compile(api + r"issue/[A-Z0-9]+-\d+/transitions"), self._ok)
        rsps.add_callback("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+/comment.*"), self._no_comments)
        rsps.add_callback("POST", re.compile(api + r"issue/[A-Z0-9]+-\d+/comment"), self._comment)
        rsps.add_callback("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+(\?.*)?$"), self._get_issue)
        rsps.add_callback("PUT", re.compile(api + r"issue/[A-Z0-9]+-\d+$"), self._edit)
        rsps.add_callback("PUT", re.compile(api + r"comment/\d+/properties/tierup\.key"), self._ok)
        rsps.add_callback("POST", re.compile(sd + r"request/[A-Z0-9]+-\d+/comment"), self._request_comment)
        rsps.add_callback("GET", re.compile(sd + r"request/[A-Z0-9]+-\d+/sla.*"), self._slas)

    def add(self, *issues: dict[str, Any]) -> None:
        for issue in issues:
            self.issues[issue["key"]] = issue

    def labels(self, key: str) -> set[str]:
        return set(self.issues[key]["fields"]["labels"])

    # --- what Tierup sent ---

    def bodies(self, method: str, path_end: str) -> list[Any]:
        found = []
        for call in self.rsps.calls:
            if call.request.method == method and urlsplit(call.request.url or "").path.endswith(path_end):
                found.append(json.loads(call.request.body) if call.request.body else None)
        return found

    def searches(self) -> list[Any]:
        return self.bodies("POST", "/search/jql" if self.cloud else "/search")

    # --- answers ---

    def _record(self, request: Any) -> str:
        path = urlsplit(request.url).path.removeprefix(self.base)
        self.log.append(f"{request.method} {path}")
        return path

    def _key(self, path: str) -> str:
        return re.findall(r"/([A-Z0-9]+-\d+)", path)[0]

    def _ok(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 204 if request.method == "POST" else 201, {}, ""

    def _fields(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 200, {}, json.dumps(field_list())

    def _matches(self, issue: dict[str, Any], jql: str) -> bool:
        fields = issue["fields"]
        [projects] = re.findall(r"project in \(([^)]*)\)", jql)
        if _number(issue["key"])[0] not in {p.strip() for p in projects.split(",")}:
            return False
        for name in re.findall(r'"((?:[^"\\]|\\.)*)" = breached\(\)', jql):
            ident = next(i for i, n in SLA_FIELDS.items() if n.lower() == name.lower())
            sla = fields.get(ident)
            if not sla or not (sla.get("ongoingCycle") or {}).get("breached"):
                return False
        if "statusCategory != Done" in jql and fields["status"]["statusCategory"]["key"] == "done":
            return False
        for label in re.findall(r'labels not in \("([^"]+)"\)', jql):
            empty_ok = "labels is EMPTY OR" in jql
            if (not fields["labels"] and not empty_ok) or label in fields["labels"]:
                return False
        return True

    def _search(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        body = json.loads(request.body)
        found = sorted(
            (i for i in self.issues.values() if self._matches(i, body["jql"])), key=lambda i: _number(i["key"])
        )
        size = body["maxResults"]
        start = int(body.get("nextPageToken", "0")) if self.cloud else body["startAt"]
        page = [
            {"id": i["id"], "key": i["key"], "self": i["self"],
             "fields": {f: i["fields"][f] for f in body["fields"] if f in i["fields"]}}
            for i in found[start : start + size]
        ]  # fmt: skip
        if self.cloud:
            more = start + size < len(found)
            answer: dict[str, Any] = {"issues": page, "isLast": not more}
            if more:
                answer["nextPageToken"] = str(start + size)
        else:
            answer = {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": page,
            }
        return 200, {}, json.dumps(answer)

    def _get_issue(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = self._key(self._record(request))
        if key not in self.issues:
            return (
                404,
                {},
                json.dumps(
                    {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}
                ),
            )
        return 200, {}, json.dumps(self.issues[key])

    def _slas(self, request: Any) -> tuple[int, dict[str, str], str]:
        fields = self.issues[self._key(self._record(request))]["fields"]
        values = [fields[i] for i in SLA_FIELDS if fields.get(i)]
        return 200, {}, json.dumps({"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values})

    def _edit(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = self._key(self._record(request))
        body = json.loads(request.body)
        fields = self.issues[key]["fields"]
        for op in body.get("update", {}).get("labels", []):
            if "add" in op and op["add"] not in fields["labels"]:
                fields["labels"].append(op["add"])
            if "remove" in op and op["remove"] in fields["labels"]:
                fields["labels"].remove(op["remove"])
        fields.update(body.get("fields", {}))
        return 204, {}, ""

    def _transitions(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 200, {}, json.dumps(fixture("rest_api2_issue_transitions.json"))

    def _no_comments(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 200, {}, json.dumps({"startAt": 0, "maxResults": 50, "total": 0, "comments": []})

    def _comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 201, {}, json.dumps(fixture("rest_api2_comment_added.json"))

    def _request_comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 201, {}, json.dumps(fixture("servicedeskapi_request_comment_added.json"))


@pytest.fixture
def cloud() -> Iterator[FakeJira]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeJira(rsps, cloud=True)


@pytest.fixture
def dc() -> Iterator[FakeJira]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeJira(rsps, cloud=False)


def source(policy: str = "lead-review", env: dict[str, str] | None = None, page_size: int = 2) -> JiraSweepSource:
    found = adapter_for(policy, env).sweep_source()
    assert found is not None
    found.page_size = page_size
    return found


SNAPSHOT_FIELDS = ["project", "status", "priority", "labels", "assignee", "reporter", "summary", "updated",
                   "customfield_10104", "customfield_10105", FIRST_RESPONSE, RESOLUTION]  # fmt: skip


def jql(sla: str) -> str:
    return (
        f'project in (SUP) AND "{sla}" = breached() AND statusCategory != Done'
        ' AND (labels is EMPTY OR labels not in ("sla_breached")) ORDER BY key ASC'
    )


# --- the source: JQL, fields, paging ----------------------------------------------------------------


def test_cloud_pages_each_sla_query_with_its_token_and_reads_everything_first(cloud: FakeJira) -> None:
    cloud.add(*(issue_json(f"SUP-{n}") for n in range(1, 6)), issue_json("SUP-9", first_response=None))
    sweep = source()

    pages = list(sweep.pages(None, None))

    assert [[b.ticket_ref for b in p.breaches] for p in pages] == [
        ["SUP-1", "SUP-2"],
        ["SUP-3", "SUP-4"],
        ["SUP-5"],
        [],
    ]
    assert [p.events_read for p in pages] == [2, 2, 1, 0]
    assert all(p.cursor is None for p in pages)  # the query moves forward by itself
    assert cloud.searches() == [
        {"jql": jql("Time to first response"), "fields": SNAPSHOT_FIELDS, "maxResults": 2},
        {"jql": jql("Time to first response"), "fields": SNAPSHOT_FIELDS, "maxResults": 2, "nextPageToken": "2"},
        {"jql": jql("Time to first response"), "fields": SNAPSHOT_FIELDS, "maxResults": 2, "nextPageToken": "4"},
        {"jql": jql("Time to resolution"), "fields": SNAPSHOT_FIELDS, "maxResults": 2},
    ]
    assert cloud.log == ["GET /rest/api/2/field"] + ["POST /rest/api/2/search/jql"] * 4
    assert sweep.api_calls() == 5


def test_data_center_pages_by_offset(dc: FakeJira) -> None:
    dc.add(*(issue_json(f"SUP-{n}", base=DC_SITE) for n in range(1, 6)))
    pages = list(source(env=DC_ENV).pages(None, None))

    assert [b.ticket_ref for p in pages for b in p.breaches] == ["SUP-1", "SUP-2", "SUP-3", "SUP-4", "SUP-5"]
    assert [(b["jql"], b["startAt"], b["maxResults"]) for b in dc.searches()] == [
        (jql("Time to first response"), 0, 2),
        (jql("Time to first response"), 2, 2),
        (jql("Time to first response"), 4, 2),
        (jql("Time to resolution"), 0, 2),
    ]
    assert "POST /rest/api/2/search/jql" not in dc.log


def test_a_breach_carries_a_complete_snapshot_with_its_slas(cloud: FakeJira) -> None:
    breach_at = NOW - timedelta(minutes=65)
    cloud.add(issue_json("SUP-7", labels=["gym", "escalated"], region="AU", first_response=(breach_at, True)))

    [page, _] = list(source().pages(None, None))
    [breach] = page.breaches

    assert (breach.ticket_ref, breach.metric, breach.breached_at) == ("SUP-7", "Time to first response", breach_at)
    assert breach.event_id == f"jira-sla:SUP-7:{FIRST_RESPONSE}:{int(breach_at.timestamp() * 1000)}"
    snap = breach.snapshot
    assert snap is not None
    assert (snap.ref, snap.region, snap.group, snap.priority, snap.tags) == (
        "SUP-7", "AU", "Support", Priority.NORMAL, frozenset({"gym", "escalated"}),
    )  # fmt: skip
    assert [(s.name, s.breached, s.breach_at) for s in snap.slas] == [("Time to first response", True, breach_at)]


def test_an_issue_breached_on_two_slas_is_one_breach_the_earliest(cloud: FakeJira) -> None:
    early, late = NOW - timedelta(hours=3), NOW - timedelta(hours=1)
    cloud.add(issue_json("SUP-4", first_response=(late, True), resolution=(early, True)))

    breaches = [b for p in source().pages(None, None) for b in p.breaches]

    assert [(b.ticket_ref, b.metric, b.breached_at) for b in breaches] == [("SUP-4", "Time to resolution", early)]
    assert [p["jql"] for p in cloud.searches()] == [jql("Time to first response"), jql("Time to resolution")]


def test_issues_without_labels_done_issues_and_labelled_ones(cloud: FakeJira) -> None:
    cloud.add(
        issue_json("SUP-1", labels=[]),  # JQL's `labels not in` alone would miss it
        issue_json("SUP-2", labels=["sla_breached"]),
        issue_json("SUP-3", done=True),
        issue_json("OPS-4"),
    )
    assert [b.ticket_ref for p in source().pages(None, None) for b in p.breaches] == ["SUP-1"]


def test_since_keeps_only_breaches_from_then_on(cloud: FakeJira) -> None:
    cloud.add(issue_json("SUP-1", first_response=(NOW - timedelta(days=3), True)),
              issue_json("SUP-2", first_response=(NOW - timedelta(hours=1), True)))  # fmt: skip
    pages = list(source().pages(None, NOW - timedelta(days=1)))
    assert [b.ticket_ref for p in pages for b in p.breaches] == ["SUP-2"]
    assert sum(p.events_read for p in pages) == 2  # read, and left alone


def test_the_sla_fields_are_found_once_per_process(cloud: FakeJira) -> None:
    sweep = source()
    list(sweep.pages(None, None))
    list(sweep.pages(None, None))
    assert cloud.log.count("GET /rest/api/2/field") == 1
    assert sweep.api_calls() == 1 + 2 + 2


def test_an_sla_name_the_site_lacks_is_left_out_and_asked_for_again(
    cloud: FakeJira, caplog: pytest.LogCaptureFixture
) -> None:
    cloud.add(issue_json("SUP-1"))
    sweep = source(env={**ENV, "JIRA_SLA_NAMES": "Time to first response, Time to close"})

    assert [b.ticket_ref for p in sweep.pages(None, None) for b in p.breaches] == ["SUP-1"]
    assert [p["jql"] for p in cloud.searches()] == [jql("Time to first response")]  # no 400 for an unknown field
    assert "no JSM SLA field named Time to close" in caplog.text
    list(sweep.pages(None, None))
    assert cloud.log.count("GET /rest/api/2/field") == 2  # an admin may add the SLA meanwhile


def test_a_search_result_tierup_cannot_read_is_skipped_not_fatal(cloud: FakeJira) -> None:
    broken = issue_json("SUP-1")
    broken["fields"]["labels"] = "gym"  # not a list
    cloud.add(broken, issue_json("SUP-2"))
    assert [b.ticket_ref for p in source().pages(None, None) for b in p.breaches] == ["SUP-2"]


def test_jql_strings_are_quoted() -> None:
    assert jql_string('Time "to" fix\\it') == '"Time \\"to\\" fix\\\\it"'
    assert breached_jql(("SUP", "OPS"), "Time to resolution", "sla_breached") == (
        'project in (SUP, OPS) AND "Time to resolution" = breached() AND statusCategory != Done'
        ' AND (labels is EMPTY OR labels not in ("sla_breached")) ORDER BY key ASC'
    )


def test_no_sweep_in_a_dry_run_or_without_projects() -> None:
    dry = {k: v for k, v in ENV.items() if k not in ("JIRA_EMAIL", "JIRA_API_TOKEN")}
    assert adapter_for("lead-review", dry).sweep_source() is None
    assert adapter_for("lead-review", {**ENV, "JIRA_PROJECTS": ""}).sweep_source() is None
    adapter = adapter_for("lead-review")
    assert adapter.sweep_source() is adapter.sweep_source()  # one per adapter: it learns the SLA fields once


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (None, ("Time to first response", "Time to resolution")),
        ("", ("Time to first response", "Time to resolution")),
        (" Time to  close ,time to close, Time to first response,", ("Time to close", "Time to first response")),
    ],
)
def test_jira_sla_names_setting(raw: str | None, names: tuple[str, ...]) -> None:
    env = {**ENV, **({"JIRA_SLA_NAMES": raw} if raw is not None else {})}
    settings = JiraSettings.from_env(env)
    assert settings is not None and settings.sla_names == names
