"""The escalation state machine: one table of legal moves; anything else is a domain error."""

from __future__ import annotations

from integration.model import Command, State

REQUEST = "request"

_OUTCOMES = frozenset(
    {
        State.ESCALATED,
        State.CANCELLED,
        State.DEFERRED,
        State.NEEDS_INFO,
        State.RECLASSIFIED,
        State.URGENCY_REQUESTED,
    }
)
_WORKED_ON = frozenset({State.ESCALATED, State.CONFIRMED, State.RECLASSIFIED, State.LEVEL_2})
_AWAITING = frozenset({State.DEFERRED, State.NEEDS_INFO, State.URGENCY_REQUESTED})


def _table() -> dict[tuple[State | None, str], frozenset[State]]:
    table: dict[tuple[State | None, str], frozenset[State]] = {(None, REQUEST): _OUTCOMES}
    # A request that is waiting (or was cancelled, or resolved) is evaluated afresh;
    # policies that send second requests up a level (SD11) may also go to level 2.
    for state in (*_AWAITING, State.CANCELLED, State.RESOLVED):
        table[(state, REQUEST)] = _OUTCOMES | {State.LEVEL_2}
    for state in _WORKED_ON:
        # A repeated request on an escalation that is being worked on either changes
        # nothing or (SD11) goes to level 2.
        table[(state, REQUEST)] = frozenset({state, State.LEVEL_2})
        table[(state, Command.CANCEL.value)] = frozenset({State.CANCELLED})
        table[(state, Command.NOT_HAPPY.value)] = frozenset({State.LEVEL_2, state})
        table[(state, Command.RESOLVE.value)] = frozenset({State.RESOLVED})
        table[(state, Command.CONTACT.value)] = frozenset({state})
        table[(state, Command.DEADLINE_MISSED.value)] = frozenset({State.LEVEL_2, state})
    for state in (State.ESCALATED, State.RECLASSIFIED, State.LEVEL_2):
        table[(state, Command.CONFIRM.value)] = frozenset({State.CONFIRMED})
    for state in (*_AWAITING, State.CANCELLED):
        table[(state, Command.NOT_HAPPY.value)] = frozenset({State.LEVEL_2})
        table[(state, Command.RESOLVE.value)] = frozenset({State.RESOLVED})
    # SD11: not happy with the outcome, a solved ticket's included (as a second request is).
    table[(State.RESOLVED, Command.NOT_HAPPY.value)] = frozenset({State.LEVEL_2})
    return table


TRANSITIONS: dict[tuple[State | None, str], frozenset[State]] = _table()


class IllegalTransition(Exception):
    """An event that the escalation's current state does not allow."""

    def __init__(self, state: State | None, event: str, target: State | None = None) -> None:
        self.state, self.event, self.target = state, event, target
        where = state.value if state else "no escalation"
        detail = f" to {target.value}" if target else ""
        super().__init__(f"cannot {event}{detail} from {where}")


def allowed(state: State | None, event: str) -> frozenset[State]:
    """The states that `event` may lead to from `state` (empty when it is illegal)."""
    return TRANSITIONS.get((state, event), frozenset())


def check(state: State | None, event: str, target: State) -> State:
    """Return `target` when the move is legal, else raise IllegalTransition."""
    if target not in TRANSITIONS.get((state, event), ()):
        raise IllegalTransition(state, event, target)
    return target
