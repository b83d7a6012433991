"""Look-alike identifiers: every Unicode decimal digit other than ASCII 0-9, and characters that
render like GS1 characters (fullwidth forms, Cyrillic and Greek letters, superscripts, invisible
spaces), are refused by every parser and request field that takes a GS1 key, serial or number.

The worst case is a look-alike digit of the SAME value: `int()` and `str.isdigit()` would read a
fullwidth SSCC (U+FF10 U+FF14 ...) as the real one, so the tests put in each digit's own value
from every other script. Exhaustive over Unicode's category Nd, plus hypothesis for positions and mixes.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from api.edge.identifiers import Gln, Gtin, Lot, Serial, Sscc, UnitRef
from api.epcis.records import gln_of, item_of, location_uri
from node.gs1 import epc
from node.gs1.charset import ascii_int, is_cset82, is_digits
from node.gs1.scan import GS, IdentifierError, parse
from node.ledger.identifiers import batch_id, container_key, gs1_check_digit, unit_key
from node.ledger.journey import JOURNEY_GTIN

SSCC = "040987650007000006"
GLN = "4012345000009"
SERIAL = "PK7Q2X9A"

# every non-ASCII character Unicode calls a decimal digit, by its value
NON_ASCII_DIGITS: dict[int, list[str]] = {}
for _cp in range(0x80, sys.maxunicode + 1):
    _ch = chr(_cp)
    if unicodedata.category(_ch) == "Nd":
        NON_ASCII_DIGITS.setdefault(unicodedata.digit(_ch), []).append(_ch)
ALL_NON_ASCII_DIGITS = [c for chars in NON_ASCII_DIGITS.values() for c in chars]
# characters that isdigit() takes though int() does not, and letters that render like ASCII ones
CONFUSABLES = [
    # superscripts, subscripts, circled (category No: isdigit() takes them, int() does not)
    *"\u00b2\u00b3\u00b9\u2070\u2080\u2460\u2474",
    # fullwidth A, B, a, hyphen, full stop, solidus
    *"\uff21\uff22\uff41\uff0d\uff0e\uff0f",
    # Cyrillic letters shaped like Latin ones
    *"\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0430\u0435\u043e\u0440\u0441\u0445",
    # Greek letters shaped like Latin ones
    *"\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a7\u03bf",
    # invisible or blank
    *"\u00a0\u2007\u200b\u200d\u2060\ufeff\u00ad",
    # dotless i, long s, Kelvin sign (they case-fold to ASCII)
    *"\u0131\u017f\u212a",
]


def test_the_digit_table_covers_unicode() -> None:
    assert len(ALL_NON_ASCII_DIGITS) > 600  # Unicode 15 has 680 Nd characters, 10 of them ASCII
    assert all(sorted(NON_ASCII_DIGITS) == list(range(10)) for _ in [0])
    assert all(c.isdigit() and not c.isascii() for c in ALL_NON_ASCII_DIGITS)


def lookalike(text: str, position: int, digits: dict[int, list[str]], pick: int = 0) -> str:
    """`text` with its digit at `position` replaced by a non-ASCII digit of the same value."""
    chars = digits[int(text[position])]
    return text[:position] + chars[pick % len(chars)] + text[position + 1 :]


def forms_of_pack(gtin: str, serial: str) -> list[str]:
    """The forms that carry every character given (an EPC URI leaves out the check digit)."""
    forms = [
        f"01{gtin}21{serial}",
        f"]d201{gtin}{GS}21{serial}",
        f"(01){gtin}(21){serial}",
        f"https://id.gs1.org/01/{gtin}/21/{serial}",
        f"urn:epc:id:sgtin:{gtin[1:8]}.{gtin[0]}{gtin[8:13]}.{serial}",
    ]
    return forms if gtin.isascii() or not gtin[:13].isascii() else forms[:-1]


def forms_of_case(sscc: str) -> list[str]:
    forms = [f"00{sscc}", f"(00){sscc}", f"https://id.gs1.org/00/{sscc}"]
    epc_uri = f"urn:epc:id:sscc:{sscc[1:8]}.{sscc[0]}{sscc[8:17]}"
    return [*forms, epc_uri] if sscc.isascii() or not sscc[:17].isascii() else forms


def refused(fn: Callable[[str], object], text: str) -> bool:
    try:
        fn(text)
    except (IdentifierError, ValueError, ValidationError, epc.EpcError):
        return True
    return False


class Body(BaseModel):
    gtin: Gtin | None = None
    sscc: Sscc | None = None
    gln: Gln | None = None
    serial: Serial | None = None
    lot: Lot | None = None
    unit: UnitRef | None = None


@pytest.mark.parametrize("value", sorted(set(range(10))))
def test_every_unicode_digit_of_the_same_value_is_refused_everywhere(value: int) -> None:
    """Each non-ASCII digit of value `value`, put where that digit stands in a real key."""
    gtin_pos = JOURNEY_GTIN.index(str(value)) if str(value) in JOURNEY_GTIN else None
    sscc_pos = SSCC.index(str(value)) if str(value) in SSCC else None
    gln_pos = GLN.index(str(value)) if str(value) in GLN else None
    for char in NON_ASCII_DIGITS[value]:
        if gtin_pos is not None:
            gtin = JOURNEY_GTIN[:gtin_pos] + char + JOURNEY_GTIN[gtin_pos + 1 :]
            for form in forms_of_pack(gtin, SERIAL):
                assert refused(parse, form), form
                assert refused(item_of, form), form
                assert refused(lambda f: Body(unit={"scan": f}), form), form
            assert refused(lambda g: Body(gtin=g), gtin)
            assert refused(lambda g: unit_key(g, SERIAL), gtin)
            assert refused(lambda g: batch_id(g, "L1"), gtin)
            assert refused(lambda g: Body(unit={"gtin": g, "serial": SERIAL}), gtin)
        if sscc_pos is not None:
            sscc = SSCC[:sscc_pos] + char + SSCC[sscc_pos + 1 :]
            for form in [sscc, *forms_of_case(sscc)]:
                assert refused(parse, form), form
                assert refused(item_of, form), form
                assert refused(lambda f: Body(sscc=f), form), form
            assert refused(container_key, sscc)
        if gln_pos is not None:
            gln = GLN[:gln_pos] + char + GLN[gln_pos + 1 :]
            assert refused(lambda g: Body(gln=g), gln)
            forms = [f"https://id.gs1.org/414/{gln}", f"https://id.gs1.org/417/{gln}"]
            if gln_pos < 12:  # the EPC URNs leave out the check digit
                forms += [
                    f"urn:epc:id:sgln:{gln[:7]}.{gln[7:12]}.0",
                    f"urn:epc:id:pgln:{gln[:7]}.{gln[7:12]}",
                ]
            for form in forms:
                assert gln_of(form) is None, form
                assert location_uri(form) == form  # kept as an opaque URI, never turned into a GLN
        serial = SERIAL[:3] + char + SERIAL[4:]
        assert refused(lambda s: Body(serial=s), serial)
        assert refused(lambda s: Body(lot=s), serial)
        assert refused(lambda s: unit_key(JOURNEY_GTIN, s), serial)
        assert refused(lambda s: parse(f"01{JOURNEY_GTIN}21{s}"), serial)
        assert refused(lambda s: parse(f"01{JOURNEY_GTIN}17{s}0101"), char * 2)  # expiry YYMMDD
        assert refused(ascii_int, char)
        assert refused(gs1_check_digit, "12" + char)
        assert not is_digits(char) and not is_cset82(char)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["gtin", "sscc", "gln", "serial", "lot"]),
    st.integers(min_value=0, max_value=20),
    st.sampled_from(ALL_NON_ASCII_DIGITS + CONFUSABLES),
)
def test_one_lookalike_anywhere_is_refused(field: str, position: int, char: str) -> None:
    real = {"gtin": JOURNEY_GTIN, "sscc": SSCC, "gln": GLN, "serial": SERIAL, "lot": "L2026-11"}[field]
    position %= len(real)
    tampered = real[:position] + char + real[position + 1 :]
    assert refused(lambda v: Body(**{field: v}), tampered)
    if field in ("gtin", "serial"):
        gtin, serial = (tampered, SERIAL) if field == "gtin" else (JOURNEY_GTIN, tampered)
        for form in forms_of_pack(gtin, serial):
            assert refused(parse, form), form
            assert refused(item_of, form), form
    if field == "sscc":
        for form in forms_of_case(tampered):
            assert refused(parse, form), form


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALL_NON_ASCII_DIGITS + list("0123456789")), min_size=1, max_size=20))
def test_digits_are_ascii_or_refused(text: str) -> None:
    assert is_digits(text) == text.isascii()
    assert refused(ascii_int, text) == (not text.isascii())


def test_a_trailing_newline_is_not_part_of_a_valid_value() -> None:
    """`$` in a pattern matches before a final newline; the character sets use fullmatch."""
    for bad in (SERIAL + "\n", "L1\n"):
        assert refused(lambda s: Body(serial=s), bad)
        assert refused(lambda s: Body(lot=s), bad)
        assert not is_cset82(bad)
    assert not is_digits(SSCC + "\n")
    assert refused(epc.parse_sscc, f"urn:epc:id:sscc:{SSCC[1:8]}.{SSCC[0]}{SSCC[8:17]}\n")
    assert refused(epc.parse_sgtin, "urn:epc:id:sgtin:9506000\n.013435.A")


def test_ascii_forms_still_parse() -> None:
    """The same checks keep every real form working (the regression guard for the fixes above)."""
    for form in forms_of_pack(JOURNEY_GTIN, SERIAL):
        ident = parse(form)
        assert (ident.gtin, ident.serial) == (JOURNEY_GTIN, SERIAL)
        assert item_of(form).key == "0x" + unit_key(JOURNEY_GTIN, SERIAL).hex()
    for form in forms_of_case(SSCC):
        assert parse(form).sscc == SSCC
    assert Body(sscc=f"(00){SSCC}").sscc == SSCC
    assert gln_of(f"https://id.gs1.org/414/{GLN}") == GLN
    assert parse(f"]d201{JOURNEY_GTIN}<GS>21{SERIAL}").serial == SERIAL  # GS substitutes still work
    assert parse(f"]d201{JOURNEY_GTIN}\u241d21{SERIAL}").serial == SERIAL
