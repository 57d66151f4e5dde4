"""Text from users or their data, shown as literal text in markdown the Prefect UI renders.

The Prefect UI renders deployment descriptions and markdown artifacts with their HTML and
links live (V1 draws a raw `<img>` and a `javascript:` link of a description), and its
operators read every tenant's text there. So anything a user wrote or a document carried goes
through `literal_markdown` (or its one-line form `escape_markdown`) on its way in.
"""

from __future__ import annotations

import html
import re

_PUNCTUATION = r"\\`*_{}\[\]()#+!|<>~"
_ESCAPE = re.compile(f"([{_PUNCTUATION}])")
_UNESCAPE = re.compile(f"\\\\([{_PUNCTUATION}])")


def literal_markdown(text: str) -> str:
    """Markdown that shows `text` as it is: HTML-escaped, and markdown's punctuation backslash-escaped,
    so it opens no link, image, code, emphasis, table cell or tag. `from_literal_markdown` undoes it."""
    return _ESCAPE.sub(r"\\\1", html.escape(text, quote=False))


def from_literal_markdown(markdown: str) -> str:
    """The text `literal_markdown` was given."""
    return html.unescape(_UNESCAPE.sub(r"\1", markdown))


def escape_markdown(text: str) -> str:
    """User text as literal markdown on one line (a table cell, a title)."""
    return literal_markdown(" ".join(str(text).split()))
