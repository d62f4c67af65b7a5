"""The Jira half of the SLA sweeps (SH3, SD1): the Automation push body and the JQL sweep, under the real client."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses

from adapters.jira.parse import JiraPayloadError
from adapters.jira.settings import JiraSettings
from adapters.jira.sweep import JiraSweepSource, breached_jql, jql_string
from integration.cli.ops import Runtime
from integration.model import SYSTEM, Channel, EscalationRequest, Ignored, Platform, Priority, Reason, State
from integration.store import DeliveryStatus
from integration.sweep import SweepReport, run_sweep, sweep_source_of
from tests.conftest import NewRuntime
from tests.infra.fakes import Clock
from tests.jira.conftest import DC_ENV, DC_SITE, ENV, NOW, SITE, adapter_for, delivery, fixture, sign

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
        self.index: dict[str, dict[str, Any]] | None = None  # what searches see while frozen (a lagging index)
        self.log: list[str] = []  # "METHOD /path" of every call after serverInfo, in order
        self.comments: dict[str, list[dict[str, Any]]] = {}  # per issue, oldest first, with their properties
        self.failing: dict[str, int] = {}  # "METHOD /path" -> how many more calls to answer 503
        api, sd = re.escape(f"{self.base}/rest/api/2/"), re.escape(f"{self.base}/rest/servicedeskapi/")
        info = "rest_api2_serverinfo_cloud.json" if cloud else "rest_api2_serverinfo_dc.json"
        rsps.get(f"{self.base}/rest/api/2/serverInfo", json=fixture(info))
        self._on("GET", f"{self.base}/rest/api/2/field", self._fields)
        self._on("POST", f"{self.base}/rest/api/2/search/jql" if cloud else f"{self.base}/rest/api/2/search",
                 self._search)  # fmt: skip
        self._on("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+/transitions"), self._transitions)
        self._on("POST", re.compile(api + r"issue/[A-Z0-9]+-\d+/transitions"), self._ok)
        self._on("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+/comment.*"), self._comments)
        self._on("POST", re.compile(api + r"issue/[A-Z0-9]+-\d+/comment"), self._comment)
        self._on("GET", re.compile(api + r"issue/[A-Z0-9]+-\d+(\?.*)?$"), self._get_issue)
        self._on("PUT", re.compile(api + r"issue/[A-Z0-9]+-\d+$"), self._edit)
        self._on("PUT", re.compile(api + r"comment/\d+/properties/tierup\.key"), self._ok)
        self._on("POST", re.compile(sd + r"request/[A-Z0-9]+-\d+/comment"), self._request_comment)
        self._on("GET", re.compile(sd + r"request/[A-Z0-9]+-\d+/sla.*"), self._slas)

    def _on(self, method: str, url: Any, callback: Callable[[Any], tuple[int, dict[str, str], str]]) -> None:
        self.rsps.add_callback(method, url, _answer_503(callback))

    def add(self, *issues: dict[str, Any]) -> None:
        for issue in issues:
            self.issues[issue["key"]] = issue

    def freeze_index(self) -> None:
        """Searches answer from the issues as they are now until thaw_index (Jira's search index lags)."""
        self.index = copy.deepcopy(self.issues)

    def thaw_index(self) -> None:
        self.index = None

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
        call = f"{request.method} {path}"
        self.log.append(call)
        if self.failing.get(call):
            self.failing[call] -= 1
            raise _Unavailable(call)
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
        issues = self.index if self.index is not None else self.issues
        found = sorted((i for i in issues.values() if self._matches(i, body["jql"])), key=lambda i: _number(i["key"]))
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

    def _comments(self, request: Any) -> tuple[int, dict[str, str], str]:
        newest_first = list(reversed(self.comments.get(self._key(self._record(request)), [])))
        total = len(newest_first)
        return 200, {}, json.dumps({"startAt": 0, "maxResults": 50, "total": total, "comments": newest_first})

    def _comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = self._key(self._record(request))
        body = json.loads(request.body)
        comment = {**fixture("rest_api2_comment_added.json"), "body": body["body"],
                   "properties": body.get("properties", [])}  # fmt: skip
        self.comments.setdefault(key, []).append(comment)
        return 201, {}, json.dumps(comment)

    def _request_comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._record(request)
        return 201, {}, json.dumps(fixture("servicedeskapi_request_comment_added.json"))


class _Unavailable(Exception):
    """A call FakeJira.failing answers with 503."""


def _answer_503(callback: Callable[[Any], tuple[int, dict[str, str], str]]) -> Callable[[Any], Any]:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        try:
            return callback(request)
        except _Unavailable:
            return 503, {}, json.dumps({"errorMessages": ["Service Unavailable"]})

    return answer


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
    assert sweep.api_calls() == 2  # this run's: the two searches (the fields were known)


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


# --- through run_sweep, the real receiver and the worker: SQLite store, Huey locks ------------------

TOKEN = "automation-token-5e0c"


def sweep_settings(policy: str = "lead-review", env: dict[str, str] | None = None) -> dict[str, str]:
    """Jira's settings (ENV unless `env`), `policy`, and the Automation rule's URL token."""
    return {**(env or ENV), "TIERUP_POLICY": policy, "JIRA_WEBHOOK_URL_TOKEN": TOKEN}


@pytest.fixture
def runtimes(new_runtime: NewRuntime) -> Callable[..., Runtime]:
    def make(policy: str = "lead-review", env: dict[str, str] | None = None,
             clock: Callable[[], datetime] = lambda: NOW) -> Runtime:  # fmt: skip
        return new_runtime(sweep_settings(policy, env), clock=clock)

    return make


def sweep(runtime: Runtime, page_size: int = 2) -> SweepReport:
    """One run of the Jira sweep, wired as the runtime wires it."""
    adapter = runtime.adapters[Platform.JIRA]
    found = sweep_source_of(adapter)
    assert isinstance(found, JiraSweepSource)
    found.page_size = page_size
    return run_sweep(found, policy=runtime.policy, gateway=adapter.gateway, store=runtime.escalations,
                     cursors=runtime.cursors, locks=runtime.locks, clock=runtime.clock, dry_run=adapter.dry_run,
                     sleep=lambda _: None)  # fmt: skip


def push(runtime: Runtime, issue_key: str = "SUP-7") -> None:
    """The README's Automation web request for `issue_key`, through the receiver (URL token) and the worker."""
    client = runtime.create_app().test_client()
    response = client.post(f"/webhooks/jira?token={TOKEN}", data=automation_body(issue_key),
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 202, response.json
    assert runtime.tasks.run_pending() >= 1


def escalations(runtime: Runtime, key: str) -> list[str]:
    """The rules of `key`'s transitions into escalated, in order."""
    return [e.transition.rule for e in runtime.escalations.history(Platform.JIRA, key)
            if e.transition.to_state is State.ESCALATED and e.transition.from_state is not State.ESCALATED]  # fmt: skip


def sh3_edits(group: str) -> list[dict[str, Any]]:
    """SH3's edits: the group, priority and escalated label, then (after the note and the move) sla_breached."""
    return [
        {
            "update": {"labels": [{"add": "escalated"}]},
            "fields": {"customfield_10105": {"name": group}, "priority": {"name": "High"}},
        },
        SLA_LABEL_EDIT,
    ]


# The label that takes an issue out of the sweep's query comes last, in an edit of its own.
SLA_LABEL_EDIT = {"update": {"labels": [{"add": "sla_breached"}]}}


SH3_NOTE = "An SLA was breached: escalated automatically to {group}."


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_a_sweep_over_several_pages_escalates_every_breached_issue_once(
    deployment: str, runtimes: Callable[..., Runtime]
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        jira = FakeJira(rsps, cloud=deployment == "cloud")
        base = jira.base
        jira.add(issue_json("SUP-1", region="AU", base=base), *(issue_json(f"SUP-{n}", base=base) for n in range(2, 6)))
        runtime = runtimes(env=ENV if jira.cloud else DC_ENV)

        report = sweep(runtime)

        keys = [f"SUP-{n}" for n in range(1, 6)]
        for key in keys:
            group = "Technical Support Team Leaders APAC" if key == "SUP-1" else "Technical Support Team Leaders"
            assert jira.bodies("PUT", f"/issue/{key}") == sh3_edits(group)
            [note] = jira.bodies("POST", f"/issue/{key}/comment")
            assert note["body"] == SH3_NOTE.format(group=group)
            assert escalations(runtime, key) == ["SH3"]
            assert {"escalated", "sla_breached"} <= jira.labels(key)
        # Every page was read before the first write: the label each write adds would have moved the offsets.
        first_edit = next(i for i, call in enumerate(jira.log) if call.startswith("PUT /rest/api/2/issue/"))
        assert all("/search" not in call for call in jira.log[first_edit:])
        assert len(jira.searches()) == 4  # three pages of the first SLA's query, one of the second's
        assert "GET /rest/servicedeskapi/request/SUP-1/sla" not in jira.log  # the search carried the SLAs
        # No issue read before deciding; before each move to Escalated, one look at the status (the sweep
        # writes as a retry: an earlier run may have moved the issue before it stopped).
        assert len([c for c in jira.log if re.fullmatch(r"GET /rest/api/2/issue/[A-Z]+-\d+", c)]) == 5
        assert (report.pages, report.events_read, report.breaches, report.tickets_escalated, report.complete) == (
            4, 5, 5, 5, True,
        )  # fmt: skip
        # The report's api calls are the HTTP requests made: the source's reads (field list, four searches),
        # then per issue the read of its comments (what an earlier run's write left), the edit, the note, the
        # look at its status, the workflow move and the sla_breached label, and the one read of the project's
        # transitions.
        assert report.api_calls == 5 + 5 * 6 + 1
        assert runtime.cursors.get(Platform.JIRA, "jira-sla") is None  # nothing to store: the query moves on

        # The next run finds nothing: the label took every issue out of the query.
        jira.log.clear()
        again = sweep(runtime)
        assert (again.events_read, again.tickets_escalated, again.api_calls) == (0, 0, 2)
        assert all("/search" in call for call in jira.log)


def test_a_busy_issue_stops_the_run_and_the_next_run_takes_it(
    cloud: FakeJira, runtimes: Callable[..., Runtime]
) -> None:
    cloud.add(issue_json("SUP-1"), issue_json("SUP-2"))
    runtime = runtimes()
    with runtime.locks.hold(Platform.JIRA, "SUP-1"):  # a push delivery for SUP-1 is being worked on
        first = sweep(runtime, page_size=1)
    assert (first.busy, first.complete, first.tickets_escalated) == (1, False, 0)
    assert cloud.bodies("PUT", "/issue/SUP-1") == [] and cloud.bodies("PUT", "/issue/SUP-2") == []

    second = sweep(runtime, page_size=1)  # nothing was labelled, so the query finds both again
    assert (second.busy, second.complete, second.tickets_escalated) == (0, True, 2)
    assert escalations(runtime, "SUP-1") == ["SH3"] and escalations(runtime, "SUP-2") == ["SH3"]


@pytest.mark.parametrize(
    "failing",
    ["POST /rest/api/2/issue/SUP-1/comment", "POST /rest/api/2/issue/SUP-1/transitions"],
    ids=["note", "workflow move"],
)
def test_sh3_a_write_that_stops_half_way_is_found_and_finished_by_the_next_run(
    failing: str, cloud: FakeJira, runtimes: Callable[..., Runtime]
) -> None:
    # The query leaves out issues labelled sla_breached: a label that landed before the write
    # stopped (the note or the workflow move answered 503) would hide the breach for good.
    cloud.add(issue_json("SUP-1"))
    runtime = runtimes()
    cloud.failing[failing] = 1

    first = sweep(runtime)

    assert (first.tickets_escalated, first.complete) == (0, False)
    assert "tried again next run" in first.errors[0]
    assert "sla_breached" not in cloud.labels("SUP-1")
    assert escalations(runtime, "SUP-1") == []

    second = sweep(runtime)

    assert (second.breaches, second.tickets_escalated, second.complete) == (1, 1, True)
    assert escalations(runtime, "SUP-1") == ["SH3"]
    assert {"escalated", "sla_breached"} <= cloud.labels("SUP-1")
    group = "Technical Support Team Leaders"
    assert [c["body"] for c in cloud.comments["SUP-1"]] == [SH3_NOTE.format(group=group)]  # posted once
    assert cloud.issues["SUP-1"]["fields"]["customfield_10105"] == {"name": group}
    assert sweep(runtime).breaches == 0  # labelled now: out of the query


def test_push_then_sweep_is_one_escalation_and_one_comment(cloud: FakeJira, runtimes: Callable[..., Runtime]) -> None:
    cloud.add(issue_json("SUP-7"))
    runtime = runtimes()
    cloud.freeze_index()  # the search still shows the issue unlabelled after the push wrote

    push(runtime)
    report = sweep(runtime)

    assert cloud.bodies("PUT", "/issue/SUP-7") == sh3_edits("Technical Support Team Leaders")
    assert [c["body"] for c in cloud.bodies("POST", "/issue/SUP-7/comment")] == [
        SH3_NOTE.format(group="Technical Support Team Leaders")
    ]
    assert escalations(runtime, "SUP-7") == ["SH3"]
    assert (report.breaches, report.tickets_escalated, report.already_handled, report.single_writes) == (1, 0, 1, 0)
    # The push read the issue once (its body names the key only); the sweep read nothing per issue.
    assert cloud.log.count("GET /rest/api/2/issue/SUP-7") == 1


def test_sweep_then_push_is_one_escalation_and_one_comment(cloud: FakeJira, runtimes: Callable[..., Runtime]) -> None:
    cloud.add(issue_json("SUP-7"))
    runtime = runtimes()

    report = sweep(runtime)
    push(runtime)

    assert report.tickets_escalated == 1
    assert cloud.bodies("PUT", "/issue/SUP-7") == sh3_edits("Technical Support Team Leaders")
    assert len(cloud.bodies("POST", "/issue/SUP-7/comment")) == 1
    assert escalations(runtime, "SUP-7") == ["SH3"]
    history = runtime.escalations.history(Platform.JIRA, "SUP-7")
    assert [(e.transition.why, e.transition.actions) for e in history[1:]] == [("SLA breached; already escalated", ())]
    [row] = [r for r in runtime.inbox.recent() if r.kind == "tierup:sla_breached"]
    assert row.status is DeliveryStatus.PROCESSED


SD1_WOKEN_REPLY = (
    "The service level on this ticket has now expired, so your earlier escalation request has been taken up: "
    "the ticket is marked *Escalated* and you should hear from us by Tue 10 Mar 2026 13:00 GMT."
)


def test_sd1_a_deferred_request_is_woken_by_the_sweep(cloud: FakeJira, runtimes: Callable[..., Runtime]) -> None:
    clock = Clock(NOW)
    breach_at = NOW + timedelta(hours=2)
    cloud.add(issue_json("SUP-7", labels=["escalation_requested", "gym"], first_response=(breach_at, False)))
    runtime = runtimes("service-desk", clock=clock)
    # The customer asks while the first response is still due: deferred (SD1).
    payload = fixture("issue_updated__request_label_added.json")
    payload["issue"]["fields"]["customfield_10100"] = {"value": "SLA violation"}
    body = json.dumps(payload).encode()
    client = runtime.create_app().test_client()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": sign(body),
        "X-Atlassian-Webhook-Identifier": "wh-1",
    }
    assert client.post("/webhooks/jira", data=body, headers=headers).status_code == 202
    runtime.tasks.run_pending()
    deferred = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert deferred is not None and deferred.state is State.DEFERRED
    assert cloud.bodies("PUT", "/issue/SUP-7") == [{"update": {"labels": [{"add": "escalation_deferred"}]}}]
    assert sweep(runtime).breaches == 0  # not breached yet: nothing to do

    # The SLA breaches at 12:00; the sweep at 12:05 wakes the request.
    cloud.issues["SUP-7"]["fields"][FIRST_RESPONSE] = sla_value("Time to first response", breach_at, breached=True)
    clock.now = breach_at + timedelta(minutes=5)
    report = sweep(runtime)

    assert report.tickets_escalated == 1
    after = runtime.escalations.load(Platform.JIRA, "SUP-7")
    assert after is not None and after.state is State.ESCALATED
    assert after.history[-1].rule == "SD1" and after.first_contact_due == breach_at + timedelta(hours=1)
    assert cloud.bodies("PUT", "/issue/SUP-7")[1:] == [
        {
            "update": {"labels": [{"add": "escalated"}, {"remove": "escalation_deferred"}]},
            "fields": {"customfield_10105": {"name": "Service Desk Managers"},
                       "customfield_10106": "2026-03-10T13:00:05.000+0000"},
        },
        SLA_LABEL_EDIT,
    ]  # fmt: skip
    assert [c["body"] for c in cloud.bodies("POST", "/request/SUP-7/comment")][1:] == [SD1_WOKEN_REPLY]
    [note] = cloud.bodies("POST", "/issue/SUP-7/comment")
    assert note["body"].startswith("A service level was breached: escalated automatically to Service Desk Managers")
    assert cloud.labels("SUP-7") == {"escalation_requested", "gym", "escalated", "sla_breached"}


def test_the_worker_runs_the_jira_sweep_as_its_registered_periodic_task(
    cloud: FakeJira, runtimes: Callable[..., Runtime]
) -> None:
    cloud.add(issue_json("SUP-3"))
    runtime = runtimes()
    huey = runtime.tasks.huey
    # What the consumer's scheduler does at 12:00: enqueue the periodic tasks that are due, then run them.
    [task] = [t for t in huey.read_periodic(datetime(2026, 3, 10, 12, 0)) if t.name == "tierup.sla_sweep.jira"]
    huey.enqueue(task)
    assert runtime.tasks.run_pending() == 1

    assert escalations(runtime, "SUP-3") == ["SH3"]
    assert cloud.bodies("PUT", "/issue/SUP-3") == sh3_edits("Technical Support Team Leaders")


def test_a_snapshot_that_carries_its_slas_is_not_read_again(cloud: FakeJira) -> None:
    cloud.add(issue_json("SUP-7"))
    [page, _] = list(source("service-desk").pages(None, None))
    [breach] = page.breaches
    assert breach.snapshot is not None and breach.snapshot.slas
    cloud.log.clear()
    gateway = adapter_for("service-desk").gateway
    assert gateway.snapshot("SUP-7", breach.snapshot) is breach.snapshot
    assert cloud.log == []  # no /request/SUP-7/sla: the search already gave the SLA fields
