"""GS1 identifiers as validated request fields: a wrong check digit or a character outside GS1's
character sets (ASCII digits for keys, set 82 for serials and lots) is a 422 naming the field, before
anything else happens. Non-ASCII look-alikes (fullwidth or Arabic-Indic digits) are refused, never
normalised: a key that renders like another one must not name a second item (node/gs1/charset.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from api.edge.rules import rule_problem
from node.gs1.charset import describe_char, first_non_ascii, is_cset82, is_digits
from node.gs1.scan import IdentifierError
from node.gs1.scan import parse as parse_identifier
from node.ledger.identifiers import container_key, gs1_check_digit, unit_key


def _not_ascii(value: str, name: str) -> ValueError | None:
    index = first_non_ascii(value)
    if index is None:
        return None
    return ValueError(f"a {name} is ASCII only; {describe_char(value, index)} is not")


def _digits_with_check(length: int, name: str) -> AfterValidator:
    def check(value: str) -> str:
        if not is_digits(value, length):
            raise _not_ascii(value, name) or ValueError(f"a {name} is {length} digits")
        if gs1_check_digit(value[:-1]) != int(value[-1]):
            raise ValueError(f"wrong {name} check digit (expected {gs1_check_digit(value[:-1])})")
        return value

    return AfterValidator(check)


def _cset82(name: str) -> AfterValidator:
    def check(value: str) -> str:
        if not is_cset82(value):
            raise _not_ascii(value, name) or ValueError(
                f"a {name} is 1 to 20 characters of GS1 character set 82"
            )
        return value

    return AfterValidator(check)


def _sscc_from_any_form(value: object) -> object:
    """An SSCC field also takes the SSCC as scanned: `00...` element string, `(00)...`, a Digital
    Link or an EPC URI; the canonical 18 digits are what the model holds."""
    if not isinstance(value, str) or is_digits(value, 18):
        return value
    try:
        identifier = parse_identifier(value)
    except IdentifierError as exc:
        raise ValueError(str(exc)) from None
    if identifier.kind != "sscc":
        raise ValueError(f"this is a {identifier.kind}, not an SSCC")
    return identifier.sscc


Gtin = Annotated[str, _digits_with_check(14, "GTIN-14"), Field(examples=["09506000134352"])]
Sscc = Annotated[
    str,
    BeforeValidator(_sscc_from_any_form),
    _digits_with_check(18, "SSCC"),
    Field(examples=["040987650007000004", "(00)040987650007000004"]),
]
Gln = Annotated[str, _digits_with_check(13, "GLN"), Field(examples=["4012345000009"])]
Serial = Annotated[str, _cset82("serial number (AI 21)"), Field(examples=["PK7Q2X9A"])]
Lot = Annotated[str, _cset82("lot number (AI 10)"), Field(examples=["L2026-11"])]
Bytes32Hex = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$", examples=["0x" + "ab" * 32])]


class UnitRef(BaseModel):
    """A pack: GTIN-14 and serial number (the SGTIN), or `{"scan": ...}` with the pack's identifier in
    any form (DataMatrix scan, element string, Digital Link, EPC URI)."""

    model_config = ConfigDict(extra="forbid")
    gtin: Gtin
    serial: Serial

    @model_validator(mode="before")
    @classmethod
    def _from_scan(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scan" in data:
            if set(data) != {"scan"}:
                raise ValueError("give either scan, or gtin and serial")
            try:
                identifier = parse_identifier(str(data["scan"]))
            except IdentifierError as exc:
                raise ValueError(str(exc)) from None
            if identifier.kind != "sgtin":
                raise ValueError(f"the scan is a {identifier.kind}, not a pack (it needs AI 01 and AI 21)")
            return {"gtin": identifier.gtin, "serial": identifier.serial}
        return data

    @property
    def key(self) -> str:
        return "0x" + unit_key(self.gtin, self.serial).hex()


def sscc_key(sscc: str) -> str:
    return "0x" + container_key(sscc).hex()


# Shipment ids: the sender's own reference (e.g. a despatch advice number), stored as bytes32
_SHIPMENT_HEX = re.compile(r"0x[0-9a-fA-F]{64}")
_SHIPMENT_TEXT = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,31}")  # printable ASCII: no look-alikes


def shipment_bytes(shipment_id: str, field: str = "shipment_id") -> bytes:
    if _SHIPMENT_HEX.fullmatch(shipment_id):
        return bytes.fromhex(shipment_id[2:])
    if not _SHIPMENT_TEXT.fullmatch(shipment_id):
        raise rule_problem(
            422,
            "invalid-shipment-id",
            "a shipment id is 1 to 32 characters of printable ASCII, or 0x and 64 hex digits",
            field=field,
        )
    return shipment_id.encode().ljust(32, b"\0")


def shipment_label(raw: bytes) -> str:
    text = raw.rstrip(b"\0")
    try:
        decoded = text.decode()
        if decoded.isprintable() and decoded:
            return decoded
    except UnicodeDecodeError:
        pass
    return "0x" + raw.hex()
