"""Our comment bodies (HTML, customer text escaped) as Jira text (wiki markup), with customer text kept inert.

The one place HTML becomes Jira markup: every text run is unescaped from HTML and then
escaped for the wiki renderer, so a customer's `*`, `{html}`, `[~mention]` or `!image!`
shows as typed instead of formatting, linking, mentioning or embedding.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Characters the wiki renderer gives a meaning to; a backslash in front shows them as they are.
_SPECIAL = re.compile(r"[*_?\-+^~{}\[\]|!#\\]")
# Block markers only count at the start of a line ("h1. ", "bq. ").
_LINE_START_BLOCK = re.compile(r"^(h[1-6]|bq)\.", re.IGNORECASE)
_SPACE = re.compile(r"\s+")

_BLOCKS = frozenset({"p", "div", "ul", "ol", "table", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"})
_INLINE = {"strong": "*", "b": "*", "em": "_", "i": "_", "u": "+", "s": "-", "del": "-"}


def escape_wiki(text: str) -> str:
    """`text` with every wiki markup character escaped, so it renders literally (also at the start of a line)."""
    return "\n".join(_LINE_START_BLOCK.sub(r"\1\\.", line) for line in _escape_inline(text).split("\n"))


def _escape_inline(text: str) -> str:
    return _SPECIAL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group(0)
    # A backslash cannot be escaped with a backslash (`\\` is a line break): use its character reference.
    return "&#92;" if char == "\\" else "\\" + char


def html_to_wiki(html: str) -> str:
    """Jira wiki markup for one of our HTML comment bodies."""
    writer = _WikiWriter()
    writer.feed(html)
    writer.close()
    return writer.text()


class _WikiWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._blocks: list[str] = []
        self._line: list[str] = []
        self._links: list[str | None] = []
        self._list_depth = 0

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self._blocks)

    def _flush(self) -> None:
        text = "".join(self._line).strip(" ")
        text = "\n".join(part.strip(" ") for part in text.split("\n")).strip("\n")
        if text:
            self._blocks.append(text)
        self._line = []

    def _at_line_start(self) -> bool:
        joined = "".join(self._line)
        return not joined.strip(" ") or joined.endswith("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._flush()
            if tag in ("ul", "ol"):
                self._list_depth += 1
        elif tag == "li":
            if not self._at_line_start():
                self._line.append("\n")
            self._line.append("*" * max(self._list_depth, 1) + " ")
        elif tag == "br":
            self._line.append("\n")
        elif tag in _INLINE:
            self._line.append(_INLINE[tag])
        elif tag == "a":
            href = dict(attrs).get("href")
            # Only web and mail links become links; anything else stays plain text.
            usable = href if href and re.match(r"^(https?://|mailto:)[^\s|\]\[]+$", href) else None
            self._links.append(usable)
            if usable:
                self._line.append("[")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._flush()
            if tag in ("ul", "ol"):
                self._list_depth = max(self._list_depth - 1, 0)
        elif tag in _INLINE:
            self._line.append(_INLINE[tag])
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href:
                self._line.append(f"|{href}]")

    def handle_data(self, data: str) -> None:
        text = _SPACE.sub(" ", data)
        if not text.strip():
            if self._line and not self._at_line_start():
                self._line.append(" ")
            return
        if self._at_line_start():
            self._line.append(escape_wiki(text.lstrip(" ")))
        else:
            # Mid-line a block marker means nothing; escape the markup characters only.
            self._line.append(_escape_inline(text))
