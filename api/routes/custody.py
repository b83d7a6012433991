"""Custody: commissioning, packing, shipping and receiving, decommissioning, suspect flags; and what
an organisation holds and has coming in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from eth_utils.crypto import keccak
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlmodel import Session

from api.edge.auth import Permit, Principal, RuntimeDep
from api.edge.identifiers import (
    Bytes32Hex,
    Gln,
    Serial,
    Sscc,
    UnitRef,
    shipment_bytes,
    shipment_label,
    sscc_key,
)
from api.edge.rules import rule_problem
from api.epcis.plain import EventWriter, expiry_date, org_gln
from api.models import KnownItem
from api.read.alerts import raise_alert
from api.routes.common import MAX_ROW_ID, Write, WriteDep, batch_row, org_by_gln, org_row
from api.routes.openapi import ACCEPTED
from api.runtime import Runtime
from api.write.plan import KeyRef, Plan, TxStep, chunks
from node.epcis import events as ev
from node.indexer.custody import resolve
from node.indexer.schema import Container, Shipment, ShipmentItem, Unit, table
from node.ledger.constants import ContainerState, UnitState
from node.ledger.identifiers import unit_key

router = APIRouter(prefix="/v1", tags=["custody"])

ReasonName = Literal[
    "dispensed", "destroyed", "sample", "free_sample", "exported", "stolen", "locked", "checked_out"
]
REASONS = {s.name.lower(): s for s in UnitState if s >= UnitState.DISPENSED}
STATE_NAMES = {s.value: s.name.lower() for s in UnitState}


class Items(BaseModel):
    """Packs by SGTIN and containers (cases, pallets) by SSCC."""

    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(default_factory=list, max_length=100_000)
    containers: list[Sscc] = Field(default_factory=list, max_length=100_000)


def resolve_items(items: Items, plan: Plan, *, prefix: str = "") -> list[bytes]:
    """Keys of the listed items in request order, each remembered with where it came from; the
    same item twice is a 422 naming the second occurrence."""
    keys: list[bytes] = []
    for i, unit in enumerate(items.units):
        key = unit.key
        if key in plan.refs:
            raise rule_problem(
                422,
                "duplicate-item",
                f"listed twice (first as {plan.refs[key].field})",
                field=f"{prefix}units[{i}]",
            )
        plan.refs[key] = KeyRef(key, "unit", f"{prefix}units[{i}]", gtin=unit.gtin, serial=unit.serial)
        keys.append(bytes.fromhex(key[2:]))
    for i, sscc in enumerate(items.containers):
        key = sscc_key(sscc)
        if key in plan.refs:
            raise rule_problem(
                422,
                "duplicate-item",
                f"listed twice (first as {plan.refs[key].field})",
                field=f"{prefix}containers[{i}]",
            )
        plan.refs[key] = KeyRef(key, "container", f"{prefix}containers[{i}]", sscc=sscc)
        keys.append(bytes.fromhex(key[2:]))
    if not keys:
        raise rule_problem(
            422, "empty-list", "list at least one unit or container", field=prefix.rstrip(".") or "units"
        )
    return keys


def _hex(keys: Sequence[bytes]) -> list[str]:
    return ["0x" + k.hex() for k in keys]


def decommission_event(reason: str) -> dict[str, Any]:
    """The ObjectEvent fields of a decommissioning for `reason` (CBV words plus our exact reason)."""
    action, biz_step, disposition = ev.DECOMMISSION_VOCABULARY[reason]
    return {
        "action": action,
        "biz_step": biz_step,
        "disposition": disposition,
        "extensions": {"rxl:decommissionReason": reason},
    }


def _split(runtime: Runtime, keys: Sequence[bytes]) -> list[Sequence[bytes]]:
    return list(chunks(list(keys), runtime.settings.items_per_tx))


# ---------------------------------------------------------------------- commissioning


class Commission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_id: Bytes32Hex
    serials: list[Serial] = Field(min_length=1, max_length=200_000)
    containers: list[Sscc] = Field(
        default_factory=list,
        max_length=10_000,
        description="cases to aggregate the packs into, split evenly in order (optional)",
    )


@router.post(
    "/commission", status_code=202, responses=ACCEPTED, summary="Commission serialised packs of a batch (CMO)"
)
async def commission(
    body: Commission,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("custody.commission"))],
    write: WriteDep,
) -> JSONResponse:
    batch = batch_row(runtime, body.batch_id)
    gtin = batch.gtin
    plan = Plan(kind="custody.commission", subject=body.batch_id.lower(), items_total=len(body.serials))
    keys: list[bytes] = []
    for i, serial in enumerate(body.serials):
        key = "0x" + unit_key(gtin, serial).hex()
        if key in plan.refs:
            raise rule_problem(
                422,
                "duplicate-serial",
                f"serial {serial!r} is listed twice (first as {plan.refs[key].field})",
                field=f"serials[{i}]",
            )
        plan.refs[key] = KeyRef(key, "unit", f"serials[{i}]", gtin=gtin, serial=serial)
        keys.append(bytes.fromhex(key[2:]))
    cases: list[bytes] = []
    for i, sscc in enumerate(body.containers):
        key = sscc_key(sscc)
        if key in plan.refs:
            raise rule_problem(422, "duplicate-item", "container listed twice", field=f"containers[{i}]")
        plan.refs[key] = KeyRef(key, "container", f"containers[{i}]", sscc=sscc)
        cases.append(bytes.fromhex(key[2:]))
    bid = bytes.fromhex(body.batch_id[2:])
    writer = EventWriter(runtime, plan, principal.org_id)
    ilmd = ev.commissioning_ilmd(batch.lot, expiry_date(batch.expiry))
    ehash = writer.objects(
        _hex(keys), action="ADD", biz_step="commissioning", disposition="active", ilmd=ilmd
    ).digest
    per_tx = runtime.settings.items_per_tx
    if cases:
        if len(keys) % len(cases):
            raise rule_problem(
                422,
                "uneven-aggregation",
                f"{len(keys)} packs do not split evenly into {len(cases)} containers",
                field="containers",
            )
        per_case = len(keys) // len(cases)
        for n, case in enumerate(_hex(cases)):
            units = _hex(keys[n * per_case : (n + 1) * per_case])
            writer.aggregation(case, units, action="ADD", biz_step="packing", anchoring="hash")
        cases_per_tx = max(1, per_tx // per_case)
        for start in range(0, len(cases), cases_per_tx):
            group = cases[start : start + cases_per_tx]
            ks = keys[start * per_case : (start + len(group)) * per_case]
            plan.steps.append(TxStep("CustodyLedger", "commission", [bid, group, ks, ehash], items=len(ks)))
    else:
        for part in chunks(keys, per_tx):
            plan.steps.append(
                TxStep("CustodyLedger", "commission", [bid, [], list(part), ehash], items=len(part))
            )
    writer.anchor_rest()
    plan.result = {"batch_id": body.batch_id.lower(), "event_hash": "0x" + ehash.hex()}
    return await write.submit(principal, plan, body)


# ---------------------------------------------------------------------- packing


class Pack(Items):
    container: Sscc


class Unpack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    container: Sscc
    units: list[UnitRef] = Field(default_factory=list)
    containers: list[Sscc] = Field(default_factory=list)


@router.post(
    "/pack",
    status_code=202,
    responses=ACCEPTED,
    summary="Pack units or containers into a container (aggregation)",
)
async def pack(
    body: Pack,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("custody.pack"))],
    write: WriteDep,
) -> JSONResponse:
    plan = Plan(kind="custody.pack", subject=body.container)
    keys = resolve_items(Items(units=body.units, containers=body.containers), plan)
    ckey = sscc_key(body.container)
    plan.refs[ckey] = KeyRef(ckey, "container", "container", sscc=body.container)
    writer = EventWriter(runtime, plan, principal.org_id)
    ehash = writer.aggregation(ckey, _hex(keys), action="ADD", biz_step="packing").digest
    for part in _split(runtime, keys):
        plan.steps.append(
            TxStep("CustodyLedger", "pack", [bytes.fromhex(ckey[2:]), list(part), ehash], items=len(part))
        )
    plan.items_total = len(keys)
    return await write.submit(principal, plan, body)


@router.post(
    "/unpack",
    status_code=202,
    responses=ACCEPTED,
    summary="Take items out of a container (all of them when none are listed)",
)
async def unpack(
    body: Unpack,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("custody.pack"))],
    write: WriteDep,
) -> JSONResponse:
    plan = Plan(kind="custody.unpack", subject=body.container)
    ckey = sscc_key(body.container)
    plan.refs[ckey] = KeyRef(ckey, "container", "container", sscc=body.container)
    writer = EventWriter(runtime, plan, principal.org_id)
    if not body.units and not body.containers:
        ehash = writer.aggregation(ckey, [], action="DELETE", biz_step="unpacking").digest
        plan.steps.append(TxStep("CustodyLedger", "unpackAll", [[bytes.fromhex(ckey[2:])], ehash], items=1))
        plan.items_total = 1
    else:
        keys = resolve_items(Items(units=body.units, containers=body.containers), plan)
        ehash = writer.aggregation(ckey, _hex(keys), action="DELETE", biz_step="unpacking").digest
        for part in _split(runtime, keys):
            plan.steps.append(
                TxStep(
                    "CustodyLedger", "unpack", [bytes.fromhex(ckey[2:]), list(part), ehash], items=len(part)
                )
            )
        plan.items_total = len(keys)
    return await write.submit(principal, plan, body)


# ---------------------------------------------------------------------- shipping


class Ship(Items):
    to_gln: Gln | None = None
    to_org: int | None = Field(default=None, gt=0, le=MAX_ROW_ID)
    shipment_id: str | None = Field(default=None, min_length=1, max_length=66)
    reference: str = Field(
        default="", max_length=500, description="despatch advice / PO number; anchored as a hash"
    )

    @model_validator(mode="after")
    def _one_destination(self) -> Ship:
        if (self.to_gln is None) == (self.to_org is None):
            raise ValueError("give exactly one of to_gln and to_org")
        return self


@router.post("/shipments", status_code=202, responses=ACCEPTED, summary="Ship items to another organisation")
async def ship(
    body: Ship,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("custody.ship"))],
    write: WriteDep,
) -> JSONResponse:
    dest = (
        org_by_gln(runtime, body.to_gln, "to_gln")
        if body.to_gln
        else org_row(runtime, body.to_org or 0, "to_org")
    )
    sid = body.shipment_id or uuid.uuid4().hex[:24]
    base = shipment_bytes(sid)
    plan = Plan(kind="custody.ship", subject=sid)
    keys = resolve_items(Items(units=body.units, containers=body.containers), plan)
    ref_hash = bytes(keccak(text=body.reference)) if body.reference else bytes(32)
    writer = EventWriter(runtime, plan, principal.org_id)
    ehash = writer.objects(
        _hex(keys),
        action="OBSERVE",
        biz_step="shipping",
        disposition="in_transit",
        biz_transactions=writer.shipment_refs(writer.gln, sid, body.reference),
        sources=[("owning_party", ev.party_dl(writer.gln or ""))],
        destinations=[("owning_party", ev.party_dl(dest.gln))],
    ).digest
    parts = _split(runtime, keys)
    ids: list[str] = []
    for n, part in enumerate(parts):
        # more items than one transaction carries: consecutive shipments "<id>/2", "<id>/3"...
        part_id = base if n == 0 else shipment_bytes(f"{sid[:28]}/{n + 1}")
        ids.append(shipment_label(part_id))
        plan.steps.append(
            TxStep(
                "CustodyLedger", "ship", [part_id, int(dest.id), list(part), ref_hash, ehash], items=len(part)
            )
        )
    plan.items_total = len(keys)
    plan.result = {"shipment_ids": ids, "to_org": int(dest.id)}
    return await write.submit(principal, plan, body)


class Settle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(default_factory=list)
    containers: list[Sscc] = Field(default_factory=list)
    reason: str = Field(default="", max_length=2000)


def _pending_items(runtime: Runtime, sid_hex: str) -> list[bytes]:
    s = table(ShipmentItem)
    with Session(runtime.engine) as session:
        rows = session.execute(
            select(s.c.item_key).where(s.c.shipment_id == sid_hex, s.c.outcome == "pending")
        ).scalars()
        return [bytes.fromhex(k[2:]) for k in rows]


def _shipment(runtime: Runtime, shipment_id: str) -> tuple[bytes, Any]:
    raw = shipment_bytes(shipment_id, "shipment_id")
    with Session(runtime.engine) as session:
        row = session.execute(
            select(table(Shipment)).where(table(Shipment).c.shipment_id == "0x" + raw.hex())
        ).first()
    if row is None:
        raise rule_problem(404, "unknown-shipment", f"no shipment {shipment_id}", field="shipment_id")
    return raw, row


async def _settle(
    principal: Principal,
    shipment_id: str,
    body: Settle,
    *,
    kind: str,
    fn: str,
    write: Write,
) -> JSONResponse:
    runtime = write.runtime
    raw, row = _shipment(runtime, shipment_id)
    if principal.org_id not in (row.from_org, row.to_org):
        # the same answer as reading it: to anyone else the shipment does not exist (a 403 or a
        # 409 here would confirm it, and tell its state)
        raise rule_problem(
            404, "unknown-shipment", f"no shipment {shipment_id} of yours", field="shipment_id"
        )
    plan = Plan(kind=kind, subject=shipment_id)
    if body.units or body.containers:
        keys = resolve_items(Items(units=body.units, containers=body.containers), plan)
    else:
        if fn != "receiveShipment":
            raise rule_problem(422, "empty-list", "list the items concerned", field="units")
        keys = _pending_items(runtime, "0x" + raw.hex())
        if not keys:
            raise rule_problem(
                409, "nothing-pending", "the shipment has no pending items", field="shipment_id"
            )
    ehash = bytes(32)
    if fn in ("receiveShipment", "rejectShipment"):  # the two settlements that carry an EPCIS event
        writer = EventWriter(runtime, plan, principal.org_id)
        item_keys = _hex(keys)
        writer.learn(item_keys)
        sender = org_gln(runtime, row.from_org)
        ehash = writer.objects(
            item_keys,
            action="OBSERVE",
            biz_step="receiving",
            disposition="in_progress" if fn == "receiveShipment" else "non_conformant",
            biz_transactions=writer.shipment_refs(sender, shipment_label(raw)),
            sources=[("owning_party", ev.party_dl(sender or ""))],
            destinations=[("owning_party", ev.party_dl(writer.gln or ""))],
        ).digest
    reason_hash = bytes(keccak(text=body.reason)) if body.reason else bytes(32)
    for part in _split(runtime, keys):
        args: list[Any]
        if fn == "receiveShipment":
            args = [raw, list(part), ehash]
        elif fn == "rejectShipment":
            args = [raw, list(part), reason_hash, ehash]
        else:  # reportMissing, reclaimShipment
            args = [raw, list(part), reason_hash]
        plan.steps.append(TxStep("CustodyLedger", fn, args, items=len(part)))
    plan.items_total = len(keys)
    response = await write.submit(
        principal,
        plan,
        {"shipment_id": shipment_id, **body.model_dump(mode="json")},
    )
    created = getattr(write.request.state, "operation_created", False)
    if created and fn in ("rejectShipment", "reportMissing"):  # discrepancies at receipt are alerts
        # (once: not again for a concurrent twin that `accept` answered with the first operation)
        discrepancy = {"shipment_id": shipment_id, "outcome": fn, "items": len(keys), "reason": body.reason}
        raise_alert(
            runtime.engine,
            "RECEIPT_DISCREPANCY",
            "0x" + raw.hex(),
            principal=principal,
            sponsor_org=None,
            detail={**discrepancy, "from_org": int(row.from_org), "to_org": int(row.to_org)},
        )
    return response


@dataclass(frozen=True)
class ShipmentAction:
    """One settlement of a shipment's items: its path, who may, and the contract function."""

    path: str  # /shipments/{shipment_id}/<path>
    name: str  # the route's name (and so its OpenAPI operationId)
    permit: str
    kind: str  # the operation's kind
    fn: str  # CustodyLedger's function
    summary: str
    body_optional: bool = False  # receive: no body means every pending item


SHIPMENT_ACTIONS = (
    ShipmentAction(
        "receive", "receive", "custody.receive", "custody.receive", "receiveShipment",
        "Receive a shipment (all pending items, or those listed)", body_optional=True,
    ),
    ShipmentAction(
        "reject", "reject_items", "custody.receive", "custody.reject", "rejectShipment",
        "Refuse listed items; custody returns to the sender",
    ),
    ShipmentAction(
        "missing", "report_missing", "custody.receive", "custody.missing", "reportMissing",
        "Report listed items as not arrived",
    ),
    ShipmentAction(
        "reclaim", "reclaim", "custody.ship", "custody.reclaim", "reclaimShipment",
        "Sender takes back items of a shipment to an inactive addressee",
    ),
)  # fmt: skip


def _shipment_action_route(action: ShipmentAction) -> None:
    """Register the one handler, `_settle`, for `action`: FastAPI reads the body's optionality and
    the permission from the signature, so each action gets its own small one."""
    permit = Depends(Permit(action.permit))

    # (the permission as a default, not in `Annotated`: string annotations resolve in the module)
    async def settle(
        shipment_id: str, body: Settle, *, principal: Principal = permit, write: WriteDep
    ) -> JSONResponse:
        return await _settle(principal, shipment_id, body, kind=action.kind, fn=action.fn, write=write)

    async def settle_all(
        shipment_id: str, *, principal: Principal = permit, write: WriteDep, body: Settle | None = None
    ) -> JSONResponse:
        return await _settle(
            principal, shipment_id, body or Settle(), kind=action.kind, fn=action.fn, write=write
        )

    route = settle_all if action.body_optional else settle
    route.__name__ = action.name
    router.add_api_route(
        f"/shipments/{{shipment_id}}/{action.path}",
        route,
        methods=["POST"],
        status_code=202,
        responses=ACCEPTED,
        summary=action.summary,
    )


for _action in SHIPMENT_ACTIONS:
    _shipment_action_route(_action)


# ---------------------------------------------------------------------- decommissioning and suspects


class Decommission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(min_length=1, max_length=100_000)
    reason: ReasonName = "dispensed"


class UnitList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(min_length=1, max_length=100_000)
    reason: str = Field(default="", max_length=2000)


async def _units_action(
    principal: Principal,
    body: BaseModel,
    units: list[UnitRef],
    *,
    kind: str,
    fn: str,
    extra: Sequence[Any],
    event: dict[str, Any] | None = None,
    write: Write,
) -> JSONResponse:
    """One transaction per chunk of units: fn(keys, *extra), plus the EPCIS event's digest when the
    action anchors one (`event` holds the ObjectEvent's action, bizStep and other fields)."""
    plan = Plan(kind=kind)
    keys = resolve_items(Items(units=units), plan)
    tail: list[Any] = []
    if event is not None:
        writer = EventWriter(write.runtime, plan, principal.org_id)
        tail = [writer.objects(_hex(keys), **event).digest]
    for part in _split(write.runtime, keys):
        plan.steps.append(TxStep("CustodyLedger", fn, [list(part), *extra, *tail], items=len(part)))
    plan.items_total = len(keys)
    return await write.submit(principal, plan, body)


@router.post(
    "/decommission",
    status_code=202,
    responses=ACCEPTED,
    summary="Decommission packs (dispensed, destroyed, exported...)",
)
async def decommission(
    body: Decommission,
    principal: Annotated[Principal, Depends(Permit("custody.decommission"))],
    write: WriteDep,
) -> JSONResponse:
    return await _units_action(
        principal,
        body,
        body.units,
        kind="custody.decommission",
        fn="decommission",
        extra=[int(REASONS[body.reason])],
        event=decommission_event(body.reason),
        write=write,
    )


@router.post(
    "/decommission/undo",
    status_code=202,
    responses=ACCEPTED,
    summary="Undo a decommissioning within its window",
)
async def undo_decommission(
    body: UnitList,
    principal: Annotated[Principal, Depends(Permit("custody.decommission"))],
    write: WriteDep,
) -> JSONResponse:
    return await _units_action(
        principal,
        body,
        body.units,
        kind="custody.undo",
        fn="undoDecommission",
        extra=[],
        event={"action": "OBSERVE", "biz_step": ev.REACTIVATING, "disposition": "active"},
        write=write,
    )


@router.post("/suspect", status_code=202, responses=ACCEPTED, summary="Flag packs as suspect (investigation)")
async def flag_suspect(
    body: UnitList,
    principal: Annotated[Principal, Depends(Permit("suspect.flag"))],
    write: WriteDep,
) -> JSONResponse:
    response = await _units_action(
        principal,
        body,
        body.units,
        kind="suspect.flag",
        fn="flagSuspect",
        extra=[bytes(keccak(text=body.reason))],
        write=write,
    )
    created = getattr(write.request.state, "operation_created", False)
    for unit in body.units if created else []:  # for the sponsor and regulators to investigate
        raise_alert(
            write.runtime.engine,
            "SUSPECT_FLAGGED",
            unit.key,
            principal=principal,
            gtin=unit.gtin,
            serial=unit.serial,
            detail={"reason": body.reason, "flagged_by_org": principal.org_id},
        )
    return response


@router.post(
    "/suspect/clear",
    status_code=202,
    responses=ACCEPTED,
    summary="Clear suspect packs found legitimate (sponsor or regulator)",
)
async def clear_suspect(
    body: UnitList,
    principal: Annotated[Principal, Depends(Permit("suspect.clear"))],
    write: WriteDep,
) -> JSONResponse:
    return await _units_action(
        principal,
        body,
        body.units,
        kind="suspect.clear",
        fn="clearSuspect",
        extra=[bytes(keccak(text=body.reason))],
        write=write,
    )


class BatchSuspect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    held_unit: UnitRef | None = Field(
        default=None, description="a unit you hold, when you are not sponsor, maker or regulator"
    )


@router.post(
    "/batches/{batch_id}/suspect",
    status_code=202,
    responses=ACCEPTED,
    summary="Flag a whole batch as suspect",
)
async def flag_batch_suspect(
    batch_id: Bytes32Hex,
    body: BatchSuspect,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("suspect.flag"))],
    write: WriteDep,
) -> JSONResponse:
    batch_row(runtime, batch_id)
    plan = Plan(kind="suspect.flag_batch", subject=batch_id.lower())
    held = bytes(32)
    if body.held_unit is not None:
        key = body.held_unit.key
        plan.refs[key] = KeyRef(
            key, "unit", "held_unit", gtin=body.held_unit.gtin, serial=body.held_unit.serial
        )
        held = bytes.fromhex(key[2:])
    plan.steps.append(
        TxStep(
            "CustodyLedger",
            "flagBatchSuspect",
            [bytes.fromhex(batch_id[2:]), bytes(keccak(text=body.reason)), held],
        )
    )
    return await write.submit(
        principal,
        plan,
        {"batch_id": batch_id.lower(), **body.model_dump(mode="json")},
    )


@router.post(
    "/batches/{batch_id}/suspect/clear",
    status_code=202,
    responses=ACCEPTED,
    summary="Clear a suspect batch (sponsor or regulator)",
)
async def clear_batch_suspect(
    batch_id: Bytes32Hex,
    body: BatchSuspect,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("suspect.clear"))],
    write: WriteDep,
) -> JSONResponse:
    batch_row(runtime, batch_id)
    plan = Plan(
        kind="suspect.clear_batch",
        subject=batch_id.lower(),
        steps=[
            TxStep(
                "CustodyLedger",
                "clearBatchSuspect",
                [bytes.fromhex(batch_id[2:]), bytes(keccak(text=body.reason))],
            )
        ],
    )
    return await write.submit(
        principal,
        plan,
        {"batch_id": batch_id.lower(), **body.model_dump(mode="json")},
    )


# ---------------------------------------------------------------------- reading


class HeldItem(BaseModel):
    key: str
    kind: str
    batch_id: str | None = None
    state: str
    gtin: str | None = None
    serial: str | None = None
    sscc: str | None = None


class Inventory(BaseModel):
    org_id: int
    containers: list[HeldItem]
    units: list[HeldItem]


def _known(session: Session, keys: list[str]) -> dict[str, KnownItem]:
    if not keys:
        return {}
    rows = session.execute(select(KnownItem).where(KnownItem.key.in_(keys))).scalars()  # type: ignore[attr-defined]
    return {r.key: r for r in rows}


@router.get(
    "/inventory", summary="What my organisation holds (top-level containers and loose packs, not in transit)"
)
def inventory(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read.own"))],
    batch_id: Bytes32Hex | None = None,
    limit: Annotated[int, Query(gt=0, le=10_000)] = 1000,
) -> Inventory:
    org = principal.org_id
    assert org is not None
    c, u = table(Container), table(Unit)
    with Session(runtime.engine) as session:
        conts = session.execute(
            select(c)
            .where(
                c.c.holder == org,
                c.c.parent_key.is_(None),
                c.c.state == ContainerState.ACTIVE,
                c.c.shipment_id.is_(None),
            )
            .limit(limit)
        ).all()
        dissolved = select(c.c.key).where(c.c.state == ContainerState.DISSOLVED)
        stmt = select(u).where(
            u.c.state == UnitState.ACTIVE, or_(u.c.parent_key.is_(None), u.c.parent_key.in_(dissolved))
        )
        if batch_id is not None:
            stmt = stmt.where(u.c.batch_id == batch_id.lower())
        units = []
        conn = session.connection()
        for row in session.execute(stmt.limit(limit * 4)).all():
            m = dict(row._mapping)
            custody = resolve(conn, m)
            if custody.holder == org and custody.shipment_id is None and not custody.packed:
                units.append(m)
            if len(units) >= limit:
                break
        known = _known(session, [r.key for r in conts] + [m["key"] for m in units])
    return Inventory(
        org_id=org,
        containers=[
            HeldItem(
                key=r.key, kind="container", state="active", sscc=getattr(known.get(r.key), "sscc", None)
            )
            for r in conts
        ],
        units=[
            HeldItem(
                key=m["key"],
                kind="unit",
                batch_id=m["batch_id"],
                state=STATE_NAMES.get(m["state"], str(m["state"])),
                gtin=getattr(known.get(m["key"]), "gtin", None),
                serial=getattr(known.get(m["key"]), "serial", None),
            )
            for m in units
        ],
    )


class ShipmentOut(BaseModel):
    shipment_id: str
    label: str
    from_org: int
    to_org: int
    items: int
    pending: int
    received: int
    rejected: int
    missing: int
    dispatched_at: int
    closed: bool
    item_list: list[dict[str, Any]] | None = None


def _shipment_out(row: Any) -> ShipmentOut:
    return ShipmentOut(
        shipment_id=row.shipment_id,
        label=shipment_label(bytes.fromhex(row.shipment_id[2:])),
        from_org=row.from_org,
        to_org=row.to_org,
        items=row.items,
        pending=row.pending,
        received=row.received,
        rejected=row.rejected,
        missing=row.missing,
        dispatched_at=row.dispatched_at,
        closed=row.closed,
    )


@router.get("/shipments", summary="My organisation's shipments: inbound (default) or outbound")
def list_shipments(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read.own"))],
    direction: Literal["inbound", "outbound"] = "inbound",
    pending: bool = True,
    limit: Annotated[int, Query(gt=0, le=1000)] = 100,
) -> list[ShipmentOut]:
    s = table(Shipment)
    stmt = select(s).where((s.c.to_org if direction == "inbound" else s.c.from_org) == principal.org_id)
    if pending:
        stmt = stmt.where(s.c.pending > 0)
    with Session(runtime.engine) as session:
        rows = session.execute(stmt.order_by(s.c.dispatched_block.desc()).limit(limit)).all()
    return [_shipment_out(r) for r in rows]


@router.get("/shipments/{shipment_id}", summary="A shipment and its items (sender and addressee only)")
def get_shipment(
    shipment_id: str, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> ShipmentOut:
    raw, row = _shipment(runtime, shipment_id)
    if not (
        principal.is_admin
        or "REGULATOR" in principal.org_roles
        or principal.org_id in (row.from_org, row.to_org)
    ):
        raise rule_problem(
            404, "unknown-shipment", f"no shipment {shipment_id} of yours", field="shipment_id"
        )
    out = _shipment_out(row)
    si = table(ShipmentItem)
    with Session(runtime.engine) as session:
        items = session.execute(select(si).where(si.c.shipment_id == "0x" + raw.hex())).all()
        known = _known(session, [i.item_key for i in items])
    out.item_list = []
    for i in items:
        k = known.get(i.item_key)
        entry: dict[str, Any] = {"key": i.item_key, "outcome": i.outcome}
        if k is not None:
            entry.update(
                {n: getattr(k, n) for n in ("kind", "gtin", "serial", "sscc") if getattr(k, n) is not None}
            )
        out.item_list.append(entry)
    return out
