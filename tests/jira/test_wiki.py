"""Our HTML comment bodies as Jira wiki markup: structure kept, customer text inert."""

from __future__ import annotations

from html import escape

import pytest

from adapters.jira.wiki import escape_wiki, html_to_wiki


def test_paragraphs_breaks_and_strong() -> None:
    html = "<p>Marked <strong>Escalated</strong>.</p>\n<p>Reason: x<br>Rationale: y</p>"
    assert html_to_wiki(html) == "Marked *Escalated*.\n\nReason: x\nRationale: y"


def test_lists_and_links() -> None:
    html = '<ul><li>one</li><li>two <a href="https://status.example.com/x">status</a></li></ul><p>end</p>'
    assert html_to_wiki(html) == "* one\n* two [status|https://status.example.com/x]\n\nend"


def test_links_that_are_not_web_or_mail_stay_text() -> None:
    assert html_to_wiki('<p><a href="javascript:alert(1)">click</a></p>') == "click"


@pytest.mark.parametrize(("customer", "shown"), [
    ("*bold* _it_ -strike- +under+", "\\*bold\\* \\_it\\_ \\-strike\\- \\+under\\+"),
    ("{html}<script>x</script>{html}", "\\{html\\}<script>x</script>\\{html\\}"),
    ("[~accountid:5c5f88] [link|http://evil.example]", "\\[\\~accountid:5c5f88\\] \\[link\\|http://evil.example\\]"),
    ("!https://evil.example/pixel.png!", "\\!https://evil.example/pixel.png\\!"),
    ("a \\\\ b", "a &#92;&#92; b"),
    ("^sup^ ??cite?? #1 |cell|", "\\^sup\\^ \\?\\?cite\\?\\? \\#1 \\|cell\\|"),
])  # fmt: skip
def test_customer_text_is_escaped(customer: str, shown: str) -> None:
    # Customer text reaches us HTML-escaped inside our template's markup.
    assert html_to_wiki(f"<p>Rationale: {escape(customer)}</p>") == f"Rationale: {shown}"


def test_block_markers_at_the_start_of_a_line_are_escaped() -> None:
    assert html_to_wiki("<p>h1. Big</p><p>x<br>bq. quote</p>") == "h1\\. Big\n\nx\nbq\\. quote"
    assert escape_wiki("h2. title\nnot h3. here") == "h2\\. title\nnot h3. here"


def test_whitespace_collapses_as_html_does() -> None:
    assert html_to_wiki("<p>\n  one\n   two  </p>\n\n<p> three</p>") == "one two\n\nthree"
