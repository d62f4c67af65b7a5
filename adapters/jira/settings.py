"""Jira settings from the environment or `.env`: access, webhook secrets, and the fields and labels we use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from integration.config import ConfigError, require, secrets_list
from integration.model import Priority

_CUSTOM_FIELD = re.compile(r"^customfield_\d+$")
_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{1,9}$")
_LABEL = re.compile(r"^\S+$")  # Jira labels cannot contain spaces

# Any of these set means the admin meant to configure Jira: then JIRA_URL is required.
_JIRA_INTENT = ("JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT", "JIRA_WEBHOOK_SECRET")

# The JSM SLAs the sweep looks for (their names, as JQL and the SLA fields spell them).
DEFAULT_SLA_NAMES = ("Time to first response", "Time to resolution")

DEFAULT_PRIORITIES: Mapping[Priority, str] = {
    Priority.LOW: "Low",
    Priority.NORMAL: "Medium",
    Priority.HIGH: "High",
    Priority.URGENT: "Highest",
}


class Deployment(StrEnum):
    CLOUD = "cloud"
    DATACENTER = "datacenter"


@dataclass(frozen=True, slots=True)
class JiraFields:
    """Custom field ids (`customfield_NNNNN`) Tierup reads and writes; None when not configured."""

    reason: str | None = None
    rationale: str | None = None
    preferred_contact: str | None = None
    requested_priority: str | None = None
    region: str | None = None
    lead_group: str | None = None  # a group picker: Jira cannot assign an issue to a group
    first_contact_due: str | None = None  # a date-time field; `duedate` (a date) when None
    feedback: str | None = None  # a lead's cancel feedback, when the team keeps it in a field
    participants: str | None = None  # JSM's Request participants: the request's CCs (read only)

    def by_logical_name(self) -> dict[str, str]:
        """Configured fields by their logical names (for SetField actions)."""
        return {name: value for name in self.__dataclass_fields__ if (value := getattr(self, name))}

    def request_fields(self) -> frozenset[str]:
        """The fields whose change completes an escalation request (a follow-up)."""
        ids = (self.reason, self.rationale, self.preferred_contact, self.requested_priority)
        return frozenset(i for i in ids if i)


@dataclass(frozen=True, slots=True)
class JiraLabels:
    """The labels an agent or a lead sets to ask Tierup for something."""

    request: str = "escalation_requested"
    confirm: str = "escalation_confirm"
    cancel: str = "escalation_cancel"
    not_happy: str = "escalation_not_happy"


_DEFAULT_LABELS = JiraLabels()


@dataclass(frozen=True, slots=True)
class JiraSettings:
    url: str
    email: str | None = None
    api_token: str | None = None
    pat: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    webhook_url_token: str | None = None
    bot_account: str | None = None
    projects: tuple[str, ...] = ()
    fields: JiraFields = field(default_factory=JiraFields)
    labels: JiraLabels = field(default_factory=JiraLabels)
    escalated_status: str = "Escalated"
    # An escalation request (email, JSM form) that named an existing issue is linked to it with this
    # link type, answered, and moved to this status (None: the first transition into a Done status),
    # with this resolution when the transition asks for one (None: the first the screen offers).
    link_type: str = "Relates"
    solved_status: str | None = None
    solved_resolution: str | None = None
    priorities: Mapping[Priority, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    escalation_request_type: str | None = None
    deployment: Deployment | None = None  # None: ask serverInfo (`deploymentType`)
    sla_names: tuple[str, ...] = DEFAULT_SLA_NAMES  # JIRA_SLA_NAMES: what the SLA sweep asks JQL about

    @property
    def has_credentials(self) -> bool:
        return bool(self.pat or (self.email and self.api_token))

    def priority_for(self, name: str | None) -> Priority | None:
        """The neutral priority of a Jira priority name (or a neutral name), or None."""
        if not name:
            return None
        wanted = name.strip().lower()
        for neutral, jira_name in self.priorities.items():
            if jira_name.lower() == wanted:
                return neutral
        return Priority(wanted) if wanted in Priority._value2member_map_ else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JiraSettings | None:
        """Jira settings, None when Jira is not configured; ConfigError naming what is missing or wrong."""
        url = _get(env, "JIRA_URL")
        if url is None:
            if any(_get(env, name) for name in _JIRA_INTENT):
                raise ConfigError("JIRA_URL is not set (environment or .env), but other JIRA_ settings are")
            return None
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"JIRA_URL must be an http(s) URL, got {url!r}")
        email, api_token, pat = _get(env, "JIRA_EMAIL"), _get(env, "JIRA_API_TOKEN"), _get(env, "JIRA_PAT")
        if email or api_token:
            # Half of the Cloud credentials is a mistake, not a request for a dry run.
            require(env, "JIRA_EMAIL", "JIRA_API_TOKEN")
        projects = tuple(p.strip().upper() for p in (env.get("JIRA_PROJECTS") or "").split(",") if p.strip())
        for key in projects:
            if not _PROJECT_KEY.match(key):
                raise ConfigError(f"JIRA_PROJECTS: {key!r} is not a Jira project key")
        return cls(
            url=url.rstrip("/"),
            email=email,
            api_token=api_token,
            pat=pat,
            webhook_secrets=secrets_list(env.get("JIRA_WEBHOOK_SECRET")),
            webhook_url_token=_get(env, "JIRA_WEBHOOK_URL_TOKEN"),
            bot_account=_get(env, "JIRA_BOT_ACCOUNT"),
            projects=projects,
            fields=JiraFields(
                reason=_custom_field(env, "JIRA_FIELD_REASON"),
                rationale=_custom_field(env, "JIRA_FIELD_RATIONALE"),
                preferred_contact=_custom_field(env, "JIRA_FIELD_PREFERRED_CONTACT"),
                requested_priority=_custom_field(env, "JIRA_FIELD_REQUESTED_PRIORITY"),
                region=_custom_field(env, "JIRA_FIELD_REGION"),
                lead_group=_custom_field(env, "JIRA_FIELD_LEAD_GROUP"),
                first_contact_due=_custom_field(env, "JIRA_FIELD_FIRST_CONTACT_DUE"),
                feedback=_custom_field(env, "JIRA_FIELD_FEEDBACK"),
                participants=_custom_field(env, "JIRA_FIELD_PARTICIPANTS"),
            ),
            labels=JiraLabels(
                request=_label(env, "JIRA_LABEL_REQUEST", _DEFAULT_LABELS.request),
                confirm=_label(env, "JIRA_LABEL_CONFIRM", _DEFAULT_LABELS.confirm),
                cancel=_label(env, "JIRA_LABEL_CANCEL", _DEFAULT_LABELS.cancel),
                not_happy=_label(env, "JIRA_LABEL_NOT_HAPPY", _DEFAULT_LABELS.not_happy),
            ),
            escalated_status=_get(env, "JIRA_ESCALATED_STATUS") or "Escalated",
            link_type=_get(env, "JIRA_LINK_TYPE") or "Relates",
            solved_status=_get(env, "JIRA_SOLVED_STATUS"),
            solved_resolution=_get(env, "JIRA_SOLVED_RESOLUTION"),
            priorities=_priorities(env.get("JIRA_PRIORITIES")),
            escalation_request_type=_get(env, "JIRA_ESCALATION_REQUEST_TYPE"),
            deployment=_deployment(env.get("JIRA_DEPLOYMENT")),
            sla_names=_sla_names(env.get("JIRA_SLA_NAMES")),
        )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _custom_field(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and not _CUSTOM_FIELD.match(value):
        raise ConfigError(f"{name} must be a custom field id like customfield_10042, got {value!r}")
    return value


def _label(env: Mapping[str, str], name: str, default: str) -> str:
    value = _get(env, name) or default
    if not _LABEL.match(value):
        raise ConfigError(f"{name}: a Jira label cannot contain spaces, got {value!r}")
    return value


def _priorities(raw: str | None) -> dict[Priority, str]:
    """`low=Low,normal=Medium,...`: the neutral names given override the defaults."""
    mapping = dict(DEFAULT_PRIORITIES)
    for pair in (raw or "").split(","):
        if not pair.strip():
            continue
        neutral, sep, jira_name = pair.partition("=")
        neutral = neutral.strip().lower()
        if not sep or not jira_name.strip() or neutral not in Priority._value2member_map_:
            raise ConfigError(f"JIRA_PRIORITIES: {pair.strip()!r} is not <{'|'.join(Priority)}>=<Jira priority name>")
        mapping[Priority(neutral)] = jira_name.strip()
    return mapping


def _sla_names(raw: str | None) -> tuple[str, ...]:
    """`Time to first response,Time to resolution`: SLA names (they may hold spaces), in order, once each."""
    names: list[str] = []
    for part in (raw or "").split(","):
        name = " ".join(part.split())
        if name and name.lower() not in {n.lower() for n in names}:
            names.append(name)
    return tuple(names) or DEFAULT_SLA_NAMES


def _deployment(raw: str | None) -> Deployment | None:
    value = (raw or "").strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    if not value:
        return None
    if value in ("cloud",):
        return Deployment.CLOUD
    if value in ("datacenter", "dc", "server"):
        return Deployment.DATACENTER
    raise ConfigError(f"JIRA_DEPLOYMENT must be cloud or datacenter, got {raw!r}")
