"""Remote text is data: escape it before it reaches a terminal or a log line.

Every string a registry or an image supplies (error messages and codes, tags,
repository names, platform fields, annotations, URLs from headers) may hold
newlines, NULs, terminal escape sequences (colours, window titles, cursor
moves), bidirectional overrides or lone surrogates (which make ``print``
raise). ``escape`` turns every character Python does not call printable into
a visible escape as Python writes it (``\\n``, ``\\x1b``, ``\\u202e``), so one value stays on
one line and shows what it really holds; ``escape(s, limit)`` also shortens
it. JSON output needs none of this: ``json.dumps`` escapes control
characters and (with its default ``ensure_ascii``) lone surrogates itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # text is imported by every command: no import for a hint
    from collections.abc import Iterable

# Error messages quote remote text up to this many characters.
QUOTE_LIMIT = 200


def _escape_char(c: str) -> str:
    # Python's own escapes: \n, \t, \x1b, \u202e, \ud800 …
    return repr(c)[1:-1]


def escape(text: str, limit: int | None = None) -> str:
    """``text`` on one line with every non-printable character escaped
    (``str.isprintable``: controls, format characters such as bidi
    overrides, line and paragraph separators, unassigned and surrogate code
    points); with ``limit``, at most that many characters of it then ``…``."""
    if limit is not None and len(text) > limit:
        text = text[:limit]
        cut = True
    else:
        cut = False
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape_char(c) for c in text)
    return text + "…" if cut else text


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Remote text as it appears inside an error message: escaped, shortened."""
    return escape(text, limit)


def listing(items: Iterable[str], limit: int = 16, each: int = 64) -> str:
    """What an error says is there instead (an index's platforms, a layout's
    tags): each item escaped and shortened to ``each`` characters, sorted,
    deduplicated, the first ``limit`` then the count."""
    have = sorted({escape(item, each) for item in items})
    shown = ", ".join(have[:limit])
    return shown + (f", … ({len(have)} in all)" if len(have) > limit else "")
