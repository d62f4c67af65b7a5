"""Zendesk settings from the environment and `.env`: who to call, how to verify, which ids the installer stored."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from integration.config import ConfigError, secrets_list

# Logical field name (what the core's SetField and the parser speak) -> the setting holding its Zendesk id.
FIELD_SETTINGS: Mapping[str, str] = {
    "escalation_reason": "ZENDESK_FIELD_REASON",
    "business_rationale": "ZENDESK_FIELD_RATIONALE",
    "preferred_contact": "ZENDESK_FIELD_CONTACT",
    "requested_priority": "ZENDESK_FIELD_PRIORITY",
    "escalation_note": "ZENDESK_FIELD_NOTE",
    "first_contact_due": "ZENDESK_FIELD_DUE",
}

# Any of these set means the admin meant to configure Zendesk: then ZENDESK_URL is required.
_ZENDESK_INTENT = ("ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_OAUTH_TOKEN", "ZENDESK_WEBHOOK_SECRET")

DEFAULT_TIMEOUT_SECONDS = 20.0
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = _get(env, name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name} must be a Zendesk id (a positive whole number), got {raw!r}")
    return int(raw)


def parse_group_ids(raw: str | None, name: str = "ZENDESK_GROUP_IDS") -> dict[str, int]:
    """The JSON object of group name -> Zendesk group id that the installer stores."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f'{name} must be a JSON object like {{"Group name": 123}}, got {raw!r}') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{name} must be a JSON object like {{"Group name": 123}}')
    out: dict[str, int] = {}
    for group, gid in data.items():
        if isinstance(gid, bool) or not isinstance(gid, int | str) or not str(gid).isdigit():
            raise ConfigError(f"{name}: the id of {group!r} must be a whole number, got {gid!r}")
        out[str(group)] = int(gid)
    return out


def normalise_zendesk_url(raw: str) -> str:
    """`https://acme.zendesk.com` or `http://127.0.0.1:PORT` without a trailing slash, or ConfigError."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"ZENDESK_URL must look like https://acme.zendesk.com, got {raw!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError(f"ZENDESK_URL must be the account's base URL without a path, got {raw!r}")
    if parts.username or parts.password:
        raise ConfigError("ZENDESK_URL must not carry credentials; use ZENDESK_EMAIL and ZENDESK_API_TOKEN")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class ZendeskSettings:
    """Everything the Zendesk adapter reads from settings; secrets stay out of repr."""

    url: str
    email: str | None = None
    api_token: str | None = field(default=None, repr=False)
    oauth_token: str | None = field(default=None, repr=False)
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    bot_user_id: str | None = None
    webhook_id: str | None = None
    group_ids: Mapping[str, int] = field(default_factory=dict)
    field_ids: Mapping[str, int] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    # The support address escalation emails are sent to (SD3): install's email triggers watch it.
    escalation_address: str | None = None

    @property
    def has_credentials(self) -> bool:
        return bool(self.oauth_token or (self.email and self.api_token))

    def field_id(self, logical_name: str) -> int | None:
        """The Zendesk id of a logical ticket field (`escalation_note`, ...), when the installer stored it."""
        return self.field_ids.get(logical_name)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ZendeskSettings | None:
        """Read the settings; None when Zendesk is off, ConfigError naming what is missing when half set."""
        if not any(_get(env, name) for name in _ZENDESK_INTENT):
            return None
        raw_url = _get(env, "ZENDESK_URL")
        if raw_url is None:
            raise ConfigError("ZENDESK_URL is not set (environment or .env), but other ZENDESK_ settings are")
        url = normalise_zendesk_url(raw_url)
        email, api_token = _get(env, "ZENDESK_EMAIL"), _get(env, "ZENDESK_API_TOKEN")
        oauth = _get(env, "ZENDESK_OAUTH_TOKEN")
        secrets = secrets_list(env.get("ZENDESK_WEBHOOK_SECRET"))
        if oauth is None:
            if email and not api_token:
                raise ConfigError("ZENDESK_API_TOKEN is not set (environment or .env); it goes with ZENDESK_EMAIL")
            if api_token and not email:
                raise ConfigError("ZENDESK_EMAIL is not set (environment or .env); it goes with ZENDESK_API_TOKEN")
            if not api_token and not secrets:
                raise ConfigError(
                    "ZENDESK_API_TOKEN is not set (environment or .env): set ZENDESK_EMAIL and ZENDESK_API_TOKEN "
                    "(or ZENDESK_OAUTH_TOKEN), or only ZENDESK_WEBHOOK_SECRET for a dry run that writes nothing"
                )
        bot = _get(env, "ZENDESK_BOT_USER_ID")
        if bot is not None and not bot.isdigit():
            raise ConfigError(f"ZENDESK_BOT_USER_ID must be a Zendesk user id, got {bot!r}")
        fields: dict[str, int] = {}
        for logical, setting in FIELD_SETTINGS.items():
            fid = _positive_int(env, setting)
            if fid is not None:
                fields[logical] = fid
        timeout_raw = _get(env, "ZENDESK_TIMEOUT")
        try:
            timeout = float(timeout_raw) if timeout_raw else DEFAULT_TIMEOUT_SECONDS
        except ValueError:
            raise ConfigError(f"ZENDESK_TIMEOUT must be a number of seconds, got {timeout_raw!r}") from None
        if timeout <= 0:
            raise ConfigError(f"ZENDESK_TIMEOUT must be positive, got {timeout_raw!r}")
        address = _get(env, "ZENDESK_ESCALATION_ADDRESS")
        if address is not None and not _ADDRESS.fullmatch(address):
            raise ConfigError(
                f"ZENDESK_ESCALATION_ADDRESS must be one e-mail address (a Zendesk support address), got {address!r}"
            )
        return cls(
            url=url,
            email=email,
            api_token=api_token,
            oauth_token=oauth,
            webhook_secrets=secrets,
            bot_user_id=bot,
            webhook_id=_get(env, "ZENDESK_WEBHOOK_ID"),
            group_ids=parse_group_ids(_get(env, "ZENDESK_GROUP_IDS")),
            field_ids=fields,
            timeout_seconds=timeout,
            escalation_address=address.lower() if address else None,
        )
