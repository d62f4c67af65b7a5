"""Regenerate examples/: one `tierup decide` input per procedure rule, with its expected outcome.

Run it after changing a policy: `python tools/make_examples.py`. The tests check every file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from integration.codec import escalation_to_json
from integration.model import Command, Escalation, Reason
from integration.policy import decide, load_policy
from tests.core.builders import NOW, command, request, sla, ticket

ROOT = Path(__file__).resolve().parents[1] / "examples"

BASE: dict[str, Any] = {
    "now": "2026-03-10T10:00:00Z",
    "platform": "zendesk",
    "channel": "macro",
    "reason": "wrong_resolution",
    "rationale": "Members cannot check in at the front desk: we lose revenue every hour",
    "preferred_contact": "phone +48 555 0100",
    "requested_by": {"id": "501", "email": "champ@club.example", "name": "Pat Champion", "tags": ["pg_champion"]},
    "ticket": {
        "ref": "4016",
        "status": "open",
        "priority": "normal",
        "group": "Support",
        "tags": ["gym"],
        "requester": {"id": "501", "email": "champ@club.example", "name": "Pat Champion", "tags": ["pg_champion"]},
        "organisation": {"id": "77", "name": "Club Warszawa", "region": "PL"},
    },
}


def with_(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key.startswith("ticket_"):
            out["ticket"][key[len("ticket_") :]] = value
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def prior(policy_name: str, steps: Callable[[Any], Escalation]) -> dict[str, Any]:
    return escalation_to_json(steps(load_policy(policy_name)), with_history=False)


def escalated(p: Any) -> Escalation:
    return decide(p, None, request(), NOW).escalation


def command_input(cmd: str, escalation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "now": extra.pop("now", "2026-03-10T12:00:00Z"),
        "platform": "zendesk",
        "command": cmd,
        "actor": {"id": "900", "email": "lead@support.example", "name": "Lee Lead", "role": "lead"},
        "ticket": {**BASE["ticket"], "tags": ["gym", "escalated"], "group": escalation["group"]},
        "escalation": escalation,
    }
    out.update(extra)
    return out


def lead_review() -> dict[str, dict[str, Any]]:
    lr = "lead-review"
    confirmed = prior(lr, lambda p: decide(p, (e := escalated(p)), command(Command.CONFIRM, e), NOW).escalation)
    return {
        "lr1-not-authorised": with_(requested_by={"id": "502", "email": "someone@elsewhere.example"})
        | {"expect": {"state": "cancelled", "rule": "LR1"}},
        "lr2-agent-conduct": with_(reason="agent_conduct") | {"expect": {"state": "escalated", "rule": "LR5"}},
        "lr3-no-rationale": with_(rationale=None) | {"expect": {"state": "needs_info", "rule": "LR3"}},
        "lr4-au-routes-to-apac": with_(ticket_organisation={"id": "78", "name": "Club Sydney", "region": "AU"})
        | {"expect": {"state": "escalated", "group": "Technical Support Team Leaders APAC"}},
        "lr5-escalated": with_() | {"expect": {"state": "escalated", "rule": "LR5",
                                               "group": "Technical Support Team Leaders"}},
        "lr6-lead-cancels": command_input("cancel", prior(lr, escalated),
                                          feedback="The resolution was correct: see KB-12.")
        | {"expect": {"state": "cancelled", "rule": "LR6"}},
        "lr7-lead-confirms": command_input("confirm", prior(lr, escalated))
        | {"expect": {"state": "confirmed", "rule": "LR7", "first_contact_due": "2026-03-12T11:00:00+01:00"}},
        "lr8-business-urgency": with_(reason="business_urgency")
        | {"expect": {"state": "urgency_requested", "rule": "LR8"}},
        "sh3-sla-breach": with_(channel="sla_breach", reason="sla_violation", rationale=None,
                                requested_by={"id": "tierup", "role": "system"})
        | {"expect": {"state": "escalated", "rule": "SH3"}},
        "sh4-deadline-missed": command_input("deadline_missed", confirmed, now="2026-03-12T10:01:00Z",
                                             actor={"id": "tierup", "role": "system"})
        | {"expect": {"state": "level_2", "rule": "SH4", "group": "Technical Support Management"}},
    }  # fmt: skip


def service_desk() -> dict[str, dict[str, Any]]:
    sd = "service-desk"
    within = [{"name": "First reply time", "metric": "first_reply", "breach_at": "2026-03-10T13:00:00Z"}]
    breached = [{"name": "First reply time", "metric": "first_reply", "breach_at": "2026-03-10T09:00:00Z",
                 "breached": True}]  # fmt: skip
    deferred = prior(sd, lambda p: decide(p, None, request(reason=Reason.SLA_VIOLATION,
                     ticket=ticket(slas=(sla(breach_at=NOW + timedelta(hours=3)),))), NOW).escalation)  # fmt: skip
    return {
        "sd1-within-sla-deferred": with_(reason="sla_violation", ticket_slas=within)
        | {"expect": {"state": "deferred", "rule": "SD1"}},
        "sd1-deferred-wakes-on-breach": with_(channel="sla_breach", reason="sla_violation", now="2026-03-10T13:01:00Z",
                                              ticket_slas=breached, ticket_tags=["escalation_deferred"],
                                              requested_by={"id": "tierup", "role": "system"})
        | {"escalation": deferred, "expect": {"state": "escalated", "rule": "SD1"}},
        "sd2-reclassified": with_(reason="priority_misclassified", requested_priority="high")
        | {"expect": {"state": "reclassified", "rule": "SD2"}},
        "sd3-by-form": with_(channel="form") | {"expect": {"state": "escalated", "rule": "SD5"}},
        "sd4-preferred-contact": with_(preferred_contact="Call Dr Patel on 0161 496 0000")
        | {"expect": {"state": "escalated"}},
        "sd5-service-desk-managers": with_() | {"expect": {"state": "escalated", "group": "Service Desk Managers"}},
        "sd6-priority-not-higher": with_(reason="priority_misclassified", requested_priority="normal")
        | {"expect": {"state": "escalated", "rule": "SD5"}},
        "sd7-deferral-names-the-sla": with_(reason="sla_violation", ticket_slas=within)
        | {"expect": {"state": "deferred", "rule": "SD1"}},
        "sd8-no-ticket-number": with_(channel="email", ticket=None, origin_ref="9001")
        | {"expect": {"state": "needs_info", "rule": "SD8"}},
        "sd9-solved-resolves": command_input("resolve", prior(sd, escalated),
                                             actor={"id": "tierup", "role": "system"})
        | {"expect": {"state": "resolved", "rule": "SD9"}},
        "sd10-first-contact-one-hour": with_() | {"expect": {"state": "escalated",
                                                             "first_contact_due": "2026-03-10T11:00:00+00:00"}},
        "sd11-second-request-level-2": with_(now="2026-03-11T10:00:00Z")
        | {"escalation": prior(sd, escalated), "expect": {"state": "level_2", "rule": "SD11",
                                                          "group": "Head of Service Delivery"}},
        "sh3-sla-breach": with_(channel="sla_breach", reason="sla_violation", ticket_slas=breached,
                                requested_by={"id": "tierup", "role": "system"})
        | {"expect": {"state": "escalated", "rule": "SH3"}},
        "sh4-deadline-missed": command_input("deadline_missed", prior(sd, escalated), now="2026-03-10T11:01:00Z",
                                             actor={"id": "tierup", "role": "system"})
        | {"expect": {"state": "level_2", "rule": "SH4", "group": "Head of Service Delivery"}},
    }  # fmt: skip


def main() -> None:
    for policy, examples in (("lead-review", lead_review()), ("service-desk", service_desk())):
        folder = ROOT / policy
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in examples.items():
            (folder / f"{name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
