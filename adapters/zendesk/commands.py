"""`tierup install zendesk` and `tierup uninstall zendesk` (registered by integration.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from adapters.zendesk.gateway import zenpy_client
from adapters.zendesk.install import Report, ZendeskInstaller
from adapters.zendesk.settings import ZendeskSettings
from integration.config import ConfigError, CoreSettings, load_env
from integration.policy import load_policy
from integration.ports import GatewayError

ENV_FILE = Path(".env")  # where load_env() reads settings, so where the installer stores them


def _target_parsers(sub: Any) -> tuple[Any, Any]:
    # Returns the (install, uninstall) sub-subparser collections, creating them once: the Jira
    # commands share them through the same helper, whichever registers first.
    choices = sub.choices
    if "install" not in choices:
        sub.add_parser("install", help="create or update what Tierup needs in a helpdesk").add_subparsers(
            dest="target", required=True
        )
        sub.add_parser("uninstall", help="remove what `install` created").add_subparsers(dest="target", required=True)
    return choices["install"]._subparsers._group_actions[0], choices["uninstall"]._subparsers._group_actions[0]


def register(sub: Any) -> None:
    """Add `install zendesk` and `uninstall zendesk` to the `tierup` parser."""
    install, remove = _target_parsers(sub)
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
        print(f"tierup: install zendesk: {exc}", file=sys.stderr)
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
