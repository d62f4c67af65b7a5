"""The Jira SLA sweep (SH3, SD1): JQL `"<SLA>" = breached()` over JIRA_PROJECTS, as an integration.sweep.SweepSource.

For each SLA in JIRA_SLA_NAMES the source pages through

    project in (SUP) AND "Time to resolution" = breached() AND statusCategory != Done
    AND (labels is EMPTY OR labels not in ("sla_breached")) ORDER BY key ASC

(`labels not in (…)` alone never matches an issue without labels, hence the EMPTY; done issues
are left alone: a breach on a solved request is history, not something to escalate). The search
asks for the fields the decision needs and for the SLA fields themselves, so each issue becomes a
complete TicketSnapshot — region, lead group, priority, labels, status, and the SLAs with their
breach times — and no issue is read again before deciding. The SLA fields' ids differ per site:
one `GET field` finds them by type (`com.atlassian.servicedesk:sd-sla-field`) and name, once per
process (again on the next run while a configured name is missing).

No cursor is kept between runs: escalating adds the label the query excludes, so the query
itself moves forward (SweepPage.cursor is always None).

Paging while labels change — collect first, then hand over. Within one run the result set
shrinks as the sweep escalates: every issue handled drops out of the query. Offset paging
(Data Center's `startAt`) over a shrinking set skips as many issues as were handled before the
next page is asked for, and Cloud's `nextPageToken` promises nothing about a set that changes
under it. So this source reads every page of every SLA query before it yields the first one; no
write of ours happens while it pages, and each issue is seen exactly once (deduplicated across
SLAs, one breach per issue: the earliest). The alternative, re-querying the first page until it
comes back empty, needs no memory but never ends when an issue cannot take the label (a dry run,
a permanent 4xx, an issue a lock keeps busy): it would have to remember the keys it saw and then
page past them, which is offset paging again. The price of collecting first is memory (a small
snapshot per breached issue: about 1 KB, so 10,000 at once is ~10 MB) and snapshots a few seconds
old by the time an issue's turn comes — which the per-ticket lock and the policy absorb: a push
that escalated the issue meanwhile turns the sweep's breach into "already escalated; add the
sla_breached label" at most. Someone else's write between two of our pages (a push adding the
label) can still shift an offset page by one; the issue skipped that way is still breached and
unlabelled, so the next run finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime

from adapters.jira.gateway import SEARCH_PAGE, JiraGateway, slas_in_fields
from adapters.jira.parse import JiraPayloadError, Json, issue_snapshot, project_of
from integration.model import Platform, SlaTarget, TicketStatus
from integration.ports import PermanentError
from integration.sweep import Breach, SweepPage

log = logging.getLogger("tierup.jira.sweep")

SLA_FIELD_TYPE = "com.atlassian.servicedesk:sd-sla-field"
CURSOR_NAME = "jira-sla"  # never stored: the query moves forward on its own
# What issue_snapshot reads, besides the configured custom fields and the SLA fields.
SNAPSHOT_FIELDS = ("project", "status", "priority", "labels", "assignee", "reporter", "summary", "updated")


def jql_string(text: str) -> str:
    """`text` as a JQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def breached_jql(projects: tuple[str, ...], sla_name: str, breached_label: str) -> str:
    """The query for one SLA's breached, not yet labelled, not done issues, in a stable order."""
    return (
        f"project in ({', '.join(projects)}) AND {jql_string(sla_name)} = breached() AND statusCategory != Done"
        f" AND (labels is EMPTY OR labels not in ({jql_string(breached_label)})) ORDER BY key ASC"
    )


class JiraSweepSource:
    """The breached JSM SLAs of JIRA_PROJECTS, one search page per SweepPage, every page read before the first."""

    platform = Platform.JIRA
    name = CURSOR_NAME

    def __init__(self, gateway: JiraGateway, *, breached_label: str, page_size: int = SEARCH_PAGE) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.breached_label = breached_label
        self.page_size = page_size
        self._calls = 0
        self._sla_fields: dict[str, str] | None = None  # configured SLA name -> its field id

    def api_calls(self) -> int:
        """Requests this run of `pages` made so far (the field list, when read, and the search pages)."""
        return self._calls

    def sla_fields(self) -> dict[str, str]:
        """Each configured SLA name that exists on the site → its custom field id (`GET field`, once)."""
        wanted = self.settings.sla_names
        if self._sla_fields is not None and len(self._sla_fields) == len(wanted):
            return self._sla_fields
        self._calls += 1
        answer = self.gateway.call("list fields", "GET", self.gateway.api_url("field"))
        if not isinstance(answer, list):
            raise PermanentError("unexpected Jira answer to list fields: not a list")
        by_name: dict[str, str] = {}
        for entry in answer:
            schema = entry.get("schema") if isinstance(entry, Mapping) else None
            if isinstance(schema, Mapping) and schema.get("custom") == SLA_FIELD_TYPE:
                name, ident = entry.get("name"), entry.get("id")
                if isinstance(name, str) and isinstance(ident, str):
                    by_name.setdefault(" ".join(name.split()).lower(), ident)
        found = {name: by_name[name.lower()] for name in wanted if name.lower() in by_name}
        missing = [name for name in wanted if name not in found]
        if missing:
            log.warning("JIRA_SLA_NAMES: no JSM SLA field named %s on this site; not swept", ", ".join(missing))
        self._sla_fields = found
        return found

    def pages(self, cursor: str | None, since: datetime | None) -> Iterator[SweepPage]:
        """Every page of every SLA's query, read before the first is yielded (see the module's note).

        `cursor` is ignored (none is ever stored); `since` keeps only breaches from then on.
        """
        self._calls = 0  # run_sweep reports api_calls() as this run's reads
        by_name = self.sla_fields()
        if not by_name or not self.settings.projects:
            return
        custom = [f for f in (self.settings.fields.region, self.settings.fields.lead_group) if f]
        fields = [*SNAPSHOT_FIELDS, *custom, *by_name.values()]
        seen: set[str] = set()
        collected: list[SweepPage] = []
        for name in by_name:
            jql = breached_jql(self.settings.projects, name, self.breached_label)
            for issues in self.gateway.search_pages(jql, fields, self.page_size):
                self._calls += 1
                breaches = [b for b in (self._breach(raw, name, by_name, seen, since) for raw in issues) if b]
                collected.append(SweepPage(breaches=tuple(breaches), events_read=len(issues), cursor=None))
        yield from collected

    def _breach(
        self, raw: object, queried: str, by_name: Mapping[str, str], seen: set[str], since: datetime | None
    ) -> Breach | None:
        """The breach one search result stands for, or None (seen already, done, labelled, before `since`)."""
        try:
            issue = Json.root(raw, "issue")
            key = issue.text("key")
            if key in seen:
                return None  # breached on another SLA too: one breach per issue
            seen.add(key)
            now = self.gateway.clock()
            fields = issue.obj("fields")
            self.gateway.project_types.note(*project_of(issue))
            snapshot = issue_snapshot(issue, self.settings, slas_in_fields(fields, now))
        except JiraPayloadError as exc:
            # Jira's answer, not a sender's: the issue is still unlabelled, so the next run sees it again.
            log.warning("skipping a search result Tierup cannot read: %s", exc)
            return None
        if snapshot.status is TicketStatus.SOLVED or self.breached_label in snapshot.tags:
            return None  # the search index lags behind a change made since
        ids = {name.lower(): ident for name, ident in by_name.items()}
        breached = [t for t in snapshot.slas if t.breached and t.name.lower() in ids]
        first: SlaTarget | None = min(breached, key=lambda t: t.breach_at or now) if breached else None
        name = first.name if first else queried
        at = first.breach_at if first and first.breach_at else now
        if since is not None and at < since:
            return None
        millis = int(at.timestamp() * 1000)
        return Breach(
            ticket_ref=key,
            metric=name,
            breached_at=at,
            event_id=f"jira-sla:{key}:{ids.get(name.lower(), by_name[queried])}:{millis}",
            snapshot=snapshot,
        )
