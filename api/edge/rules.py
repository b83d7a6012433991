"""Every rule a request can break, as RFC 9457 problem types: one stable `type` per rule.

Contract custom errors map one to one (`NotHolder` -> `urn:rxledger:problem:not-holder`), so a
rule refused by the pre-check and the same rule refused by the contract look identical to a client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from api.edge.problems import Problem
from node.errors import ContractRevert

PROBLEM_BASE = "urn:rxledger:problem:"

# Custom errors that mean "you may not" (403), "no such thing" (404), "bad value" (422);
# everything else is a conflict with the current state (409).
_FORBIDDEN = {
    "MissingRole", "NotProductOwner", "NotAuthorizedManufacturer", "NotCertifier", "NotAdmin",
    "NotKeyAdmin", "NotAddressee", "NotSender", "NotDecommissioner", "NotAuthorizedForSuspect",
    "NotManufacturer", "OrganizationNotActive", "KeyNotValidNow", "KeyIsRevoked", "UnknownKey",
    "InvalidSignature", "SignatureExpired", "NotPendingAdmin",
}  # fmt: skip
_NOT_FOUND = {"UnknownProduct", "UnknownBatch", "UnknownItem", "UnknownShipment", "UnknownOrganization"}
_INVALID = {
    "InvalidGtin", "InvalidGln", "InvalidLot", "InvalidExpiry", "InvalidUnitKey", "InvalidCertificate",
    "InvalidDestination", "EmptyList", "UnevenAggregation", "InvalidReason", "InvalidKeyWindow",
    "UnknownRole", "NotAUnit", "NotAContainer", "SelfPacking", "ActionNotRelayable",
}  # fmt: skip

# One sentence per rule, for people; `{...}` names the error's arguments.
_SENTENCES: Mapping[str, str] = {
    "NotHolder": "the item is held by organisation {holder}, not by you",
    "DuplicateSerial": "this serial number is already commissioned",
    "AlreadyDispensed": "the pack has already been dispensed",
    "AlreadyDecommissioned": "the pack is already decommissioned (state {state})",
    "BatchNotReleased": "the batch has not been released for sale (status {status})",
    "BatchNotCommissionable": "packs can only be commissioned into a quarantined or released batch",
    "InTransit": "the item is in transit in shipment {shipmentId}",
    "ItemPacked": "the item is packed in a container; unpack it first",
    "SuspectItem": "the item is flagged suspect",
    "SuspectBatch": "the item's batch is flagged suspect",
    "RecalledProduct": "the batch is recalled; it may only go back towards its sponsor",
    "ShipmentExists": "a shipment with this id already exists",
    "NotInShipment": "the item is not a pending item of this shipment",
    "NotInContainer": "the item is not in this container",
    "ContainerDissolved": "the container has been unpacked and no longer exists",
    "NestingTooDeep": "packing this would nest containers too deep",
    "UndoWindowClosed": "the undo window for this decommissioning has closed",
    "DecommissionFinal": "this decommissioning is final and cannot be undone",
    "NotDecommissioned": "the pack is not decommissioned",
    "InvalidBatchTransition": "the batch cannot go from status {from} to {to}",
    "QpCertificationMissing": "the batch has no anchored QP certification",
    "ManufacturerCertificateMissing": "the manufacturer's certificate of analysis is not anchored",
    "BatchExists": "a batch with this GTIN and lot already exists",
    "ProductExists": "the product is already registered",
    "NotHolderOrg": "your organisation does not hold this item",
}


def rule_slug(error_name: str) -> str:
    """`NotHolder` -> `not-holder`; `InvalidGtin` -> `invalid-gtin`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", error_name).lower()


def status_of(error_name: str) -> int:
    if error_name in _FORBIDDEN:
        return 403
    if error_name in _NOT_FOUND:
        return 404
    if error_name in _INVALID:
        return 422
    return 409


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _label(hex32: str) -> str:
    """A bytes32 id as people wrote it (text ids are stored left-aligned, zero-padded)."""
    raw = bytes.fromhex(hex32.removeprefix("0x")).rstrip(b"\0")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return hex32
    return text if text and text.isprintable() else hex32


def problem_from_revert(
    revert: ContractRevert,
    *,
    describe_key: Callable[[str], Mapping[str, Any] | None] | None = None,
    **extensions: Any,
) -> Problem:
    """The problem a client sees for a contract revert. `describe_key` maps a bytes32 key named by
    the error back to what the client sent (field path, GTIN and serial, SSCC)."""
    names = revert.arg_names if len(revert.arg_names) == len(revert.args) else ("",) * len(revert.args)
    args = {name or f"arg{i}": _plain(v) for i, (name, v) in enumerate(zip(names, revert.args, strict=True))}
    shown = dict(args)
    if isinstance(shown.get("shipmentId"), str):
        shown["shipmentId"] = _label(shown["shipmentId"])
    sentence = _SENTENCES.get(revert.name)
    detail = sentence.format(**shown) if sentence else str(revert.decoded)
    item: Mapping[str, Any] | None = None
    for name in ("key", "subject", "heldUnit", "containerKey"):
        key = args.get(name)
        if isinstance(key, str) and describe_key is not None:
            item = describe_key(key)
            if item is not None:
                break
    if item is not None and "field" in item:
        detail = f"{item['field']}: {detail}"
    ext: dict[str, Any] = {"error": revert.name, "args": args, **extensions}
    if item is not None:
        ext["item"] = item
        if "field" in item:
            ext["field"] = item["field"]
    return Problem(
        status_of(revert.name),
        rule_slug(revert.name).replace("-", " ").capitalize(),
        type=PROBLEM_BASE + rule_slug(revert.name),
        detail=detail,
        **ext,
    )


def rule_problem(
    status: int, rule: str, detail: str, *, field: str | None = None, **extensions: Any
) -> Problem:
    """A rule checked by the API itself (not by a contract)."""
    title = rule.replace("-", " ").capitalize()
    ext: dict[str, Any] = dict(extensions)
    if field is not None:
        ext["field"] = field
        detail = f"{field}: {detail}"
    return Problem(status, title, type=PROBLEM_BASE + rule, detail=detail, **ext)
