"""The team leads' dashboard (GET /dashboard) and its JSON API (GET /api/escalations[/<id>]).

Open escalations with who asked and why, the preferred contact and the time left to the
first-contact due; each with its audit trail. Behind TIERUP_ADMIN_TOKEN: a login form
that sets a session flag, or `Authorization: Bearer <token>` for the API. With no token
set, every page here answers 404. Times on the pages are in the policy's default business
calendar zone (the zone its due times are worked out in); the API gives ISO 8601 UTC.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from integration.codec import action_to_json, escalation_to_json, transition_to_json
from integration.model import Platform, SetDue, State
from integration.policy import REASON_LABELS, Policy
from integration.store import (
    AuditEntry,
    EndedSessions,
    EscalationQueries,
    RateLimits,
    SqlEscalationStore,
    StoredEscalation,
)
from webhooks.app import WebConfig, web_config
from webhooks.escalate import (
    RATE_WINDOW,
    SESSION_LIFETIME,
    client_address,
    client_key,
    csrf_ok,
    csrf_token,
    message_page,
    page,
    retry_after,
    sessions_ready,
    storage_unavailable,
)

blueprint = Blueprint("dashboard", __name__, template_folder="templates")
api = Blueprint("api", __name__)
log = logging.getLogger("tierup.webhooks.dashboard")

# What the dashboard lists: everything a lead may still owe something on.
LISTED_STATES = (State.ESCALATED, State.CONFIRMED, State.RECLASSIFIED, State.LEVEL_2, State.NEEDS_INFO, State.DEFERRED)
LOGIN_LIMIT = 30  # login attempts per client IP per hour: a guessed token needs far more
RATIONALE_SHOWN = 140
LIST_LIMIT = 500  # escalations per page (the dashboard's one page; the API's largest)
MAX_OFFSET = 10_000_000


# --- who may look -----------------------------------------------------------------------------


def _admin_token() -> str | None:
    return web_config().settings.admin_token


def _fingerprint(token: str) -> str:
    # The session cookie is signed, not encrypted: it carries a keyed hash of the token, never
    # the token, and rotating TIERUP_ADMIN_TOKEN ends every session made with the old one.
    key = str(current_app.secret_key).encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def logged_in() -> bool:
    """Whether this session logged in with the current admin token and has not logged out since."""
    token, flag, sid = _admin_token(), session.get("admin"), session.get("sid")
    if not (token and isinstance(flag, str) and hmac.compare_digest(flag, _fingerprint(token))):
        return False
    # The cookie is signed, so a copy of it stays valid to its expiry: logging out is remembered here.
    return isinstance(sid, str) and not EndedSessions(web_config().inbox.db).ended(sid)


def bearer_ok() -> bool:
    """Whether the request carries `Authorization: Bearer <admin token>`."""
    token = _admin_token()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _switched_on() -> tuple[WebConfig, Policy, SqlEscalationStore] | None:
    config = web_config()
    if not config.settings.admin_token or config.policy is None or config.escalations is None:
        return None
    return config, config.policy, config.escalations


@blueprint.before_request
def _dashboard_gate() -> ResponseReturnValue | None:
    if _switched_on() is None:
        return message_page(404, "Not found", "There is no page here.")
    return sessions_ready()


@api.before_request
def _api_gate() -> ResponseReturnValue | None:
    if _switched_on() is None:
        return jsonify(error="not_found", detail="the dashboard API is off (TIERUP_ADMIN_TOKEN is not set)"), 404
    if current_app.secret_key and logged_in():
        return None
    if "Authorization" in request.headers:
        # A token guessed here counts against the login form's limit, per client: the same secret.
        config, _, _ = _config()
        limits, keys, now = RateLimits(config.inbox.db), [f"login-ip:{client_key()}"], config.clock()
        wait = limits.waiting(keys, limit=LOGIN_LIMIT, window=RATE_WINDOW, now=now)
        if wait is not None:
            return jsonify(error="rate_limited", detail="too many refused tokens; wait"), 429, retry_after(wait)
        if bearer_ok():
            return None
        log.warning("dashboard API token refused from %s", client_address())
        limits.acquire(keys, limit=LOGIN_LIMIT, window=RATE_WINDOW, now=now)
    return (
        jsonify(error="unauthorized", detail="send Authorization: Bearer <TIERUP_ADMIN_TOKEN>"),
        401,
        {"WWW-Authenticate": 'Bearer realm="tierup"'},
    )


def _config() -> tuple[WebConfig, Policy, SqlEscalationStore]:
    found = _switched_on()
    assert found is not None  # the gates above answered 404 otherwise
    return found


def _login_redirect() -> ResponseReturnValue:
    return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))


def _safe_next(target: str | None) -> str:
    """Back to the dashboard page the lead asked for; anything else goes to the overview.

    Only a dashboard path, and only printable characters without spaces: browsers drop tabs
    and line breaks from a URL, so "/<tab>/evil.example" would leave the site as "//evil.example",
    and a line break in a Location header is no header at all.
    """
    if target and _DASHBOARD_PATH.fullmatch(target):
        return target
    return url_for("dashboard.overview")


_DASHBOARD_PATH = re.compile(r"/dashboard(?:[/?][!-~]*)?", re.ASCII)


@blueprint.route("/dashboard/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The admin-token login form; a right token sets the session flag."""
    next_page = request.values.get("next")
    if request.method == "GET":
        if logged_in():
            return redirect(_safe_next(next_page))
        return page("login.html", next_page=next_page, error=None)
    if not csrf_ok():
        return message_page(400, "This form has expired",
                            "The login form has expired or did not come from this site. Please open it again.",
                            link=(url_for("dashboard.login"), "Open the login form"))  # fmt: skip
    config, _, _ = _config()
    wait = RateLimits(config.inbox.db).acquire(
        [f"login-ip:{client_key()}"], limit=LOGIN_LIMIT, window=RATE_WINDOW, now=config.clock()
    )
    if wait is not None:
        return message_page(429, "Too many attempts", "Too many login attempts. Please wait before trying again.",
                            headers=retry_after(wait))  # fmt: skip
    given = request.form.get("token", "")
    token = config.settings.admin_token or ""
    if not (given and hmac.compare_digest(given.encode(), token.encode())):
        log.warning("dashboard login refused from %s", client_address())
        return page("login.html", 401, next_page=next_page, error="That admin token is not right.")
    # A fresh session on login: nothing chosen before it (a planted cookie) carries over.
    session.clear()
    session["admin"] = _fingerprint(token)
    session["sid"] = secrets.token_urlsafe(24)
    session.permanent = True
    csrf_token()
    log.info("dashboard login from %s", client_address())
    return redirect(_safe_next(next_page))


@blueprint.post("/dashboard/logout")
def logout() -> ResponseReturnValue:
    """End the session, here and for any copy of its cookie."""
    if csrf_ok():
        sid = session.get("sid")
        if isinstance(sid, str):
            config = web_config()
            EndedSessions(config.inbox.db).end(sid, now=config.clock(), lifetime=SESSION_LIFETIME)
        session.clear()
    return redirect(url_for("dashboard.login"))


# --- what the pages show ------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    platform: Platform | None = None
    group: str | None = None
    state: State | None = None

    @property
    def states(self) -> tuple[State, ...]:
        return (self.state,) if self.state else LISTED_STATES


def _filters(args: Any, *, strict: bool) -> Filters:
    """Filters from the query string; on the pages an unknown value means "all", in the API a 400."""
    out: dict[str, Any] = {}
    for name, kind, allowed in (("platform", Platform, tuple(Platform)), ("state", State, LISTED_STATES)):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or value not in allowed:
            if strict:
                raise _BadFilter(f"{name}: unknown value {raw[:40]!r} (one of: {', '.join(a.value for a in allowed)})")
            continue
        out[name] = value
    group = (args.get("group") or "").strip()
    if group and (not group.isprintable() or len(group) > 255):
        # No group is named so (a NUL would reach PostgreSQL, which refuses it in text: not a storage failure).
        if strict:
            raise _BadFilter("group: not a group name")
        group = ""
    if group:
        out["group"] = group
    return Filters(**out)


class _BadFilter(ValueError):
    pass


def display_zone(policy: Policy) -> ZoneInfo:
    """The zone the pages show times in: the policy's default business calendar's."""
    return policy.calendar_for(None).zone


def local_time(at: datetime | None, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z") if at else ""


def span(delta: timedelta) -> str:
    """A duration as people say it: "2 d 3 h", "1 h 5 min", "4 min"."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


@dataclass(frozen=True)
class Row:
    """One escalation as the dashboard shows it."""

    id: int
    platform: str
    ticket_ref: str
    state: str
    level: int
    group: str
    asked_by: str
    reason: str
    rationale: str
    rationale_full: str
    contact: str
    due: str
    due_iso: str
    time_left: str
    overdue: bool


def _row(found: StoredEscalation, zone: ZoneInfo, now: datetime) -> Row:
    e = found.escalation
    person = e.requested_by
    asked = (person.name or person.email or person.id) if person else ""
    if person and person.name and person.email:
        asked = f"{person.name} <{person.email}>"
    rationale = e.rationale or ""
    short = rationale if len(rationale) <= RATIONALE_SHOWN else rationale[: RATIONALE_SHOWN - 1].rstrip() + "…"
    overdue = False
    if e.first_contact_due is None:
        left = ""
    elif e.contacted_at is not None:
        left = f"Contacted {local_time(e.contacted_at, zone)}"
    elif e.first_contact_due <= now:
        overdue = True
        left = f"Overdue by {span(now - e.first_contact_due)}"
    else:
        left = f"{span(e.first_contact_due - now)} left"
    return Row(
        id=found.id, platform=e.platform.value, ticket_ref=e.ticket_ref, state=e.state.value, level=e.level,
        group=e.group or "", asked_by=asked, reason=_reason(e.reason), rationale=short, rationale_full=rationale,
        contact=e.preferred_contact or "", due=local_time(e.first_contact_due, zone),
        due_iso=e.first_contact_due.isoformat() if e.first_contact_due else "", time_left=left, overdue=overdue,
    )  # fmt: skip


def _reason(reason: Any) -> str:
    if reason is None:
        return ""
    label = REASON_LABELS.get(reason, str(reason))
    return label[:1].upper() + label[1:]


def _summary(counts: Mapping[tuple[State, int], int]) -> list[tuple[str, int, int]]:
    """(state, level, how many) in the workflow's order: every escalation the filters match, listed or not."""
    order = {s: i for i, s in enumerate(LISTED_STATES)}
    return [(s.value, lv, n) for (s, lv), n in sorted(counts.items(), key=lambda t: (order.get(t[0][0], 99), t[0][1]))]


_LINE_BREAK = re.compile(r"<br\s*/?>|</p>", re.IGNORECASE)


def _action_lines(entry: AuditEntry, zone: ZoneInfo) -> list[tuple[str, str]]:
    """(kind, detail) for each action of a transition, bodies as plain text and due times local."""
    lines = []
    for action in entry.transition.actions:
        data = action_to_json(action)
        kind = str(data.pop("kind")).replace("_", " ")
        if "body" in data:
            # Reply and note bodies are HTML the policy rendered; shown as their text.
            detail = Markup(_LINE_BREAK.sub(" ", str(data["body"]))).striptags()
        elif isinstance(action, SetDue):
            detail = local_time(action.due, zone)
        else:
            detail = ", ".join(str(v) if not isinstance(v, list) else ", ".join(map(str, v)) for v in data.values())
        lines.append((kind, detail))
    return lines


@blueprint.get("/dashboard")
def overview() -> ResponseReturnValue:
    """Open escalations, soonest first-contact due first, with filters."""
    if not logged_in():
        return _login_redirect()
    config, policy, _ = _config()
    filters = _filters(request.args, strict=False)
    zone = display_zone(policy)
    now = config.clock()
    queries = EscalationQueries(config.inbox.db)
    found = queries.find(filters.states, platform=filters.platform, group=filters.group, limit=LIST_LIMIT)
    counts = queries.counts(filters.states, platform=filters.platform, group=filters.group)
    rows = [_row(f, zone, now) for f in found]
    groups = sorted({*policy.all_groups(), *queries.groups()})
    return page(
        "dashboard.html", rows=rows, summary=_summary(counts), total=sum(counts.values()), filters=filters,
        groups=groups, platforms=[p.value for p in Platform], states=[s.value for s in LISTED_STATES],
        zone=zone.key, now=local_time(now, zone),
    )  # fmt: skip


@blueprint.get("/dashboard/escalations/<int:escalation_id>")
def details(escalation_id: int) -> ResponseReturnValue:
    """One escalation with its audit trail."""
    if not logged_in():
        return _login_redirect()
    config, policy, store = _config()
    found = EscalationQueries(config.inbox.db).get(escalation_id)
    if found is None:
        return message_page(404, "Not found", "There is no escalation with that number.",
                            link=(url_for("dashboard.overview"), "Back to the dashboard"))  # fmt: skip
    zone = display_zone(policy)
    e = found.escalation
    history = store.history(e.platform, e.ticket_ref)
    trail = [
        {"at": local_time(h.transition.at, zone), "at_iso": h.transition.at.isoformat(), "t": h.transition,
         "dry_run": h.dry_run, "actions": _action_lines(h, zone)}
        for h in history
    ]  # fmt: skip
    return page(
        "escalation.html", row=_row(found, zone, config.clock()), escalation=e, trail=trail, zone=zone.key,
        requested_at=local_time(e.requested_at, zone),
    )  # fmt: skip


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    return message_page(exc.code or 500, exc.name, exc.description or exc.name)


blueprint.register_error_handler(SQLAlchemyError, storage_unavailable)


@blueprint.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the JSON API -------------------------------------------------------------------------------


def _item(found: StoredEscalation, now: datetime) -> dict[str, Any]:
    e = found.escalation
    due = e.first_contact_due
    return {
        "id": found.id,
        "url": url_for("api.escalation", escalation_id=found.id),
        **escalation_to_json(e, with_history=False),
        "updated_at": found.updated_at.isoformat(),
        "seconds_to_first_contact_due": int((due - now).total_seconds()) if due else None,
        "overdue": bool(due and due <= now and e.contacted_at is None),
    }


@api.get("/api/escalations")
def escalations() -> ResponseReturnValue:
    """Open escalations as JSON (filters: platform, group, state), a page at a time (offset, limit).

    `total` is how many match; `count` how many this page holds; `next` the URL of the next page, or null.
    """
    config, _, _ = _config()
    try:
        filters = _filters(request.args, strict=True)
        offset = _whole(request.args, "offset", 0, MAX_OFFSET)
        limit = _whole(request.args, "limit", LIST_LIMIT, LIST_LIMIT, low=1)
    except _BadFilter as exc:
        return jsonify(error="bad_filter", detail=str(exc)), 400
    now = config.clock()
    queries = EscalationQueries(config.inbox.db)
    found = queries.find(filters.states, platform=filters.platform, group=filters.group, limit=limit, offset=offset)
    total = sum(queries.counts(filters.states, platform=filters.platform, group=filters.group).values())
    following = offset + len(found)
    next_url = None
    if found and following < total:
        query: dict[str, Any] = {**request.args.to_dict(), "offset": str(following), "limit": str(limit)}
        next_url = url_for("api.escalations", **query)
    return _json_no_store(
        {"total": total, "count": len(found), "offset": offset, "next": next_url,
         "escalations": [_item(f, now) for f in found]}
    )  # fmt: skip


def _whole(args: Any, name: str, default: int, high: int, *, low: int = 0) -> int:
    """A whole-number query parameter between `low` and `high`; _BadFilter otherwise."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    if not (raw.isdigit() and raw.isascii() and len(raw) <= 9 and low <= int(raw) <= high):
        raise _BadFilter(f"{name}: a whole number from {low} to {high}, got {raw[:20]!r}")
    return int(raw)


@api.get("/api/escalations/<int:escalation_id>")
def escalation(escalation_id: int) -> ResponseReturnValue:
    """One escalation with its audit trail, as JSON."""
    config, _, store = _config()
    found = EscalationQueries(config.inbox.db).get(escalation_id)
    if found is None:
        return jsonify(error="not_found", detail=f"no escalation {escalation_id}"), 404
    e = found.escalation
    trail = store.history(e.platform, e.ticket_ref)
    history = [{**transition_to_json(h.transition), "dry_run": h.dry_run} for h in trail]
    return _json_no_store({**_item(found, config.clock()), "history": history})


def _json_no_store(data: dict[str, Any]) -> Response:
    response = jsonify(data)
    response.headers["Cache-Control"] = "no-store"
    return response
