"""May this pack be handed to a patient? One answer from the read models: genuine or not, lot and
expiry against the record, batch and pack status, custody, a verdict with its reasons and alert
codes, and the chain evidence (block and events) the answer rests on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.engine import RowMapping

from api.auth import REGULATOR, Principal
from api.epcis.plain import expiry_date
from node.gs1.scan import Identifier
from node.indexer.custody import resolve
from node.indexer.schema import (
    Batch,
    BatchStatusChange,
    Checkpoint,
    CustodyEvent,
    CustodyEventItem,
    Organization,
    Product,
    Unit,
    table,
)
from node.ledger.constants import BatchStatus, SuspectStatus, UnitState
from node.ledger.identifiers import unit_key

# alert codes: the suspicious cases, raised to the sponsor and regulators
UNKNOWN_SERIAL = "UNKNOWN_SERIAL"
ALREADY_DISPENSED = "ALREADY_DISPENSED"
LOT_MISMATCH = "LOT_MISMATCH"
EXPIRY_MISMATCH = "EXPIRY_MISMATCH"
RECALLED = "RECALLED"
SUSPECT = "SUSPECT"
WRONG_HOLDER = "WRONG_HOLDER"
COUNTERFEIT_SIGNALS = (UNKNOWN_SERIAL, ALREADY_DISPENSED, LOT_MISMATCH, EXPIRY_MISMATCH)
EVENTS_SHOWN = 20  # newest custody events cited as evidence


@dataclass
class Verification:
    """The answer, and the alerts it raises (persisted by the caller)."""

    body: dict[str, Any]
    alerts: list[str] = field(default_factory=list)
    key: str | None = None
    batch_id: str | None = None
    sponsor_org: int | None = None


def _org_name(conn: Connection, org_id: int) -> str | None:
    o = table(Organization)
    name = conn.execute(select(o.c.name).where(o.c.id == org_id)).scalar()
    return str(name) if name is not None else None


def evidence(conn: Connection, key: str | None, batch_id: str | None) -> dict[str, Any]:
    """The block the read models stand at, and the on-chain events (block, log index, tx) the answer
    rests on: the pack's custody events and its batch's last status change."""
    cp = conn.execute(select(table(Checkpoint))).first()
    events: list[dict[str, Any]] = []
    if key is not None:
        ci, ce = table(CustodyEventItem), table(CustodyEvent)
        rows = conn.execute(
            select(ce.c.block_number, ce.c.log_index, ce.c.tx_hash, ce.c.action, ce.c.event_hash)
            .join(ci, and_(ci.c.block_number == ce.c.block_number, ci.c.log_index == ce.c.log_index))
            .where(ci.c.item_key == key)
            .order_by(ce.c.block_number.desc(), ce.c.log_index.desc())
            .limit(EVENTS_SHOWN)
        ).all()
        events = [
            {
                "block": r.block_number,
                "log_index": r.log_index,
                "tx_hash": r.tx_hash,
                "action": r.action,
                "event_hash": r.event_hash,
            }
            for r in reversed(rows)
        ]
    if batch_id is not None:
        h = table(BatchStatusChange)
        last = conn.execute(
            select(h)
            .where(h.c.batch_id == batch_id)
            .order_by(h.c.block_number.desc(), h.c.log_index.desc())
            .limit(1)
        ).first()
        if last is not None:
            events.append(
                {
                    "block": last.block_number,
                    "log_index": last.log_index,
                    "tx_hash": last.tx_hash,
                    "action": "batch_status_changed",
                }
            )
    return {
        "block_number": int(cp.block_number) if cp else None,
        "block_hash": cp.block_hash if cp else None,
        "chain_id": int(cp.chain_id) if cp else None,
        "events": events,
    }


def _may_see_parties(principal: Principal, batch: RowMapping) -> bool:
    """Who holds a pack is shown to its holder, the batch's sponsor and maker, and regulators."""
    return REGULATOR in principal.org_roles or principal.org_id in (batch["sponsor"], batch["manufacturer"])


def verify_pack(
    conn: Connection, principal: Principal, ident: Identifier, *, today: dt.date | None = None
) -> Verification:
    assert ident.gtin is not None and ident.serial is not None
    today = today or dt.datetime.now(dt.UTC).date()
    key = "0x" + unit_key(ident.gtin, ident.serial).hex()
    pack = {
        "gtin": ident.gtin,
        "serial": ident.serial,
        "lot": ident.lot,
        "expiry": ident.expiry.isoformat() if ident.expiry else None,
    }
    sponsor = conn.execute(
        select(table(Product).c.sponsor_org).where(table(Product).c.gtin == ident.gtin)
    ).scalar()
    unit = conn.execute(select(table(Unit)).where(table(Unit).c.key == key)).mappings().first()
    if unit is None:
        reason = "unknown serial: never commissioned on the network" if sponsor else "unknown product (GTIN)"
        body = {
            "pack": pack,
            "key": key,
            "genuine": False,
            "verdict": "do_not_dispense",
            "reasons": [reason],
            "alerts": [UNKNOWN_SERIAL],
            "evidence": evidence(conn, None, None),
        }
        return Verification(body, [UNKNOWN_SERIAL], key, None, int(sponsor) if sponsor else None)
    batch = (
        conn.execute(select(table(Batch)).where(table(Batch).c.batch_id == unit["batch_id"])).mappings().one()
    )
    reasons: list[str] = []
    alerts: list[str] = []
    record_expiry = expiry_date(int(batch["expiry"]))
    lot_ok = ident.lot is None or ident.lot == batch["lot"]
    expiry_ok = ident.expiry is None or ident.expiry == record_expiry
    if not lot_ok:
        reasons.append(f"the lot on the pack ({ident.lot}) is not the recorded lot")
        alerts.append(LOT_MISMATCH)
    if not expiry_ok:
        reasons.append("the expiry on the pack is not the recorded expiry")
        alerts.append(EXPIRY_MISMATCH)
    status = BatchStatus(int(batch["status"])).name.lower()
    if status != "released":
        reasons.append(f"batch is {status}")
        if status == "recalled":
            alerts.append(RECALLED)
    expired = record_expiry < today
    if expired:
        reasons.append(f"expired on {record_expiry.isoformat()}")
    state = UnitState(int(unit["state"]))
    custody = resolve(conn, dict(unit))
    in_transit = custody.shipment_id is not None
    held_by_you = custody.holder == principal.org_id and not in_transit
    if state != UnitState.ACTIVE:
        by_you = custody.holder == principal.org_id
        where = "by your organisation" if by_you else "by another organisation"
        reasons.append(f"already decommissioned ({state.name.lower()}) {where}")
        if state == UnitState.DISPENSED and not by_you:
            alerts.append(ALREADY_DISPENSED)
    suspect = max(int(unit["suspect"]), int(batch["suspect"]))
    if suspect:
        reasons.append(f"{'pack' if unit['suspect'] else 'batch'} is {SuspectStatus(suspect).name.lower()}")
        alerts.append(SUSPECT)
    if in_transit:
        reasons.append("in transit: receive it first")
    elif state == UnitState.ACTIVE and not held_by_you:
        reasons.append("held by another organisation")
        alerts.append(WRONG_HOLDER)
    elif custody.packed:
        reasons.append("still inside a case: unpack it first")
    show_parties = held_by_you or _may_see_parties(principal, batch)
    body = {
        "pack": pack,
        "key": key,
        "genuine": True,
        "manufacturer": {
            "org_id": int(batch["manufacturer"]),
            "name": _org_name(conn, int(batch["manufacturer"])),
        },
        "record": {"batch_id": batch["batch_id"], "lot": batch["lot"], "expiry": record_expiry.isoformat()},
        "lot_matches": lot_ok if ident.lot is not None else None,
        "expiry_matches": expiry_ok if ident.expiry is not None else None,
        "batch_status": status,
        "expired": expired,
        "pack_status": "in_transit" if in_transit and state == UnitState.ACTIVE else state.name.lower(),
        "suspect": SuspectStatus(suspect).name.lower(),
        "held_by_you": held_by_you,
        "holder": (
            {"org_id": custody.holder, "name": _org_name(conn, custody.holder)} if show_parties else None
        ),
        "packed": custody.packed,
        "verdict": "ok_to_dispense" if not reasons else "do_not_dispense",
        "reasons": reasons,
        "alerts": alerts,
        "evidence": evidence(conn, key, batch["batch_id"]),
    }
    return Verification(body, alerts, key, batch["batch_id"], int(batch["sponsor"]))
