"""Orchestration: one event in, one decision applied and recorded. Ports come in as arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from integration.model import (
    Action,
    Channel,
    Decision,
    Escalation,
    EscalationRequest,
    Event,
    Ignored,
    Person,
    Platform,
    State,
    TicketSnapshot,
)
from integration.policy import Policy, awaits_ticket_number, decide
from integration.ports import Conflict, EscalationStore, Gateway, PermanentError, TransientError
from integration.references import find_ticket_reference
from integration.workflow import IllegalTransition

log = logging.getLogger("tierup.service")

MAX_CONFLICTS = 3


def transition_key(delivery_id: str | None, escalation: Escalation) -> str:
    """A stable key for one transition: a retry of the same delivery gets the same key."""
    return f"{delivery_id or 'local'}:{len(escalation.history)}"


_CHECKED_CHANNELS = frozenset({Channel.FORM, Channel.EMAIL})


def on_ticket(policy: Policy, request: EscalationRequest, ticket: TicketSnapshot) -> bool:
    """Whether a form or email request comes from the ticket's requester, a CC, or someone the policy authorises."""
    if request.channel not in _CHECKED_CHANNELS:
        return True
    if ticket.requester is not None and request.requested_by.id == ticket.requester.id:
        return True  # the same helpdesk user (Jira Cloud often hides e-mail addresses)
    if request.requested_by.id in ticket.cc_ids:
        return True
    email = (request.requested_by.email or "").strip().lower()
    known = {e.lower() for e in ticket.cc_emails}
    if ticket.requester is not None and ticket.requester.email:
        known.add(ticket.requester.email.lower())
    if email and email in known:
        return True
    return policy.authorisation is not None and policy.authorisation.allows(request.requested_by)


def as_known(sender: Person, ticket: TicketSnapshot) -> Person:
    """A form's or email's sender as the helpdesk knows them when they are the ticket's requester, else as sent.

    The sender is only an address; the ticket's requester is a helpdesk user with tags, a
    role and an organisation, which is what LR1 authorises by.
    """
    known = ticket.requester
    if known is None or not _same_person(sender, known):
        return sender
    return known if known.email else replace(known, email=sender.email)


def _same_person(one: Person, other: Person | None) -> bool:
    """Whether two people are one helpdesk user: the same id, or the same email where ids differ in form."""
    if other is None:
        return True  # a request whose sender was not recorded: nothing to tell them apart by
    if one.id == other.id:
        return True
    return bool(one.email and other.email and one.email.casefold() == other.email.casefold())


def _answered_request(answer: EscalationRequest, waiting: Escalation) -> EscalationRequest:
    """The request a request ticket made, with the ticket number its sender's answer gives (SD8)."""
    named = find_ticket_reference(answer.platform, answer.rationale, exclude=waiting.ticket_ref)
    return replace(
        answer,
        ticket_ref=named,
        ticket=None,
        origin_ref=waiting.ticket_ref,
        channel=Channel.EMAIL,
        follow_up=False,
        requested_by=waiting.requested_by or answer.requested_by,
        reason=waiting.reason or answer.reason,
        rationale=waiting.rationale,
        preferred_contact=waiting.preferred_contact or answer.preferred_contact,
    )


def handle_event(
    event: Event,
    *,
    policy: Policy,
    gateway: Gateway,
    store: EscalationStore,
    clock: Callable[[], datetime],
    retry: bool = False,
) -> Decision | Ignored:
    """Decide `event` under `policy`, apply the actions through `gateway`, record it in `store`.

    A snapshot the payload does not carry costs one gateway read; a 409 conflict re-reads
    the ticket and decides again, at most MAX_CONFLICTS times.
    """
    ref = event.ticket_ref
    escalation = store.load(event.platform, ref) if ref else None
    if escalation and escalation.last_event_at and event.received_at < escalation.last_event_at:
        return Ignored(f"older than the last event applied ({escalation.last_event_at.isoformat()})", ref)
    if escalation and event.delivery_id and any(t.delivery_id == event.delivery_id for t in escalation.history):
        # A redrive of a processed delivery, or a platform's copy that got past the inbox: its
        # replies and notes went out once already.
        return Ignored(f"delivery {event.delivery_id} was applied already", ref)
    waiting = escalation is not None and escalation.state is State.NEEDS_INFO
    if isinstance(event, EscalationRequest) and event.follow_up and not waiting:
        return Ignored("a follow-up on a ticket that is not waiting for information", ref)
    if isinstance(event, EscalationRequest) and event.follow_up and escalation and awaits_ticket_number(escalation):
        # The answer on a request ticket asked for a number (SD8): the request again, naming what the
        # answer names. Never a follow-up completing the request ticket as if it were the one to escalate.
        if not _same_person(event.requested_by, escalation.requested_by):
            # An agent's question on the request ("is this about SUP-7?") is not its sender's answer;
            # a trimmed payload (Jira Cloud's comment_created) does not let the parser tell.
            return Ignored("a comment on the request by someone other than its sender", ref)
        event = _answered_request(event, escalation)
        ref = event.ticket_ref
        escalation = store.load(event.platform, ref) if ref else None
    snapshot = gateway.snapshot(ref, event.ticket) if ref else None
    if (
        isinstance(gateway, DryRunGateway)
        and isinstance(event, EscalationRequest)
        and event.channel in _CHECKED_CHANNELS
        and snapshot is not None
        and snapshot.requester is None
    ):
        # Without the helpdesk nobody can say who is on the ticket: decided as if the sender were, so the
        # dry run records what the request would do (the live service checks it).
        log.info("dry run: who is on ticket %s is unknown; deciding as if the sender were", ref)
        snapshot = replace(snapshot, requester=event.requested_by)
    if isinstance(event, EscalationRequest) and snapshot is not None and not on_ticket(policy, event, snapshot):
        # Form and email requests: only people on the ticket (or authorised by the policy) may escalate it.
        if event.origin_ref is None:
            return Ignored(f"{event.channel} request by someone who is not on ticket {ref}", ref)
        # A request ticket of its own gets the answer to an unknown number (SD8), so replies tell
        # nobody which numbers exist; the named ticket is neither read further nor written.
        log.info("%s request %s names ticket %s, which its sender is not on", event.channel, event.origin_ref, ref)
        event, ref, snapshot = replace(event, ticket_ref=None, ticket=None), None, None
        escalation = store.load(event.platform, event.origin_ref) if event.origin_ref else None
    elif isinstance(event, EscalationRequest) and snapshot is not None and event.channel in _CHECKED_CHANNELS:
        event = replace(event, requested_by=as_known(event.requested_by, snapshot))
    for _ in range(MAX_CONFLICTS):
        try:
            decision = decide(policy, escalation, replace(event, ticket=snapshot), clock())
        except IllegalTransition as exc:
            return Ignored(str(exc), ref)
        key = transition_key(event.delivery_id, decision.escalation)
        if decision.actions and decision.target_ref:
            try:
                gateway.apply(decision.target_ref, decision.actions, snapshot=snapshot, key=key, retry=retry)
            except Conflict:
                log.info("conflict on %s: re-reading and deciding again", ref)
                snapshot = gateway.snapshot(ref, event.ticket) if ref else None
                retry = True  # a part before the refused one may have landed: check before writing again
                continue
        if decision.origin_actions and decision.origin_ref:
            # The request ticket (an email's own): linked, answered and solved after the named ticket's write.
            try:
                gateway.apply(
                    decision.origin_ref, decision.origin_actions, snapshot=None, key=f"{key}:request", retry=retry
                )
            except PermanentError as exc:
                # The escalation itself has landed: keep it, and leave the request ticket to an agent.
                log.error("request ticket %s was not linked or answered: %s", decision.origin_ref, exc)
        store.save(decision)
        return decision
    raise TransientError(f"ticket {ref} kept changing while we wrote to it")


@dataclass
class DryRunGateway:
    """Records what would be written; used when no helpdesk credentials are configured."""

    platform: Platform
    planned: list[tuple[str, tuple[Action, ...], str]] = field(default_factory=list)

    def snapshot(self, ref: str, hint: TicketSnapshot | None = None) -> TicketSnapshot | None:
        return hint if hint is not None else TicketSnapshot(ref=ref, platform=self.platform)

    def apply(
        self, ref: str, actions: Sequence[Action], *, snapshot: TicketSnapshot | None, key: str, retry: bool = False
    ) -> None:
        self.planned.append((ref, tuple(actions), key))
        log.info("dry run: would apply %d actions to %s", len(actions), ref)


@dataclass
class MemoryStore:
    """An in-memory EscalationStore for tests and `tierup decide`."""

    escalations: dict[tuple[Platform, str], Escalation] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    def load(self, platform: Platform, ticket_ref: str) -> Escalation | None:
        return self.escalations.get((platform, ticket_ref))

    def save(self, decision: Decision) -> None:
        esc = decision.escalation
        self.escalations[(esc.platform, esc.ticket_ref)] = esc
        self.decisions.append(decision)
