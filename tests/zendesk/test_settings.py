"""ZendeskSettings.from_env: off when unset, a named setting when half set, the installer's ids read back."""

from __future__ import annotations

import pytest

from adapters.zendesk.settings import ZendeskSettings
from integration.config import ConfigError
from tests.zendesk.helpers import BOT_ID, GROUP_IDS, SECRET, URL, env


def test_unset_means_zendesk_is_off() -> None:
    assert ZendeskSettings.from_env({}) is None
    assert ZendeskSettings.from_env({"JIRA_URL": "https://acme.atlassian.net", "ZENDESK_URL": " "}) is None


def test_a_full_configuration() -> None:
    s = ZendeskSettings.from_env(env(ZENDESK_WEBHOOK_SECRET=f"new-secret, {SECRET}", ZENDESK_URL=URL + "/"))
    assert s is not None
    assert s.url == URL and s.has_credentials
    assert s.webhook_secrets == ("new-secret", SECRET)
    assert s.bot_user_id == BOT_ID
    assert s.group_ids == GROUP_IDS
    assert s.field_id("escalation_note") == 6130900000005 and s.field_id("first_contact_due") == 6130900000006
    assert "api-token-for-tests" not in repr(s) and SECRET not in repr(s)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"ZENDESK_API_TOKEN": "t", "ZENDESK_EMAIL": "a@b.example"}, "ZENDESK_URL"),
        ({"ZENDESK_WEBHOOK_SECRET": "s"}, "ZENDESK_URL"),
        ({"ZENDESK_URL": URL}, "ZENDESK_API_TOKEN"),
        ({"ZENDESK_URL": URL, "ZENDESK_EMAIL": "a@b.example"}, "ZENDESK_API_TOKEN"),
        ({"ZENDESK_URL": URL, "ZENDESK_API_TOKEN": "t"}, "ZENDESK_EMAIL"),
        ({"ZENDESK_URL": "acme.zendesk.com", "ZENDESK_OAUTH_TOKEN": "o"}, "ZENDESK_URL"),
        ({"ZENDESK_URL": URL + "/api/v2", "ZENDESK_OAUTH_TOKEN": "o"}, "ZENDESK_URL"),
        ({"ZENDESK_URL": URL, "ZENDESK_OAUTH_TOKEN": "o", "ZENDESK_GROUP_IDS": "Leads=1"}, "ZENDESK_GROUP_IDS"),
        ({"ZENDESK_URL": URL, "ZENDESK_OAUTH_TOKEN": "o", "ZENDESK_FIELD_NOTE": "note"}, "ZENDESK_FIELD_NOTE"),
        ({"ZENDESK_URL": URL, "ZENDESK_OAUTH_TOKEN": "o", "ZENDESK_BOT_USER_ID": "me"}, "ZENDESK_BOT_USER_ID"),
        ({"ZENDESK_URL": URL, "ZENDESK_OAUTH_TOKEN": "o", "ZENDESK_TIMEOUT": "soon"}, "ZENDESK_TIMEOUT"),
    ],
)
def test_half_a_configuration_names_what_is_missing_or_wrong(settings: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ZendeskSettings.from_env(settings)


def test_secrets_alone_are_a_dry_run_configuration() -> None:
    s = ZendeskSettings.from_env({"ZENDESK_URL": URL, "ZENDESK_WEBHOOK_SECRET": "s"})
    assert s is not None and not s.has_credentials and s.webhook_secrets == ("s",)


def test_credentials_without_a_secret_start_and_the_secret_comes_from_install() -> None:
    s = ZendeskSettings.from_env({"ZENDESK_URL": URL, "ZENDESK_EMAIL": "a@b.example", "ZENDESK_API_TOKEN": "t"})
    assert s is not None and s.has_credentials and s.webhook_secrets == ()


def test_a_local_stand_in_url() -> None:
    s = ZendeskSettings.from_env({"ZENDESK_URL": "http://127.0.0.1:8765", "ZENDESK_OAUTH_TOKEN": "o"})
    assert s is not None and s.url == "http://127.0.0.1:8765"
