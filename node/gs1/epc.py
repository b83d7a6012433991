"""EPC URIs (GS1 Tag Data Standard 2.x, pure identity and class URIs) for SGTIN, SSCC and LGTIN.

Hand-written: biip reads barcodes and Digital Links but not EPC URIs. An EPC URI splits the GTIN or
SSCC at the end of the GS1 company prefix, whose length is not in the identifier itself: callers pass
it (product master data, or biip's GS1 prefix table where that is unambiguous).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from node.ledger.identifiers import with_check_digit

SGTIN = "urn:epc:id:sgtin:"
SSCC = "urn:epc:id:sscc:"
LGTIN = "urn:epc:class:lgtin:"
# TDS 2.0 section 6.3.3 / table A-1: these must be percent-encoded in the serial or lot part.
_ESCAPE = set('"%&/<>?')
_PART = re.compile(r"[0-9]+")  # used with fullmatch: `$` would also take a trailing newline


class EpcError(ValueError):
    """An EPC URI that is malformed or does not fit the rules (message says which part)."""


def escape(value: str) -> str:
    return "".join(quote(c, safe="") if c in _ESCAPE else c for c in value)


def _split_gtin(gtin14: str, prefix_length: int) -> tuple[str, str]:
    if not 6 <= prefix_length <= 12:
        raise EpcError(f"a GS1 company prefix has 6 to 12 digits, not {prefix_length}")
    return gtin14[1 : 1 + prefix_length], gtin14[0] + gtin14[1 + prefix_length : 13]


def sgtin_uri(gtin14: str, serial: str, prefix_length: int) -> str:
    company, item = _split_gtin(gtin14, prefix_length)
    return f"{SGTIN}{company}.{item}.{escape(serial)}"


def lgtin_uri(gtin14: str, lot: str, prefix_length: int) -> str:
    company, item = _split_gtin(gtin14, prefix_length)
    return f"{LGTIN}{company}.{item}.{escape(lot)}"


def sscc_uri(sscc18: str, prefix_length: int) -> str:
    if not 6 <= prefix_length <= 12:
        raise EpcError(f"a GS1 company prefix has 6 to 12 digits, not {prefix_length}")
    return f"{SSCC}{sscc18[1 : 1 + prefix_length]}.{sscc18[0]}{sscc18[1 + prefix_length : 17]}"


def _gtin_parts(uri: str, scheme: str) -> tuple[str, str, int]:
    """(GTIN-14, decoded last part, company prefix length) of an SGTIN or LGTIN URI."""
    body = uri[len(scheme) :]
    parts = body.split(".", 2)
    if len(parts) != 3:
        raise EpcError(f"{scheme}<company prefix>.<indicator and item reference>.<value> expected")
    company, item, last = parts
    if not _PART.fullmatch(company) or not _PART.fullmatch(item):
        raise EpcError("the company prefix and item reference are digits")
    if len(company) + len(item) != 13:
        raise EpcError(
            f"company prefix and indicator+item reference must have 13 digits together, "
            f"got {len(company)} + {len(item)}"
        )
    if not 6 <= len(company) <= 12:
        raise EpcError(f"a GS1 company prefix has 6 to 12 digits, not {len(company)}")
    if "%" in last and not re.fullmatch(r"(?:[^%]|%[0-9A-Fa-f]{2})*", last):
        raise EpcError("a broken %-escape in the serial or lot")
    gtin = with_check_digit(item[0] + company + item[1:])
    return gtin, unquote(last), len(company)


def parse_sgtin(uri: str) -> tuple[str, str, int]:
    """(GTIN-14, serial, company prefix length)."""
    return _gtin_parts(uri, SGTIN)


def parse_lgtin(uri: str) -> tuple[str, str, int]:
    """(GTIN-14, lot, company prefix length)."""
    return _gtin_parts(uri, LGTIN)


def parse_sscc(uri: str) -> tuple[str, int]:
    """(SSCC-18, company prefix length)."""
    body = uri[len(SSCC) :]
    parts = body.split(".")
    if len(parts) != 2 or not all(_PART.fullmatch(p) for p in parts):
        raise EpcError(f"{SSCC}<company prefix>.<extension digit and serial reference> expected, digits only")
    company, rest = parts
    if len(company) + len(rest) != 17:
        raise EpcError(
            f"company prefix and serial reference have 17 digits together, not {len(company) + len(rest)}"
        )
    if not 6 <= len(company) <= 12:
        raise EpcError(f"a GS1 company prefix has 6 to 12 digits, not {len(company)}")
    return with_check_digit(rest[0] + company + rest[1:]), len(company)
