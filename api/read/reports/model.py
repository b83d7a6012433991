"""What an inspection report holds: the parties, the on-chain steps, certificates, status changes and
hand-overs (built by api/read/reports/build.py from the database and the chain; drawn by the modules
beside it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Party:
    org_id: int
    name: str
    gln: str


@dataclass(frozen=True)
class Step:
    """One on-chain custody event, in chain order."""

    action: str  # e.g. "commissioned", "packed", "shipped", "received", "decommissioned (dispensed)"
    at: datetime  # block time, UTC-aware
    party: Party  # who acted
    counterparty: Party | None  # e.g. the addressee of a shipment
    block_number: int
    tx_hash: str  # 0x...
    log_index: int
    signer: str  # 0x address of the signing key
    event_id: str | None  # EPCIS Event Hash ID ni:///sha-256;...?ver=CBV2.0
    detail: str = ""  # free text (shipment id, reason...)


@dataclass(frozen=True)
class CertificateRow:
    kind: str
    sha256: str
    signer: str
    party: Party
    meaning: str
    at: datetime


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    from_status: str
    to_status: str
    party: Party
    reason: str


@dataclass(frozen=True)
class Handover:
    """An edge of the custody diagram."""

    sender: Party
    receiver: Party
    at: datetime
    label: str = ""


@dataclass(frozen=True)
class InspectionReport:
    title: str  # e.g. "Pack 09506000134352 / PK7Q2X9A"
    subject: str  # "pack" | "container" | "batch"
    identifiers: dict[str, str]  # ordered: GTIN, serial, lot, expiry, SSCC, batch id, key... as given
    generated_at: datetime
    generated_by: str  # user and organisation
    chain_id: int
    evidence_block: int  # the block at which the report is true
    evidence_block_hash: str
    status: str  # current status in words (e.g. "dispensed", "in transit", "released")
    steps: list[Step]
    certificates: list[CertificateRow]
    status_history: list[StatusChange]
    handovers: list[Handover]  # the custody path for the diagram
    holders: list[tuple[str, str, int]] = field(default_factory=list)  # batch: (holder, status, units)
