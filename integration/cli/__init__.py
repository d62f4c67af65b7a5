"""The `tierup` command: the composition root that wires settings, adapters, store and web."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from integration.codec import CodecError, decision_to_json, escalation_from_json, event_from_json, parse_time
from integration.config import ConfigError
from integration.policy import Policy, PolicyError, decide, load_policy
from integration.workflow import IllegalTransition


class CommandError(Exception):
    """Bad input to a command: printed as one line, exit status 2."""


Handler = Callable[[argparse.Namespace], int]


def install_parsers(sub: Any) -> tuple[Any, Any]:
    """The `install` and `uninstall` commands' target subparsers, created by whichever adapter registers first.

    Each adapter adds its platform under both (`tierup install zendesk`, `tierup uninstall jira`).
    """
    choices = sub.choices
    if "install" not in choices:
        sub.add_parser("install", help="create or update what Tierup needs in a helpdesk").add_subparsers(
            dest="target", required=True
        )
        sub.add_parser("uninstall", help="remove what `install` created").add_subparsers(dest="target", required=True)
    return choices["install"]._subparsers._group_actions[0], choices["uninstall"]._subparsers._group_actions[0]


def _add_decide(sub: Any) -> None:
    p = sub.add_parser("decide", help="decide one request with a policy (reproducible: the clock comes from the input)")
    p.add_argument("--policy", default="lead-review", help="a shipped policy name or a TOML file")
    p.add_argument("--format", choices=("json", "table"), default="json")
    p.add_argument("input", help="a request JSON file (see README), or - for standard input")
    p.set_defaults(handler=cmd_decide)


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON: {exc}") from None


def cmd_decide(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    data = _read_json(args.input)
    if not isinstance(data, dict):
        raise CommandError(f"{args.input}: must be a JSON object")
    try:
        now = parse_time(data["now"], "now") if data.get("now") else None
        event = event_from_json(data, default_now=now)
        escalation = escalation_from_json(data["escalation"]) if data.get("escalation") else None
    except (CodecError, KeyError, ValueError) as exc:
        raise CommandError(f"{args.input}: {exc}") from None
    when = now or event.received_at
    if when.tzinfo is None:
        raise CommandError(f"{args.input}: now: needs a time zone offset")
    try:
        decision = decide(policy, escalation, event, when)
    except IllegalTransition as exc:
        raise CommandError(f"{args.input}: {exc}") from None
    out = decision_to_json(decision)
    if args.format == "json":
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(_decision_table(out))
    return 0


def _decision_table(out: dict[str, Any]) -> str:
    rows = [
        ("rule", out["rule"]),
        ("state", f"{out['from_state'] or '-'} -> {out['state']}"),
        ("level", str(out["level"])),
        ("group", out["group"] or "-"),
        ("first contact due", out["first_contact_due"] or "-"),
        ("why", out["why"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("actions:")
    for a in out["actions"]:
        detail = {k: v for k, v in a.items() if k != "kind"}
        text = " ".join(f"{k}={v}" for k, v in detail.items())
        lines.append(f"  - {a['kind']}: {text}".replace("\n", " "))
    return "\n".join(lines)


def _add_policy(sub: Any) -> None:
    p = sub.add_parser("policy", help="work with policy files")
    psub = p.add_subparsers(dest="policy_command", required=True)
    check = psub.add_parser("check", help="validate a policy and summarise what it will do")
    check.add_argument("file", help="a TOML policy file or a shipped policy name")
    check.set_defaults(handler=cmd_policy_check)


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    print(policy_summary(policy))
    return 0


def policy_summary(policy: Policy) -> str:
    """A readable account of what a policy will do."""
    t = policy.tags
    lines = [f"policy {policy.name} ({policy.source}): OK", policy.description, ""]
    lines.append("escalation reasons: " + ", ".join(sorted(policy.escalation_reasons)))
    if policy.urgency_reasons:
        lines.append(f"urgency, not escalation: {', '.join(sorted(policy.urgency_reasons))} -> tag {t.urgency}")
    a = policy.authorisation
    if a is None:
        lines.append("who may escalate: anyone on the ticket")
    else:
        roles = sorted(r.value for r in a.roles)
        who = [f"user tags {sorted(a.user_tags)}" if a.user_tags else "", f"roles {roles}" if roles else "",
               f"organisations {sorted(a.organisations)}" if a.organisations else "",
               f"{len(a.emails)} listed addresses" if a.emails else ""]  # fmt: skip
        lines.append("who may escalate: " + "; ".join(w for w in who if w) + " (others: cancelled, internal note)")
    required = [n for n, on in (("business rationale", policy.require_rationale),
                                ("existing ticket number", policy.require_ticket_reference)) if on]  # fmt: skip
    lines.append("required: " + (", ".join(required) or "nothing beyond a reason") + f" (else tag {t.needs_info})")
    if policy.sla_gate_reasons:
        lines.append(f"within SLA, {', '.join(sorted(policy.sla_gate_reasons))} is deferred (tag {t.deferred}) "
                     "and escalated automatically when the SLA breaches")  # fmt: skip
    if policy.reclassify_ceiling:
        lines.append(f"priority re-classified automatically up to {policy.reclassify_ceiling} (tag {t.reclassified})")
    routes = ", ".join(f"{r} -> {g}" for r, g in sorted(policy.region_groups.items()))
    lines.append(f"routing: {routes + '; ' if routes else ''}everyone else -> {policy.default_group}")
    if policy.escalate_priority:
        lines.append(f"escalating raises priority to at least {policy.escalate_priority}")
    lines.append(f"first contact within {_duration(policy)} of the request (shown on {policy.first_contact_shown_on})")
    for i, g in enumerate(policy.level_groups, start=2):
        lines.append(f"level {i}: {g}")
    if policy.second_request_level_up:
        lines.append(f"a second request after an outcome goes one level up (tag {t.level_2})")
    lines.append(f"a missed first-contact deadline goes one level up, once (tag {t.level_2})")
    for name, cal in sorted(policy.calendars.items()):
        where = f"{cal.country}{'/' + cal.subdivision if cal.subdivision else ''}" if cal.country else "no holidays"
        lines.append(f"calendar {name.lower()}: {cal.timezone}, {cal.opens:%H:%M}-{cal.closes:%H:%M}, {where}")
    return "\n".join(lines)


def _duration(policy: Policy) -> str:
    d = policy.first_contact_within
    parts = [f"{n} business {u}{'s' if n != 1 else ''}" for n, u in ((d.days, "day"), (d.hours, "hour"),
                                                                       (d.minutes, "minute")) if n]  # fmt: skip
    return " ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierup", description="Runs your escalation procedure in Zendesk and Jira.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_decide(sub)
    _add_policy(sub)
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[Any], None]]:
    # Each part of the service adds its own commands; imported here, the composition root.
    from adapters.jira import commands as jira_commands
    from adapters.zendesk import commands as zendesk_commands
    from integration.cli import ops, sweep

    return [ops.register, zendesk_commands.register, jira_commands.register, sweep.register]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (CommandError, PolicyError, ConfigError) as exc:
        print(f"tierup: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
