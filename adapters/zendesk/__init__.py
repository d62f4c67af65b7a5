"""The Zendesk adapter: verify, classify and parse deliveries, and the gateway that writes back.

`build_adapter(env, policy)` is what the composition root calls; it returns None when
ZENDESK_URL (and every other ZENDESK_ setting) is unset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.zendesk.gateway import ZendeskGateway
from adapters.zendesk.parse import ParseContext, classify, parse
from adapters.zendesk.settings import ZendeskSettings
from adapters.zendesk.sweep import ZendeskSweepSource
from adapters.zendesk.verify import INVOCATION_HEADER, header, verify_signature
from integration.config import CoreSettings
from integration.model import Event, Ignored, Platform
from integration.policy import Policy, Tags
from integration.ports import Classified, Delivery, Gateway
from integration.service import DryRunGateway

log = logging.getLogger("tierup.zendesk")


@dataclass
class ZendeskAdapter:
    """integration.ports.PlatformAdapter for Zendesk."""

    settings: ZendeskSettings
    gateway: Gateway
    dry_run: bool
    tags: Tags = field(default_factory=Tags)
    signature_tolerance: int = 300
    platform: Platform = field(default=Platform.ZENDESK, init=False)
    _sweep: ZendeskSweepSource | None = field(default=None, init=False, repr=False)

    def sweep_source(self) -> ZendeskSweepSource | None:
        """The SLA sweep (metric events export); None in a dry run, which has no API access to read it with."""
        if self.dry_run or not isinstance(self.gateway, ZendeskGateway):
            return None
        if self._sweep is None:
            # One per adapter: its limiter then spaces every sweep this process runs (10 exports a minute).
            self._sweep = ZendeskSweepSource(self.gateway)
        return self._sweep

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """Raise ZendeskSignatureError unless one of ZENDESK_WEBHOOK_SECRET signed the raw body, recently."""
        verify_signature(headers, body, self.settings.webhook_secrets, now, self.signature_tolerance)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Zendesk's invocation id: the same on every retry of one delivery."""
        value = header(headers, INVOCATION_HEADER)
        return value.strip() if value and value.strip() else None

    def replay_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None: Zendesk signs its timestamp with the body, and verify holds it to the tolerance window."""
        return None

    def classify(self, payload: Any) -> Classified | None:
        """The kind and ticket of a verified payload, or None when Tierup does not handle it."""
        return classify(payload)

    def parse_context(self) -> ParseContext:
        """What the parser may use besides the payload; a live gateway lends it one cached read."""
        live = self.gateway if isinstance(self.gateway, ZendeskGateway) else None
        # Without ZENDESK_BOT_USER_ID (set by hand rather than by install), Tierup's own replies would come
        # back as a lead's contact: a live gateway asks Zendesk who Tierup is, once.
        bot = live.own_user_id() if live is not None else self.settings.bot_user_id
        read = live.read_ticket if live is not None else None
        return ParseContext(tags=self.tags, bot_user_id=bot, field_ids=self.settings.field_ids, read=read)

    def parse(self, delivery: Delivery) -> Event | Ignored:
        """A stored delivery as a request, a review command, or Ignored (our own echo, nothing to do)."""
        return parse(delivery, self.parse_context())


def build_adapter(env: Mapping[str, str], policy: Policy) -> ZendeskAdapter | None:
    """The Zendesk adapter from settings; a dry run (nothing written) when only webhook secrets are set."""
    settings = ZendeskSettings.from_env(env)
    if settings is None:
        return None
    tolerance = CoreSettings.from_env(env).signature_tolerance_seconds
    if settings.has_credentials:
        if not settings.webhook_secrets:
            log.warning("ZENDESK_WEBHOOK_SECRET is not set: every Zendesk delivery will be refused (run the installer)")
        gateway: Gateway = ZendeskGateway.from_settings(settings)
        return ZendeskAdapter(settings, gateway, dry_run=False, tags=policy.tags, signature_tolerance=tolerance)
    return ZendeskAdapter(
        settings, DryRunGateway(Platform.ZENDESK), dry_run=True, tags=policy.tags, signature_tolerance=tolerance
    )
