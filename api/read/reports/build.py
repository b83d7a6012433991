"""The inspection report's data from a trail as the caller may see it (see api/read/provenance.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from api.edge.identifiers import shipment_label
from api.read.reports.inspection import (
    CertificateRow,
    Handover,
    InspectionReport,
    Party,
    StatusChange,
    Step,
)


def _at(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)


def _party(view: dict[str, Any] | None) -> Party | None:
    if view is None:
        return None
    return Party(
        org_id=int(view.get("org_id") or 0), name=str(view.get("name") or "?"), gln=str(view.get("gln") or "")
    )


def _named(row: dict[str, Any]) -> Party:
    return Party(
        org_id=int(row.get("org_id") or 0),
        name=str(row.get("organization") or "?"),
        gln=str(row.get("gln") or ""),
    )


def _shipment(hex_id: str) -> str:
    """A shipment id as its sender wrote it (text ids are stored as padded bytes32)."""
    return shipment_label(bytes.fromhex(hex_id.removeprefix("0x")))


def report(
    *,
    subject: dict[str, Any],
    batch: dict[str, Any] | None,
    steps: Sequence[dict[str, Any]],
    history: dict[str, Any],
    evidence: dict[str, Any],
    chain_id: int,
    generated_by: str,
    status: str,
    holders: Sequence[tuple[str, str, int]] = (),
) -> InspectionReport:
    identifiers: dict[str, str] = {}
    if subject.get("gtin"):
        identifiers["GTIN"] = subject["gtin"]
    if subject.get("serial"):
        identifiers["Serial"] = subject["serial"]
    if batch is not None:
        identifiers["Lot"] = batch["lot"]
        identifiers["Expiry"] = batch["expiry"]
        identifiers["Batch id"] = batch["batch_id"]
    if subject.get("sscc"):
        identifiers["SSCC"] = subject["sscc"]
    if subject.get("key"):
        identifiers["On-chain key"] = subject["key"]
    trail: list[Step] = []
    handovers: list[Handover] = []
    for s in steps:
        party = _party(s["organization"]) or Party(org_id=0, name="?", gln="")
        counterparty = _party(s.get("counterparty"))
        detail = " ".join(
            part
            for part in (
                s.get("reason") or "",
                f"shipment {_shipment(s['shipment_id'])}" if s.get("shipment_id") else "",
            )
            if part
        )
        trail.append(
            Step(
                action=s["action"] + (f" ({s['reason']})" if s.get("reason") else ""),
                at=_at(s["timestamp"]),
                party=party,
                counterparty=counterparty,
                block_number=int(s["block_number"]),
                tx_hash=s["tx_hash"],
                log_index=int(s["log_index"]),
                signer=s.get("signer") or "(withheld)",
                event_id=s.get("epcis_event_id"),
                detail=detail,
            )
        )
        if s["action"] == "shipped" and counterparty is not None:
            handovers.append(
                Handover(
                    sender=party,
                    receiver=counterparty,
                    at=_at(s["timestamp"]),
                    label=_shipment(s["shipment_id"]) if s.get("shipment_id") else "",
                )
            )
    title = (
        f"Pack {subject['gtin']} / {subject['serial']}"
        if subject.get("kind") == "unit"
        else f"Container {subject['sscc']}"
        if subject.get("kind") == "container"
        else f"Batch {batch['lot'] if batch else ''}"
    )
    return InspectionReport(
        title=title,
        subject={"unit": "pack", "container": "container"}.get(str(subject.get("kind")), "batch"),
        identifiers=identifiers,
        generated_at=dt.datetime.now(dt.UTC),
        generated_by=generated_by,
        chain_id=chain_id,
        evidence_block=int(evidence.get("block_number") or 0),
        evidence_block_hash=str(evidence.get("block_hash") or ""),
        status=status,
        steps=trail,
        certificates=[
            CertificateRow(
                kind=c["kind"],
                sha256=c["document_sha256"],
                signer=c["signer"],
                party=_named(c),
                meaning=c["meaning"],
                at=_at(c["timestamp"]),
            )
            for c in history.get("certificates", [])
        ],
        status_history=[
            StatusChange(
                at=_at(h["timestamp"]),
                from_status=h["from"],
                to_status=h["to"],
                party=_named(h),
                reason=h.get("reason_hash", ""),
            )
            for h in history.get("status_history", [])
        ],
        handovers=handovers,
        holders=list(holders),
    )
