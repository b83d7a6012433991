"""The character sets of GS1 keys and attributes, as ASCII, checked on the whole value.

Python's own tests are wrong for this: `str.isdigit()`, `int()` and `\\d` accept every
Unicode decimal digit (fullwidth U+FF10, Arabic-Indic U+0660, Devanagari U+0966, ...), and `$` in a
pattern also matches before a trailing newline. A look-alike key such as a fullwidth SSCC would then reach
the chain as a different item that renders like a real one. Every GS1 key, serial and number that
enters the system goes through these functions (GS1 General Specifications 7.11: numeric fields are
the digits 0-9; serials and lots are character set 82; CPIs and some others set 39).
"""

from __future__ import annotations

import re

# Figure 7.11-1: GS1 AI encodable character set 82 (no space, no '#', '$', '@', '[', '\\', ']', '^',
# '`', '{', '|', '}', '~').
CSET82_CHARS = r"!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z"
# Figure 7.11-2: character set 39 (CPI, AI 8010).
CSET39_CHARS = r"#\-/0-9A-Z"

_DIGITS = re.compile(r"[0-9]+")
_CSET82 = re.compile(f"[{CSET82_CHARS}]+")


def is_digits(value: object, length: int | None = None) -> bool:
    """True when `value` is a str of ASCII digits only (and exactly `length` of them, if given)."""
    if not isinstance(value, str) or _DIGITS.fullmatch(value) is None:
        return False
    return length is None or len(value) == length


def is_cset82(value: object, max_length: int = 20) -> bool:
    """True when `value` is 1..max_length characters of GS1 character set 82 (serial, lot, ...)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and _CSET82.fullmatch(value) is not None


def ascii_int(value: str) -> int:
    """`int(value)` for ASCII digits only: raises ValueError for signs, spaces, underscores and
    non-ASCII digits, which `int()` would all accept."""
    if not is_digits(value):
        raise ValueError(f"not a number of ASCII digits: {value!r}")
    return int(value)


def first_non_ascii(value: str) -> int | None:
    """Index of the first character outside printable ASCII, or None (for error messages)."""
    for i, char in enumerate(value):
        if not " " <= char <= "~":
            return i
    return None


def describe_char(value: str, index: int) -> str:
    """E.g. "U+FF10 at position 1" for the 0-based index."""
    return f"U+{ord(value[index]):04X} at position {index + 1}"
