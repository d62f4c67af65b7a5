"""The Jira half of the SLA sweeps (SH3, SD1): the Automation push body and the JQL sweep, under the real client."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapters.jira.parse import JiraPayloadError
from integration.model import SYSTEM, Channel, EscalationRequest, Ignored, Reason
from tests.jira.conftest import NOW, adapter_for, delivery

README = Path(__file__).parent.parent.parent / "adapters" / "jira" / "README.md"


# --- the push: a Jira Automation rule's "Send web request" ------------------------------------------


def automation_body(issue_key: str = "SUP-7") -> bytes:
    """The README's Automation body, exactly as written there, with the smart values Jira fills in."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    [block] = [b for b in blocks if "tierup:sla_breached" in b]
    return block.replace("{{issue.key}}", issue_key).encode()


def test_the_readme_automation_body_is_an_sla_breach_by_the_system() -> None:
    body = automation_body()
    assert json.loads(body) == {
        "webhookEvent": "tierup:sla_breached",
        "sla": "Time to resolution",
        "issue": {"key": "SUP-7"},
    }
    event = adapter_for("service-desk").parse(delivery(body, "sha256:automation"))

    assert event == EscalationRequest(
        platform=event.platform,
        ticket_ref="SUP-7",
        requested_by=SYSTEM,
        channel=Channel.SLA_BREACH,
        reason=Reason.SLA_VIOLATION,
        received_at=NOW,  # no timestamp in the body: the delivery's arrival counts
        rationale="Time to resolution breached",
        ticket=None,  # the gateway reads the issue once, as for every event without the issue's fields
        delivery_id="sha256:automation",
    )


def test_the_automation_body_classifies_with_its_issue() -> None:
    classified = adapter_for("lead-review").classify(json.loads(automation_body("SUP-12")))
    assert classified is not None
    assert (classified.kind, classified.ticket_ref, classified.occurred_at) == ("tierup:sla_breached", "SUP-12", None)


def test_an_automation_body_from_another_project_is_ignored() -> None:
    result = adapter_for("lead-review").parse(delivery(automation_body("OPS-3"), "sha256:other"))
    assert isinstance(result, Ignored) and result.reason == "project OPS is not in JIRA_PROJECTS"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"webhookEvent": "tierup:sla_breached"}, "issue: missing"),
        ({"webhookEvent": "tierup:sla_breached", "issue": {"key": ["SUP-7"]}}, "issue.key: must be text"),
        ({"webhookEvent": "tierup:sla_breached", "issue": {"key": "SUP-7"}, "sla": {"x": 1}}, "sla: must be text"),
    ],
)
def test_a_malformed_automation_body_is_a_payload_error(payload: Any, problem: str) -> None:
    with pytest.raises(JiraPayloadError, match=re.escape(problem)):
        adapter_for("lead-review").parse(delivery(json.dumps(payload).encode(), "sha256:bad"))
