"""Checking an evidence bundle: a custody trail whose every step carries the proof of the contract log
it claims, so an inspector needs to trust only block hashes (from a node they trust, or given).

Each step is a claim (action, block, transaction, organisation, signer, Event Hash ID, the item it
concerns...) plus its receipt and transaction with Merkle-Patricia proofs against the block header.
A claim passes only if every field of it is what the proven log says; the parties' names and GLNs
are proven the same way by their onboarding logs. Nothing in a step is taken on trust: a claim with
a field this module cannot check is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic

from node.artifacts import load_artifact
from node.evidence.proofs import (
    ProofResult,
    verify_receipt_proof,
    verify_transaction_proof,
)
from node.ledger.constants import UnitState
from node.ledger.identifiers import container_key, unit_key

FORMAT = "rxledger-evidence-bundle/1"
ACTIONS = {  # CustodyLedger event -> the trail's action
    "UnitsCommissioned": "commissioned",
    "ItemsPacked": "packed",
    "ItemsUnpacked": "unpacked",
    "ContainersEmptied": "emptied",
    "ShipmentDispatched": "shipped",
    "ShipmentReceived": "received",
    "ShipmentRejected": "rejected",
    "ShipmentDiscrepancyRecorded": "missing",
    "ShipmentReclaimed": "reclaimed",
    "UnitsDecommissioned": "decommissioned",
    "DecommissionsUndone": "decommission_undone",
    "UnitsSuspectStatusChanged": "suspect_status",
}
CLAIM_KEYS = {
    "action",
    "block_number",
    "tx_index",
    "tx_hash",
    "log_position",
    "timestamp",
    "org_id",
    "signer",
    "counterparty",
    "event_hash",
    "epcis_event_id",
    "via",
    "shipment_id",
    "reason",
}
SETTLEMENTS = ("received", "rejected", "missing", "reclaimed")
TrustedHash = Callable[[int], bytes | None]


@dataclass(frozen=True)
class Check:
    what: str  # "step 3: shipped" / "party 2"
    ok: bool
    reason: str


class _Events:
    """topic0 -> (name, inputs) for a contract's events, from the committed artifacts."""

    def __init__(self, contract: str) -> None:
        self.by_topic: dict[bytes, Mapping[str, Any]] = {}
        for entry in load_artifact(contract).abi:
            if entry.get("type") == "event":
                self.by_topic[bytes(event_abi_to_log_topic(entry))] = entry  # type: ignore[arg-type]

    def decode(self, topics: tuple[bytes, ...], data: bytes) -> tuple[str, dict[str, Any]]:
        if not topics or topics[0] not in self.by_topic:
            raise ValueError("the log is no event of this contract")
        entry = self.by_topic[topics[0]]
        indexed = [i for i in entry["inputs"] if i["indexed"]]
        plain = [i for i in entry["inputs"] if not i["indexed"]]
        if len(topics) != 1 + len(indexed):
            raise ValueError("the log's topics do not fit its event")
        args: dict[str, Any] = {}
        for spec, topic in zip(indexed, topics[1:], strict=True):
            args[spec["name"]] = abi_decode([spec["type"]], topic)[0]
        for spec, value in zip(plain, abi_decode([p["type"] for p in plain], data), strict=True):
            args[spec["name"]] = value
        return str(entry["name"]), args


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _proven(item: Any, trusted: TrustedHash) -> ProofResult:
    if not isinstance(item, Mapping) or not isinstance(item.get("block_number"), int):
        return ProofResult(ok=False, reason="no evidence item")
    expected = trusted(int(item["block_number"]))
    if expected is None:
        return ProofResult(ok=False, reason=f"no trusted hash for block {item['block_number']}")
    result = verify_receipt_proof(item, trusted_block_hash=expected)
    if result.ok and result.status != 1:
        return ProofResult(ok=False, reason="the transaction reverted")
    return result


def _log(entry: Mapping[str, Any], position_key: str, trusted: TrustedHash) -> tuple[ProofResult, Any]:
    result = _proven(entry.get("evidence"), trusted)
    if not result.ok:
        return result, None
    position = entry.get(position_key)
    if not isinstance(position, int) or not 0 <= position < len(result.logs):
        return ProofResult(ok=False, reason=f"{position_key} is not a log of the transaction"), None
    return result, result.logs[position]


def _check_step(
    claim: Mapping[str, Any],
    entry: Mapping[str, Any],
    custody: _Events,
    address: bytes,
    trusted: TrustedHash,
    shipped_to: dict[str, tuple[int, int]],
) -> str | None:
    """None if the step is proven, else why not."""
    unknown = set(claim) - CLAIM_KEYS
    if unknown:
        return f"unverifiable claim fields {sorted(unknown)}"
    result, log = _log({**entry, "log_position": claim.get("log_position")}, "log_position", trusted)
    if log is None:
        return result.reason
    evidence = entry["evidence"]
    header = evidence["header"]
    if claim.get("block_number") != evidence["block_number"] or claim.get("tx_index") != evidence["tx_index"]:
        return "block or transaction index differ from the evidence"
    if claim.get("timestamp") != int(header["timestamp"], 16):
        return "timestamp is not the block's"
    try:
        tx_hash = verify_transaction_proof(header, evidence["tx_index"], entry.get("transaction") or {})
    except (ValueError, KeyError, TypeError) as exc:
        return f"transaction: {exc}"
    if claim.get("tx_hash") != _hex(tx_hash):
        return "tx_hash is not the proven transaction's"
    if log.address != address:
        return "the log is not from the CustodyLedger named in the bundle"
    try:
        name, args = custody.decode(log.topics, log.data)
    except Exception as exc:  # hostile bytes: a verdict, never a crash
        return f"log does not decode: {exc}"
    if ACTIONS.get(name) != claim.get("action"):
        return f"the log is {name}, not {claim.get('action')}"
    org = args.get("from", args.get("org"))
    if claim.get("org_id") is not None and claim["org_id"] != org:
        return "org_id is not the log's"
    if (
        claim.get("signer") is not None
        and str(claim["signer"]).lower() != str(args.get("signer", "")).lower()
    ):
        return "signer is not the log's"
    digest = bytes(args.get("eventHash", bytes(32)))
    if claim.get("event_hash") != _hex(digest):
        return "event_hash is not the log's"
    expected_id = f"ni:///sha-256;{digest.hex()}?ver=CBV2.0"
    if claim.get("epcis_event_id") not in (None, expected_id):
        return "epcis_event_id is not the anchored digest's"
    listed = {_hex(k) for k in [*args.get("keys", []), *args.get("containerKeys", [])]}
    if "containerKey" in args:
        listed.add(_hex(args["containerKey"]))
    if claim.get("via") not in listed:
        return "via is not an item the log names"
    sid = _hex(args["shipmentId"]) if "shipmentId" in args else None
    if claim.get("shipment_id") not in (None, sid):
        return "shipment_id is not the log's"
    if name == "ShipmentDispatched" and sid is not None:
        shipped_to[sid] = (int(args["from"]), int(args["to"]))
    if claim.get("counterparty") is not None:
        if name == "ShipmentDispatched":
            proven_party: int | None = int(args["to"])
        elif claim["action"] in SETTLEMENTS and sid in shipped_to:
            proven_party = shipped_to[sid][0]  # the sender, proven by this bundle's shipment step
        else:
            proven_party = None
        if claim["counterparty"] != proven_party:
            return "counterparty is not proven by the logs"
    if claim.get("reason") is not None and (
        name != "UnitsDecommissioned" or claim["reason"] != UnitState(int(args["reason"])).name.lower()
    ):
        return "reason is not the log's"
    return None


def _check_party(
    party: Mapping[str, Any], registry: _Events, address: bytes, trusted: TrustedHash
) -> str | None:
    if set(party) - {"org_id", "name", "gln", "log_position", "evidence"}:
        return "unverifiable party fields"
    result, log = _log(party, "log_position", trusted)
    if log is None:
        return result.reason
    if log.address != address:
        return "the log is not from the ConsortiumRegistry named in the bundle"
    try:
        name, args = registry.decode(log.topics, log.data)
    except Exception as exc:
        return f"log does not decode: {exc}"
    if name != "OrganizationOnboarded":
        return f"the log is {name}, not OrganizationOnboarded"
    if (party.get("org_id"), party.get("name"), party.get("gln")) != (
        args["org"],
        args["name"],
        f"{args['gln']:013d}",
    ):
        return "org_id, name or gln is not the onboarding log's"
    return None


def _address(bundle: Mapping[str, Any], name: str) -> bytes:
    value = str((bundle.get("contracts") or {}).get(name, ""))
    if not value.startswith("0x") or len(value) != 42:
        raise ValueError(f"the bundle names no {name} address")
    return bytes.fromhex(value[2:])


def _subject(subject: Mapping[str, Any]) -> str | None:
    try:
        if subject.get("kind") == "unit":
            derived = unit_key(str(subject["gtin"]), str(subject["serial"]))
        elif subject.get("kind") == "container":
            derived = container_key(str(subject["sscc"]))
        else:
            return "unknown subject kind"
    except (KeyError, ValueError) as exc:
        return f"subject: {exc}"
    if subject.get("key") != _hex(derived):
        return "the subject's key is not derived from its identifier"
    return None


def verify_bundle(bundle: Any, trusted: TrustedHash) -> list[Check]:
    """Every check of the bundle, in order: the format and subject, each party, each step."""
    if not isinstance(bundle, Mapping) or bundle.get("format") != FORMAT:
        return [Check("bundle", False, f"not a {FORMAT} document")]
    checks: list[Check] = []
    try:
        custody_at, registry_at = _address(bundle, "CustodyLedger"), _address(bundle, "ConsortiumRegistry")
    except ValueError as exc:
        return [Check("bundle", False, str(exc))]
    problem = _subject(bundle.get("subject") or {})
    checks.append(Check("subject", problem is None, problem or "key derived from the identifier"))
    parties: set[int] = set()
    registry = _Events("ConsortiumRegistry")
    for i, party in enumerate(bundle.get("parties") or []):
        problem = (
            _check_party(party, registry, registry_at, trusted)
            if isinstance(party, Mapping)
            else "not an object"
        )
        checks.append(
            Check(
                f"party {i}: {party.get('name') if isinstance(party, Mapping) else '?'}",
                problem is None,
                problem or "proven",
            )
        )
        if problem is None:
            parties.add(int(party["org_id"]))
    custody = _Events("CustodyLedger")
    shipped_to: dict[str, tuple[int, int]] = {}
    steps = bundle.get("steps")
    if not isinstance(steps, list) or not steps:
        checks.append(Check("steps", False, "the bundle has no steps"))
    for i, entry in enumerate(steps or []):
        claim = entry.get("claim") if isinstance(entry, Mapping) else None
        if not isinstance(claim, Mapping) or set(entry) - {"claim", "evidence", "transaction"}:
            checks.append(Check(f"step {i}", False, "not a {claim, evidence, transaction} object"))
            continue
        problem = _check_step(claim, entry, custody, custody_at, trusted, shipped_to)
        if problem is None:
            for who in (claim.get("org_id"), claim.get("counterparty")):
                if who is not None and who not in parties:
                    problem = f"organisation {who} is not among the proven parties"
        checks.append(Check(f"step {i}: {claim.get('action')}", problem is None, problem or "proven"))
    return checks
