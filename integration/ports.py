"""What the core needs from the outside world, as protocols the adapters and the store fill in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from integration.model import Action, Decision, Escalation, Platform, TicketSnapshot


class GatewayError(Exception):
    """A helpdesk call failed."""


class TransientError(GatewayError):
    """Worth retrying later (429, 5xx, timeouts); `retry_after` in seconds when the API said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(GatewayError):
    """The ticket changed under us (Zendesk safe_update 409): re-read and decide again."""


class PermanentError(GatewayError):
    """Retrying will not help (4xx other than 409/429): the delivery fails with this reason."""


class Gateway(Protocol):
    """One helpdesk: reads a ticket snapshot and applies neutral actions in one write."""

    platform: Platform

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        """The ticket as the policy needs it (completing `hint`, what the payload carried), or None if absent."""
        ...

    def apply(self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str) -> None:
        """Apply `actions` to ticket `ref`; `key` identifies the transition so a retry never repeats a comment."""
        ...


class EscalationStore(Protocol):
    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None: ...

    def save(self, decision: Decision) -> None: ...
