"""Where has this pack (or case, or batch) been? The trail in chain order, built from the read models:
the item's own custody events and, while it sat in a container, the container's (recursively:
case in pallet), each step with its block, transaction, log, signing key, organisation and the EPCIS
Event Hash ID it anchors. Containment comes from the chain: packing events, and the commissioning
log itself (which lists the cases units were commissioned into)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, select
from web3 import Web3

from api.edge.auth import REGULATOR, Principal
from api.models.epcis import EpcisEvent
from node.indexer.custody import resolve
from node.indexer.schema import (
    Batch,
    BatchStatusChange,
    Certificate,
    CustodyEvent,
    CustodyEventItem,
    Organization,
    Unit,
    table,
)
from node.ledger.constants import BatchStatus, CertificateKind, UnitState

Pos = tuple[int, int]  # (block number, log index): chain order
END: Pos = (2**62, 0)
ACTIONS_WITH_PARTY_DETAIL = ("shipped", "received", "rejected", "missing", "reclaimed")


@dataclass
class Step:
    block_number: int
    log_index: int
    tx_index: int
    tx_hash: str
    timestamp: int
    action: str
    org_id: int
    signer: str
    counterparty: int | None
    event_hash: str
    reason: int | None
    subject: str | None
    via: str  # the key through which the step concerns the item (itself, or a container holding it)
    item_keys: list[str] = field(default_factory=list)

    @property
    def pos(self) -> Pos:
        return (self.block_number, self.log_index)


def _events(conn: Connection, key: str, start: Pos, end: Pos) -> list[Step]:
    ci, ce = table(CustodyEventItem), table(CustodyEvent)
    rows = conn.execute(
        select(ce)
        .join(ci, and_(ci.c.block_number == ce.c.block_number, ci.c.log_index == ce.c.log_index))
        .where(ci.c.item_key == key)
        .order_by(ce.c.block_number, ce.c.log_index)
    ).mappings()
    steps = []
    for r in rows:
        pos = (int(r["block_number"]), int(r["log_index"]))
        if start <= pos < end:
            steps.append(
                Step(
                    block_number=pos[0],
                    log_index=pos[1],
                    tx_index=int(r["tx_index"]),
                    tx_hash=r["tx_hash"],
                    timestamp=int(r["timestamp"]),
                    action=r["action"],
                    org_id=int(r["org_id"]),
                    signer=r["signer"],
                    counterparty=r["counterparty"],
                    event_hash=r["event_hash"],
                    reason=r["reason"],
                    subject=r["subject"],
                    via=key,
                )
            )
    return steps


def commissioned_into(w3: Web3 | None, registry_abi: Any, step: Step, key: str) -> str | None:
    """The case a unit was commissioned into, read from the commissioning log on chain (the read
    models keep only the current parent)."""
    if w3 is None:
        return None
    receipt = w3.eth.get_transaction_receipt(step.tx_hash)  # type: ignore[arg-type]
    for log in receipt["logs"]:
        if int(log["logIndex"]) != step.log_index:
            continue
        event = w3.eth.contract(abi=registry_abi).events.UnitsCommissioned().process_log(log)
        containers = ["0x" + bytes(c).hex() for c in event["args"]["containerKeys"]]
        keys = ["0x" + bytes(k).hex() for k in event["args"]["keys"]]
        if not containers or key not in keys:
            return None
        per = len(keys) // len(containers)
        return containers[keys.index(key) // per]
    return None


def trail(
    conn: Connection,
    key: str,
    *,
    w3: Web3 | None,
    custody_abi: Any,
    start: Pos = (0, 0),
    end: Pos = END,
    depth: int = 0,
) -> list[Step]:
    """Every step concerning `key` in [start, end), including those of the containers it was in."""
    own = _events(conn, key, start, end)
    steps = list(own)
    parent: str | None = None
    entered: Pos = start
    for step in own:
        if step.action == "commissioned":
            parent, entered = commissioned_into(w3, custody_abi, step, key), step.pos
        elif step.action == "packed" and step.subject != key:
            parent, entered = step.subject, step.pos
        elif step.action == "unpacked" and parent is not None:
            if depth < 8:
                steps += trail(
                    conn, parent, w3=w3, custody_abi=custody_abi, start=entered, end=step.pos, depth=depth + 1
                )
            parent = None
    if parent is not None and depth < 8:
        # still inside (or the container was emptied: its "emptied" event ends the stay)
        steps += trail(conn, parent, w3=w3, custody_abi=custody_abi, start=entered, end=end, depth=depth + 1)
    first: dict[Pos, Step] = {}
    for s in steps:  # an event naming both the item and its container counts once, as the item's
        first.setdefault(s.pos, s)
    return sorted(first.values(), key=lambda s: s.pos)


def org_names(conn: Connection) -> dict[int, dict[str, str]]:
    o = table(Organization)
    return {
        int(r.id): {"name": r.name, "gln": r.gln, "roles": r.roles} for r in conn.execute(select(o)).all()
    }


def event_ids(conn: Connection, digests: Sequence[str]) -> dict[str, str]:
    """EPCIS Event Hash IDs of the anchored digests this API knows."""
    if not digests:
        return {}
    e = EpcisEvent.__table__  # type: ignore[attr-defined]
    rows = conn.execute(select(e.c.digest, e.c.hash_id).where(e.c.digest.in_(list(set(digests))))).all()
    return {str(d): str(h) for d, h in rows}


def describe(
    steps: Sequence[Step], conn: Connection, principal: Principal, *, full_view: bool
) -> list[dict[str, Any]]:
    """The steps as the principal may see them: other parties reduced to their kind unless the
    principal is a regulator, the batch's sponsor or maker (full_view), or a party to the step."""
    names = org_names(conn)
    ids = event_ids(conn, [s.event_hash for s in steps])
    out = []
    for s in steps:
        party_to_it = principal.org_id in (s.org_id, s.counterparty)
        shown = full_view or party_to_it

        def party(org: int | None, shown: bool = shown) -> dict[str, Any] | None:
            if org is None:
                return None
            info = names.get(org, {"name": "?", "gln": "", "roles": ""})
            if shown or org == principal.org_id:
                return {"org_id": org, "name": info["name"], "gln": info["gln"], "roles": info["roles"]}
            return {"org_id": None, "name": f"another organisation ({info['roles'].lower() or 'member'})"}

        step: dict[str, Any] = {
            "block_number": s.block_number,
            "log_index": s.log_index,
            "tx_index": s.tx_index,
            "tx_hash": s.tx_hash,
            "timestamp": s.timestamp,
            "action": s.action,
            "organization": party(s.org_id),
            "counterparty": party(s.counterparty),
            "signer": s.signer if shown else None,
            "event_hash": s.event_hash,
            "epcis_event_id": ids.get(s.event_hash),
            "via": s.via,
        }
        if s.action == "decommissioned" and s.reason is not None:
            step["reason"] = UnitState(s.reason).name.lower()
        if s.action in ACTIONS_WITH_PARTY_DETAIL:
            step["shipment_id"] = s.subject if shown else None
        out.append(step)
    return out


def batch_history(conn: Connection, batch_id: str) -> dict[str, Any]:
    """Status history and certificates of a batch, with signers and meaning."""
    h, c = table(BatchStatusChange), table(Certificate)
    names = org_names(conn)
    history = [
        {
            "block_number": r.block_number,
            "log_index": r.log_index,
            "tx_hash": r.tx_hash,
            "timestamp": r.timestamp,
            "from": BatchStatus(r.from_status).name.lower(),
            "to": BatchStatus(r.to_status).name.lower(),
            "organization": names.get(int(r.org_id), {}).get("name"),
            "org_id": int(r.org_id),
            "gln": names.get(int(r.org_id), {}).get("gln"),
            "signer": r.signer,
            "reason_hash": r.reason_hash,
        }
        for r in conn.execute(
            select(h).where(h.c.batch_id == batch_id).order_by(h.c.block_number, h.c.log_index)
        )
    ]
    certificates = [
        {
            "document_sha256": r.document_hash,
            "kind": CertificateKind(r.kind).name.lower(),
            "meaning": r.meaning,
            "organization": names.get(int(r.org_id), {}).get("name"),
            "org_id": int(r.org_id),
            "gln": names.get(int(r.org_id), {}).get("gln"),
            "signer": r.signer,
            "block_number": r.block_number,
            "tx_hash": r.tx_hash,
            "timestamp": r.timestamp,
        }
        for r in conn.execute(select(c).where(c.c.batch_id == batch_id).order_by(c.c.position))
    ]
    return {"status_history": history, "certificates": certificates}


def batch_row(conn: Connection, batch_id: str) -> Any:
    return conn.execute(select(table(Batch)).where(table(Batch).c.batch_id == batch_id)).mappings().first()


def unit_row(conn: Connection, key: str) -> Any:
    return conn.execute(select(table(Unit)).where(table(Unit).c.key == key)).mappings().first()


def full_view(principal: Principal, batch: Any) -> bool:
    return REGULATOR in principal.org_roles or (
        batch is not None and principal.org_id in (batch["sponsor"], batch["manufacturer"])
    )


def units_now(conn: Connection, batch_id: str) -> Counter[tuple[int, str]]:
    """Units per (holder, status): loose units by their own holder; packed ones through their root
    container, resolved once per container rather than per unit."""
    u = table(Unit)
    counts: Counter[tuple[int, str]] = Counter()
    by_parent: Counter[tuple[str, int]] = Counter()
    for row in conn.execute(
        select(u.c.holder, u.c.state, u.c.parent_key, u.c.shipment_id).where(u.c.batch_id == batch_id)
    ):
        state = UnitState(int(row.state)).name.lower()
        if row.parent_key is None:
            counts[(int(row.holder), "in_transit" if row.shipment_id and state == "active" else state)] += 1
        else:
            by_parent[(row.parent_key, int(row.state))] += 1
    for (parent, state_value), n in by_parent.items():
        custody = resolve(conn, {"key": parent, "parent_key": parent, "holder": 0, "shipment_id": None})
        state = UnitState(state_value).name.lower()
        in_transit = custody.shipment_id is not None and state == "active"
        counts[(custody.holder, "in_transit" if in_transit else state)] += n
    return counts
