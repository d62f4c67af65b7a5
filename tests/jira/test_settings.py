"""JiraSettings from the environment: Jira off, dry run, or configured; every mistake named."""

from __future__ import annotations

import pytest

from adapters.jira import build_adapter
from adapters.jira.settings import Deployment, JiraSettings
from integration.config import ConfigError
from integration.model import Priority
from integration.policy import load_policy
from integration.service import DryRunGateway
from tests.jira.conftest import DC_ENV, ENV, SITE


def test_jira_is_off_without_any_jira_setting() -> None:
    assert JiraSettings.from_env({"ZENDESK_URL": "https://x.zendesk.com"}) is None
    assert build_adapter({}, load_policy("lead-review")) is None


@pytest.mark.parametrize("name", ["JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT", "JIRA_WEBHOOK_SECRET"])
def test_other_jira_settings_without_the_url_name_the_url(name: str) -> None:
    with pytest.raises(ConfigError, match="JIRA_URL is not set"):
        JiraSettings.from_env({name: "x"})


@pytest.mark.parametrize(("given", "missing"), [("JIRA_EMAIL", "JIRA_API_TOKEN"), ("JIRA_API_TOKEN", "JIRA_EMAIL")])
def test_half_of_the_cloud_credentials_names_the_other_half(given: str, missing: str) -> None:
    with pytest.raises(ConfigError, match=f"^{missing} is not set"):
        JiraSettings.from_env({"JIRA_URL": SITE, given: "x"})


def test_url_without_credentials_is_a_dry_run() -> None:
    settings = JiraSettings.from_env({"JIRA_URL": SITE, "JIRA_WEBHOOK_SECRET": "s"})
    assert settings is not None and not settings.has_credentials
    adapter = build_adapter({"JIRA_URL": SITE, "JIRA_WEBHOOK_SECRET": "s"}, load_policy("lead-review"))
    assert adapter is not None and adapter.dry_run and isinstance(adapter.gateway, DryRunGateway)


def test_full_cloud_settings() -> None:
    settings = JiraSettings.from_env({**ENV, "JIRA_URL": SITE + "/", "JIRA_PROJECTS": " sup , ops "})
    assert settings is not None
    assert settings.url == SITE and settings.has_credentials
    assert settings.webhook_secrets == ("whsec-new-4f1d", "whsec-old-93ab")
    assert settings.projects == ("SUP", "OPS")
    assert settings.fields.lead_group == "customfield_10105" and settings.fields.feedback is None
    assert settings.labels.request == "escalation_requested" and settings.labels.not_happy == "escalation_not_happy"
    assert settings.escalated_status == "Escalated" and settings.deployment is None
    assert settings.priorities[Priority.URGENT] == "Highest"


def test_data_center_settings() -> None:
    settings = JiraSettings.from_env({**DC_ENV, "JIRA_DEPLOYMENT": "Data Center"})
    assert settings is not None
    assert (settings.pat, settings.email, settings.deployment) == ("pat-dc-1", None, Deployment.DATACENTER)


def test_priorities_override_only_what_they_name() -> None:
    settings = JiraSettings.from_env({"JIRA_URL": SITE, "JIRA_PRIORITIES": "urgent=P1 - Critical, low=P4"})
    assert settings is not None
    assert dict(settings.priorities) == {Priority.LOW: "P4", Priority.NORMAL: "Medium", Priority.HIGH: "High",
                                         Priority.URGENT: "P1 - Critical"}  # fmt: skip
    assert settings.priority_for("p1 - critical") is Priority.URGENT
    assert settings.priority_for("high") is Priority.HIGH and settings.priority_for("Blocker") is None


@pytest.mark.parametrize(("env", "message"), [
    ({"JIRA_URL": "jira.example.org"}, "JIRA_URL must be an http"),
    ({"JIRA_URL": SITE, "JIRA_FIELD_REASON": "Escalation reason"}, "JIRA_FIELD_REASON must be a custom field id"),
    ({"JIRA_URL": SITE, "JIRA_PROJECTS": "SUP,support desk"}, "JIRA_PROJECTS: 'SUPPORT DESK' is not a Jira"),
    ({"JIRA_URL": SITE, "JIRA_LABEL_CANCEL": "cancel it"}, "JIRA_LABEL_CANCEL: a Jira label cannot contain spaces"),
    ({"JIRA_URL": SITE, "JIRA_PRIORITIES": "critical=Highest"}, "JIRA_PRIORITIES: 'critical=Highest'"),
    ({"JIRA_URL": SITE, "JIRA_PRIORITIES": "high"}, "JIRA_PRIORITIES: 'high' is not"),
    ({"JIRA_URL": SITE, "JIRA_DEPLOYMENT": "server farm"}, "JIRA_DEPLOYMENT must be cloud or datacenter"),
])  # fmt: skip
def test_mistakes_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JiraSettings.from_env(env)


def test_a_live_adapter_without_a_webhook_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    adapter = build_adapter({k: v for k, v in ENV.items() if k != "JIRA_WEBHOOK_SECRET"}, load_policy("lead-review"))
    assert adapter is not None and not adapter.dry_run
    assert "JIRA_WEBHOOK_SECRET is not set" in caplog.text
