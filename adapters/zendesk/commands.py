"""`tierup install zendesk` and `tierup uninstall zendesk` (registered by integration.cli)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adapters.zendesk.gateway import zenpy_client
from adapters.zendesk.install import Report, ZendeskInstaller
from adapters.zendesk.settings import ZendeskSettings
from integration.cli import install_parsers
from integration.config import ENV_FILE, ConfigError, CoreSettings, load_env
from integration.policy import load_policy
from integration.ports import GatewayError


def register(sub: Any) -> None:
    """Add `install zendesk` and `uninstall zendesk` to the `tierup` parser."""
    install, remove = install_parsers(sub)
    p = install.add_parser(
        "zendesk", help="create or update Tierup's fields, groups, webhook, triggers, macros and SLA automation"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing in Zendesk or .env")
    p.set_defaults(handler=cmd_install_zendesk)
    u = remove.add_parser("zendesk", help="remove what `tierup install zendesk` created, and nothing else")
    u.add_argument("--dry-run", action="store_true", help="print what would be removed")
    u.set_defaults(handler=cmd_uninstall_zendesk)


def _installer(env: dict[str, str]) -> tuple[ZendeskInstaller, CoreSettings]:
    settings = ZendeskSettings.from_env(env)
    if settings is None:
        raise ConfigError("ZENDESK_URL is not set (environment or .env)")
    if not settings.has_credentials:
        raise ConfigError("ZENDESK_API_TOKEN is not set (environment or .env): install needs ZENDESK_EMAIL + token")
    core = CoreSettings.from_env(env)
    installer = ZendeskInstaller(
        zenpy_client(settings), load_policy(core.policy), ENV_FILE, escalation_address=settings.escalation_address
    )
    return installer, core


def _finish(report: Report) -> int:
    for line in report.lines():
        print(line)
    return 0


def cmd_install_zendesk(args: argparse.Namespace) -> int:
    """Create or update everything the procedure needs in Zendesk and store the ids in .env."""
    env = load_env(ENV_FILE)
    installer, core = _installer(env)
    try:
        return _finish(installer.install(core.public_url, dry_run=args.dry_run))
    except GatewayError as exc:
        print(f"tierup: install zendesk: {exc} (what was made stays: run install again to finish)", file=sys.stderr)
        return 2


def cmd_uninstall_zendesk(args: argparse.Namespace) -> int:
    """Remove what install created (marked [tierup]) and forget its ids in .env."""
    env = load_env(ENV_FILE)
    installer, _ = _installer(env)
    try:
        return _finish(installer.uninstall(dry_run=args.dry_run))
    except GatewayError as exc:
        print(f"tierup: uninstall zendesk: {exc}", file=sys.stderr)
        return 2
