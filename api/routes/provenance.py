"""Provenance for inspectors and partners: the trail of a pack or a container, a batch's view (status
history, certificates, where its units are now), and the evidence bundle that proves a trail against
block hashes alone."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from sqlalchemy import Connection, select

from api.edge.auth import REGULATOR, Permit, Principal, RuntimeDep
from api.edge.identifiers import Bytes32Hex
from api.edge.rules import rule_problem
from api.epcis.plain import expiry_date
from api.read import provenance as pv
from api.read.bundle import build_bundle
from api.read.reports.build import report as build_report
from api.read.reports.inspection import InspectionReport, custody_svg, render_csv, render_pdf
from api.runtime import Runtime
from node.gs1.charset import is_digits
from node.gs1.scan import IdentifierError, parse
from node.indexer.schema import Checkpoint, Container, Organization, table
from node.ledger.constants import BatchStatus, ContainerState
from node.ledger.identifiers import container_key, unit_key

router = APIRouter(prefix="/v1/provenance", tags=["provenance"])


def _subject(conn: Connection, code: str) -> tuple[dict[str, Any], Any]:
    """(subject, batch row or None) of a pack or container in any GS1 form; 404 if not on chain."""
    if is_digits(code, 18):
        code = "(00)" + code  # an SSCC as printed under its barcode
    try:
        ident = parse(code)
    except IdentifierError as exc:
        raise rule_problem(422, "invalid-identifier", str(exc), field="identifier", part=exc.part) from None
    if ident.kind == "sgtin":
        assert ident.gtin and ident.serial
        key = "0x" + unit_key(ident.gtin, ident.serial).hex()
        unit = pv.unit_row(conn, key)
        if unit is None:
            raise rule_problem(404, "unknown-item", "no such pack on the network", field="identifier")
        subject = {"kind": "unit", "gtin": ident.gtin, "serial": ident.serial, "key": key}
        return subject, pv.batch_row(conn, unit["batch_id"])
    if ident.kind == "sscc":
        assert ident.sscc
        key = "0x" + container_key(ident.sscc).hex()
        found = conn.execute(select(table(Container).c.key).where(table(Container).c.key == key)).first()
        if found is None:
            raise rule_problem(404, "unknown-item", "no such container on the network", field="identifier")
        return {"kind": "container", "sscc": ident.sscc, "key": key}, None
    raise rule_problem(
        422, "not-an-item", f"a {ident.kind} is neither a pack nor a container", field="identifier"
    )


def _trail(
    runtime: Runtime, conn: Connection, principal: Principal, code: str
) -> tuple[dict[str, Any], Any, list[pv.Step], list[dict[str, Any]]]:
    subject, batch = _subject(conn, code)
    chain = runtime.chain()
    steps = pv.trail(conn, subject["key"], w3=chain.w3, custody_abi=chain.contracts["CustodyLedger"].abi)
    full = pv.full_view(principal, batch)
    took_part = any(principal.org_id in (s.org_id, s.counterparty) for s in steps)
    if not (full or took_part):
        # not "forbidden": whether an item exists is itself not for everyone to learn
        raise rule_problem(
            404, "unknown-item", "no such item in your organisation's custody history", field="identifier"
        )
    return subject, batch, steps, pv.describe(steps, conn, principal, full_view=full)


def _checkpoint(conn: Connection) -> dict[str, Any]:
    cp = conn.execute(select(table(Checkpoint))).first()
    return {"block_number": int(cp.block_number), "block_hash": cp.block_hash} if cp else {}


def _batch_summary(batch: Any) -> dict[str, Any]:
    return {
        "batch_id": batch["batch_id"],
        "gtin": batch["gtin"],
        "lot": batch["lot"],
        "expiry": expiry_date(int(batch["expiry"])).isoformat(),
        "status": BatchStatus(int(batch["status"])).name.lower(),
        "manufacturer": int(batch["manufacturer"]),
        "sponsor": int(batch["sponsor"]),
    }


@router.get("/batches/{batch_id}", summary="A batch: status history, certificates, where its units are now")
def batch_view(
    batch_id: Bytes32Hex, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        batch = pv.batch_row(conn, batch_id.lower())
        if batch is None:
            raise rule_problem(404, "unknown-batch", f"no batch {batch_id}", field="batch_id")
        full = pv.full_view(principal, batch)
        counts = pv.units_now(conn, batch["batch_id"])
        names = {int(r.id): r.name for r in conn.execute(select(table(Organization))).all()}
        holders = [
            {"org_id": holder, "name": names.get(holder), "status": status, "units": n}
            for (holder, status), n in sorted(counts.items())
            if full or holder == principal.org_id
        ]
        return {
            "batch": _batch_summary(batch),
            **pv.batch_history(conn, batch["batch_id"]),
            "units": holders,
            "units_total": sum(counts.values()) if full else sum(h["units"] for h in holders),
            "evidence": _checkpoint(conn),
        }


def _generated_by(conn: Connection, principal: Principal) -> str:
    names = {int(r.id): r.name for r in conn.execute(select(table(Organization))).all()}
    org = names.get(principal.org_id or 0, "consortium admin")
    return f"{principal.printed_name} ({principal.username}), {org}"


def _report_response(data: InspectionReport, form: str, name: str) -> Response:
    if form == "svg":  # the custody diagram alone, shown in the inspector's page
        return Response(custody_svg(data), media_type="image/svg+xml; charset=utf-8")
    if form == "pdf":
        return Response(
            render_pdf(data),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return Response(
        render_csv(data),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/batches/{batch_id}/report.{form}",
    summary="Inspection report of a batch: status history, certificates, holders, evidence (pdf or csv)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "text/csv": {}}}},
)
def batch_report(
    batch_id: Bytes32Hex,
    form: Literal["pdf", "csv"],
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
) -> Response:
    view = batch_view(batch_id, runtime, principal)
    with runtime.engine.connect() as conn:
        by = _generated_by(conn, principal)
    data = build_report(
        subject={"kind": "batch", "gtin": view["batch"]["gtin"]},
        batch=view["batch"],
        steps=[],
        history=view,
        evidence=view["evidence"],
        chain_id=runtime.settings.chain_id,
        generated_by=by,
        status=view["batch"]["status"],
        holders=[(str(u["name"]), str(u["status"]), int(u["units"])) for u in view["units"]],
    )
    return _report_response(data, form, f"batch-{view['batch']['lot']}")


@router.get(
    "/{identifier:path}/report.{form}",
    summary="Inspection report of a pack or container: trail, custody diagram, certificates (pdf or csv); "
    "svg is the custody diagram alone",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "text/csv": {}, "image/svg+xml": {}}}},
)
def item_report(
    identifier: str,
    form: Literal["pdf", "csv", "svg"],
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
) -> Response:
    answer = trail(identifier, runtime, principal)
    with runtime.engine.connect() as conn:
        by = _generated_by(conn, principal)
    steps = answer["steps"]
    last = steps[-1] if steps else {}
    status = answer.get("state") or last.get("reason") or last.get("action") or "unknown"
    data = build_report(
        subject=answer["subject"],
        batch=answer.get("batch"),
        steps=steps,
        history=answer,
        evidence=answer["evidence"],
        chain_id=runtime.settings.chain_id,
        generated_by=by,
        status=str(status),
    )
    subject = answer["subject"]
    name = (
        f"pack-{subject['gtin']}-{subject['serial']}"
        if subject["kind"] == "unit"
        else f"container-{subject['sscc']}"
    )
    return _report_response(data, form, name)


@router.get(
    "/{identifier:path}/bundle", summary="The trail as a self-contained evidence bundle (proofs included)"
)
def bundle(
    identifier: str, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        subject, _batch, steps, shown = _trail(runtime, conn, principal, identifier)
        orgs = {int(r.id): r for r in conn.execute(select(table(Organization))).all()}
    chain = runtime.chain()
    contracts = {name: str(c.address) for name, c in chain.contracts.items()}
    return build_bundle(
        chain.w3,
        chain_id=runtime.settings.chain_id,
        contracts=contracts,
        subject=subject,
        steps=steps,
        shown=shown,
        organizations=orgs,
    )


@router.get(
    "/{identifier:path}", summary="The trail of a pack or container in chain order, with the chain evidence"
)
def trail(
    identifier: str, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        subject, batch, _steps, shown = _trail(runtime, conn, principal, identifier)
        answer: dict[str, Any] = {"subject": subject, "steps": shown, "evidence": _checkpoint(conn)}
        if batch is not None:
            answer["batch"] = _batch_summary(batch)
            answer.update(pv.batch_history(conn, batch["batch_id"]))
        if subject["kind"] == "container":
            row = (
                conn.execute(select(table(Container)).where(table(Container).c.key == subject["key"]))
                .mappings()
                .one()
            )
            answer["state"] = ContainerState(int(row["state"])).name.lower()
        epc = (
            f"https://id.gs1.org/01/{subject['gtin']}/21/{subject['serial']}"
            if subject["kind"] == "unit"
            else f"https://id.gs1.org/00/{subject['sscc']}"
        )
        answer["links"] = {
            "bundle": f"/v1/provenance/{identifier}/bundle",
            "epcis": f"/epcis/export?MATCH_anyEPC={epc}",
        }
        answer["regulator_view"] = REGULATOR in principal.org_roles
        return answer
