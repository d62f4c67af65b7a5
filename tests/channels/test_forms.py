"""integration.forms: the stored form submission, its EscalationRequest, and the adapter wrapper that routes it."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integration.forms import (
    FORM_SOURCE_HEADER,
    MAX_RATIONALE,
    FormAwareAdapter,
    FormSourceError,
    email_address,
    form_body,
    form_headers,
    parse_form_delivery,
    ticket_number,
)
from integration.model import Channel, Decision, EscalationRequest, Ignored, Platform, PublicReply, Reason, State
from integration.policy import load_policy
from integration.ports import Delivery, PayloadError, PermanentError, SignatureError
from integration.service import DryRunGateway, MemoryStore, handle_event
from tests.channels.fakes import CC, REQUESTER, helpdesk, ticket
from tests.infra.fakes import T0, request_payload, signed

SERVICE_DESK = load_policy("service-desk")
LEAD_REVIEW = load_policy("lead-review")


def form_delivery(platform: Platform = Platform.ZENDESK, delivery_id: str = "d-form-1", **fields: object) -> Delivery:
    values: dict[str, object] = {
        "ticket": "4016", "email": REQUESTER.email, "reason": Reason.WRONG_RESOLUTION,
        "rationale": "Members cannot check in", "preferred_contact": "phone +48 555 0100", "submitted_at": T0,
    }  # fmt: skip
    values.update(fields)
    body = form_body(**values)  # type: ignore[arg-type]
    return Delivery(platform=platform, delivery_id=delivery_id, headers=form_headers(), body=body, received_at=T0)


def with_body(delivery: Delivery, **changes: object) -> Delivery:
    data = json.loads(delivery.body)
    data.update(changes)
    return replace(delivery, body=json.dumps(data).encode())


def test_a_form_delivery_becomes_the_request_a_macro_would_make() -> None:
    request = parse_form_delivery(form_delivery())

    assert request == EscalationRequest(
        platform=Platform.ZENDESK,
        ticket_ref="4016",
        requested_by=request.requested_by,
        channel=Channel.FORM,
        reason=Reason.WRONG_RESOLUTION,
        received_at=T0,
        rationale="Members cannot check in",
        preferred_contact="phone +48 555 0100",
        delivery_id="d-form-1",
    )
    assert (request.requested_by.id, request.requested_by.email) == ("form:champ@club.example", REQUESTER.email)


def test_optional_fields_may_be_left_out() -> None:
    request = parse_form_delivery(form_delivery(rationale=None, preferred_contact=""))
    assert request.rationale is None and request.preferred_contact is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"form": 2}, "unknown form version"),
        ({"ticket": "12a"}, "not a ticket number"),
        ({"ticket": None}, "ticket is missing"),
        ({"email": "not an address"}, "not an address"),
        ({"email": ["a@b.example"]}, "email must be a string"),
        ({"reason": "because"}, "unknown reason"),
        ({"rationale": "x" * (MAX_RATIONALE + 1)}, "longer than"),
        ({"submitted_at": "yesterday"}, "not an ISO 8601 time"),
        ({"submitted_at": "2026-03-10T10:00:00"}, "no offset"),
    ],
)
def test_a_body_that_is_not_a_form_submission_is_a_payload_error(change: dict[str, object], problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_form_delivery(with_body(form_delivery(), **change))


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"{" * 5000])
def test_a_body_that_is_not_json_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_form_delivery(replace(form_delivery(), body=body))


@pytest.mark.parametrize(
    ("platform", "typed", "number"),
    [
        (Platform.ZENDESK, " 4016 ", "4016"),
        (Platform.ZENDESK, "#4016", "4016"),
        (Platform.ZENDESK, "004016", "4016"),  # was stored as 004016: another escalation of the same ticket
        (Platform.ZENDESK, "4016a", None),
        (Platform.ZENDESK, "", None),
        (Platform.ZENDESK, "1" * 13, None),
        (Platform.ZENDESK, "\u0663\u0664\u0665", None),  # digits, but not ASCII: the API would get tickets/٣٤٥
        (Platform.JIRA, "SUP-\u0663", None),
        (Platform.JIRA, "sup-12", "SUP-12"),
        (Platform.JIRA, "12", None),
        (Platform.JIRA, "<script>", None),
    ],
)
def test_ticket_numbers_are_normalised_per_platform(platform: Platform, typed: str, number: str | None) -> None:
    assert ticket_number(platform, typed) == number


@pytest.mark.parametrize(
    ("typed", "address"),
    [(" Champ@Club.example ", "Champ@Club.example"), ("champ@club", None), ("<script>@x.example", None), ("", None)],
)
def test_email_addresses_are_checked_for_shape_only(typed: str, address: str | None) -> None:
    assert email_address(typed) == address


# --- the wrapper --------------------------------------------------------------------------


def test_the_wrapper_sends_form_deliveries_to_the_form_parser_and_webhooks_to_the_adapter() -> None:
    inner, _ = helpdesk()
    adapter = FormAwareAdapter(inner)
    body, headers = signed(request_payload("4016"), "zd-1")
    webhook = Delivery(Platform.ZENDESK, "zd-1", headers, body, T0)

    assert isinstance(adapter.parse(form_delivery()), EscalationRequest)
    assert inner.parsed == []  # the platform parser never saw the form submission
    parsed = adapter.parse(webhook)
    assert isinstance(parsed, EscalationRequest) and parsed.channel is Channel.MACRO
    assert inner.parsed == ["zd-1"]


def test_the_wrapper_is_the_inner_adapter_for_everything_else() -> None:
    inner, gateway = helpdesk()
    adapter = FormAwareAdapter(inner)
    body, headers = signed(request_payload("4016"), "zd-2")

    assert (adapter.platform, adapter.gateway, adapter.dry_run) == (Platform.ZENDESK, gateway, True)
    assert adapter.delivery_id(headers, body) == "zd-2"
    classified = adapter.classify(json.loads(body))
    assert classified is not None and classified.ticket_ref == "4016"
    adapter.verify(headers, body, {}, T0)
    assert adapter.scripted is gateway  # platform extras stay reachable
    with pytest.raises(SignatureError):
        adapter.verify({**headers, "X-Signed-Signature": "0" * 64}, body, {}, T0)


@pytest.mark.parametrize("name", [FORM_SOURCE_HEADER, "X-Tierup-Source"])
def test_a_webhook_cannot_claim_to_be_a_form_submission(name: str) -> None:
    adapter = FormAwareAdapter(helpdesk()[0])
    body, headers = signed(request_payload("4016"), "zd-3")
    with pytest.raises(FormSourceError):
        adapter.verify({**headers, name: "form"}, body, {}, T0)
    assert issubclass(FormSourceError, SignatureError)  # answered 401 like any bad signature


def test_the_form_module_belongs_to_the_pure_core() -> None:
    source = Path(__file__).resolve().parents[2] / "integration" / "forms.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    allowed = {"__future__", "json", "re", "collections.abc", "datetime", "typing", "integration.model",
               "integration.ports"}  # fmt: skip
    assert imported <= allowed, sorted(imported - allowed)


# --- through the service: who asks, and about which ticket ------------------------------


def run(delivery: Delivery) -> tuple[Decision | Ignored, MemoryStore, list[object]]:
    adapter, gateway = helpdesk()
    store = MemoryStore()
    result = handle_event(
        FormAwareAdapter(adapter).parse(delivery),  # type: ignore[arg-type]
        policy=SERVICE_DESK, gateway=gateway, store=store, clock=lambda: T0,
    )  # fmt: skip
    return result, store, list(gateway.planned)


@pytest.mark.parametrize("email", [REQUESTER.email, CC.upper()])
def test_the_requester_or_a_cc_escalates_by_form(email: str) -> None:
    result, store, planned = run(form_delivery(email=email))
    assert isinstance(result, Decision)
    assert (result.state, result.rule) == (State.ESCALATED, "SD5")
    assert result.escalation.first_contact_due == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # SD10, London hours
    assert len(planned) == 1 and len(store.decisions) == 1


def test_lr1_the_requester_escalating_by_form_is_authorised_as_the_helpdesk_knows_them() -> None:
    # Under lead-review only PG Champions (a user tag) may escalate. The form's sender is only an
    # address; matched to the ticket's requester, they are that helpdesk user, tags and all. Every
    # form request was cancelled as "not authorised" before.
    champion = replace(REQUESTER, tags=frozenset({"pg_champion"}))
    adapter, gateway = helpdesk(ticket(requester=champion))
    request = FormAwareAdapter(adapter).parse(form_delivery())
    assert isinstance(request, EscalationRequest)
    result = handle_event(request, policy=LEAD_REVIEW, gateway=gateway, store=MemoryStore(), clock=lambda: T0)
    assert isinstance(result, Decision) and (result.state, result.rule) == (State.ESCALATED, "LR5")
    assert result.escalation.requested_by == champion

    # Someone else on the ticket (a CC) is still only an address: not a PG Champion by that alone.
    cc = FormAwareAdapter(adapter).parse(form_delivery(email=CC, delivery_id="d-form-cc"))
    assert isinstance(cc, EscalationRequest)
    result = handle_event(cc, policy=LEAD_REVIEW, gateway=gateway, store=MemoryStore(), clock=lambda: T0)
    assert isinstance(result, Decision) and (result.state, result.rule) == (State.CANCELLED, "LR1")


def test_in_a_dry_run_a_form_request_is_decided_and_its_plan_recorded() -> None:
    # A dry run has no helpdesk to say who is on the ticket: every form request was ignored as a
    # stranger's, and the dry run recorded nothing of what the form would do.
    adapter, _ = helpdesk()
    dry = DryRunGateway(Platform.ZENDESK)
    request = FormAwareAdapter(adapter).parse(form_delivery(ticket="5000"))
    assert isinstance(request, EscalationRequest)
    store = MemoryStore()
    result = handle_event(request, policy=SERVICE_DESK, gateway=dry, store=store, clock=lambda: T0)
    assert isinstance(result, Decision) and result.state is State.ESCALATED
    assert [ref for ref, _, _ in dry.planned] == ["5000"] and len(store.decisions) == 1


def test_someone_not_on_the_ticket_changes_nothing() -> None:
    result, store, planned = run(form_delivery(email="someone@elsewhere.example"))
    assert isinstance(result, Ignored) and "not on ticket 4016" in result.reason
    assert planned == [] and store.decisions == []


def test_a_ticket_that_does_not_exist_is_sd8_and_nothing_is_written() -> None:
    result, store, planned = run(form_delivery(ticket="99999"))
    assert isinstance(result, Decision)
    assert (result.state, result.rule) == (State.NEEDS_INFO, "SD8")
    assert result.actions == () and result.target_ref is None
    assert "ticket 99999 does not exist" in result.transition.why
    assert planned == []
    saved = store.escalations[(Platform.ZENDESK, "99999")]
    assert saved.history[-1] == result.transition  # the audit trail says what happened, not what was planned


def test_sd8_a_stranger_s_form_for_a_ticket_not_made_yet_is_never_merged_into_its_real_request() -> None:
    # Zendesk numbers are sequential: a stranger names the next one, with a premium-rate "contact".
    # When that ticket exists and its requester asks with no rationale and no contact, the answer to
    # the SD8 record must not fill them in (LR3's completion is for the requester's own answer).
    adapter, gateway = helpdesk()
    store = MemoryStore()

    def handle(delivery: Delivery) -> Decision | Ignored:
        request = FormAwareAdapter(adapter).parse(delivery)
        assert isinstance(request, EscalationRequest)
        return handle_event(request, policy=SERVICE_DESK, gateway=gateway, store=store, clock=lambda: T0)

    planted = form_delivery(ticket="5000", email="anyone@elsewhere.example", rationale="Refund owed: pay to IBAN XX00",
                            preferred_contact="call +1 900 555 0199", delivery_id="d-stranger")  # fmt: skip
    first = handle(planted)
    assert isinstance(first, Decision) and (first.state, first.rule) == (State.NEEDS_INFO, "SD8")

    gateway.tickets["5000"] = ticket("5000")
    real = handle(form_delivery(ticket="5000", rationale=None, preferred_contact=None, delivery_id="d-real"))
    assert isinstance(real, Decision) and (real.state, real.rule) == (State.ESCALATED, "SD5")
    esc = real.escalation
    assert (esc.rationale, esc.preferred_contact) == (None, None)
    assert esc.requested_by is not None and esc.requested_by.email == REQUESTER.email
    [(_ref, actions, _key)] = gateway.planned
    assert not any("900 555" in getattr(a, "body", "") or "IBAN" in getattr(a, "body", "") for a in actions)


def test_an_email_escalation_stands_when_its_own_request_ticket_cannot_be_answered() -> None:
    # The named ticket is escalated first; the request ticket's link and reply come after. Zendesk refusing
    # that second write (the request was deleted meanwhile) must not fail a delivery whose escalation landed.
    request = replace(parse_form_delivery(form_delivery()), channel=Channel.EMAIL, origin_ref="9001")
    _, gateway = helpdesk()
    real_apply = gateway.apply

    def apply(ref: str, *args: Any, **kwargs: Any) -> None:
        if ref == "9001":
            raise PermanentError("update ticket 9001: 404 RecordNotFound")
        real_apply(ref, *args, **kwargs)

    gateway.apply = apply  # type: ignore[method-assign]
    store = MemoryStore()
    result = handle_event(request, policy=SERVICE_DESK, gateway=gateway, store=store, clock=lambda: T0)
    assert isinstance(result, Decision) and result.state is State.ESCALATED
    assert [ref for ref, _, _ in gateway.planned] == ["4016"] and len(store.decisions) == 1


def test_an_email_naming_a_ticket_that_does_not_exist_gets_its_sd8_reply_on_its_own_ticket() -> None:
    request = replace(parse_form_delivery(form_delivery(ticket="99999")), channel=Channel.EMAIL, origin_ref="9001")
    _, gateway = helpdesk()
    result = handle_event(request, policy=SERVICE_DESK, gateway=gateway, store=MemoryStore(), clock=lambda: T0)
    assert isinstance(result, Decision) and result.rule == "SD8" and result.target_ref == "9001"
    [(ref, actions, _key)] = gateway.planned
    assert ref == "9001" and any(isinstance(a, PublicReply) for a in actions)
