"""`tierup install jira` and `tierup uninstall jira` (registered by integration.cli)."""

from __future__ import annotations

import argparse
from typing import Any

from adapters.jira.gateway import JiraGateway
from adapters.jira.install import apply_install, describe_install, plan_install, uninstall
from adapters.jira.settings import JiraSettings
from integration.cli import CommandError, install_parsers
from integration.config import ENV_FILE, ConfigError, CoreSettings, load_env
from integration.policy import Policy, load_policy
from integration.ports import GatewayError


def register(sub: Any) -> None:
    """Add `install jira` and `uninstall jira` to the `tierup` parser."""
    install, remove = install_parsers(sub)
    p = install.add_parser("jira", help="register the Jira webhook and check fields, groups, priorities and status")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing in Jira or .env")
    p.set_defaults(handler=cmd_install_jira)
    u = remove.add_parser("jira", help="remove the Jira webhook Tierup registered")
    u.add_argument("--dry-run", action="store_true", help="print what would be removed")
    u.set_defaults(handler=cmd_uninstall_jira)


def _gateway(env: dict[str, str]) -> tuple[JiraGateway, CoreSettings, Policy]:
    settings = JiraSettings.from_env(env)
    if settings is None:
        raise ConfigError("JIRA_URL is not set (environment or .env)")
    core = CoreSettings.from_env(env)
    policy = load_policy(core.policy)
    return JiraGateway(settings, escalated_label=policy.tags.escalated), core, policy


def cmd_install_jira(args: argparse.Namespace) -> int:
    """Register or update the webhook, store its secret, and report what an admin must create."""
    gateway, core, policy = _gateway(load_env(ENV_FILE))
    try:
        plan = plan_install(gateway, policy, core.public_url)
        if not args.dry_run:
            apply_install(gateway, plan, ENV_FILE)
    except GatewayError as exc:
        raise CommandError(f"Jira: {exc}") from None
    mode = " (dry run: nothing changed)" if args.dry_run else ""
    projects = ", ".join(gateway.settings.projects)
    print(f"Jira {gateway.settings.url} ({gateway.deployment.value}), projects {projects}{mode}")
    print(describe_install(plan, dry_run=args.dry_run, env_file=ENV_FILE))
    return 1 if plan.problems else 0


def cmd_uninstall_jira(args: argparse.Namespace) -> int:
    """Delete the webhook(s) Tierup registered in Jira; other webhooks stay."""
    gateway, core, _ = _gateway(load_env(ENV_FILE))
    try:
        removed, notes = uninstall(gateway, core.public_url, dry_run=args.dry_run)
    except GatewayError as exc:
        raise CommandError(f"Jira: {exc}") from None
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} webhook {', '.join(removed)}" if removed else "no Tierup webhook is registered in Jira")
    for note in notes:
        print(f"note: {note}")
    return 0
