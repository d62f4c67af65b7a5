"""`tierup install jira`: register (or update) the admin webhook and check what the procedure needs in Jira.

The webhook (`/rest/webhooks/1.0/webhook`) points at TIERUP_PUBLIC_URL + /webhooks/jira,
listens to issue created / updated and comment created, is filtered to JIRA_PROJECTS by
JQL, and signs with a secret that is generated here and stored as JIRA_WEBHOOK_SECRET in
`.env`, where the service reads it. Ours is recognised by its URL (a second run updates it
or changes nothing, instead of adding another); one of the same name that sends elsewhere,
another Tierup's or this one's old address, is reported and left alone.

Checks (reads only): the configured custom fields exist and have the right type, the
policy's groups exist, the mapped priorities exist, each project's workflow has the
Escalated status, the JSM escalation request type exists, and so does the issue link type
email requests are linked with. Each failure says what an admin must create or set.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from adapters.jira.gateway import JiraGateway
from adapters.jira.parse import Json
from adapters.jira.settings import Deployment, JiraFields, JiraSettings
from adapters.jira.verify import URL_TOKEN_PARAMETER
from integration.config import ConfigError, update_env_file
from integration.policy import Policy

WEBHOOK_NAME = "Tierup escalations"
WEBHOOK_PATH = "/webhooks/jira"
WEBHOOK_EVENTS = ("jira:issue_created", "jira:issue_updated", "comment_created")
JQL_FILTER = "issue-related-events-section"


@dataclass(frozen=True, slots=True)
class FieldNeed:
    """A custom field Tierup uses: the setting that names it, what to create, and the types that fit."""

    setting: str
    attribute: str
    name: str
    kind: str
    types: frozenset[str]
    required: bool
    without: str = ""  # what happens when an optional field is not configured


FIELD_NEEDS = (
    FieldNeed(
        "JIRA_FIELD_REASON",
        "reason",
        "Escalation reason",
        "Select List (single choice)",
        frozenset({"option", "string"}),
        True,
    ),
    FieldNeed(
        "JIRA_FIELD_RATIONALE",
        "rationale",
        "Business rationale",
        "Paragraph (multi-line text)",
        frozenset({"string"}),
        True,
    ),
    FieldNeed(
        "JIRA_FIELD_LEAD_GROUP",
        "lead_group",
        "Escalation lead group",
        "Group Picker (single group)",
        frozenset({"group"}),
        True,
    ),
    FieldNeed(
        "JIRA_FIELD_PREFERRED_CONTACT",
        "preferred_contact",
        "Preferred contact",
        "Short text (plain text only)",
        frozenset({"string"}),
        False,
        "the preferred contact is not read",
    ),
    FieldNeed(
        "JIRA_FIELD_REQUESTED_PRIORITY",
        "requested_priority",
        "Requested priority",
        "Select List (single choice)",
        frozenset({"option", "string", "priority"}),
        False,
        "priorities are not re-classified on request (SD2)",
    ),
    FieldNeed(
        "JIRA_FIELD_REGION",
        "region",
        "Region",
        "Select List (single choice)",
        frozenset({"option", "string"}),
        False,
        "regions come from the policy's other sources only",
    ),
    FieldNeed(
        "JIRA_FIELD_FIRST_CONTACT_DUE",
        "first_contact_due",
        "First contact due",
        "Date Time Picker",
        frozenset({"datetime"}),
        False,
        "the first-contact due is written to the Due date (a date, no time)",
    ),
    FieldNeed(
        "JIRA_FIELD_FEEDBACK",
        "feedback",
        "Escalation feedback",
        "Paragraph (multi-line text)",
        frozenset({"string"}),
        False,
        "a lead's cancel feedback is the comment made with the change",
    ),
    FieldNeed(
        "JIRA_FIELD_PARTICIPANTS",
        "participants",
        "Request participants",
        "Request participants (Jira Service Management's own field)",
        frozenset({"array"}),
        False,
        "request participants are not taken as CCs: only the reporter may escalate an issue by form or email",
    ),
)


@dataclass
class InstallPlan:
    """What `install jira` found and will do; `apply_install` carries it out."""

    endpoint: str
    webhook: dict[str, Any]  # the body we want registered (with the secret)
    action: str  # "create", "update" or "none"
    webhook_id: str | None = None
    differences: list[str] = field(default_factory=list)
    store: dict[str, str] = field(default_factory=dict)  # settings to write into .env
    problems: list[str] = field(default_factory=list)  # what an admin must create or set
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def new_webhook_secret() -> str:
    """A fresh signing secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def endpoint_for(public_url: str, settings: JiraSettings) -> str:
    """Where Jira delivers: TIERUP_PUBLIC_URL + /webhooks/jira (with the URL token when one is configured)."""
    url = public_url.rstrip("/") + WEBHOOK_PATH
    if settings.webhook_url_token:
        url += "?" + urlencode({URL_TOKEN_PARAMETER: settings.webhook_url_token})
    return url


def jql_filter(settings: JiraSettings) -> str:
    """The JQL that limits deliveries to the configured projects."""
    return f"project in ({', '.join(settings.projects)})"


def _webhook_id(hook: Json) -> str | None:
    self_url = hook.opt_text("self")
    return self_url.rstrip("/").rsplit("/", 1)[-1] if self_url else None


def _sends_here(hook: Json, endpoint: str) -> bool:
    """True for a webhook delivering to this Tierup's endpoint (its URL token aside)."""
    url = hook.opt_text("url") or ""
    return urlsplit(url)._replace(query="") == urlsplit(endpoint)._replace(query="")


def _refuse_new_webhook_resource(gateway: JiraGateway, manual: str) -> None:
    """Stop with what to do by hand on Data Center 10 and later, whose webhooks this installer cannot write.

    Data Center 10 moved admin webhooks to /rest/jira-webhook/1.0/webhooks, with another body
    and ids; the resource this installer uses (/rest/webhooks/1.0/webhook) is gone there.
    """
    if gateway.deployment is not Deployment.DATACENTER:
        return
    info = gateway.call("server info", "GET", gateway.api_url("serverInfo"))
    numbers = info.get("versionNumbers") if isinstance(info, Mapping) else None
    if isinstance(numbers, list) and numbers and isinstance(numbers[0], int) and numbers[0] >= 10:
        version = ".".join(str(n) for n in numbers)
        raise ConfigError(
            f"Jira Data Center {version} keeps webhooks at /rest/jira-webhook/1.0/webhooks, which this installer "
            f"does not write: {manual}"
        )


def _webhooks(gateway: JiraGateway, endpoint: str) -> tuple[list[Json], list[Json]]:
    """This Tierup's webhooks (those sending to its endpoint), and the others named like them.

    A webhook is this Tierup's by where it sends, never by its name alone: a second Tierup on
    the same site (staging, say, on a test project) registers one of the same name, and
    install or uninstall here must not redirect or delete it.
    """
    answer = gateway.call("list webhooks", "GET", f"{gateway.settings.url}/rest/webhooks/1.0/webhook")
    hooks = [Json.root(h, "webhook") for h in answer if isinstance(h, Mapping)] if isinstance(answer, list) else []
    ours = [h for h in hooks if _sends_here(h, endpoint)]
    namesakes = [h for h in hooks if h.opt_text("name") == WEBHOOK_NAME and not _sends_here(h, endpoint)]
    return ours, namesakes


def _namesake_note(hook: Json) -> str:
    return (
        f'webhook {_webhook_id(hook)}, also named "{WEBHOOK_NAME}", sends to {_shown(hook.opt_text("url") or "")}, '
        "not here, and is left as it is: if it is this Tierup's old address, remove it in Jira (Administration > "
        "System > WebHooks)"
    )


def plan_install(
    gateway: JiraGateway,
    policy: Policy,
    public_url: str | None,
    *,
    new_secret: Callable[[], str] = new_webhook_secret,
) -> InstallPlan:
    """Read Jira and decide what to create, update or report (no writes)."""
    settings = gateway.settings
    if not public_url:
        raise ConfigError("TIERUP_PUBLIC_URL is not set (environment or .env): Jira needs it to reach Tierup")
    if not settings.has_credentials:
        raise ConfigError("JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center) must be set to install")
    if not settings.projects:
        raise ConfigError("JIRA_PROJECTS is not set: the webhook's JQL filter names the projects Tierup works in")
    endpoint = endpoint_for(public_url, settings)
    secret = settings.webhook_secrets[0] if settings.webhook_secrets else new_secret()
    wanted: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "url": endpoint,
        "events": list(WEBHOOK_EVENTS),
        "filters": {JQL_FILTER: jql_filter(settings)},
        "excludeBody": False,
        "enabled": True,  # an update switches a webhook an admin disabled back on (install reports "disabled")
        "secret": secret,
    }
    _refuse_new_webhook_resource(gateway, (
        f"register it by hand (Administration > System > WebHooks) with URL {_shown(endpoint)}, events "
        f"{', '.join(WEBHOOK_EVENTS)}, JQL {jql_filter(settings)} and, as its secret, JIRA_WEBHOOK_SECRET "
        "(set it to a long random value first); then run install again for the other checks"
    ))  # fmt: skip
    plan = InstallPlan(endpoint=endpoint, webhook=wanted, action="create")
    if gateway.deployment is Deployment.DATACENTER and not settings.webhook_url_token:
        plan.notes.append(
            "Data Center: a version that does not sign webhook deliveries sends them without X-Hub-Signature, and "
            "Tierup answers each with 401 (`tierup inbox` shows none arriving): then set JIRA_WEBHOOK_URL_TOKEN to a "
            "long random value and run install again"
        )
    if not settings.webhook_secrets:
        plan.store["JIRA_WEBHOOK_SECRET"] = secret
    existing, namesakes = _webhooks(gateway, endpoint)
    plan.notes += [_namesake_note(h) for h in namesakes]
    if existing:
        hook = existing[0]
        plan.webhook_id = _webhook_id(hook)
        plan.differences = _differences(hook, wanted)
        # Jira never shows a webhook's secret: a new one must be sent whenever we have none stored,
        # and during a rotation (several secrets, newest first) the newest, so Jira signs with it.
        if not settings.webhook_secrets:
            plan.differences.append("no secret stored in JIRA_WEBHOOK_SECRET")
        elif len(settings.webhook_secrets) > 1:
            plan.differences.append(f"secret rotation: the newest of {len(settings.webhook_secrets)} secrets")
        plan.action = "update" if plan.differences else "none"
        for extra in existing[1:]:
            plan.notes.append(f"another Tierup webhook is registered (id {_webhook_id(extra)}): uninstall removes it")
    if not settings.bot_account:
        me = Json.root(gateway.call("myself", "GET", gateway.api_url("myself")), "myself")
        own = me.opt_text("accountId") if gateway.deployment is Deployment.CLOUD else me.opt_text("name")
        if own:
            plan.store["JIRA_BOT_ACCOUNT"] = own
    _check_fields(gateway, plan)
    _check_groups(gateway, policy, plan)
    _check_priorities(gateway, plan)
    _check_status(gateway, plan)
    _check_request_type(gateway, plan)
    _check_link_type(gateway, plan)
    return plan


def _differences(hook: Json, wanted: Mapping[str, Any]) -> list[str]:
    out = []
    if hook.opt_text("name") != wanted["name"]:
        out.append(f"name {hook.opt_text('name')!r}")
    if hook.opt_text("url") != wanted["url"]:
        out.append(f"url {_shown(hook.opt_text('url') or '')!r}")  # its URL token is live: never printed
    if set(hook.texts("events")) != set(wanted["events"]):
        out.append(f"events {sorted(hook.texts('events'))}")
    filters = hook.opt_obj("filters")
    current = filters.opt_text(JQL_FILTER) if filters else None
    if current != wanted["filters"][JQL_FILTER]:
        out.append(f"JQL filter {current!r}")
    if hook.flag("excludeBody"):
        out.append("sends no body")
    if hook.has("enabled") and not hook.flag("enabled"):
        out.append("disabled")
    return out


def _check_fields(gateway: JiraGateway, plan: InstallPlan) -> None:
    answer = gateway.call("list fields", "GET", gateway.api_url("field"))
    fields = [Json.root(f, "field") for f in answer or [] if isinstance(f, Mapping)]
    by_id = {f.opt_text("id"): f for f in fields}
    by_name = {(f.opt_text("name") or "").lower(): f for f in fields}
    configured: JiraFields = gateway.settings.fields
    ok = 0
    for need in FIELD_NEEDS:
        field_id = getattr(configured, need.attribute)
        create = f'create a "{need.kind}" custom field named "{need.name}", add it to the projects\' edit screens'
        if field_id is None:
            same_name = by_name.get(need.name.lower())
            if same_name is not None and same_name.opt_text("id"):
                hint = f'set {need.setting}={same_name.opt_text("id")} (the field named "{need.name}")'
            else:
                hint = f"{create}, then set {need.setting} to its id (customfield_NNNNN)"
            if need.required:
                plan.problems.append(f"{need.setting} is not set: {hint}")
            else:
                plan.notes.append(f"{need.setting} is not set, so {need.without}; to use it: {hint}")
            continue
        found = by_id.get(field_id)
        if found is None:
            plan.problems.append(f"{need.setting}={field_id}: Jira has no such field; {create} and set its id")
            continue
        schema = found.opt_obj("schema")
        kind = schema.opt_text("type") if schema else None
        if kind not in need.types:
            plan.problems.append(
                f"{need.setting}={field_id} ({found.opt_text('name')}) is a field of type {kind or 'unknown'}; "
                f'Tierup needs a "{need.kind}" field there'
            )
            continue
        ok += 1
    plan.checked.append(f"custom fields: {ok} OK")


def _check_groups(gateway: JiraGateway, policy: Policy, plan: InstallPlan) -> None:
    missing = []
    for group in policy.all_groups():
        answer = gateway.call("find group", "GET", gateway.api_url("groups/picker"),
                              params={"query": group, "maxResults": 50})  # fmt: skip
        names = {(g.opt_text("name") or "").lower() for g in Json.root(answer or {}, "groups").objects("groups")}
        if group.lower() not in names:
            missing.append(group)
    for group in missing:
        plan.problems.append(
            f'group "{group}" (policy {policy.name}) does not exist: create it (Jira admin > User management > '
            "Groups) and add its members"
        )
    plan.checked.append(f"groups: {len(policy.all_groups()) - len(missing)} of {len(policy.all_groups())} found")


def _check_priorities(gateway: JiraGateway, plan: InstallPlan) -> None:
    answer = gateway.call("list priorities", "GET", gateway.api_url("priority"))
    priorities = [Json.root(x, "priority") for x in answer or [] if isinstance(x, Mapping)]
    names = [p.opt_text("name") or "" for p in priorities]
    lowered = {n.lower() for n in names}
    bad = [(neutral, name) for neutral, name in gateway.settings.priorities.items() if name.lower() not in lowered]
    for neutral, name in bad:
        plan.problems.append(
            f'priority "{name}" (JIRA_PRIORITIES {neutral.value}={name}) does not exist: create it, or map '
            f"{neutral.value} to one of: {', '.join(names)}"
        )
    total = len(gateway.settings.priorities)
    plan.checked.append(f"priorities: {total - len(bad)} of {total} found")


def _check_status(gateway: JiraGateway, plan: InstallPlan) -> None:
    wanted = gateway.settings.escalated_status
    for project in gateway.settings.projects:
        url = gateway.api_url(f"project/{project}/statuses")
        answer = gateway.call("project statuses", "GET", url, missing_ok=True)
        if answer is None:
            plan.problems.append(f"project {project} (JIRA_PROJECTS) does not exist or Tierup's account cannot see it")
            continue
        statuses = {
            (s.opt_text("name") or "").lower()
            for issue_type in (Json.root(t, "issue type") for t in answer if isinstance(t, Mapping))
            for s in issue_type.objects("statuses")
        }
        if wanted.lower() in statuses:
            plan.checked.append(f"project {project}: workflow has status {wanted}")
        else:
            plan.problems.append(
                f'project {project}: its workflow has no status "{wanted}": add the status and a transition to it '
                "from the open statuses (or set JIRA_ESCALATED_STATUS to the status you use)"
            )


def _servicedesk_list(gateway: JiraGateway, what: str, path: str, *, missing_ok: bool = False) -> list[Json]:
    """Every item of a JSM list, page after page (`start`, `limit`, `isLastPage`)."""
    items: list[Json] = []
    while True:
        answer = gateway.call(f"list {what}", "GET", gateway.servicedesk_url(path),
                              params={"start": len(items), "limit": 100}, missing_ok=missing_ok)  # fmt: skip
        page = Json.root(answer or {}, what)
        values = page.objects("values")
        items += values
        if not values or page.raw("isLastPage") is not False:
            return items


def _check_request_type(gateway: JiraGateway, plan: InstallPlan) -> None:
    wanted = gateway.settings.escalation_request_type
    if not wanted:
        plan.notes.append(
            "JIRA_ESCALATION_REQUEST_TYPE is not set: requests raised by the JSM form or by email are not read"
        )
        return
    desks = _servicedesk_list(gateway, "service desks", "servicedesk", missing_ok=True)
    ours = [d for d in desks if (d.opt_text("projectKey") or "") in gateway.settings.projects]
    for desk in ours:
        found = _servicedesk_list(gateway, "request types", f"servicedesk/{desk.text('id')}/requesttype")
        # The setting may name the request type or give its id (JSM's `requestType.id`).
        names = {(t.opt_text(k) or "").lower() for t in found for k in ("name", "id")}
        if wanted.strip().lower() in names:
            plan.checked.append(f'project {desk.opt_text("projectKey")}: request type "{wanted}" found')
            return
    where = ", ".join(d.opt_text("projectKey") or "?" for d in ours) or "none of JIRA_PROJECTS is a JSM project"
    plan.problems.append(
        f'JSM request type "{wanted}" (JIRA_ESCALATION_REQUEST_TYPE) not found ({where}): create it in the service '
        "project (Project settings > Request types) with the reason, rationale and preferred-contact fields"
    )


def _check_link_type(gateway: JiraGateway, plan: InstallPlan) -> None:
    """The link type an email request is joined to the issue it names with (JIRA_LINK_TYPE) must exist."""
    wanted = gateway.settings.link_type
    answer = gateway.call("list issue link types", "GET", gateway.api_url("issueLinkType"), missing_ok=True)
    if answer is None:  # Jira answers 404 while issue linking is switched off
        plan.problems.append(
            "issue linking is off: switch it on (Jira settings > Issues > Issue linking); email requests are "
            f'linked to the issue they name with the "{wanted}" link type (JIRA_LINK_TYPE)'
        )
        return
    names = [t.opt_text("name") or "" for t in Json.root(answer, "issue link types").objects("issueLinkTypes")]
    if wanted in names:
        plan.checked.append(f'issue link type "{wanted}" found')
        return
    same = [n for n in names if n.lower() == wanted.lower()]
    hint = f"set JIRA_LINK_TYPE={same[0]} (names are matched exactly)" if same else (
        f"create it (Jira settings > Issues > Issue linking) or set JIRA_LINK_TYPE to one of: {', '.join(names)}"
    )
    plan.problems.append(f'issue link type "{wanted}" (JIRA_LINK_TYPE) does not exist: {hint}')


def apply_install(gateway: JiraGateway, plan: InstallPlan, env_file: Path) -> None:
    """Register or update the webhook and store what the service needs in `.env`."""
    base = f"{gateway.settings.url}/rest/webhooks/1.0/webhook"
    if plan.action == "create":
        created = gateway.call("register webhook", "POST", base, body=plan.webhook)
        plan.webhook_id = _webhook_id(Json.root(created or {}, "webhook"))
    elif plan.action == "update":
        gateway.call("update webhook", "PUT", f"{base}/{plan.webhook_id}", body=plan.webhook)
    if plan.store:
        update_env_file(env_file, plan.store)


def describe_install(plan: InstallPlan, *, dry_run: bool, env_file: Path) -> str:
    """What `install jira` did (or, with --dry-run, would do), for people."""
    would = "would " if dry_run else ""
    hook = plan.webhook
    summary = f"{', '.join(hook['events'])}; JQL {hook['filters'][JQL_FILTER]!r}"
    lines = []
    if plan.action == "create":
        lines.append(f'webhook: {would}register "{WEBHOOK_NAME}" -> {_shown(plan.endpoint)} ({summary})')
    elif plan.action == "update":
        lines.append(f"webhook: {would}update id {plan.webhook_id} ({'; '.join(plan.differences)}) -> {summary}")
    else:
        lines.append(f"webhook: id {plan.webhook_id} is up to date; nothing to change")
    for key in plan.store:
        lines.append(f"{would}store {key} in {env_file}")
    lines += [f"checked {c}" for c in plan.checked]
    lines += [f"note: {n}" for n in plan.notes]
    if plan.problems:
        lines.append(f"to do in Jira ({len(plan.problems)}):")
        lines += [f"  - {p}" for p in plan.problems]
    return "\n".join(lines)


def _shown(url: str) -> str:
    # The URL token is a credential: never print it.
    parts = urlsplit(url)
    return parts._replace(query=f"{URL_TOKEN_PARAMETER}=***").geturl() if parts.query else url


def uninstall(gateway: JiraGateway, public_url: str | None, *, dry_run: bool) -> tuple[list[str], list[str]]:
    """Delete the webhooks sending to this Tierup, leaving every other one; the ids removed, and notes."""
    if not public_url:
        raise ConfigError("TIERUP_PUBLIC_URL is not set (environment or .env): it identifies Tierup's webhook")
    _refuse_new_webhook_resource(gateway, "remove Tierup's webhook by hand (Administration > System > WebHooks)")
    removed = []
    ours, namesakes = _webhooks(gateway, endpoint_for(public_url, gateway.settings))
    for hook in ours:
        hook_id = _webhook_id(hook)
        if hook_id is None:
            continue
        if not dry_run:
            gateway.call("delete webhook", "DELETE", f"{gateway.settings.url}/rest/webhooks/1.0/webhook/{hook_id}")
        removed.append(hook_id)
    return removed, [_namesake_note(h) for h in namesakes]
