"""Finding the existing ticket an escalation email or form names (SD8)."""

from __future__ import annotations

import re

from integration.model import Platform

# Zendesk numbers: "#12345", "ticket 12345", "ticket #12345", "request no. 12345", "case: 12345".
_NUMBER = re.compile(
    r"(?:#\s?(\d{1,12})\b)|(?:\b(?:ticket|request|case|incident)(?:\s+(?:no\.?|number|num\.?|id))?\s*[:#]?\s*#?(\d{1,12})\b)",
    re.IGNORECASE,
)
# Jira keys: "ABC-123" (project keys start with a letter, 2-10 characters).
_KEY = re.compile(r"\b([A-Z][A-Z0-9_]{1,9}-\d{1,9})\b")


def find_ticket_reference(platform: Platform, *texts: str | None, exclude: str | None = None) -> str | None:
    """The first ticket number (Zendesk) or issue key (Jira) in `texts`, subject first.

    `exclude` is the request's own ticket, which an email reply quotes back.
    """
    for text in texts:
        if not text:
            continue
        if platform is Platform.JIRA:
            for match in _KEY.finditer(text):
                if match.group(1) != exclude:
                    return match.group(1)
        else:
            for match in _NUMBER.finditer(text):
                number = match.group(1) or match.group(2)
                if number and number != exclude:
                    return number
    return None
