"""Pack and case identifiers in every form: property tests (any valid GTIN and serial round-trips
through every form) and strict refusals that name the wrong part."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.gs1.scan import GS, IdentifierError, parse
from node.ledger.identifiers import with_check_digit

CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

gtins = st.text("0123456789", min_size=13, max_size=13).map(with_check_digit)
ssccs = st.text("0123456789", min_size=17, max_size=17).map(with_check_digit)
serials = st.text(CSET82, min_size=1, max_size=20)
prefix_lengths = st.integers(min_value=6, max_value=12)
hosts = st.sampled_from(["id.gs1.org", "brand.example", "qr.pharma.example.com"])
path_prefixes = st.sampled_from([None, "p", "a/b/c"])


@settings(max_examples=300, deadline=None)
@given(gtin=gtins, serial=serials, length=prefix_lengths, host=hosts, prefix=path_prefixes)
def test_any_valid_sgtin_round_trips_through_every_form(
    gtin: str, serial: str, length: int, host: str, prefix: str | None
) -> None:
    canonical = parse(f"(01){gtin}(21){serial}" if "(" not in serial else f"01{gtin}21{serial}")
    assert (canonical.kind, canonical.gtin, canonical.serial) == ("sgtin", gtin, serial)
    forms = [
        canonical.element_string(),
        "]d2" + canonical.element_string(),  # DataMatrix symbology identifier, as scanners send it
        canonical.digital_link(host, prefix),
        canonical.epc_uri(length),
    ]
    if "(" not in serial and ")" not in serial:  # brackets in the data make the bracketed form ambiguous
        forms.append(canonical.hri())
    for form in forms:
        back = parse(form)
        assert (back.kind, back.gtin, back.serial) == ("sgtin", gtin, serial), form
    assert parse(canonical.epc_uri(length)).prefix_length == length


@settings(max_examples=200, deadline=None)
@given(sscc=ssccs, length=prefix_lengths, host=hosts)
def test_any_valid_sscc_round_trips(sscc: str, length: int, host: str) -> None:
    canonical = parse(f"00{sscc}")
    for form in (
        canonical.element_string(),
        canonical.hri(),
        canonical.digital_link(host),
        canonical.epc_uri(length),
    ):
        assert parse(form).sscc == sscc, form


@settings(max_examples=100, deadline=None)
@given(gtin=gtins, lot=serials.filter(lambda s: "(" not in s and ")" not in s), length=prefix_lengths)
def test_lots_round_trip_as_lgtin(gtin: str, lot: str, length: int) -> None:
    canonical = parse(f"(01){gtin}(10){lot}")
    assert canonical.kind == "lgtin"
    for form in (
        canonical.element_string(),
        canonical.hri(),
        canonical.digital_link(),
        canonical.epc_uri(length),
    ):
        back = parse(form)
        assert (back.gtin, back.lot) == (gtin, lot), form


def test_a_real_datamatrix_scan() -> None:
    scan = f"]d2010950600013435217280200{GS}10L2026-11{GS}21PK7Q2X9A"
    pack = parse(scan)
    assert (pack.gtin, pack.serial, pack.lot) == ("09506000134352", "PK7Q2X9A", "L2026-11")
    assert pack.expiry == dt.date(2028, 2, 29)  # day 00: the last day of the month
    assert pack.element_string() == scan.removeprefix("]d2")  # AI 17 keeps its 00 day
    assert pack.digital_link() == "https://id.gs1.org/01/09506000134352/10/L2026-11/21/PK7Q2X9A?17=280200"


@pytest.mark.parametrize("separator", [GS, "<GS>", "<gs>", "{GS}", "[GS]", "\u241d", "^]", "~1", "\\x1d"])
def test_keyboard_wedge_separator_substitutes(separator: str) -> None:
    """Scanners typing into a browser field cannot send ASCII 29: they send one of these instead."""
    pack = parse(f"]d201095060001343521728020010L2026-11{separator}21PK7Q2X9A")
    assert (pack.lot, pack.serial) == ("L2026-11", "PK7Q2X9A")


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("https://example.com/gtin/09506000134352/ser/ABC?exp=281231", None),  # Digital Link 1.1 keys
        ("https://example.com/shop/01/09506000134352/21/ABC", None),  # any host and path prefix
        ("urn:epc:id:sgtin:9506000.013435.ABC", None),
        ("010950600013435221ABC", None),
        ("01 09506000134352 21 ABC".replace(" ", ""), None),
    ],
)
def test_accepted_forms(text: str, part: str | None) -> None:
    identifier = parse(text)
    assert identifier.gtin == "09506000134352" and identifier.serial == "ABC"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("0109506000134353211", "GTIN check digit"),
        ("(01)09506000134352(21)A(21)B", "AI 21"),
        ("(00)040987650007000007", "SSCC check digit"),
        ("(01)09506000134352(17)281332", "element string"),  # month 13
        ("(01)09506000134352(17)280230", "element string"),  # 30 February
        ("(01)09506000134352(21)" + "x" * 21, "element string"),  # serial over 20 characters
        ("(01)09506000134352(99)ABC(21)A", None),
        ("urn:epc:id:sgtin:95060.00134352.1", "EPC URI"),  # 5-digit company prefix
        ("urn:epc:id:sgtin:0950600.01343.1", "EPC URI"),  # 12 digits, not 13
        ("urn:epc:id:sgln:0950600.01343.0", "EPC URI"),
        ("https://example.com/no/identifier/here", "Digital Link"),
        ("(00)040987650007000006(21)X", "form"),
        ("(10)L1", "form"),
        ("", "form"),
    ],
)
def test_bad_identifiers_name_the_part(text: str, part: str | None) -> None:
    if part is None:  # AI 99 is company-internal information: allowed, kept as an attribute
        assert parse(text).attributes["99"] == "ABC"
        return
    with pytest.raises(IdentifierError) as caught:
        parse(text)
    assert caught.value.part == part, str(caught.value)


def test_epc_uri_needs_the_company_prefix_length() -> None:
    pack = parse("(01)04012345000016(21)X")  # a German prefix: biip cannot tell the length
    if pack.prefix_length is None:
        with pytest.raises(IdentifierError, match="master data"):
            pack.epc_uri()
    assert pack.epc_uri(7) == "urn:epc:id:sgtin:4012345.000001.X"
    assert parse("(01)04012345000016(21)X", prefix_lengths={"04012345000016": 9}).prefix_length == 9
