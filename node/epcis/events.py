"""EPCIS 2.0 events as rxledger writes them: one event per custody action taken through the plain-JSON
API, in JSON-LD with GS1 Digital Link identifiers (which need no company prefix length, unlike EPC
URIs), CBV 2.0 bare words and rxledger's extension namespace. Pure functions: dicts in, dicts out."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
RXL_NS = "https://ns.rxledger.org/epcis/"
CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {"rxl": RXL_NS}]
DL_HOST = "https://id.gs1.org"
SHIPMENT_BT = "urn:epcglobal:cbv:bt:"  # CBV 1.2 business transaction URI: ...:<GLN of issuer>:<id>
REACTIVATING = RXL_NS + "BizStep-reactivating"  # undoing a decommission: no CBV word for it

# Decommission reasons (CustodyLedger state names) as CBV 2.0 business steps and dispositions; the
# exact reason also travels as `rxl:decommissionReason`, because CBV has no word for several of them.
DECOMMISSION_VOCABULARY: dict[str, tuple[str, str, str]] = {
    # reason: (action, bizStep, disposition)
    "dispensed": ("OBSERVE", "dispensing", "dispensed"),
    "destroyed": ("DELETE", "destroying", "destroyed"),
    "sample": ("OBSERVE", "decommissioning", "inactive"),
    "free_sample": ("OBSERVE", "decommissioning", "inactive"),
    "exported": ("OBSERVE", "decommissioning", "inactive"),
    "stolen": ("OBSERVE", "decommissioning", "stolen"),
    "locked": ("OBSERVE", "decommissioning", "inactive"),
    "checked_out": ("OBSERVE", "decommissioning", "inactive"),
}

_DL_SAFE = re.compile(r"^[A-Za-z0-9_.\-~]*$")


def dl_part(value: str) -> str:
    """A Digital Link path segment: everything but RFC 3986 unreserved characters percent-encoded."""
    return value if _DL_SAFE.match(value) else quote(value, safe="")


def sgtin_dl(gtin: str, serial: str) -> str:
    return f"{DL_HOST}/01/{gtin}/21/{dl_part(serial)}"


def sscc_dl(sscc: str) -> str:
    return f"{DL_HOST}/00/{sscc}"


def party_dl(gln: str) -> str:
    return f"{DL_HOST}/417/{gln}"


def location_dl(gln: str) -> str:
    return f"{DL_HOST}/414/{gln}"


def shipment_transaction(sender_gln: str, shipment_id: str) -> str:
    return f"{SHIPMENT_BT}{sender_gln}:{dl_part(shipment_id)}"


def timestamp(at: float) -> str:
    """eventTime in UTC with milliseconds, the precision the Event Hash ID keeps."""
    moment = dt.datetime.fromtimestamp(round(at, 3), tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _base(kind: str, at: float) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "eventTime": timestamp(at),
        "eventTimeZoneOffset": "+00:00",
    }
    return event


def _where(event: dict[str, Any], location_gln: str | None) -> None:
    if location_gln:
        event["readPoint"] = {"id": location_dl(location_gln)}
        event["bizLocation"] = {"id": location_dl(location_gln)}


def object_event(
    *,
    at: float,
    epcs: Sequence[str],
    action: str,
    biz_step: str,
    disposition: str | None = None,
    location_gln: str | None = None,
    biz_transactions: Iterable[tuple[str, str]] = (),
    sources: Iterable[tuple[str, str]] = (),
    destinations: Iterable[tuple[str, str]] = (),
    ilmd: Mapping[str, Any] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ObjectEvent; biz_transactions, sources and destinations are (type, id) pairs."""
    event = _base("ObjectEvent", at)
    event["epcList"] = list(epcs)
    event["action"] = action
    event["bizStep"] = biz_step
    if disposition:
        event["disposition"] = disposition
    _where(event, location_gln)
    bts = [{"type": t, "bizTransaction": v} for t, v in biz_transactions]
    if bts:
        event["bizTransactionList"] = bts
    src = [{"type": t, "source": v} for t, v in sources]
    if src:
        event["sourceList"] = src
    dst = [{"type": t, "destination": v} for t, v in destinations]
    if dst:
        event["destinationList"] = dst
    if ilmd:
        event["ilmd"] = dict(ilmd)
    event.update(extensions or {})
    return event


def aggregation_event(
    *,
    at: float,
    parent: str,
    children: Sequence[str],
    action: str,
    biz_step: str,
    disposition: str | None = None,
    location_gln: str | None = None,
) -> dict[str, Any]:
    """An AggregationEvent: ADD packs `children` into `parent`, DELETE takes them out (all of
    them when `children` is empty)."""
    event = _base("AggregationEvent", at)
    event["parentID"] = parent
    event["childEPCs"] = list(children)
    event["action"] = action
    event["bizStep"] = biz_step
    if disposition:
        event["disposition"] = disposition
    _where(event, location_gln)
    return event


def commissioning_ilmd(lot: str, expiry: dt.date | None) -> dict[str, Any]:
    ilmd: dict[str, Any] = {"cbvmda:lotNumber": lot}
    if expiry is not None:
        ilmd["cbvmda:itemExpirationDate"] = expiry.isoformat()
    return ilmd


def document(events: Sequence[Mapping[str, Any]], *, created: float) -> dict[str, Any]:
    """An EPCISDocument carrying `events`."""
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": timestamp(created),
        "epcisBody": {"eventList": list(events)},
    }


def query_document(
    events: Sequence[Mapping[str, Any]], *, created: float, query_name: str = "SimpleEventQuery"
) -> dict[str, Any]:
    """An EPCISQueryDocument answering a query with `events`."""
    return {
        "@context": CONTEXT,
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": timestamp(created),
        "epcisBody": {"queryResults": {"queryName": query_name, "resultsBody": {"eventList": list(events)}}},
    }
