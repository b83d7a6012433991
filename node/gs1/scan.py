"""Read a pack, lot or case identifier in any form it arrives in, validate it strictly, and turn it
into one canonical value (GTIN-14 + serial, GTIN-14 + lot, or SSCC-18) with every other form.

Forms: raw scanner output (element string with GS / ASCII 29 separators, optional symbology
identifier such as `]d2`), bracketed element strings `(01)...(21)...`, GS1 Digital Link URIs (any
host and path prefix; numeric or the older convenience keys such as `/gtin/`, `/ser/`; query
attributes), and EPC URIs (`urn:epc:id:sgtin:`, `urn:epc:id:sscc:`, `urn:epc:class:lgtin:`).
Barcode data is biip's job; duplicated AIs, date rules and EPC URIs are ours.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementStrings
from biip.gs1_messages import GS1Message

from node.gs1 import epc
from node.gs1.charset import describe_char, first_non_ascii, is_cset82, is_digits
from node.ledger.identifiers import gs1_check_digit

GS = "\x1d"
_SYMBOLOGY = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
# What keyboard-wedge scanners and label software send in place of GS (ASCII 29): the printable
# <GS> / {GS} / [GS] spellings, the Unicode control picture, the caret and tilde notations, and the
# escape written out. None of their characters other than <GS>'s can occur in a GS1 value (CSET 82).
_GS_SUBSTITUTES = re.compile(r"<GS>|\{GS\}|\[GS\]|\u241d|\^\]|~1|\\x1d", re.IGNORECASE)
# GS1 Digital Link 1.1 convenience keys, still produced by some printers and resolvers
_CONVENIENCE = {"gtin": "01", "cpv": "22", "lot": "10", "ser": "21", "sscc": "00", "gln": "414", "exp": "17"}


class IdentifierError(ValueError):
    """A bad identifier; `part` names what is wrong (e.g. "AI 21", "GTIN check digit", "form")."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True)
class Identifier:
    """The canonical identifier: kind is `sgtin` (a pack), `lgtin` (a lot of a GTIN), `gtin` (a
    product) or `sscc` (a logistic unit). Other AIs that came with it are kept in `attributes`."""

    kind: str
    gtin: str | None = None
    serial: str | None = None
    lot: str | None = None
    expiry: dt.date | None = None  # AI 17 as a date (day 00 = end of month); the text is in attributes
    sscc: str | None = None
    prefix_length: int | None = None  # GS1 company prefix length, when the form carried or implied it
    attributes: dict[str, str] = field(default_factory=dict)

    def element_string(self) -> str:
        """The element string a DataMatrix encodes (FNC1 as GS between variable-length fields)."""
        return GS.join(_fixed_first(self._pairs()))

    def hri(self) -> str:
        return "".join(f"({ai}){value}" for ai, value in self._pairs())

    def digital_link(self, domain: str = "id.gs1.org", prefix: str | None = None) -> str:
        """The GS1 Digital Link URI (https, on `domain`, optionally under a path `prefix`)."""
        uri = GS1DigitalLinkURI.from_element_strings(self._element_strings())
        host = domain.removeprefix("https://").removeprefix("http://").rstrip("/")
        return uri.as_uri(domain=host, prefix=prefix)

    def epc_uri(self, prefix_length: int | None = None) -> str:
        length = prefix_length or self.prefix_length
        if length is None:
            raise IdentifierError(
                "company prefix", "its length is unknown: set it in the product master data"
            )
        if self.kind == "sgtin":
            assert self.gtin and self.serial
            return epc.sgtin_uri(self.gtin, self.serial, length)
        if self.kind == "lgtin":
            assert self.gtin and self.lot
            return epc.lgtin_uri(self.gtin, self.lot, length)
        if self.kind == "sscc":
            assert self.sscc
            return epc.sscc_uri(self.sscc, length)
        raise IdentifierError("form", f"a {self.kind} has no EPC URI")

    def _pairs(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        if self.sscc:
            pairs.append(("00", self.sscc))
        if self.gtin:
            pairs.append(("01", self.gtin))
        pairs.extend(sorted(self.attributes.items()))
        if self.lot:
            pairs.append(("10", self.lot))
        if self.serial:
            pairs.append(("21", self.serial))
        return pairs

    def _element_strings(self) -> GS1ElementStrings:
        return GS1Message.parse(self.element_string()).element_strings  # unambiguous, unlike the HRI


def _fixed_first(pairs: list[tuple[str, str]]) -> list[str]:
    """Fixed-length AIs need no separator; variable-length ones end with GS unless last."""
    fixed = [f"{ai}{v}" for ai, v in pairs if ai in ("00", "01", "17", "11", "13", "15", "16")]
    variable = [f"{ai}{v}" for ai, v in pairs if ai not in ("00", "01", "17", "11", "13", "15", "16")]
    return ["".join(fixed), *variable] if fixed else variable


def parse(text: str, *, prefix_lengths: dict[str, int] | None = None) -> Identifier:
    """Parse any supported form; raise IdentifierError naming the wrong part."""
    raw = text.strip()
    if not raw:
        raise IdentifierError("form", "empty")
    # GS1 data is printable ASCII (and GS between fields): a look-alike such as a fullwidth or
    # Arabic-Indic digit names no GS1 key and must not be read as the key it resembles.
    printable = _GS_SUBSTITUTES.sub("", raw).replace(GS, "")
    bad = first_non_ascii(printable)
    if bad is not None:
        where = describe_char(printable, bad)
        raise IdentifierError("form", f"GS1 identifiers are printable ASCII; {where} is not")
    if raw.startswith("urn:epc:"):
        return _from_epc(raw)
    if raw.lower().startswith(("http://", "https://")):
        message = _from_digital_link(raw)
    elif raw.startswith("("):
        try:
            message = GS1Message.parse_hri(raw)
        except ParseError as exc:
            raise IdentifierError("element string", str(exc)) from None
    else:
        body = _GS_SUBSTITUTES.sub(GS, _SYMBOLOGY.sub("", raw)).removeprefix(GS)
        try:
            message = GS1Message.parse(body)
        except ParseError as exc:
            raise IdentifierError("element string", str(exc)) from None
    identifier = _from_message(message)
    if prefix_lengths and identifier.gtin in prefix_lengths:
        identifier = _with_prefix(identifier, prefix_lengths[identifier.gtin])
    return identifier


def _with_prefix(identifier: Identifier, length: int) -> Identifier:
    return Identifier(**{**identifier.__dict__, "prefix_length": length})


def _from_digital_link(uri: str) -> GS1Message:
    parts = urlsplit(uri)
    # Keys and values alternate and the path ends with a value: rewrite keys only, from the end,
    # until the first segment that is no key (the rest is the host's own path prefix).
    segments = parts.path.split("/")
    for i in range(len(segments) - 2, 0, -2):
        key = segments[i]
        if is_digits(key):
            continue
        if key not in _CONVENIENCE:
            break
        segments[i] = _CONVENIENCE[key]
    query = "&".join(
        f"{_CONVENIENCE.get(k, k)}={v}" for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    normalised = f"{parts.scheme}://{parts.netloc}{'/'.join(segments)}" + (f"?{query}" if query else "")
    try:
        return GS1DigitalLinkURI.parse(normalised).as_gs1_message()
    except ParseError as exc:
        raise IdentifierError("Digital Link", str(exc)) from None


def _check_digit(kind: str, value: str) -> None:
    if not is_digits(value):
        raise IdentifierError(f"{kind}", f"digits 0-9 only, got {value!r}")
    expected = gs1_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise IdentifierError(f"{kind} check digit", f"{value} should end in {expected}, not {value[-1]}")


def _date(ai: str, value: str) -> dt.date:
    """YYMMDD; DD 00 means the last day of the month (GS1 General Specifications 7.12)."""
    if not re.fullmatch(r"[0-9]{6}", value):
        raise IdentifierError(f"AI {ai}", f"a date is YYMMDD, got {value!r}")
    yy, mm, dd = int(value[:2]), int(value[2:4]), int(value[4:])
    if not 1 <= mm <= 12:
        raise IdentifierError(f"AI {ai}", f"month {mm:02d} does not exist")
    # GS1 GenSpecs 7.12: a two-digit year is the nearest of the century window -49..+50 years
    this_year = dt.date.today().year
    year = this_year - this_year % 100 + yy
    if year - this_year > 50:
        year -= 100
    elif this_year - year > 49:
        year += 100
    if dd == 0:
        next_month = dt.date(year + mm // 12, mm % 12 + 1, 1)
        return next_month - dt.timedelta(days=1)
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        raise IdentifierError(f"AI {ai}", f"{value} is not a calendar date") from None


def _from_message(message: GS1Message) -> Identifier:
    seen: dict[str, str] = {}
    for element in message.element_strings:
        ai = element.ai.ai
        if ai in seen:
            raise IdentifierError(f"AI {ai}", "appears twice")
        seen[ai] = element.value
    gtin, serial, lot, sscc = (
        seen.pop("01", None),
        seen.pop("21", None),
        seen.pop("10", None),
        seen.pop("00", None),
    )
    expiry_text = seen.get("17")  # kept as written: day 00 must survive a round trip
    for ai, value in [("01", gtin), ("21", serial), ("10", lot), ("00", sscc), *seen.items()]:
        # a Digital Link's %-escapes decode to anything: every value is checked again here
        if value is not None and first_non_ascii(value) is not None:
            raise IdentifierError(f"AI {ai}", "GS1 values are printable ASCII")
    if gtin is not None:
        if not is_digits(gtin, 14):
            raise IdentifierError("AI 01", "a GTIN is 14 digits")
        _check_digit("GTIN", gtin)
    if sscc is not None:
        _check_digit("SSCC", sscc)
    for ai, value in (("21", serial), ("10", lot)):
        if value is not None and not is_cset82(value):
            raise IdentifierError(f"AI {ai}", "1 to 20 characters of GS1 character set 82")
    expiry = _date("17", expiry_text) if expiry_text is not None else None
    for ai in ("11", "13", "15", "16"):
        if ai in seen:
            _date(ai, seen[ai])
    if sscc is not None:
        if gtin is not None or serial is not None:
            raise IdentifierError(
                "form", "an SSCC identifies a logistic unit on its own; it comes without AI 01/21"
            )
        return Identifier("sscc", sscc=sscc, prefix_length=_biip_sscc_prefix(sscc), attributes=seen)
    if gtin is None:
        raise IdentifierError("form", "no GTIN (AI 01) or SSCC (AI 00) in it")
    kind = "sgtin" if serial is not None else ("lgtin" if lot is not None else "gtin")
    return Identifier(
        kind,
        gtin=gtin,
        serial=serial,
        lot=lot,
        expiry=expiry,
        prefix_length=_biip_gtin_prefix(message),
        attributes=seen,
    )


def _biip_gtin_prefix(message: GS1Message) -> int | None:
    for element in message.element_strings:
        if element.gtin is not None and element.gtin.company_prefix is not None:
            return len(element.gtin.company_prefix.value)
    return None


def _biip_sscc_prefix(sscc: str) -> int | None:
    from biip.sscc import Sscc

    parsed = Sscc.parse(sscc)
    return len(parsed.company_prefix.value) if parsed.company_prefix is not None else None


def _from_epc(uri: str) -> Identifier:
    try:
        if uri.startswith(epc.SGTIN):
            gtin, serial, length = epc.parse_sgtin(uri)
            if not is_cset82(serial):
                raise IdentifierError("serial", "1 to 20 characters of GS1 character set 82")
            return Identifier("sgtin", gtin=gtin, serial=serial, prefix_length=length)
        if uri.startswith(epc.LGTIN):
            gtin, lot, length = epc.parse_lgtin(uri)
            if not is_cset82(lot):
                raise IdentifierError("lot", "1 to 20 characters of GS1 character set 82")
            return Identifier("lgtin", gtin=gtin, lot=lot, prefix_length=length)
        if uri.startswith(epc.SSCC):
            sscc, length = epc.parse_sscc(uri)
            return Identifier("sscc", sscc=sscc, prefix_length=length)
    except epc.EpcError as exc:
        raise IdentifierError("EPC URI", str(exc)) from None
    raise IdentifierError("EPC URI", "only sgtin, sscc and lgtin EPC URIs are supported")
