"""The Jira adapter: verify, parse, gateway and install for Jira Cloud, Service Management and Data Center."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.jira.gateway import JiraGateway
from adapters.jira.parse import JiraParser, ProjectTypes, no_fields
from adapters.jira.settings import JiraSettings
from adapters.jira.sweep import JiraSweepSource
from adapters.jira.verify import SIGNATURE_HEADER, header, verify_signature, verify_url_token
from integration.model import Event, Ignored, Platform
from integration.policy import Policy
from integration.ports import Classified, Delivery, Gateway
from integration.service import DryRunGateway

log = logging.getLogger("tierup.jira")

DELIVERY_ID_HEADER = "X-Atlassian-Webhook-Identifier"  # the same on every retry of one delivery


@dataclass
class JiraAdapter:
    """Jira's side of the PlatformAdapter port."""

    settings: JiraSettings
    gateway: Gateway
    parser: JiraParser
    dry_run: bool
    platform: Platform = Platform.JIRA
    sla_label: str = "sla_breached"  # the policy's sla_breached tag: the sweep's query leaves those issues out
    _sweep: JiraSweepSource | None = field(default=None, init=False, repr=False, compare=False)

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """The admin webhook's signature; without one, the URL token when JIRA_WEBHOOK_URL_TOKEN is set."""
        if header(headers, SIGNATURE_HEADER) is not None or not self.settings.webhook_url_token:
            verify_signature(headers, body, self.settings.webhook_secrets)
        else:
            verify_url_token(query, self.settings.webhook_url_token)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """X-Atlassian-Webhook-Identifier: one id across Jira's retries of a delivery."""
        value = header(headers, DELIVERY_ID_HEADER)
        return value.strip() if value and value.strip() else None

    def replay_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """A signed body's hash: Jira signs the body and not its identifier.

        Its retries send the same body under the same identifier; the same signed body under a
        new identifier is somebody sending a delivery again, which no time limit would refuse.
        A delivery that carries the URL token instead (an Automation rule) proves nothing about
        its body, and sends the same body again on purpose (the label back on: ask again), so
        it has none: its identifier, or the body itself when it names none, is its identity.
        """
        if header(headers, SIGNATURE_HEADER) is None:
            return None
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def classify(self, payload: Any) -> Classified | None:
        """The event kind, issue key and event time, or None for events Tierup does not handle."""
        return self.parser.classify(payload)

    def parse(self, delivery: Delivery) -> Event | Ignored:
        """The request or command a stored delivery carries, or Ignored."""
        return self.parser.parse(delivery)

    def sweep_source(self) -> JiraSweepSource | None:
        """The SLA sweep over JIRA_PROJECTS (one per adapter, so it learns the SLA fields once); None in a dry run."""
        if self._sweep is None and isinstance(self.gateway, JiraGateway):
            if not self.settings.projects:
                log.warning("JIRA_PROJECTS is not set: the Jira SLA sweep is off (the push path still works)")
                return None
            self._sweep = JiraSweepSource(self.gateway, breached_label=self.sla_label)
        return self._sweep


def build_adapter(env: Mapping[str, str], policy: Policy) -> JiraAdapter | None:
    """The Jira adapter from settings (None when JIRA_URL is unset); a dry run when there are no credentials."""
    settings = JiraSettings.from_env(env)
    if settings is None:
        return None
    project_types = ProjectTypes()
    gateway: Gateway
    own_accounts: Callable[[], frozenset[str]]
    field_ids: Callable[[str], frozenset[str]]
    if settings.has_credentials:
        if not settings.webhook_secrets:
            log.warning(
                "JIRA_WEBHOOK_SECRET is not set: every signed Jira delivery will be refused (run the installer)"
            )
        jira = JiraGateway(settings, escalated_label=policy.tags.escalated, sweep_label=policy.tags.sla_breached,
                           project_types=project_types, read_slas=bool(policy.sla_gate_reasons))  # fmt: skip
        gateway, own_accounts, field_ids = jira, jira.own_accounts, jira.field_ids
    else:
        gateway, own_accounts, field_ids = DryRunGateway(Platform.JIRA), frozenset, no_fields
    parser = JiraParser(settings, project_types=project_types, own_accounts=own_accounts, field_ids=field_ids)
    return JiraAdapter(settings=settings, gateway=gateway, parser=parser, dry_run=not settings.has_credentials,
                       sla_label=policy.tags.sla_breached)  # fmt: skip
