"""What the core needs from the outside world, as protocols the adapters and the store fill in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from integration.model import Action, Decision, Escalation, Event, Ignored, Platform, TicketSnapshot


def utcnow() -> datetime:
    """The system clock, in UTC: what every `clock` parameter defaults to."""
    return datetime.now(UTC)


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

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that said so, when one did


class Gateway(Protocol):
    """One helpdesk: reads a ticket snapshot and applies neutral actions in one write."""

    platform: Platform

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        """The ticket as the policy needs it (completing `hint`, what the payload carried), or None if absent."""
        ...

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        """Apply `actions` to ticket `ref` in one write where the platform allows.

        `key` identifies the transition; with `retry` (an earlier attempt may have written
        before failing) the gateway first checks whether `key` was already applied, so a
        retry never posts a second comment.
        """
        ...


class EscalationStore(Protocol):
    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None: ...

    def save(self, decision: Decision) -> None: ...


# --- inbound: what each platform adapter offers the webhook and the worker ---------------


class SignatureError(Exception):
    """A delivery whose signature (or URL token) does not verify: answered with 401."""


class PayloadError(ValueError):
    """A body that is not a payload we can read (not JSON, wrong shape): answered with 400."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery as stored in the inbox (raw bytes, the headers that matter)."""

    platform: Platform
    delivery_id: str
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Classified:
    """What the webhook learns cheaply from a verified payload, before storing it."""

    kind: str  # the platform's event name, e.g. "jira:issue_updated", "tierup.trigger"
    ticket_ref: str | None  # for per-ticket ordering
    occurred_at: datetime | None = None


class PlatformAdapter(Protocol):
    """One platform's inbound side plus its gateway. Built from settings by the composition root."""

    platform: Platform
    gateway: Gateway
    dry_run: bool  # True when no credentials: decisions are recorded, nothing is written

    def verify(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str], now: datetime) -> None:
        """Raise SignatureError unless the delivery is authentic (constant-time compares, over raw bytes)."""
        ...

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The platform's delivery id (same across its retries), or None to derive one from the body."""
        ...

    def replay_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """A key for what the signature covers, where the delivery id is not signed; None where it needs none.

        A verified body sent again under another delivery id (a replay) has the same key and
        is stored once. Where the signature covers a timestamp that the receiver holds to a
        few minutes (Zendesk), None.
        """
        ...

    def classify(self, payload: Any) -> Classified | None:
        """The event kind and ticket of a parsed JSON payload, or None when we do not handle it."""
        ...

    def parse(self, delivery: Delivery) -> Event | Ignored:
        """Turn a stored delivery into a request, a review command, or Ignored (e.g. our own echo)."""
        ...
