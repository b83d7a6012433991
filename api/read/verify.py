"""May this pack be handed to a patient? One answer from the read models: genuine or not, lot and
expiry against the record, batch and pack status, custody, a verdict with its reasons and alert
codes, and the chain evidence (block and events) the answer rests on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, bindparam, text
from sqlalchemy.engine import RowMapping

from api.edge.auth import REGULATOR, Principal
from api.epcis.plain import expiry_date
from node.gs1.scan import Identifier
from node.indexer.custody import Custody, resolve
from node.ledger.constants import BatchStatus, ContainerState, SuspectStatus, UnitState
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


# Hand-written SQL, built once: the counter's hot path. SQLAlchemy Core built a statement and its
# cache key per query per call, ~10x the time the database took (scripts/bench-verify --profile);
# `text()` statements are compiled once per dialect. One join reads the pack, its batch, its direct
# container and the parties' names; nested containers fall back to node.indexer.custody.resolve.
_PACK = text(
    'SELECT u."key", u.batch_id, u.state, u.suspect, u.holder, u.parent_key, u.shipment_id,'
    " b.lot, b.expiry, b.status AS batch_status, b.suspect AS batch_suspect, b.manufacturer, b.sponsor,"
    " c.state AS c_state, c.holder AS c_holder, c.parent_key AS c_parent, c.shipment_id AS c_shipment,"
    " om.name AS manufacturer_name"
    " FROM units u JOIN batches b ON b.batch_id = u.batch_id"
    ' LEFT JOIN containers c ON c."key" = u.parent_key'
    " LEFT JOIN organizations om ON om.id = b.manufacturer"
    ' WHERE u."key" = :key'
)
# A tote: the same join for all its packs, and each pack's last events in one statement
_PACKS = text(_PACK.text.replace('WHERE u."key" = :key', 'WHERE u."key" IN :keys')).bindparams(
    bindparam("keys", expanding=True)
)
_SPONSOR = text("SELECT sponsor_org FROM products WHERE gtin = :gtin")
_ORG_NAME = text("SELECT name FROM organizations WHERE id = :id")
_CHECKPOINT = text("SELECT block_number, block_hash, chain_id FROM indexer_checkpoint LIMIT 1")
_EVENTS = text(
    "SELECT ce.block_number, ce.log_index, ce.tx_hash, ce.action, ce.event_hash"
    " FROM custody_event_items ci JOIN custody_events ce"
    " ON ci.block_number = ce.block_number AND ci.log_index = ce.log_index"
    " WHERE ci.item_key = :key ORDER BY ce.block_number DESC, ce.log_index DESC LIMIT :n"
)
_EVENTS_MANY = text(
    "SELECT item_key, block_number, log_index, tx_hash, action, event_hash FROM ("
    " SELECT ci.item_key, ce.block_number, ce.log_index, ce.tx_hash, ce.action, ce.event_hash,"
    " ROW_NUMBER() OVER (PARTITION BY ci.item_key ORDER BY ce.block_number DESC, ce.log_index DESC) AS rn"
    " FROM custody_event_items ci JOIN custody_events ce"
    " ON ci.block_number = ce.block_number AND ci.log_index = ce.log_index"
    " WHERE ci.item_key IN :keys) recent"
    " WHERE rn <= :n ORDER BY item_key, block_number DESC, log_index DESC"
).bindparams(bindparam("keys", expanding=True))
_LAST_STATUS = text(
    "SELECT block_number, log_index, tx_hash FROM batch_status_history WHERE batch_id = :batch_id"
    " ORDER BY block_number DESC, log_index DESC LIMIT 1"
)


def _org_name(conn: Connection, org_id: int) -> str | None:
    name = conn.execute(_ORG_NAME, {"id": org_id}).scalar()
    return str(name) if name is not None else None


def evidence(conn: Connection, key: str | None, batch_id: str | None) -> dict[str, Any]:
    """The block the read models stand at, and the on-chain events (block, log index, tx) the answer
    rests on: the pack's custody events and its batch's last status change."""
    cp = conn.execute(_CHECKPOINT).first()
    rows = conn.execute(_EVENTS, {"key": key, "n": EVENTS_SHOWN}).all() if key is not None else []
    last = conn.execute(_LAST_STATUS, {"batch_id": batch_id}).first() if batch_id is not None else None
    return _evidence(cp, rows, last)


def _evidence(cp: Row[Any] | None, newest_first: Sequence[Any], last: Row[Any] | None) -> dict[str, Any]:
    events: list[dict[str, Any]] = [
        {
            "block": r.block_number,
            "log_index": r.log_index,
            "tx_hash": r.tx_hash,
            "action": r.action,
            "event_hash": r.event_hash,
        }
        for r in reversed(newest_first)
    ]
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


def pack_custody(conn: Connection, row: RowMapping) -> Custody:
    """Custody of a pack read by `_PACK`: loose, or in a container that is itself loose (the counter's
    cases), from the row; deeper nesting through the general resolver."""
    if row["parent_key"] is None:
        return Custody(int(row["holder"]), False, None, row["shipment_id"])
    if row["c_state"] is not None and row["c_parent"] is None:
        if row["c_state"] == ContainerState.DISSOLVED:
            return Custody(int(row["c_holder"]), False, None, None)
        return Custody(int(row["c_holder"]), True, row["parent_key"], row["c_shipment"])
    return resolve(conn, dict(row))


def _may_see_parties(principal: Principal, batch: RowMapping) -> bool:
    """Who holds a pack is shown to its holder, the batch's sponsor and maker, and regulators."""
    return REGULATOR in principal.org_roles or principal.org_id in (batch["sponsor"], batch["manufacturer"])


def _key(ident: Identifier) -> str:
    assert ident.gtin is not None and ident.serial is not None
    return "0x" + unit_key(ident.gtin, ident.serial).hex()


def verify_pack(
    conn: Connection, principal: Principal, ident: Identifier, *, today: dt.date | None = None
) -> Verification:
    key = _key(ident)
    unit = conn.execute(_PACK, {"key": key}).mappings().first()
    return _judge(conn, principal, ident, key, unit, today=today, evidence_of=evidence)


def verify_packs(
    conn: Connection, principal: Principal, idents: Sequence[Identifier], *, today: dt.date | None = None
) -> list[Verification]:
    """`verify_pack` for a tote, set-based: one statement reads all its packs, one their last events,
    one per batch its last status change, and one the checkpoint (instead of five per pack)."""
    keys = [_key(ident) for ident in idents]
    distinct = sorted(set(keys))
    units = {r["key"]: r for r in conn.execute(_PACKS, {"keys": distinct}).mappings()}
    recent: dict[str, list[Any]] = {}
    for r in conn.execute(_EVENTS_MANY, {"keys": sorted(units), "n": EVENTS_SHOWN}) if units else ():
        recent.setdefault(r.item_key, []).append(r)
    cp = conn.execute(_CHECKPOINT).first()
    last: dict[str, Row[Any] | None] = {
        b: conn.execute(_LAST_STATUS, {"batch_id": b}).first()
        for b in sorted({str(u["batch_id"]) for u in units.values()})
    }

    def evidence_of(_: Connection, key: str | None, batch_id: str | None) -> dict[str, Any]:
        return _evidence(cp, recent.get(key, []) if key else [], last.get(batch_id) if batch_id else None)

    name_of = cache(lambda org_id: _org_name(conn, org_id))  # a tote's packs mostly share a holder
    return [
        _judge(
            conn, principal, ident, key, units.get(key), today=today, evidence_of=evidence_of, name_of=name_of
        )
        for ident, key in zip(idents, keys, strict=True)
    ]


def _judge(
    conn: Connection,
    principal: Principal,
    ident: Identifier,
    key: str,
    unit: RowMapping | None,
    *,
    today: dt.date | None,
    evidence_of: Callable[[Connection, str | None, str | None], dict[str, Any]],
    name_of: Callable[[int], str | None] | None = None,
) -> Verification:
    """The answer for one pack from its row (`_PACK`, None when unknown)."""
    name_of = name_of or (lambda org_id: _org_name(conn, org_id))
    assert ident.gtin is not None and ident.serial is not None
    today = today or dt.datetime.now(dt.UTC).date()
    pack = {
        "gtin": ident.gtin,
        "serial": ident.serial,
        "lot": ident.lot,
        "expiry": ident.expiry.isoformat() if ident.expiry else None,
    }
    if unit is None:
        sponsor = conn.execute(_SPONSOR, {"gtin": ident.gtin}).scalar()
        reason = "unknown serial: never commissioned on the network" if sponsor else "unknown product (GTIN)"
        body = {
            "pack": pack,
            "key": key,
            "genuine": False,
            "verdict": "do_not_dispense",
            "reasons": [reason],
            "alerts": [UNKNOWN_SERIAL],
            "evidence": evidence_of(conn, None, None),
        }
        return Verification(body, [UNKNOWN_SERIAL], key, None, int(sponsor) if sponsor else None)
    batch = unit  # the row carries the batch's columns too
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
    status = BatchStatus(int(batch["batch_status"])).name.lower()
    if status != "released":
        reasons.append(f"batch is {status}")
        if status == "recalled":
            alerts.append(RECALLED)
    expired = record_expiry < today
    if expired:
        reasons.append(f"expired on {record_expiry.isoformat()}")
    state = UnitState(int(unit["state"]))
    custody = pack_custody(conn, unit)
    in_transit = custody.shipment_id is not None
    held_by_you = custody.holder == principal.org_id and not in_transit
    if state != UnitState.ACTIVE:
        by_you = custody.holder == principal.org_id
        where = "by your organisation" if by_you else "by another organisation"
        reasons.append(f"already decommissioned ({state.name.lower()}) {where}")
        if state == UnitState.DISPENSED and not by_you:
            alerts.append(ALREADY_DISPENSED)
    suspect = max(int(unit["suspect"]), int(batch["batch_suspect"]))
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
            "name": batch["manufacturer_name"],
        },
        "record": {"batch_id": batch["batch_id"], "lot": batch["lot"], "expiry": record_expiry.isoformat()},
        "lot_matches": lot_ok if ident.lot is not None else None,
        "expiry_matches": expiry_ok if ident.expiry is not None else None,
        "batch_status": status,
        "expired": expired,
        "pack_status": "in_transit" if in_transit and state == UnitState.ACTIVE else state.name.lower(),
        "suspect": SuspectStatus(suspect).name.lower(),
        "held_by_you": held_by_you,
        "holder": ({"org_id": custody.holder, "name": name_of(custody.holder)} if show_parties else None),
        "packed": custody.packed,
        "verdict": "ok_to_dispense" if not reasons else "do_not_dispense",
        "reasons": reasons,
        "alerts": alerts,
        "evidence": evidence_of(conn, key, batch["batch_id"]),
    }
    return Verification(body, alerts, key, batch["batch_id"], int(batch["sponsor"]))
