"""Building an evidence bundle for a trail: each step's claim with its receipt, transaction and their
Merkle-Patricia proofs, and the parties' onboarding logs proven the same way. `rxledger
verify-bundle` (node/evidence/bundle.py) checks it without trusting this API."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3

from api.read.provenance import Step
from node.artifacts import load_artifact
from node.evidence.bundle import FORMAT
from node.evidence.proofs import receipt_proofs, transaction_proofs


def _log_position(w3: Web3, tx_hash: str, log_index: int) -> int:
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    for position, log in enumerate(receipt["logs"]):
        if int(log["logIndex"]) == log_index:
            return position
    raise LookupError(f"no log {log_index} in {tx_hash}")


def _onboarding(w3: Web3, registry: str, org_id: int, block: int) -> tuple[int, str, int]:
    """(tx index, tx hash, log index) of the organisation's OrganizationOnboarded log."""
    (entry,) = [
        e for e in load_artifact("ConsortiumRegistry").abi if e.get("name") == "OrganizationOnboarded"
    ]
    topic = "0x" + bytes(event_abi_to_log_topic(entry)).hex()  # type: ignore[arg-type]
    org_topic = "0x" + org_id.to_bytes(32, "big").hex()
    logs = w3.eth.get_logs(
        {"address": registry, "fromBlock": block, "toBlock": block, "topics": [topic, org_topic]}  # type: ignore[typeddict-item]
    )
    log = logs[0]
    return int(log["transactionIndex"]), "0x" + bytes(log["transactionHash"]).hex(), int(log["logIndex"])


def build_bundle(
    w3: Web3,
    *,
    chain_id: int,
    contracts: dict[str, str],
    subject: dict[str, Any],
    steps: Sequence[Step],
    shown: Sequence[dict[str, Any]],
    organizations: dict[int, Any],
) -> dict[str, Any]:
    """`steps` and `shown` (their view for the caller) in the same order; `organizations` maps ids to
    read-model rows of every organisation named."""
    by_block: dict[int, set[int]] = defaultdict(set)
    for s in steps:
        by_block[s.block_number].add(s.tx_index)
    parties_at: dict[int, tuple[int, int, str, int]] = {}
    for view in shown:
        for who in (view["organization"], view["counterparty"]):
            if who and who.get("org_id") is not None and who["org_id"] not in parties_at:
                row = organizations[who["org_id"]]
                tx_index, tx_hash, log_index = _onboarding(
                    w3, contracts["ConsortiumRegistry"], who["org_id"], int(row.onboarded_block)
                )
                parties_at[who["org_id"]] = (int(row.onboarded_block), tx_index, tx_hash, log_index)
                by_block[int(row.onboarded_block)].add(tx_index)
    receipts: dict[tuple[int, int], dict[str, Any]] = {}
    transactions: dict[tuple[int, int], dict[str, Any]] = {}
    for block, indices in sorted(by_block.items()):
        for item in receipt_proofs(w3, block, sorted(indices)):
            receipts[(block, item["tx_index"])] = item
        for index, tx in transaction_proofs(w3, block, sorted(indices)).items():
            transactions[(block, index)] = tx
    parties = []
    for org_id, (block, tx_index, tx_hash, log_index) in sorted(parties_at.items()):
        row = organizations[org_id]
        parties.append(
            {
                "org_id": org_id,
                "name": row.name,
                "gln": row.gln,
                "log_position": _log_position(w3, tx_hash, log_index),
                "evidence": receipts[(block, tx_index)],
            }
        )
    entries = []
    for s, view in zip(steps, shown, strict=True):
        claim = {
            "action": s.action,
            "block_number": s.block_number,
            "tx_index": s.tx_index,
            "tx_hash": s.tx_hash,
            "log_position": _log_position(w3, s.tx_hash, s.log_index),
            "timestamp": s.timestamp,
            "org_id": (view["organization"] or {}).get("org_id"),
            "signer": view["signer"],
            "counterparty": (view["counterparty"] or {}).get("org_id"),
            "event_hash": s.event_hash,
            "epcis_event_id": view["epcis_event_id"],
            "via": s.via,
        }
        if "shipment_id" in view:
            claim["shipment_id"] = view["shipment_id"]
        if "reason" in view:
            claim["reason"] = view["reason"]
        key = (s.block_number, s.tx_index)
        entries.append({"claim": claim, "evidence": receipts[key], "transaction": transactions[key]})
    return {
        "format": FORMAT,
        "chain_id": chain_id,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "subject": subject,
        "contracts": {name: contracts[name] for name in ("CustodyLedger", "ConsortiumRegistry")},
        "parties": parties,
        "steps": entries,
    }
