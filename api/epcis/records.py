"""From an EPCIS event to what the API stores and anchors: its Event Hash ID and digest, the on-chain
keys of the identifiers it names, and the CBV/Digital Link forms its queryable fields take."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from api.write.plan import EventRecord
from node.epcis.events import CONTEXT
from node.epcis.hashid import event_digest
from node.gs1.charset import is_cset82
from node.gs1.scan import IdentifierError, parse
from node.ledger.identifiers import container_key, gs1_check_digit, unit_key

CBV = "https://ref.gs1.org/cbv/"
_CBV_URN = re.compile(r"^urn:epcglobal:cbv:(bizstep|disp|btt|sdt):(.+)$")
_URN_KIND = {"bizstep": "BizStep", "disp": "Disp", "btt": "BTT", "sdt": "SDT"}
# ASCII patterns (`\d` would take any Unicode digit) anchored at the very end (`$` also matches before a
# trailing newline).
# The Digital Link of a pack as rxledger and most systems write it: parsed without biip (10x faster
# on documents of thousands of packs), with the same checks; anything else goes through biip.
_SGTIN_DL = re.compile(r"^https?://[^/?#]+(?:/[^?#]*)?/01/(\d{14})/21/([^/?#]+)\Z", re.ASCII)
_SGLN_URN = re.compile(r"^urn:epc:id:sgln:(\d+)\.(\d*)\.(.+)\Z", re.ASCII)
_PGLN_URN = re.compile(r"^urn:epc:id:pgln:(\d+)\.(\d*)\Z", re.ASCII)
_GLN_DL = re.compile(r"^https?://[^/?#]+(?:/[^?#]*)?/(414|417)/(\d{13})(?:/254/([^/?#]+))?\Z", re.ASCII)

# EPCIS fields that list identifiers, and the role each gets in the index
EPC_FIELDS = (
    ("epcList", "epc"),
    ("childEPCs", "child"),
    ("inputEPCList", "input"),
    ("outputEPCList", "output"),
)


def cbv_uri(kind: str, value: str | None) -> str | None:
    """A CBV value in its full URI form: bare words (`shipping`) and CBV 1.x URNs
    (`urn:epcglobal:cbv:bizstep:shipping`) become `https://ref.gs1.org/cbv/BizStep-shipping`;
    other URIs (user vocabularies) are kept."""
    if value is None:
        return None
    match = _CBV_URN.match(value)
    if match:
        return f"{CBV}{_URN_KIND[match.group(1)]}-{match.group(2)}"
    if ":" in value:
        return value
    return f"{CBV}{kind}-{value}"


def cbv_word(uri: str | None) -> str | None:
    """The bare CBV word of a full CBV URI (None for user vocabularies)."""
    if uri and uri.startswith(CBV):
        return uri[len(CBV) :].split("-", 1)[1]
    return None


def gln_of(value: str) -> str | None:
    """The GLN in a party or location identifier (PGLN/SGLN EPC URI or Digital Link 417/414)."""
    match = _SGLN_URN.match(value) or _PGLN_URN.match(value)
    if match:
        body = match.group(1) + match.group(2)
        return body + str(gs1_check_digit(body)) if len(body) == 12 else None
    dl = _GLN_DL.match(value)
    if dl and gs1_check_digit(dl.group(2)[:12]) == int(dl.group(2)[12]):
        return dl.group(2)
    return None


def location_uri(value: str | None) -> str | None:
    """A location in Digital Link form (SGLN URNs converted) so that queries match either spelling."""
    if value is None:
        return None
    match = _SGLN_URN.match(value)
    if match:
        gln = gln_of(value)
        ext = match.group(3)
        if gln:
            return f"https://id.gs1.org/414/{gln}" + ("" if ext == "0" else f"/254/{ext}")
    dl = _GLN_DL.match(value)
    if dl and dl.group(1) == "414":
        return f"https://id.gs1.org/414/{dl.group(2)}" + (f"/254/{dl.group(3)}" if dl.group(3) else "")
    return value


@dataclass(frozen=True)
class Item:
    """An identifier an event names: a pack or a logistic unit, by its on-chain key."""

    kind: str  # unit | container
    key: str
    gtin: str | None = None
    serial: str | None = None
    sscc: str | None = None


def item_of(uri: str) -> Item:
    """The pack (SGTIN) or logistic unit (SSCC) an EPC names, in any form; IdentifierError otherwise."""
    fast = _SGTIN_DL.match(uri)
    if fast:
        gtin, serial = fast.group(1), unquote(fast.group(2))
        if gs1_check_digit(gtin[:13]) == int(gtin[13]) and is_cset82(serial):
            return Item("unit", "0x" + unit_key(gtin, serial).hex(), gtin=gtin, serial=serial)
    identifier = parse(uri)
    if identifier.kind == "sgtin":
        assert identifier.gtin and identifier.serial
        key = unit_key(identifier.gtin, identifier.serial)
        return Item("unit", "0x" + key.hex(), gtin=identifier.gtin, serial=identifier.serial)
    if identifier.kind == "sscc":
        assert identifier.sscc
        return Item("container", "0x" + container_key(identifier.sscc).hex(), sscc=identifier.sscc)
    raise IdentifierError("form", f"a {identifier.kind} is not an instance identifier (SGTIN or SSCC)")


def index_keys(event: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(key, role, GTIN) of every pack and logistic unit the event names; identifiers rxledger does
    not track (other EPC schemes) are left out of the index, not refused."""
    out: list[tuple[str, str, str | None]] = []

    def add(uri: Any, role: str) -> None:
        if not isinstance(uri, str):
            return
        try:
            item = item_of(uri)
        except (IdentifierError, ValueError):
            return
        out.append((item.key, role, item.gtin))

    if "parentID" in event:
        add(event["parentID"], "parent")
    for name, role in EPC_FIELDS:
        for uri in event.get(name) or []:
            add(uri, role)
    return out


def make_record(
    event: dict[str, Any],
    *,
    anchoring: str,
    keys: list[tuple[str, str, str | None]] | None = None,
    position: int = 0,
    context: Any = None,
) -> EventRecord:
    """The record of `event`: its hash over the document's `context` (ours by default)."""
    digest = event_digest(event, CONTEXT if context is None else context)
    return EventRecord(
        event=event,
        hash_id=f"ni:///sha-256;{digest.hex()}?ver=CBV2.0",
        digest=digest,
        anchoring=anchoring,
        keys=index_keys(event) if keys is None else keys,
        position=position,
    )
