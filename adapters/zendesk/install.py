"""`tierup install zendesk`: create, or update in place, everything the procedure needs in Zendesk.

What it manages (each matched by title or name, never duplicated, and marked with MARKER in
its description so `uninstall` removes exactly what install made; an unmarked object with one
of those titles is the admin's, and install stops rather than take it over): the escalation ticket
fields, the policy's groups (existing groups are only mapped, never changed or removed), the
webhook Tierup listens on, the triggers, the macros and the SLA-breach automation. The ids it
learns (fields, groups, webhook, its signing secret, Tierup's own user) go into `.env`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from zenpy import Zenpy
from zenpy.lib.api_objects import Automation, Group, Macro, TicketField, Trigger, Webhook

from adapters.zendesk.gateway import REQUEST_LINK_TAG, call_zendesk
from adapters.zendesk.parse import COMMAND_TAGS, PRIORITY_PREFIX, REASON_PREFIX, REQUEST_TAG, TriggerKind, trigger_body
from adapters.zendesk.settings import FIELD_SETTINGS, parse_group_ids
from integration.config import ConfigError, secrets_list, update_env_file
from integration.model import Channel, Command, Priority, Reason
from integration.policy import REASON_LABELS, Policy

MARKER = "[tierup]"
WEBHOOK_NAME = "Tierup"
WEBHOOK_PATH = "/webhooks/zendesk"
SLA_NOTIFIED_TAG = "tierup_sla_notified"
API_VIA_ID = "5"  # Zendesk's "Web service (API)" channel: how Tierup's own updates arrive
EMAIL_VIA_ID = "4"  # Zendesk's "Email" channel
PENDING = "<created by this run>"

_TAG_OF = {command: tag for tag, command in COMMAND_TAGS.items()}


def webhook_endpoint(public_url: str | None) -> str:
    """TIERUP_PUBLIC_URL + /webhooks/zendesk, or ConfigError naming TIERUP_PUBLIC_URL."""
    if not public_url or not public_url.strip():
        raise ConfigError(
            "TIERUP_PUBLIC_URL is not set (environment or .env): Zendesk needs the address where it reaches "
            f"Tierup; the webhook endpoint is TIERUP_PUBLIC_URL + {WEBHOOK_PATH}"
        )
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"TIERUP_PUBLIC_URL must look like https://tierup.example.com, got {public_url!r}")
    return public_url.strip().rstrip("/") + WEBHOOK_PATH


# --- what should exist -------------------------------------------------------------------------------


def _described(text: str) -> str:
    return f"{MARKER} {text} Managed by `tierup install zendesk`; `tierup uninstall zendesk` removes it."


def desired_fields() -> dict[str, dict[str, Any]]:
    """Logical field name -> the ticket field that holds it."""
    reasons = [{"name": REASON_LABELS[r].capitalize(), "value": f"{REASON_PREFIX}{r.value}"} for r in Reason]
    priorities = [{"name": p.value.capitalize(), "value": f"{PRIORITY_PREFIX}{p.value}"} for p in Priority]

    def field(title: str, kind: str, purpose: str, public: bool, **extra: Any) -> dict[str, Any]:
        return {
            "title": title,
            "type": kind,
            "description": purpose,
            "agent_description": _described(purpose),
            "visible_in_portal": public,
            "editable_in_portal": public,
            "active": True,
            **extra,
        }

    return {
        "escalation_reason": field(
            "Escalation reason", "tagger", "Why this ticket should be escalated.", True, custom_field_options=reasons
        ),
        "business_rationale": field("Business rationale", "textarea", "Why it needs higher urgency.", True),
        "preferred_contact": field("Preferred contact", "text", "How you would like to be contacted first.", True),
        "requested_priority": field(
            "Requested priority", "tagger", "The priority you believe is right.", True, custom_field_options=priorities
        ),
        "escalation_note": field("Tierup escalation note", "textarea", "Tierup's internal note (agents only).", False),
        "first_contact_due": field("Tierup first contact due", "text", "When first contact is due (UTC).", False),
    }


@dataclass(frozen=True)
class Known:
    """Ids the triggers need; PENDING while a dry run has not created them."""

    webhook_id: str
    field_ids: Mapping[str, int]


def desired_webhook(endpoint: str) -> dict[str, Any]:
    return {
        "name": WEBHOOK_NAME,
        "description": _described("Tierup's triggers and automation post escalation events here."),
        "endpoint": endpoint,
        "http_method": "POST",
        "request_format": "json",
        "status": "active",
        "subscriptions": ["conditional_ticket_events"],
    }


def _notify(known: Known, kind: TriggerKind, channel: Channel = Channel.MACRO) -> dict[str, Any]:
    body = trigger_body(kind, known.field_ids, channel)
    return {"field": "notification_webhook", "value": [known.webhook_id, body]}


def _tags(*tags: str) -> str:
    return " ".join(tags)


def email_triggers(known: Known, address: str) -> dict[str, dict[str, Any]]:
    """Title -> trigger: an email to the escalation address (SD3), and its sender's replies until it is linked."""
    to_address = [
        {"field": "via_id", "operator": "is", "value": EMAIL_VIA_ID},
        {"field": "recipient", "operator": "is", "value": address},
    ]
    notify = _notify(known, TriggerKind.ESCALATION_REQUESTED, Channel.EMAIL)
    return {
        "Tierup: escalation email": {
            "description": _described(f"An email to {address} asks Tierup to escalate the ticket it names."),
            "active": True,
            "conditions": {
                "all": [{"field": "update_type", "operator": "is", "value": "Create"}, *to_address],
                "any": [],
            },
            "actions": [notify],
        },
        "Tierup: escalation email answered": {
            "description": _described(
                f"The sender of an email to {address} replies (with the ticket number Tierup asked for)."
            ),
            "active": True,
            "conditions": {
                "all": [
                    {"field": "update_type", "operator": "is", "value": "Change"},
                    *to_address,
                    {"field": "comment_is_public", "operator": "is", "value": "true"},
                    {"field": "role", "operator": "is", "value": "end_user"},
                    # Once linked to the ticket it escalates, the request is done with.
                    {"field": "current_tags", "operator": "not_includes", "value": REQUEST_LINK_TAG},
                ],
                "any": [],
            },
            "actions": [notify],
        },
    }


def desired_triggers(policy: Policy, known: Known, escalation_address: str | None = None) -> dict[str, dict[str, Any]]:
    """Title -> trigger: each command tag a macro adds is reported, then removed so it can be used again.

    With an escalation address (ZENDESK_ESCALATION_ADDRESS), also the two email triggers.
    """
    t = policy.tags
    open_tags = _tags(t.escalated, t.confirmed, t.level_2, t.reclassified)

    def on_tag(tag: str, kind: TriggerKind, what: str) -> dict[str, Any]:
        return {
            "description": _described(what),
            "active": True,
            "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": tag}], "any": []},
            "actions": [_notify(known, kind), {"field": "remove_tags", "value": tag}],
        }

    return {
        "Tierup: escalation requested": on_tag(
            REQUEST_TAG, TriggerKind.ESCALATION_REQUESTED, "The Escalate macro asks Tierup to escalate the ticket."
        ),
        "Tierup: lead confirms": on_tag(
            _TAG_OF[Command.CONFIRM], TriggerKind.CONFIRM, "A Team Leader confirms the escalation is valid."
        ),
        "Tierup: lead cancels with feedback": on_tag(
            _TAG_OF[Command.CANCEL], TriggerKind.CANCEL, "A Team Leader cancels; the comment is the feedback."
        ),
        "Tierup: requester not happy": on_tag(
            _TAG_OF[Command.NOT_HAPPY], TriggerKind.NOT_HAPPY, "The requester is not happy with the outcome."
        ),
        "Tierup: ticket solved": {
            "description": _described("Solving a ticket with an open escalation resolves it."),
            "active": True,
            "conditions": {
                "all": [
                    {"field": "status", "operator": "value", "value": "solved"},
                    {"field": "current_tags", "operator": "includes", "value": open_tags},
                ],
                "any": [],
            },
            "actions": [_notify(known, TriggerKind.SOLVED)],
        },
        "Tierup: lead replied publicly": {
            "description": _described("An agent's public reply on an escalated ticket keeps the contact promise."),
            "active": True,
            "conditions": {
                "all": [
                    {"field": "comment_is_public", "operator": "is", "value": "true"},
                    {"field": "role", "operator": "is_not", "value": "end_user"},
                    # Tierup's own replies come through the API: no echo.
                    {"field": "current_via_id", "operator": "is_not", "value": API_VIA_ID},
                    {"field": "current_tags", "operator": "includes", "value": open_tags},
                ],
                "any": [],
            },
            "actions": [_notify(known, TriggerKind.CONTACT)],
        },
        "Tierup: requester replied (needs info)": {
            "description": _described("The requester's reply may carry what the escalation was missing."),
            "active": True,
            "conditions": {
                "all": [
                    {"field": "comment_is_public", "operator": "is", "value": "true"},
                    {"field": "role", "operator": "is", "value": "end_user"},
                    {"field": "current_tags", "operator": "includes", "value": t.needs_info},
                ],
                "any": [],
            },
            "actions": [_notify(known, TriggerKind.FOLLOW_UP)],
        },
        **(email_triggers(known, escalation_address) if escalation_address else {}),
    }


def desired_macros() -> dict[str, dict[str, Any]]:
    """Title -> macro: agents and leads ask Tierup for something by adding a tag."""

    def adds(tag: str, what: str, *more: dict[str, str]) -> dict[str, Any]:
        actions = [{"field": "current_tags", "value": tag}, *more]
        return {"description": _described(what), "active": True, "actions": actions}

    return {
        "Escalate ticket": adds(REQUEST_TAG, "Fill in the escalation reason and rationale, then apply."),
        "Escalation: confirm": adds(_TAG_OF[Command.CONFIRM], "Confirm the escalation is valid."),
        "Escalation: cancel — not valid": adds(
            _TAG_OF[Command.CANCEL],
            "Write the feedback for the requester as this comment.",
            {"field": "comment_mode_is_public", "value": "false"},
        ),
        "Escalation: requester not happy": adds(_TAG_OF[Command.NOT_HAPPY], "Send the escalation one level up."),
    }


def desired_automations(known: Known) -> dict[str, dict[str, Any]]:
    """Title -> automation: an hourly check that reports a breached SLA once (SH3)."""
    return {
        "Tierup: SLA breached": {
            "description": _described("Reports a breached SLA to Tierup once per ticket."),
            "active": True,
            "conditions": {
                "all": [
                    {"field": "sla_next_breach_at", "operator": "greater_than", "value": "0"},
                    {"field": "status", "operator": "less_than", "value": "solved"},
                    {"field": "current_tags", "operator": "not_includes", "value": SLA_NOTIFIED_TAG},
                ],
                "any": [],
            },
            # The tag is the nullifying action Zendesk requires: the automation fires once per ticket.
            "actions": [_notify(known, TriggerKind.SLA_BREACH), {"field": "current_tags", "value": SLA_NOTIFIED_TAG}],
        }
    }


# --- comparing with what exists -------------------------------------------------------------------------


def plain(obj: Any) -> dict[str, Any]:
    """A zenpy object (or dict) as plain JSON data."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data if isinstance(data, dict) else {}


def _normal(value: Any) -> Any:
    # Zendesk may hand values back in another JSON type than we sent them: numbers (ids, hours)
    # as strings, and an action's "false" as false (comment_mode_is_public): compare as text.
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if value is None:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _options(value: Any) -> list[tuple[str, str]]:
    return [(str(o.get("name")), str(o.get("value"))) for o in value or () if isinstance(o, Mapping)]


def _keep_option_ids(spec: Mapping[str, Any], current: Mapping[str, Any]) -> Mapping[str, Any]:
    """`spec` with each dropdown option that the field has already (by value) carrying its id.

    Zendesk updates an option sent with its id, and takes one sent without as new (dropping
    the old): the ids keep the options, and the tickets that hold them, as they are.
    """
    options = spec.get("custom_field_options")
    if not options:
        return spec
    ids = {
        str(o.get("value")): o["id"]
        for o in current.get("custom_field_options") or ()
        if isinstance(o, Mapping) and o.get("id") is not None
    }
    kept = [{**o, "id": ids[str(o["value"])]} if str(o.get("value")) in ids else o for o in options]
    return {**spec, "custom_field_options": kept}


def differences(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """The keys of `desired` whose value Zendesk holds differently."""
    out = []
    for key, want in desired.items():
        have = existing.get(key)
        if key == "custom_field_options":
            same = _options(have) == _options(want)
        elif key == "conditions":
            have_c = have if isinstance(have, Mapping) else {}
            same = all(_normal(have_c.get(k) or []) == _normal(want.get(k) or []) for k in ("all", "any"))
        else:
            same = _normal(have) == _normal(want)
        if not same:
            out.append(key)
    return out


def marked(data: Mapping[str, Any]) -> bool:
    """True for what install created: MARKER in its description (agent description for fields)."""
    return any(MARKER in str(data.get(k) or "") for k in ("description", "agent_description"))


# --- the plan and its report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    action: str  # create, update, delete, map, keep, leave, set, unset
    kind: str
    name: str
    detail: str = ""

    @property
    def writes(self) -> bool:
        return self.action in ("create", "update", "delete", "set", "unset")

    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action:<7} {self.kind} {self.name!r}{detail}"


@dataclass
class Report:
    """What install or uninstall did (or, in a dry run, would do)."""

    dry_run: bool
    verb: str = "install"
    steps: list[Step] = field(default_factory=list)

    def add(self, action: str, kind: str, name: str, detail: str = "") -> None:
        self.steps.append(Step(action, kind, name, detail))

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.writes]

    def lines(self) -> list[str]:
        out = [s.line() for s in self.steps if s.writes or s.action in ("map", "leave")]
        if not self.changes:
            out.append("everything is up to date: nothing to change" if self.verb == "install" else "nothing to remove")
        elif self.dry_run:
            out.append(f"dry run: {len(self.changes)} changes planned, nothing was written")
        else:
            out.append(f"{len(self.changes)} changes made")
        return out


def _env_file(path: Path) -> dict[str, str]:
    """The values set in the .env file itself (not the environment: install writes the file)."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.exists() else {}


# --- the installer --------------------------------------------------------------------------------------


ZENPY_TYPES: Mapping[str, Callable[..., Any]] = {
    "ticket field": TicketField,
    "trigger": Trigger,
    "macro": Macro,
    "automation": Automation,
}


@dataclass
class ZendeskInstaller:
    """Installs and uninstalls Tierup's objects in one Zendesk account through zenpy."""

    client: Zenpy
    policy: Policy
    env_path: Path = Path(".env")
    escalation_address: str | None = None  # ZENDESK_ESCALATION_ADDRESS: the email triggers watch it

    def _api(self, kind: str) -> Any:
        return {
            "ticket field": self.client.ticket_fields,
            "trigger": self.client.triggers,
            "macro": self.client.macros,
            "automation": self.client.automations,
            "group": self.client.groups,
        }[kind]

    def _existing(self, kind: str) -> dict[str, Any]:
        key = "name" if kind == "group" else "title"
        items = call_zendesk(f"list {kind}s", lambda: list(self._api(kind)()))
        found: dict[str, Any] = {}
        for item in items:
            name = getattr(item, key, None)
            if getattr(item, "deleted", False) is True:
                continue  # a deleted group: Zendesk still lists it, but nothing can be assigned to it
            if name and name not in found:
                found[str(name)] = item
        return found

    def _recorded(self) -> tuple[dict[str, str], str | None]:
        """The ids .env holds: title -> field id (for the fields install makes), and the webhook's."""
        current = _env_file(self.env_path)
        fields = {spec["title"]: current.get(FIELD_SETTINGS[logical], "") for logical, spec in desired_fields().items()}
        return {title: ident for title, ident in fields.items() if ident}, current.get("ZENDESK_WEBHOOK_ID") or None

    def _with_renamed(self, listed: Mapping[str, Any], recorded: Mapping[str, str]) -> dict[str, Any]:
        """`listed` (title -> object) with ours an admin renamed under our title again, found by their recorded id."""
        by_id = {str(item.id): item for item in listed.values() if marked(plain(item))}
        found = dict(listed)
        for title, ident in recorded.items():
            if title not in found and ident in by_id:
                found[title] = by_id[ident]
        return found

    def _our_webhook(self, hooks: Sequence[Any], recorded: str | None) -> Any | None:
        """Our webhook: the one .env records (whatever an admin renamed it to), else the one named Tierup."""
        by_id = next((h for h in hooks if recorded and str(h.id) == recorded and marked(plain(h))), None)
        return by_id or next((h for h in hooks if getattr(h, "name", None) == WEBHOOK_NAME), None)

    def _titles(self, escalation_address: str | None) -> dict[str, list[str]]:
        """The titles of the objects install manages, by kind (with the email triggers when there is an address)."""
        pending = Known(webhook_id=PENDING, field_ids={})
        return {
            "ticket field": [spec["title"] for spec in desired_fields().values()],
            "trigger": list(desired_triggers(self.policy, pending, escalation_address)),
            "macro": list(desired_macros()),
            "automation": list(desired_automations(pending)),
        }

    def _refuse_takeovers(self, listed: Mapping[str, Mapping[str, Any]], hooks: Sequence[Any]) -> None:
        """ConfigError naming every object install would manage that has our title but is not ours.

        Install matches its objects by title; one the admin made (no MARKER) is never updated
        in Tierup's place, nor later deleted by uninstall.
        """
        titles = self._titles(self.escalation_address)
        taken = [
            f'{kind} "{title}"'
            for kind, names in titles.items()
            for title in names
            if title in listed[kind] and not marked(plain(listed[kind][title]))
        ]
        if any(getattr(h, "name", None) == WEBHOOK_NAME and not marked(plain(h)) for h in hooks):
            taken.append(f'webhook "{WEBHOOK_NAME}"')
        if taken:
            raise ConfigError(
                f"Zendesk already has {', '.join(taken)}, not made by Tierup (no {MARKER} in its description): "
                f"rename it, or add {MARKER} to its description to let install manage it, then run install again"
            )

    def _sync(
        self,
        kind: str,
        desired: Mapping[str, dict[str, Any]],
        existing: Mapping[str, Any],
        report: Report,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Create or update each desired object of `kind` (titled by its key) among `existing`; return title -> id."""
        make = ZENPY_TYPES[kind]
        ids: dict[str, Any] = {}
        for title, wanted in desired.items():
            spec = {k: v for k, v in wanted.items() if k != "title"}
            current = existing.get(title)
            if current is None:
                report.add("create", kind, title)
                if dry_run:
                    ids[title] = PENDING
                else:
                    created = call_zendesk(
                        f"create {kind} {title!r}", self._api(kind).create, make(title=title, **spec)
                    )
                    ids[title] = created.id
                continue
            ids[title] = current.id
            changed = differences(plain(current), spec)
            if not changed:
                report.add("keep", kind, title)
                continue
            report.add("update", kind, title, "changed: " + ", ".join(changed))
            if not dry_run:
                # Its own title: one an admin renamed (found by the id .env holds) keeps the admin's name.
                obj = make(id=current.id, title=current.title, **_keep_option_ids(spec, plain(current)))
                call_zendesk(f"update {kind} {title!r}", self._api(kind).update, obj)
        return ids

    def _groups(self, report: Report, dry_run: bool) -> dict[str, Any]:
        existing = self._existing("group")
        ids: dict[str, Any] = {}
        for name in self.policy.all_groups():
            group = existing.get(name)
            if group is not None:
                # An existing group is the admin's: mapped by name, never changed or removed.
                if not marked(plain(group)):
                    report.add("map", "group", name, f"existing group {group.id}")
                else:
                    report.add("keep", "group", name)
                ids[name] = group.id
                continue
            report.add("create", "group", name)
            spec = Group(name=name, description=_described(f"Escalations routed by policy {self.policy.name}."))
            ids[name] = (
                PENDING if dry_run else call_zendesk(f"create group {name!r}", self.client.groups.create, spec).id
            )
        return ids

    def _webhook(self, endpoint: str, current: Any | None, report: Report, dry_run: bool) -> tuple[str, str | None]:
        """Create or update the webhook (`current`, when it exists); return its id and its signing secret."""
        spec = desired_webhook(endpoint)
        if current is not None:
            spec["name"] = current.name  # an admin's name for it stays
        if current is None:
            report.add("create", "webhook", WEBHOOK_NAME, endpoint)
            if dry_run:
                return PENDING, None
            hook_id = str(call_zendesk("create webhook", lambda: self.client.webhooks.create(Webhook(**spec))).id)
        else:
            hook_id = str(current.id)
            changed = differences(plain(current), spec)
            if changed:
                report.add("update", "webhook", WEBHOOK_NAME, "changed: " + ", ".join(changed))
                if not dry_run:
                    call_zendesk("update webhook", lambda: self.client.webhooks.update(hook_id, Webhook(**spec)))
            else:
                report.add("keep", "webhook", WEBHOOK_NAME)
        secret = call_zendesk("read the webhook's signing secret", lambda: self.client.webhooks.show_secret(hook_id))
        return hook_id, str(secret.secret)

    def _settings(self, values: Mapping[str, str | None], report: Report, dry_run: bool) -> None:
        current = _env_file(self.env_path)
        changed: dict[str, str] = {}
        for name, value in values.items():
            if value is None or value == PENDING:
                continue
            if current.get(name) == value:
                report.add("keep", "setting", name)
                continue
            report.add("set", "setting", name, f"in {self.env_path}")
            changed[name] = value
        if changed and not dry_run:
            update_env_file(self.env_path, changed)

    def install(self, public_url: str | None, dry_run: bool = False) -> Report:
        """Create or update everything, then store the ids in .env; a dry run only reads."""
        endpoint = webhook_endpoint(public_url)
        report = Report(dry_run)
        # Everything is read first: an object of ours taken by the admin stops install before any write.
        listed = {kind: self._existing(kind) for kind in ("ticket field", "trigger", "macro", "automation")}
        hooks = call_zendesk("list webhooks", lambda: list(self.client.webhooks.list()))
        self._refuse_takeovers(listed, hooks)
        me = call_zendesk("read Tierup's own user", lambda: self.client.users.me())
        groups = self._groups(report, dry_run)
        wanted_fields = {spec["title"]: spec for spec in desired_fields().values()}
        recorded_fields, recorded_hook = self._recorded()
        listed_fields = self._with_renamed(listed["ticket field"], recorded_fields)
        fields = self._sync("ticket field", wanted_fields, listed_fields, report, dry_run)
        field_ids = {logical: fields[spec["title"]] for logical, spec in desired_fields().items()}
        hook_id, secret = self._webhook(endpoint, self._our_webhook(hooks, recorded_hook), report, dry_run)
        known = Known(webhook_id=hook_id, field_ids={k: v for k, v in field_ids.items() if v != PENDING})
        triggers = desired_triggers(self.policy, known, self.escalation_address)
        self._sync("trigger", triggers, listed["trigger"], report, dry_run)
        # Ours, but no longer wanted: the email triggers once ZENDESK_ESCALATION_ADDRESS is unset.
        retired = [t for t in self._titles("any@example.org")["trigger"] if t not in triggers]
        unwanted = [listed["trigger"][t] for t in retired if t in listed["trigger"]]
        self._delete_marked("trigger", unwanted, report, dry_run)
        self._sync("macro", desired_macros(), listed["macro"], report, dry_run)
        self._sync("automation", desired_automations(known), listed["automation"], report, dry_run)
        current = _env_file(self.env_path)
        secrets = secrets_list(current.get("ZENDESK_WEBHOOK_SECRET"))
        if secret is not None and secret not in secrets:
            secrets = (secret, *secrets)  # newest first; other webhooks' secrets stay (rotation)
        mapped = {**parse_group_ids(current.get("ZENDESK_GROUP_IDS")), **groups}
        values: dict[str, str | None] = {
            "ZENDESK_BOT_USER_ID": str(me.id),
            "ZENDESK_WEBHOOK_ID": hook_id,
            "ZENDESK_WEBHOOK_SECRET": ",".join(secrets) if secrets else None,
            "ZENDESK_GROUP_IDS": None if PENDING in groups.values() else json.dumps(mapped, ensure_ascii=False),
            **{FIELD_SETTINGS[k]: str(v) for k, v in field_ids.items()},
        }
        self._settings(values, report, dry_run)
        return report

    def uninstall(self, dry_run: bool = False) -> Report:
        """Delete what install created (marked objects only); forget their ids in .env."""
        report = Report(dry_run, verb="uninstall")
        fields: list[Any] = []
        groups: list[Any] = []
        gone_secrets: set[str] = set()
        gone_hooks: set[str] = set()
        try:
            # Only the titles install manages: an admin's clone of a Tierup macro carries the marker too.
            managed = self._titles(self.escalation_address or "any@example.org")  # the email triggers' titles too
            for kind in ("trigger", "automation", "macro"):
                self._delete_marked(kind, self._existing(kind).values(), report, dry_run, managed[kind])
            recorded_fields, recorded_hook = self._recorded()
            hooks = call_zendesk("list webhooks", lambda: list(self.client.webhooks.list()))
            for hook in hooks:
                ours = getattr(hook, "name", None) == WEBHOOK_NAME or str(hook.id) == recorded_hook
                if not ours or not marked(plain(hook)):
                    continue
                hook_id = str(hook.id)
                secret = call_zendesk("read the webhook's secret", self.client.webhooks.show_secret, hook_id)
                report.add("delete", "webhook", WEBHOOK_NAME, hook_id)
                if not dry_run:
                    call_zendesk("delete webhook", self.client.webhooks.delete, Webhook(id=hook_id))
                gone_secrets.add(str(secret.secret))
                gone_hooks.add(hook_id)
            existing = self._existing("ticket field")
            renamed = [str(item.title) for item in existing.values() if str(item.id) in recorded_fields.values()]
            titles = [*managed["ticket field"], *renamed]  # ours though renamed: .env records their ids
            self._delete_marked("ticket field", existing.values(), report, dry_run, titles, into=fields)
            self._delete_marked("group", self._existing("group").values(), report, dry_run, into=groups)
        finally:
            # Also when a call failed half-way: what is gone is forgotten (a deleted webhook's secret cannot be
            # read again, so a later run could not tell it from another webhook's).
            deleted_fields = {int(item.id) for item in fields}
            deleted_groups = {str(item.name) for item in groups}
            self._forget(report, dry_run, deleted_fields, deleted_groups, gone_hooks, gone_secrets)
        return report

    def _delete_marked(
        self,
        kind: str,
        items: Iterable[Any],
        report: Report,
        dry_run: bool,
        titles: Sequence[str] | None = None,
        *,
        into: list[Any] | None = None,
    ) -> list[Any]:
        """Delete the marked `items` (only those titled as in `titles`, when given); each deleted one joins `into`."""
        deleted = [] if into is None else into
        for item in items:
            if not marked(plain(item)):
                continue  # not ours: left alone
            name = str(getattr(item, "name", None) or getattr(item, "title", ""))
            if titles is not None and name not in titles:
                # Marked, but not a title install makes: an admin's clone (Zendesk copies the description), or
                # one of ours the admin renamed and so made their own. Left alone, and said so.
                report.add("leave", kind, name, f"{item.id}: has {MARKER} but is not one install manages")
                continue
            report.add("delete", kind, name, str(item.id))
            if not dry_run:
                target = {"group": Group, **ZENPY_TYPES}[kind](id=item.id)
                call_zendesk(f"delete {kind} {name!r}", self._api(kind).delete, target)
            deleted.append(item)
        return deleted

    def _forget(
        self,
        report: Report,
        dry_run: bool,
        fields: set[int],
        groups: set[str],
        hooks: set[str],
        secrets: set[str],
    ) -> None:
        if not self.env_path.exists():
            return
        current = _env_file(self.env_path)
        unset = [n for n in FIELD_SETTINGS.values() if current.get(n, "").isdigit() and int(current[n]) in fields]
        if current.get("ZENDESK_WEBHOOK_ID") in hooks:
            unset.append("ZENDESK_WEBHOOK_ID")
        updates: dict[str, str] = {}
        kept = [s for s in secrets_list(current.get("ZENDESK_WEBHOOK_SECRET")) if s not in secrets]
        if "ZENDESK_WEBHOOK_SECRET" in current and len(kept) != len(secrets_list(current["ZENDESK_WEBHOOK_SECRET"])):
            if kept:
                updates["ZENDESK_WEBHOOK_SECRET"] = ",".join(kept)
            else:
                unset.append("ZENDESK_WEBHOOK_SECRET")
        mapped = parse_group_ids(current.get("ZENDESK_GROUP_IDS"))
        remaining = {k: v for k, v in mapped.items() if k not in groups}
        if remaining != mapped:
            if remaining:
                updates["ZENDESK_GROUP_IDS"] = json.dumps(remaining, ensure_ascii=False)
            else:
                unset.append("ZENDESK_GROUP_IDS")
        for name in updates:
            report.add("set", "setting", name, f"in {self.env_path}")
        for name in unset:
            report.add("unset", "setting", name, f"in {self.env_path}")
        if not dry_run and (updates or unset):
            update_env_file(self.env_path, updates, unset)
