"""The status text of a request, bounded and printable, whoever sent the request."""

from __future__ import annotations

import re
from typing import Match

#: The most characters of a path a status holds.
MAX_PATH = 200


def request_line(method: str, path: str) -> str:
    """``METHOD PATH``: the path without its query string, cut at :data:`MAX_PATH`
    characters (ending in ``…``), control characters, invisible layout characters
    (``\\u2028``, bidirectional marks) and backslashes escaped (``\\n``, ``\\x1b``,
    ``\\\\``), so a client's bytes cannot make it two lines or reorder it."""
    path = path.partition("?")[0]
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH] + "…"
    method = method[:16]
    # Most requests: printable ASCII without a backslash, nothing to escape; three
    # calls in C say so, where the regular expression engine costs more in a worker
    # whose caches the application has just cooled.
    if (
        path.isascii()
        and path.isprintable()
        and "\\" not in path
        and method.isascii()
        and method.isprintable()
        and "\\" not in method
    ):
        return f"{method} {path}"
    return f"{_escape(method)} {_escape(path)}"


# What _escape rewrites: backslash, C0 and C1 controls, DEL, lone surrogates (those by
# which surrogateescape keeps bytes that were not UTF-8, and any other, which no
# encoding would take), and the invisible characters that move or split what a reader
# shows: line and paragraph separators, bidirectional marks, embeddings and isolates,
# zero-width characters, the soft hyphen and the byte-order mark. Most paths hold none,
# and one search in C says so.
_UNPRINTABLE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def _escaped(match: Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8, kept by surrogateescape.
        code -= 0xDC00
    elif code > 0xFF:
        return f"\\u{code:04x}"
    return f"\\x{code:02x}"


def _escape(text: str) -> str:
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(_escaped, text)
