"""Text from a server or a database, made safe for a terminal.

A job's name, a task's name, an error message: any of it may hold control characters (an
escape sequence that rewrites the screen, a carriage return that hides what came before) or
bidirectional overrides that make text read differently from what it is. Printed for people,
each such character is shown as its Python escape (``\\x1b``, ``\\u202e``); JSON output is
escaped by the JSON encoder already. Standard library only: the client side uses it too.
"""

from __future__ import annotations

import unicodedata

__all__ = ["safe", "safe_lines"]

# Characters of category Cf that change how text around them reads (bidi embeddings,
# overrides and isolates); other Cf characters (zero-width joiners in emoji) are harmless.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """``str(text)`` with every control character and bidi override escaped."""
    s = str(text)
    if s.isprintable() and not _BIDI.intersection(s):
        return s
    return "".join(
        _escaped(ch) if unicodedata.category(ch) == "Cc" or ch in _BIDI else ch for ch in s
    )


def safe_lines(text: str) -> str:
    """Several lines, each made :func:`safe` (the line breaks themselves kept)."""
    return "\n".join(safe(line) for line in text.split("\n"))
