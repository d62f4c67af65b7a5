"""Reading an escalation email or form: the existing ticket it names (SD8), its reason and preferred contact."""

from __future__ import annotations

import re
from collections.abc import Collection

from integration.model import Platform, Reason
from integration.policy import REASON_LABELS

# Zendesk numbers: "#12345", "ticket 12345", "ticket #12345", "request no. 12345", "case: 12345".
# A bare "#" takes two digits or more ("our #1 priority" names no ticket), and a number followed
# by a unit of time is a count ("a ticket 3 days ago", "in case 2 weeks pass").
_NUMBER = re.compile(
    r"(?:#\s?(\d{2,12})\b)|(?:\b(?:ticket|request|case|incident)(?:\s+(?:no\.?|number|num\.?|id))?\s*[:#]?\s*#?(\d{1,12})\b)"
    r"(?!\s*(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)\b)",
    re.IGNORECASE | re.ASCII,  # ASCII digits: "#٣٤٥" names no ticket
)
# A "#" number after one of these words is that thing's number, not a ticket's.
_NOT_A_TICKET = re.compile(
    r"\b(?:order|invoice|inv|po|purchase order|suite|ste|apt|unit|room|tel|phone|fax|ext|color|colour|item|sku)"
    r"[.:]?\s*(?:no\.?|number)?[.:]?\s*$",
    re.IGNORECASE,
)
# Jira keys: "ABC-123" (project keys start with a letter, 2-10 characters).
_KEY = re.compile(r"\b([A-Z][A-Z0-9_]{1,9}-\d{1,9})\b", re.ASCII)


def find_ticket_reference(
    platform: Platform, *texts: str | None, exclude: str | None = None, projects: Collection[str] = ()
) -> str | None:
    """The first ticket number (Zendesk) or issue key (Jira) in `texts`, subject first.

    `exclude` is the request's own ticket, which an email reply quotes back. `projects` (Jira),
    when given, are the only projects a key may belong to: "UTF-8" or "ISO-9001" in a body is
    no issue key.
    """
    for text in texts:
        if not text:
            continue
        if platform is Platform.JIRA:
            for match in _KEY.finditer(text):
                key = match.group(1)
                if key != exclude and (not projects or key.rsplit("-", 1)[0] in projects):
                    return key
        else:
            for match in _NUMBER.finditer(text):
                number = match.group(1) or match.group(2)
                if match.group(1) and _NOT_A_TICKET.search(text[max(0, match.start() - 24) : match.start()]):
                    continue  # "Order #12345", "Suite #200", "Tel: #5551234"
                number = str(int(number)) if number else None  # "#004016" is ticket 4016
                if number and number != exclude:
                    return number
    return None


# --- what else an escalation email says (SD3, SD4): the reason and the preferred contact ----------

# "Reason: wrong resolution", "Escalation reason - SLA violation", "Preferred contact: phone 0161 ..."
# A label set in bold or italics ("*Reason:* ...", Jira's wiki markup of an email; "**Reason**: ...")
# may close its markers on either side of the colon.
_REASON_LINE = re.compile(
    r"^[ \t>*_]*(?:escalation[ \t]+)?reason[*_]*[ \t]*[:\-][*_]*[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.M
)
_CONTACT_LINE = re.compile(
    r"^[ \t>*_]*(?:(?:my|our)[ \t]+)?preferred[ \t]+(?:method[ \t]+of[ \t]+)?contact(?:[ \t]+method)?[*_]*"
    r"[ \t]*(?:[:\-]|is\b)[*_]*[ \t]*(.+?)[ \t]*$",
    re.IGNORECASE | re.M,
)
# Words that name a reason when no line says it, most specific first. Business urgency is never
# guessed: it is not an escalation (LR8), so only an explicit "Reason:" line asks for it.
_REASON_WORDS: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    (Reason.AGENT_CONDUCT, re.compile(r"\b(?:rude|unprofessional|impolite|disrespectful|conduct|attitude)\b", re.I)),
    (
        Reason.PRIORITY_MISCLASSIFIED,
        re.compile(
            r"\b(?:mis-?classified|misclassification|wrong priority|priority (?:is |was )?(?:too )?low)\b", re.I
        ),
    ),
    (
        Reason.WRONG_RESOLUTION,
        re.compile(
            r"\b(?:not (?:fixed|resolved|solved)|still (?:broken|failing|not working|happening)|"
            r"(?:did|does|do)(?:n't| not) (?:work|help|fix)|wrong (?:resolution|fix|solution|answer)|"
            r"closed without|reopen(?:ed)?)\b",
            re.I,
        ),
    ),
    (
        Reason.SLA_VIOLATION,
        re.compile(
            r"\b(?:sla|service level|response time|no (?:reply|response|answer|update)s?|"
            r"(?:nobody|no one|no-one) (?:has )?(?:answered|replied|responded|got back)|"
            r"not (?:been )?(?:answered|replied to|responded to)|(?:still |been )waiting)\b",
            re.I,
        ),
    ),
)
_MAX_CONTACT = 200


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def reason_named(text: str) -> Reason | None:
    """A Reason from its value (`sla_violation`), its label (`SLA violation`) or the label's first words."""
    wanted = _normal(text)
    for reason in Reason:
        label = _normal(REASON_LABELS.get(reason, ""))
        if wanted in (reason.value, label) or (
            len(wanted) >= 3 and (label.startswith(wanted) or reason.value.startswith(wanted))
        ):
            return reason
    return None


def find_reason(*texts: str | None) -> Reason | None:
    """The escalation reason an email gives: a `Reason:` line first, else the words it uses (subject first).

    None when nothing says it: the policy then asks the requester why (on the escalated ticket).
    """
    for text in texts:
        for line in _REASON_LINE.finditer(text or ""):
            value = line.group(1)
            # "Reason: business urgency - our clinic reopens Monday": the name, then why.
            if found := reason_named(value) or reason_named(_LABEL_END.split(value, 1)[0]):
                return found
    for reason, words in _REASON_WORDS:
        if any(_says(text, words) for text in texts if text):
            return reason
    return None


# Where a reason's name ends on a `Reason:` line that goes on to explain it.
_LABEL_END = re.compile(r"\s[-\u2013\u2014]\s|[,;:(.]")
# A word the sender says it is not about: "not about the response time", "not rude at all".
_NEGATED = re.compile(r"\b(?:not|no|isn't|wasn't|aren't|never|nothing to do with)\b[\w\s,']{0,24}$", re.I)


def _says(text: str, words: re.Pattern[str]) -> bool:
    """Whether `text` uses one of `words` other than to say it is not so."""
    return any(not _NEGATED.search(text[max(0, m.start() - 40) : m.start()]) for m in words.finditer(text))


def find_preferred_contact(*texts: str | None) -> str | None:
    """SD4: the preferred method of contact an email's body gives on a `Preferred contact:` line."""
    for text in texts:
        match = _CONTACT_LINE.search(text or "")
        if match and match.group(1).strip():
            return match.group(1).strip()[:_MAX_CONTACT]
    return None


# --- an email's own words, without what comes along (SD3, SD4) ------------------------------------

MAX_RATIONALE = 2000  # as the form's field (integration.forms)

# Where an email's own text ends: a signature's "-- ", the quoted message a reply carries, a
# forwarded or original message, Zendesk's reply marker.
_EMAIL_TAIL = re.compile(
    r"^(?:--\s*$|On\s.{1,200}\swrote:\s*$|-{2,}\s*(?:Original|Forwarded)\s+Message\s*-{2,}|##-\s.*\s-##|>)",
    re.IGNORECASE | re.MULTILINE,
)


def email_rationale(text: str | None) -> str | None:
    """The rationale an email gives: its own words, without signature or quoted history, at most 2,000 characters.

    The whole thread went into the internal note before: a reply quoting the history, a
    disclaimer and a signature made a note of ten thousand characters.
    """
    if not text:
        return text
    tail = _EMAIL_TAIL.search(text)
    own = (text[: tail.start()] if tail and tail.start() > 0 else text).strip()
    if len(own) > MAX_RATIONALE:
        own = own[: MAX_RATIONALE - 1].rstrip() + "…"
    return own or None
