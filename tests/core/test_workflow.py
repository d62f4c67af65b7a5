"""The transition table: legal moves pass, anything else is a domain error."""

from __future__ import annotations

import pytest

from integration import workflow
from integration.model import Command, State
from integration.policy import decide, load_policy
from integration.workflow import IllegalTransition
from tests.core.builders import NOW, command, request


def test_a_new_request_may_only_reach_an_outcome() -> None:
    assert workflow.allowed(None, workflow.REQUEST) >= {State.ESCALATED, State.CANCELLED, State.DEFERRED}
    assert State.CONFIRMED not in workflow.allowed(None, workflow.REQUEST)


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [
        (None, Command.CONFIRM.value, State.CONFIRMED),
        (State.CANCELLED, Command.CONFIRM.value, State.CONFIRMED),
        (State.RESOLVED, Command.CANCEL.value, State.CANCELLED),
        (State.DEFERRED, Command.CONFIRM.value, State.CONFIRMED),
        (State.ESCALATED, workflow.REQUEST, State.DEFERRED),
    ],
)
def test_illegal_moves_raise(state: State | None, event: str, target: State) -> None:
    with pytest.raises(IllegalTransition, match="cannot"):
        workflow.check(state, event, target)


def test_reviewing_commands_are_events_like_any_other() -> None:
    assert workflow.check(State.ESCALATED, Command.CONFIRM.value, State.CONFIRMED) is State.CONFIRMED
    assert workflow.check(State.CONFIRMED, Command.CANCEL.value, State.CANCELLED) is State.CANCELLED
    assert workflow.check(State.CANCELLED, Command.NOT_HAPPY.value, State.LEVEL_2) is State.LEVEL_2
    assert workflow.check(State.LEVEL_2, Command.RESOLVE.value, State.RESOLVED) is State.RESOLVED


def test_confirming_a_cancelled_escalation_is_refused_by_decide() -> None:
    policy = load_policy("lead-review")
    escalated = decide(policy, None, request(), NOW).escalation
    cancelled = decide(policy, escalated, command(Command.CANCEL, escalated, feedback="no"), NOW).escalation
    with pytest.raises(IllegalTransition):
        decide(policy, cancelled, command(Command.CONFIRM, cancelled), NOW)


def test_a_command_without_an_escalation_is_refused() -> None:
    policy = load_policy("lead-review")
    escalated = decide(policy, None, request(), NOW).escalation
    with pytest.raises(IllegalTransition, match="no escalation"):
        decide(policy, None, command(Command.CONFIRM, escalated), NOW)
