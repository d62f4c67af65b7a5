"""Escalation policies: load a TOML procedure, and decide what an event means under it.

`decide(policy, escalation, event, now)` is a pure function: same input, same output, no
clock reads and no I/O. It returns the new escalation and the neutral actions to apply.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateError
from jinja2.environment import Template
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from integration import workflow
from integration.calendar import BusinessCalendar, BusinessDuration, parse_duration
from integration.model import (
    SYSTEM,
    Action,
    AddTags,
    AssignGroup,
    Channel,
    Command,
    Decision,
    Escalation,
    EscalationRequest,
    Event,
    InternalNote,
    LinkRole,
    LinkTicket,
    Organisation,
    Person,
    Platform,
    Priority,
    PublicReply,
    Reason,
    RemoveTags,
    ReviewCommand,
    Role,
    SetDue,
    SetPriority,
    SetStatus,
    SlaTarget,
    State,
    TicketSnapshot,
    TicketStatus,
    Transition,
)

SHIPPED = ("lead-review", "service-desk")

E = TypeVar("E", bound=StrEnum)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the key and the problem."""


# --- the policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorisation:
    """Who may ask for an escalation (LR1). Any one match authorises."""

    user_tags: frozenset[str] = frozenset()
    roles: frozenset[Role] = frozenset()
    organisations: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()

    def allows(self, person: Person) -> bool:
        return bool(
            person.role in self.roles
            or self.user_tags & person.tags
            or (person.organisation is not None and person.organisation.lower() in self.organisations)
            or (person.email is not None and person.email.lower() in self.emails)
        )


@dataclass(frozen=True, slots=True)
class Tags:
    escalated: str = "escalated"
    cancelled: str = "escalation_cancelled"
    needs_info: str = "escalation_needs_info"
    deferred: str = "escalation_deferred"
    reclassified: str = "priority_reclassified"
    urgency: str = "urgency_requested"
    confirmed: str = "escalation_confirmed"
    level_2: str = "escalation_level_2"
    sla_breached: str = "sla_breached"

    def state_tags(self) -> tuple[str, ...]:
        """Tags that mark a state; moving to a new state removes the others."""
        return (
            self.escalated,
            self.cancelled,
            self.needs_info,
            self.deferred,
            self.reclassified,
            self.urgency,
            self.confirmed,
            self.level_2,
        )


TEMPLATE_NAMES = (
    "escalated_reply",
    "escalated_note",
    "needs_info_reply",
    "ticket_number_reply",
    "reason_reply",
    "unauthorised_note",
    "invalid_reason_reply",
    "deferred_reply",
    "reclassified_reply",
    "reclassified_note",
    "urgency_note",
    "confirmed_reply",
    "cancelled_reply",
    "level_2_reply",
    "level_2_note",
    "deadline_note",
    "sla_escalated_note",
    "deferred_woken_reply",
    "request_linked_reply",
    "request_unauthorised_reply",
)

# Templates a policy file may leave out (added after policies were written): the text used then.
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "request_linked_reply": (
        "<p>Thank you for your escalation request. We have added it to ticket {{ ticket.ref }} and will reply to "
        "you there; this request is now closed so that the whole conversation stays in one place.</p>"
    ),
    "request_unauthorised_reply": (
        "<p>Thank you for your message. We could not take it as an escalation of ticket {{ ticket.ref }}: "
        "escalations can only be raised by people authorised to contact support for your organisation. Please ask "
        "one of them to escalate the ticket. This request is now closed.</p>"
    ),
}

RULE_KEYS = (
    "unauthorised",
    "invalid_reason",
    "needs_info",
    "no_ticket",
    "escalate",
    "cancel",
    "confirm",
    "urgency",
    "defer",
    "reclassify",
    "resolve",
    "second_request",
    "sla_breach",
    "wake_deferred",
    "deadline",
)


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    description: str
    escalation_reasons: frozenset[Reason]
    urgency_reasons: frozenset[Reason]
    authorisation: Authorisation | None
    require_rationale: bool
    require_ticket_reference: bool
    region_source: tuple[str, ...]
    region_groups: Mapping[str, str]
    default_group: str
    escalate_priority: Priority | None
    reclassify_reasons: frozenset[Reason]
    reclassify_ceiling: Priority | None
    sla_gate_reasons: frozenset[Reason]
    first_contact_within: BusinessDuration
    first_contact_shown_on: State
    first_contact_satisfied_by: frozenset[Command]
    level_groups: tuple[str, ...]  # level 2, level 3, ...
    second_request_level_up: bool
    tags: Tags
    calendars: Mapping[str, BusinessCalendar]
    rules: Mapping[str, str]
    templates: Mapping[str, Template] = field(repr=False)

    def group_for(self, region: str | None) -> str:
        """The lead group for a region (LR4)."""
        return self.region_groups.get(_region_key(region), self.default_group)

    def calendar_for(self, region: str | None) -> BusinessCalendar:
        return self.calendars.get(_region_key(region)) or self.calendars["DEFAULT"]

    def group_for_level(self, level: int) -> str | None:
        index = level - 2
        return self.level_groups[index] if 0 <= index < len(self.level_groups) else None

    def all_groups(self) -> tuple[str, ...]:
        seen = dict.fromkeys((self.default_group, *self.region_groups.values(), *self.level_groups))
        return tuple(seen)

    def render(self, name: str, **context: Any) -> str:
        template = self.templates[name]
        context["policy_name"] = self.name
        ctx = _render_context(template, context)
        return str(template.environment.concat(template.root_render_func(ctx))).strip()


def _render_context(template: Template, variables: dict[str, Any]) -> Context:
    """What `template.new_context(variables, shared=True)` returns, built in one step.

    This runs once or twice for every decision, and the generic path (new_context, then
    Context.__init__) was a third of a render's cost. The attributes are the ones
    Context.__init__ sets; tests/core/test_policy_loading.py checks every shipped template
    renders exactly as Jinja's own `Template.render` does.
    """
    ctx: Context = object.__new__(Context)
    environment = template.environment
    ctx.__dict__.update(
        parent=variables,
        vars={},
        environment=environment,
        eval_ctx=EvalContext(environment, template.name),
        exported_vars=set(),
        name=template.name,
        globals_keys=_global_keys(template),
        blocks={k: [v] for k, v in template.blocks.items()},
    )
    return ctx


@functools.lru_cache(maxsize=1024)
def _global_keys(template: Template) -> frozenset[str]:
    # A ChainMap walked on every render otherwise; Jinja only reads this set (for imports).
    return frozenset(template.globals)


# --- loading -----------------------------------------------------------------------------


class _Table:
    """A checked view of one TOML table: every read names its key path in errors."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str) -> None:
        self._data, self._path, self._source = data, path, source
        self._read: set[str] = set()

    def _key(self, key: str) -> str:
        if not key:
            return self._path
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(f"{self._source}: {self._key(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self._data.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "missing" if value is None else f"must be a non-empty string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def enums(self, key: str, kind: type[E]) -> frozenset[E]:
        names = [c.value for c in kind]
        out = []
        for value in self.texts(key):
            if value not in names:
                raise self.fail(key, f"unknown value {value!r} (expected one of: {', '.join(names)})")
            out.append(kind(value))
        return frozenset(out)

    def priority(self, key: str) -> Priority | None:
        value = self.raw(key)
        if value is None:
            return None
        if value not in Priority._value2member_map_:
            raise self.fail(key, f"unknown priority {value!r} (expected one of: {', '.join(Priority)})")
        return Priority(value)

    def table(self, key: str, required: bool = False) -> _Table:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.fail(key, "missing table")
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {value!r}")
        return _Table(value, self._key(key), self._source)

    def names(self) -> list[str]:
        return list(self._data)

    def done(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _calendar(t: _Table) -> BusinessCalendar:
    days = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
    working = []
    for d in t.texts("working_days") or ("mon", "tue", "wed", "thu", "fri"):
        if d.lower()[:3] not in days:
            raise t.fail("working_days", f"unknown day {d!r}")
        working.append(days[d.lower()[:3]])
    hours = t.text("hours", "09:00-17:00")
    try:
        opens_s, closes_s = hours.split("-")
        opens, closes = time.fromisoformat(opens_s.strip()), time.fromisoformat(closes_s.strip())
    except ValueError:
        raise t.fail("hours", f"must look like 09:00-17:00, got {hours!r}") from None
    extra: list[date] = []
    for value in t.raw("extra_holidays", []):
        try:
            extra.append(value if isinstance(value, date) else date.fromisoformat(str(value)))
        except ValueError:
            raise t.fail("extra_holidays", f"not a date: {value!r}") from None
    country = t.raw("country")
    subdivision = t.raw("subdivision")
    try:
        calendar = BusinessCalendar(
            timezone=t.text("timezone"),
            working_days=frozenset(working),
            opens=opens,
            closes=closes,
            country=country,
            subdivision=subdivision,
            extra_holidays=frozenset(extra),
        )
    except ValueError as exc:
        raise t.fail("", str(exc)) from None
    t.done()
    return calendar


_SAMPLE_NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _sample_context() -> dict[str, Any]:
    person = Person(id="1", email="a@example.com", name="A <b>")
    return {
        "ticket": TicketSnapshot(ref="1", platform=Platform.ZENDESK),
        "request": None,
        "requester": person,
        "reason": "sla_violation",
        "reason_label": "SLA violation",
        "rationale": "r",
        "preferred_contact": "phone",
        "group": "g",
        "level": 2,
        "due": "Mon 5 Jan 2026 11:00 CET",
        "sla": SlaTarget(name="s", metric="first_reply", breach_at=_SAMPLE_NOW),
        "sla_due": "Mon 5 Jan 2026 11:00 CET",
        "feedback": "f",
        "priority": "high",
        "previous_priority": "normal",
        "actor": person,
        "missing": "rationale",
    }


class _TemplateEnvironment(SandboxedEnvironment):
    """The sandbox, with a short way through for the data fields of our own model objects.

    A field of a frozen model dataclass (`requester.name`, `ticket.ref`, `sla.name`) is plain
    data, never a method or an internal attribute, so the sandbox's checks can be skipped for
    it; everything else (methods, dunder names, other objects) goes through the full sandbox.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        fields = _MODEL_FIELDS.get(type(obj))
        if fields is not None and attribute in fields:
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)


_MODEL_FIELDS: dict[type, frozenset[str]] = {
    cls: frozenset(cls.__dataclass_fields__)
    for cls in (Person, Organisation, SlaTarget, TicketSnapshot, EscalationRequest, ReviewCommand, Escalation)
}


def _environment() -> SandboxedEnvironment:
    # Autoescape: every value from a customer is HTML-escaped in replies and notes.
    return _TemplateEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def parse_policy(data: Mapping[str, Any], source: str) -> Policy:
    """Build a Policy from parsed TOML, raising PolicyError naming the key that is wrong."""
    root = _Table(data, "", source)
    name = root.text("name")
    description = root.raw("description", "")

    reasons = root.table("reasons", required=True)
    escalation_reasons = reasons.enums("escalate", Reason)
    if not escalation_reasons:
        raise reasons.fail("escalate", "must name at least one reason")
    urgency_reasons = reasons.enums("urgency", Reason)
    reasons.done()

    authorisation = None
    if root.has("authorisation"):
        a = root.table("authorisation")
        authorisation = Authorisation(
            user_tags=frozenset(a.texts("user_tags")),
            roles=a.enums("roles", Role),
            organisations=frozenset(o.lower() for o in a.texts("organisations")),
            emails=frozenset(e.lower() for e in a.texts("emails")),
        )
        a.done()

    required = root.table("required")
    require_rationale = required.flag("rationale", False)
    require_ticket_reference = required.flag("ticket_reference", True)
    required.done()

    routing = root.table("routing", required=True)
    default_group = routing.text("default_group")
    region_source = routing.texts("region_source") or ("ticket", "organisation", "requester")
    for src in region_source:
        if src not in ("ticket", "organisation", "requester"):
            raise routing.fail("region_source", f"unknown source {src!r} (ticket, organisation, requester)")
    regions_t = routing.table("regions")
    region_groups = {k.upper(): regions_t.text(k) for k in regions_t.names()}
    regions_t.done()
    routing.done()

    prio = root.table("priority")
    escalate_priority = prio.priority("on_escalate")
    prio.done()

    reclassify_reasons: frozenset[Reason] = frozenset()
    reclassify_ceiling = None
    if root.has("reclassify"):
        rc = root.table("reclassify")
        reclassify_reasons = rc.enums("reasons", Reason) or frozenset({Reason.PRIORITY_MISCLASSIFIED})
        reclassify_ceiling = rc.priority("ceiling")
        if reclassify_ceiling is None:
            raise rc.fail("ceiling", "missing")
        rc.done()

    gate = root.table("sla_gate")
    sla_gate_reasons = gate.enums("reasons", Reason)
    gate.done()

    fc = root.table("first_contact", required=True)
    within_text = fc.text("within")
    try:
        within = parse_duration(within_text)
    except ValueError as exc:
        raise fc.fail("within", str(exc)) from None
    shown_on_text = fc.text("shown_on", "escalate")
    if shown_on_text not in ("escalate", "confirm"):
        raise fc.fail("shown_on", f"must be 'escalate' or 'confirm', got {shown_on_text!r}")
    shown_on = State.ESCALATED if shown_on_text == "escalate" else State.CONFIRMED
    satisfied_by = fc.enums("satisfied_by", Command) or frozenset({Command.CONTACT})
    fc.done()

    levels = root.table("levels")
    level_groups = []
    for key in levels.names():
        if not key.isdigit() or int(key) < 2:
            raise levels.fail(key, "levels are numbered from 2 (level 1 is the lead group)")
        level_groups.append((int(key), levels.text(key)))
    level_groups.sort()
    if [n for n, _ in level_groups] != list(range(2, 2 + len(level_groups))):
        raise levels.fail("", "levels must be numbered 2, 3, ... without gaps")
    levels.done()
    second = root.table("second_request")
    second_request_level_up = second.flag("level_up", False)
    second.done()

    tags_t = root.table("tags")
    tags = Tags(**{k: tags_t.text(k, getattr(Tags(), k)) for k in Tags.__dataclass_fields__})
    tags_t.done()

    cals = root.table("calendars", required=True)
    if not cals.has("default"):
        raise cals.fail("default", "missing table (the calendar used for regions without their own)")
    calendars = {k.upper(): _calendar(cals.table(k)) for k in cals.names()}
    cals.done()

    rules_t = root.table("rules")
    rules = {k: rules_t.text(k, k) for k in RULE_KEYS}
    rules_t.done()

    env = _environment()
    tmpl_t = root.table("templates", required=True)
    templates: dict[str, Template] = {}
    for tname in TEMPLATE_NAMES:
        text = tmpl_t.text(tname, DEFAULT_TEMPLATES.get(tname))
        try:
            templates[tname] = env.from_string(text)
            templates[tname].render(policy_name=name, **_sample_context())
        except TemplateError as exc:
            raise tmpl_t.fail(tname, f"template error: {exc}") from None
    tmpl_t.done()
    root.done()

    return Policy(
        name=name,
        source=source,
        description=str(description),
        escalation_reasons=escalation_reasons,
        urgency_reasons=urgency_reasons,
        authorisation=authorisation,
        require_rationale=require_rationale,
        require_ticket_reference=require_ticket_reference,
        region_source=region_source,
        region_groups=region_groups,
        default_group=default_group,
        escalate_priority=escalate_priority,
        reclassify_reasons=reclassify_reasons,
        reclassify_ceiling=reclassify_ceiling,
        sla_gate_reasons=sla_gate_reasons,
        first_contact_within=within,
        first_contact_shown_on=shown_on,
        first_contact_satisfied_by=satisfied_by,
        level_groups=tuple(g for _, g in level_groups),
        second_request_level_up=second_request_level_up,
        tags=tags,
        calendars=calendars,
        rules=rules,
        templates=templates,
    )


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a shipped policy by name (`lead-review`) or a TOML file by path."""
    text_name = str(name_or_path)
    if text_name in SHIPPED:
        source = f"{text_name}.toml"
        text = resources.files("integration.policies").joinpath(source).read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    return parse_policy(data, source)


# --- deciding ---------------------------------------------------------------------------

REASON_LABELS = {
    Reason.SLA_VIOLATION: "SLA violation",
    Reason.WRONG_RESOLUTION: "wrong ticket resolution",
    Reason.PRIORITY_MISCLASSIFIED: "priority inadequately qualified",
    Reason.AGENT_CONDUCT: "agent's behaviour or communication",
    Reason.BUSINESS_URGENCY: "business urgency",
}


def _fmt(policy: Policy, region: str | None, at: datetime | None) -> str:
    if at is None:
        return ""
    local = at.astimezone(policy.calendar_for(region).zone)
    return local.strftime("%a %d %b %Y %H:%M %Z")


def _region_key(region: str | None) -> str:
    # As people type it in a field: " nz", "NZ " are NZ.
    return (region or "").strip().upper()


def region_of(policy: Policy, request: EscalationRequest) -> str | None:
    """The region that routes a request (LR4), from the sources the policy names, in order."""
    if request.region:
        return request.region
    ticket = request.ticket
    for source in policy.region_source:
        if source == "ticket" and ticket is not None and ticket.region:
            return ticket.region
        if source == "organisation" and ticket is not None and ticket.organisation and ticket.organisation.region:
            return ticket.organisation.region
        if source == "requester":
            person = ticket.requester if ticket is not None and ticket.requester else request.requested_by
            if person.region:
                return person.region
    return None


class _Decider:
    """Builds one decision; a small object so the rules below read as the procedure does."""

    def __init__(self, policy: Policy, escalation: Escalation | None, event: Event, now: datetime) -> None:
        self.policy, self.escalation, self.now = policy, escalation, now
        self.event_at: datetime | None = event.received_at
        self.state = escalation.state if escalation else None
        self.ticket: TicketSnapshot | None = event.ticket

    def context(self, **extra: Any) -> dict[str, Any]:
        esc = self.escalation
        base: dict[str, Any] = {
            "reason": esc.reason.value if esc and esc.reason else "",
            "reason_label": REASON_LABELS.get(esc.reason, "") if esc and esc.reason else "",
            "rationale": esc.rationale if esc else None,
            "preferred_contact": esc.preferred_contact if esc else None,
            "requester": esc.requested_by if esc else None,
            "group": esc.group if esc else None,
            "level": esc.level if esc else 1,
        }
        base.update(extra)
        return base

    def finish(
        self,
        event: str,
        target: State,
        escalation: Escalation,
        rule_key: str,
        why: str,
        actions: list[Action],
        actor: Person,
        target_ref: str | None,
        delivery_id: str | None,
        **changes: Any,
    ) -> Decision:
        """Check the move, record the transition and build the new escalation in one step."""
        workflow.check(self.state, event, target)
        transition = Transition(
            at=self.now,
            event=event,
            from_state=self.state,
            to_state=target,
            actor=actor.id,
            rule=self.policy.rules[rule_key],
            why=why,
            actions=tuple(actions),
            delivery_id=delivery_id,
        )
        last = escalation.last_event_at
        if self.event_at is not None and (last is None or self.event_at > last):
            last = self.event_at
        escalation = _evolve(
            escalation, state=target, last_event_at=last, history=(*escalation.history, transition), **changes
        )
        return Decision(escalation=escalation, transition=transition, target_ref=target_ref)

    def state_tags(self, add: str, ticket: TicketSnapshot | None, keep: tuple[str, ...] = ()) -> list[Action]:
        """Add the new state's tag; remove the other state tags the ticket carries."""
        stale = [t for t in self.policy.tags.state_tags() if t != add and t not in keep]
        if ticket is not None:
            stale = [t for t in stale if t in ticket.tags]
        return [AddTags((add,)), RemoveTags(tuple(stale))] if stale else [AddTags((add,))]


_ESCALATION_FIELDS = tuple(Escalation.__dataclass_fields__)


def _evolve(escalation: Escalation, **changes: Any) -> Escalation:
    """dataclasses.replace without its per-call introspection: this runs for every decision."""
    new = object.__new__(Escalation)
    for name in _ESCALATION_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(escalation, name))
    return new


def decide(policy: Policy, escalation: Escalation | None, event: Event, now: datetime) -> Decision:
    """Decide what `event` does to `escalation` under `policy` at time `now` (pure)."""
    if isinstance(event, EscalationRequest):
        return _carry_over(policy, event, _decide_request(policy, escalation, event, now))
    if escalation is None:
        raise workflow.IllegalTransition(None, event.command.value)
    return _decide_command(policy, escalation, event, now)


def _carry_over(policy: Policy, req: EscalationRequest, decision: Decision) -> Decision:
    """SD3: a request that is a ticket of its own (an email) and named an existing ticket.

    The outcome is written on the named ticket as for any request; besides, the two tickets are
    linked (a LinkTicket in the named ticket's write, and one on the request ticket), and the
    request ticket is answered and solved, so the conversation carries on in one place. A sender
    the policy does not authorise (LR1) is answered on the request ticket instead, with no link.
    """
    origin, target, ticket = req.origin_ref, decision.target_ref, req.ticket
    if origin is None or ticket is None or target is None or target == origin:
        return decision
    done = decision.transition
    if done.rule == policy.rules["unauthorised"] and done.to_state is State.CANCELLED:
        # LR1: the named ticket gets its internal note and is otherwise untouched, so no link; the
        # sender is told on the request ticket why nothing more will happen, and it is closed.
        reply = policy.render("request_unauthorised_reply", ticket=ticket, request=req, requester=req.requested_by)
        return replace(decision, origin_ref=origin, origin_actions=(PublicReply(reply), SetStatus(TicketStatus.SOLVED)))
    linked = replace(done, actions=(*done.actions, LinkTicket(origin, LinkRole.ESCALATED)))
    esc = decision.escalation
    history = (*esc.history[:-1], linked) if esc.history and esc.history[-1] is done else esc.history
    reply = policy.render("request_linked_reply", ticket=ticket, request=req, requester=req.requested_by)
    return Decision(
        escalation=_evolve(esc, history=history),
        transition=linked,
        target_ref=target,
        origin_ref=origin,
        origin_actions=(LinkTicket(target, LinkRole.REQUEST), PublicReply(reply), SetStatus(TicketStatus.SOLVED)),
    )


# Why SD8 asked for the number: none given, or one naming no ticket (awaits_ticket_number reads these).
NO_TICKET_NUMBER = "no existing ticket number"
NO_SUCH_TICKET = "does not exist"


def awaits_ticket_number(escalation: Escalation | None) -> bool:
    """Whether this is a request ticket that was asked for the number of the ticket it means (SD8)."""
    if escalation is None or escalation.state is not State.NEEDS_INFO or not escalation.history:
        return False
    why = escalation.history[-1].why
    return why.startswith(NO_TICKET_NUMBER) or (why.startswith("ticket ") and f" {NO_SUCH_TICKET}" in why)


def _has_outcome(escalation: Escalation) -> bool:
    """Whether the requester has had an outcome to be unhappy with (SD11): a review, or contact."""
    return escalation.state in (State.CONFIRMED, State.RECLASSIFIED) or escalation.contacted_at is not None


def _decide_request(policy: Policy, escalation: Escalation | None, req: EscalationRequest, now: datetime) -> Decision:
    # An SD8 record of a number that did not exist (yet) is nobody's request on that ticket: a stranger
    # could name the next number, so a later request there is never completed with what it said.
    if escalation is not None and escalation.state is State.NEEDS_INFO and not awaits_ticket_number(escalation):
        # The answer to a needs-info reply completes the earlier request (LR3).
        req = replace(
            req,
            # A follow-up only completes: a reason it happens to mention never replaces the one given.
            reason=(escalation.reason or req.reason) if req.follow_up else (req.reason or escalation.reason),
            rationale=req.rationale or escalation.rationale,
            preferred_contact=req.preferred_contact or escalation.preferred_contact,
            requested_by=escalation.requested_by if req.follow_up and escalation.requested_by else req.requested_by,
        )
    wakes = escalation is not None and escalation.state is State.DEFERRED and req.channel is Channel.SLA_BREACH
    if wakes and escalation is not None:
        # SD1: the breach wakes the customer's deferred request; why they asked and how to reach
        # them (SD4) are still theirs, as is the request (the sweep is only who acted now).
        req = replace(
            req,
            rationale=escalation.rationale or req.rationale,
            preferred_contact=escalation.preferred_contact or req.preferred_contact,
        )
    d = _Decider(policy, escalation, req, now)
    tags = policy.tags
    ticket = req.ticket
    ref = ticket.ref if ticket is not None else req.ticket_ref
    region = region_of(policy, req)
    actor = req.requested_by
    event = workflow.REQUEST
    prior_history = escalation.history if escalation else ()
    base = Escalation(
        platform=req.platform,
        ticket_ref=ref or req.origin_ref or "",
        state=State.REQUESTED,
        level=escalation.level if escalation else 1,
        group=escalation.group if escalation else None,
        previous_group=escalation.previous_group if escalation else (ticket.group if ticket else None),
        reason=req.reason,
        rationale=req.rationale,
        requested_by=(escalation.requested_by if wakes and escalation else None) or req.requested_by,
        preferred_contact=req.preferred_contact,
        region=region,
        requested_at=req.received_at,
        first_contact_due=escalation.first_contact_due if escalation else None,
        contacted_at=escalation.contacted_at if escalation else None,
        last_event_at=escalation.last_event_at if escalation else None,
        history=prior_history,
    )
    ctx: dict[str, Any] = {
        "ticket": ticket,
        "request": req,
        "requester": req.requested_by,
        "reason": req.reason or "",
        "reason_label": REASON_LABELS.get(req.reason, "") if req.reason else "",
        "rationale": req.rationale,
        "preferred_contact": req.preferred_contact,
        "group": policy.group_for(region),
        "level": base.level,
    }

    def out(target: State, rule: str, why: str, actions: list[Action], **changes: Any) -> Decision:
        return d.finish(event, target, base, rule, why, actions, actor, ref or req.origin_ref, req.delivery_id,
                        **changes)  # fmt: skip

    # SD8: nothing to escalate without an existing ticket; never escalate a brand-new query.
    # A number that does not exist is treated the same; the answer goes where the request came
    # from (an email's own ticket), or nowhere (a form, which answered on the page).
    if ticket is None:
        why = f"ticket {req.ticket_ref} {NO_SUCH_TICKET}" if req.ticket_ref else NO_TICKET_NUMBER
        if req.origin_ref is None:
            return d.finish(event, State.NEEDS_INFO, base, "no_ticket", f"{why}; nowhere to reply", [], actor, None,
                            req.delivery_id)  # fmt: skip
        reply = policy.render("ticket_number_reply", **ctx)
        return d.finish(event, State.NEEDS_INFO, base, "no_ticket", why, [PublicReply(reply)], actor, req.origin_ref,
                        req.delivery_id)  # fmt: skip

    is_breach = req.channel is Channel.SLA_BREACH

    # Already being worked on: a second request goes up a level (SD11) or changes nothing.
    if d.state in (State.ESCALATED, State.CONFIRMED, State.RECLASSIFIED, State.LEVEL_2):
        assert escalation is not None
        if is_breach:
            # SH3 on an escalation that is already open: mark the breach, escalate nothing twice.
            actions: list[Action] = [] if tags.sla_breached in ticket.tags else [AddTags((tags.sla_breached,))]
            return d.finish(
                event, escalation.state, escalation, "sla_breach", "SLA breached; already escalated",
                actions, actor, ref, req.delivery_id,
            )  # fmt: skip
        # SD11 is about the outcome: asked again before anyone reviewed or contacted them, the
        # requester repeats the request (a second click, a second email), which changes nothing.
        if policy.second_request_level_up and _has_outcome(escalation):
            return _level_up(d, escalation, event, actor, "second_request", "requester asked again", req.delivery_id)
        return d.finish(
            event, escalation.state, escalation, "escalate", "already escalated", [], actor, ref, req.delivery_id
        )
    if policy.second_request_level_up and d.state in (State.CANCELLED, State.RESOLVED) and not is_breach:
        assert escalation is not None
        return _level_up(d, escalation, event, actor, "second_request", "requester not happy with the outcome",
                         req.delivery_id)  # fmt: skip

    if not is_breach:
        # LR1: only authorised people may escalate.
        if policy.authorisation is not None and not policy.authorisation.allows(req.requested_by):
            note = policy.render("unauthorised_note", **ctx)
            if (
                escalation is not None
                and d.state in (State.NEEDS_INFO, State.DEFERRED)
                and not awaits_ticket_number(escalation)
            ):
                # An authorised person's request is pending: this one is noted and leaves it as it is.
                return d.finish(event, escalation.state, escalation, "unauthorised",
                                "requester not authorised; the earlier request stands", [InternalNote(note)], actor,
                                ref, req.delivery_id)  # fmt: skip
            return out(State.CANCELLED, "unauthorised", "requester not authorised", [InternalNote(note)])
        if req.reason is None:
            reply = policy.render("reason_reply", **ctx)
            return out(State.NEEDS_INFO, "needs_info", "no reason given",
                       [*d.state_tags(tags.needs_info, ticket), PublicReply(reply)])  # fmt: skip
        # LR8: important but not an escalation.
        if req.reason in policy.urgency_reasons:
            note = policy.render("urgency_note", **ctx)
            return out(State.URGENCY_REQUESTED, "urgency", "urgency requested, not an escalation",
                       [AddTags((tags.urgency,)), InternalNote(note)])  # fmt: skip
        # LR2: only the procedure's reasons are escalations.
        if req.reason not in policy.escalation_reasons:
            reply = policy.render("invalid_reason_reply", **ctx)
            return out(State.CANCELLED, "invalid_reason", f"{req.reason.value} is not an escalation reason",
                       [*d.state_tags(tags.cancelled, ticket), PublicReply(reply)])  # fmt: skip
        # LR3: a justifiable business rationale is required.
        if policy.require_rationale and not (req.rationale and req.rationale.strip()):
            reply = policy.render("needs_info_reply", **ctx, missing="rationale")
            return out(State.NEEDS_INFO, "needs_info", "no business rationale",
                       [*d.state_tags(tags.needs_info, ticket), PublicReply(reply)])  # fmt: skip
        # SD1/SD7: within SLA, give the team the opportunity to resolve.
        if req.reason in policy.sla_gate_reasons:
            pending = ticket.pending_slas()
            # A target past its breach time is breached, whether or not the platform has said so yet.
            overdue = any(s.breach_at is not None and s.breach_at <= now for s in pending)
            if pending and not ticket.breached_slas() and not overdue:
                first = min(pending, key=lambda s: s.breach_at or datetime.max.replace(tzinfo=now.tzinfo))
                reply = policy.render("deferred_reply", **ctx, sla=first, sla_due=_fmt(policy, region, first.breach_at))
                return out(State.DEFERRED, "defer", f"within SLA {first.name}",
                           [*d.state_tags(tags.deferred, ticket), PublicReply(reply)])  # fmt: skip
        # SD2/SD6: re-classify a mis-classified priority, up to the policy's ceiling.
        requested = req.requested_priority
        ceiling = policy.reclassify_ceiling
        current = ticket.priority
        if (
            req.reason in policy.reclassify_reasons
            and requested is not None
            and ceiling is not None
            and requested.rank <= ceiling.rank
            and ticket.priority_below(requested)
        ):
            group = policy.group_for(region)
            rctx = {**ctx, "priority": requested.value, "previous_priority": current.value if current else "none"}
            actions = [
                *d.state_tags(tags.reclassified, ticket),
                AssignGroup(group),
                SetPriority(requested),
                PublicReply(policy.render("reclassified_reply", **rctx)),
                InternalNote(policy.render("reclassified_note", **rctx)),
            ]
            return out(State.RECLASSIFIED, "reclassify", f"priority {current} -> {requested.value}", actions,
                       group=group)  # fmt: skip

    # LR4 + LR5: escalate to the region's lead group.
    return _escalate(d, base, req, ctx, region, event, actor, ref)


def _escalate(
    d: _Decider,
    base: Escalation,
    req: EscalationRequest,
    ctx: dict[str, Any],
    region: str | None,
    event: str,
    actor: Person,
    ref: str | None,
) -> Decision:
    policy, tags, ticket = d.policy, d.policy.tags, req.ticket
    assert ticket is not None
    group = policy.group_for(region)
    is_breach = req.channel is Channel.SLA_BREACH
    calendar = policy.calendar_for(region)
    due = calendar.add_business_time(req.received_at, policy.first_contact_within)
    if is_breach and due <= d.now:
        # A breach is dated when it happened, but nobody knew before Tierup escalates it: one found
        # so late (a sweep's first run, after an outage) that the promise would already be broken
        # is promised from now, rather than sent one level up at the next deadline check.
        due = calendar.add_business_time(d.now, policy.first_contact_within)
    ctx = {**ctx, "group": group, "due": _fmt(policy, region, due)}
    woken = d.state is State.DEFERRED and is_breach
    new_tags = [tags.escalated, tags.sla_breached] if is_breach else [tags.escalated]
    actions: list[Action] = [*d.state_tags(tags.escalated, ticket)]
    if len(new_tags) > 1:
        actions[0] = AddTags(tuple(new_tags))
    actions.append(AssignGroup(group))
    if policy.escalate_priority and ticket.priority_below(policy.escalate_priority):
        actions.append(SetPriority(policy.escalate_priority))
    if policy.first_contact_shown_on is State.ESCALATED:
        actions.append(SetDue(due))
    if woken:
        actions.append(PublicReply(policy.render("deferred_woken_reply", **ctx)))
    elif not is_breach:
        actions.append(PublicReply(policy.render("escalated_reply", **ctx)))
    note = "sla_escalated_note" if is_breach else "escalated_note"
    actions.append(InternalNote(policy.render(note, **ctx)))
    rule = "wake_deferred" if woken else "sla_breach" if is_breach else "escalate"
    why = f"{req.reason.value if req.reason else 'escalation'} -> {group}"
    return d.finish(event, State.ESCALATED, base, rule, why, actions, actor, ref, req.delivery_id,
                    group=group, first_contact_due=due, contacted_at=None)  # fmt: skip


def _level_up(
    d: _Decider, escalation: Escalation, event: str, actor: Person, rule: str, why: str, delivery_id: str | None
) -> Decision:
    """Send the escalation one level up (SD11, SH4); at the top level, note it and stay."""
    policy = d.policy
    level = escalation.level + 1
    group = policy.group_for_level(level)
    ctx = d.context(level=level, group=group, actor=actor)
    if group is None:
        note = f"No level {level} is configured in policy {policy.name}; the escalation stays at level {level - 1}."
        # A missed promise is acted on once, even at the top: forget it rather than note it every minute.
        return d.finish(event, escalation.state, escalation, rule, f"{why}; no higher level",
                        [InternalNote(note)], actor, escalation.ticket_ref, delivery_id,
                        first_contact_due=None)  # fmt: skip
    note_name = "deadline_note" if rule == "deadline" else "level_2_note"
    due = _fmt(policy, escalation.region, escalation.first_contact_due)
    tags = policy.tags
    # Up from a cancelled, waiting or urgency-noted state, that state's tag goes; the escalated ones stay.
    actions: list[Action] = [
        *d.state_tags(tags.level_2, d.ticket, keep=(tags.escalated, tags.confirmed, tags.reclassified)),
        AssignGroup(group),
        InternalNote(policy.render(note_name, **{**ctx, "due": due})),
    ]
    if rule != "deadline":
        actions.insert(2, PublicReply(policy.render("level_2_reply", **ctx)))
    return d.finish(event, State.LEVEL_2, escalation, rule, why, actions, actor, escalation.ticket_ref, delivery_id,
                    level=level, group=group, first_contact_due=None)  # fmt: skip


def _decide_command(policy: Policy, escalation: Escalation, cmd: ReviewCommand, now: datetime) -> Decision:
    d = _Decider(policy, escalation, cmd, now)
    tags = policy.tags
    event = cmd.command.value
    ref = escalation.ticket_ref
    ticket = cmd.ticket
    actor = cmd.actor

    def same(rule: str, why: str, actions: list[Action] | None = None, **changes: Any) -> Decision:
        return d.finish(event, escalation.state, escalation, rule, why, actions or [], actor, ref, cmd.delivery_id,
                        **changes)  # fmt: skip

    if cmd.command is Command.CONFIRM:
        # LR7: confirmed; first contact within the promised business time from the request.
        # The promise runs from the request (LR7); confirmed one level up, it runs from now.
        start = (escalation.requested_at or now) if escalation.level == 1 else now
        due = policy.calendar_for(escalation.region).add_business_time(start, policy.first_contact_within)
        ctx = d.context(due=_fmt(policy, escalation.region, due), actor=actor)
        # A confirmed escalation is still Escalated: keep that tag (and the level tag).
        actions: list[Action] = d.state_tags(tags.confirmed, ticket, keep=(tags.escalated, tags.level_2))
        actions += [SetDue(due), PublicReply(policy.render("confirmed_reply", **ctx))]
        contacted = now if Command.CONFIRM in policy.first_contact_satisfied_by else escalation.contacted_at
        return d.finish(event, State.CONFIRMED, escalation, "confirm", f"confirmed by {actor.id}", actions, actor, ref,
                        cmd.delivery_id, first_contact_due=due, contacted_at=contacted)  # fmt: skip

    if cmd.command is Command.CANCEL:
        # LR6: cancelled with the lead's feedback; the ticket goes back to its previous group, or to
        # none when it had none (a Jira issue's lead-group field was empty before it was escalated).
        ctx = d.context(feedback=cmd.feedback or "", actor=actor)
        actions = [*d.state_tags(tags.cancelled, ticket)]
        if escalation.group and escalation.previous_group != escalation.group:
            actions.append(AssignGroup(escalation.previous_group))
        actions.append(PublicReply(policy.render("cancelled_reply", **ctx)))
        return d.finish(event, State.CANCELLED, escalation, "cancel", cmd.feedback or "cancelled by a lead", actions,
                        actor, ref, cmd.delivery_id, group=escalation.previous_group)  # fmt: skip

    if cmd.command is Command.NOT_HAPPY:
        return _level_up(d, escalation, event, actor, "second_request", "requester not happy", cmd.delivery_id)

    if cmd.command is Command.RESOLVE:
        # SD9: solving the ticket resolves the escalation; nothing to write back.
        return d.finish(event, State.RESOLVED, escalation, "resolve", "ticket solved", [], actor, ref, cmd.delivery_id)

    if cmd.command is Command.CONTACT:
        if escalation.contacted_at is not None:
            return same("deadline", "already contacted")
        return same("deadline", f"contacted by {actor.id}", contacted_at=now)

    # SH4: the first-contact promise was missed: one level up, once.
    promised = escalation.first_contact_due
    if escalation.contacted_at is not None or promised is None or promised > now:
        return same("deadline", "deadline not missed")
    return _level_up(d, escalation, event, SYSTEM, "deadline", f"first contact due {promised.isoformat()} missed",
                     cmd.delivery_id)  # fmt: skip
