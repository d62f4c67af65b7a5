"""handle_event: snapshot once, decide, apply, record; who may use the form and email channels."""

from __future__ import annotations

from dataclasses import replace

from integration.model import Channel, Ignored, Person, State
from integration.policy import load_policy
from integration.service import DryRunGateway, MemoryStore, handle_event
from tests.core.builders import NOW, request, ticket

POLICY = load_policy("service-desk")


def run(event: object, store: MemoryStore | None = None, gateway: DryRunGateway | None = None) -> object:
    return handle_event(
        event,  # type: ignore[arg-type]
        policy=POLICY,
        gateway=gateway or DryRunGateway(platform=event.platform),  # type: ignore[attr-defined]
        store=store or MemoryStore(),
        clock=lambda: NOW,
    )


def test_form_request_by_the_requester_is_decided() -> None:
    gateway = DryRunGateway(platform=request().platform)
    result = run(request(channel=Channel.FORM), gateway=gateway)
    assert not isinstance(result, Ignored)
    assert result.state is State.ESCALATED  # type: ignore[attr-defined]
    assert len(gateway.planned) == 1


def test_form_request_by_a_cc_is_decided() -> None:
    asker = Person(id="form:cc@club.example", email="CC@club.example")
    snap = ticket(cc_emails=frozenset({"cc@club.example"}))
    result = run(request(channel=Channel.FORM, requested_by=asker, ticket=snap))
    assert not isinstance(result, Ignored)


def test_email_request_by_a_cc_known_only_by_id_is_decided() -> None:
    # Jira Cloud often hides e-mail addresses: a JSM request participant matches by account id.
    asker = Person(id="557058:participant")
    snap = ticket(cc_ids=frozenset({"557058:participant"}))
    result = run(request(channel=Channel.EMAIL, requested_by=asker, ticket=snap))
    assert not isinstance(result, Ignored)


def test_form_request_by_a_stranger_changes_nothing() -> None:
    store, gateway = MemoryStore(), DryRunGateway(platform=request().platform)
    asker = Person(id="form:x@evil.example", email="x@evil.example")
    result = run(request(channel=Channel.EMAIL, requested_by=asker), store=store, gateway=gateway)
    assert isinstance(result, Ignored) and "not on ticket" in result.reason
    assert gateway.planned == [] and store.decisions == []


def test_a_late_older_event_does_not_undo_a_newer_state() -> None:
    store = MemoryStore()
    newer = request(received_at=NOW)
    run(newer, store=store)
    older = replace(newer, received_at=NOW.replace(hour=9), rationale=None)
    result = run(older, store=store)
    assert isinstance(result, Ignored) and "older than the last event" in result.reason
    assert len(store.decisions) == 1


def test_a_delivery_applied_already_is_not_applied_again() -> None:
    # A redrive of a processed delivery (or a copy that got past the inbox) must not reply twice.
    store, gateway = MemoryStore(), DryRunGateway(platform=request().platform)
    first = request(rationale=None, delivery_id="d-1")  # needs_info: a public reply asking for it
    run(first, store=store, gateway=gateway)
    again = run(replace(first, received_at=NOW.replace(minute=5)), store=store, gateway=gateway)
    assert isinstance(again, Ignored) and again.reason == "delivery d-1 was applied already"
    assert len(gateway.planned) == 1 and len(store.decisions) == 1
