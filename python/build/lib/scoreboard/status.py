"""The status text of a request, bounded and printable, whoever sent the request."""

from __future__ import annotations

#: The most characters of a path a status holds.
MAX_PATH = 200


def request_line(method: str, path: str) -> str:
    """``METHOD PATH``: the path without its query string, cut at :data:`MAX_PATH`
    characters (ending in ``…``), control characters and backslashes escaped
    (``\\n``, ``\\x1b``, ``\\\\``), so a client's bytes cannot make it two lines."""
    path = path.split("?", 1)[0]
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH] + "…"
    return f"{_escape(method[:16])} {_escape(path)}"


def _escape(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            # A byte that was not UTF-8, kept by surrogateescape.
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(char)
    return "".join(out)
