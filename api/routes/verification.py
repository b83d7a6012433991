"""At the counter: verify a scanned pack (one or a tote), dispense and undo; the GS1 Lightweight
Messaging verification (VRS) request for existing verification routers; and the alerts the answers
raise, for the sponsor and regulators."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlmodel import Session, col

from api.database import read_on_loop_or_thread
from api.edge.auth import Permit, Principal, RuntimeDep
from api.edge.identifiers import Gln, Gtin, Lot, Serial, UnitRef
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE, rule_problem
from api.epcis.plain import org_gln
from api.models.alerts import Alert, AlertStatus
from api.read import alerts as alerting
from api.read.verify import ALREADY_DISPENSED, COUNTERFEIT_SIGNALS, Verification, verify_pack, verify_packs
from api.routes import custody
from api.routes.common import RowId, WriteDep
from api.routes.openapi import ACCEPTED
from api.runtime import Runtime
from node.gs1.scan import Identifier, IdentifierError, parse

router = APIRouter(tags=["verification"])


class PackCode(BaseModel):
    """A pack as scanned (`code`: any GS1 form) or spelled out."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(
        default=None, min_length=1, max_length=2000, description="scan, HRI, Digital Link or EPC URI"
    )
    gtin: Gtin | None = None
    serial: Serial | None = None
    lot: Lot | None = None
    expiry: dt.date | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PackCode:
        if (self.code is None) == (self.gtin is None or self.serial is None):
            raise ValueError("give either code, or gtin and serial (with lot and expiry when known)")
        return self

    def identifier(self, field: str = "code") -> Identifier:
        if self.code is None:
            assert self.gtin and self.serial
            return Identifier("sgtin", gtin=self.gtin, serial=self.serial, lot=self.lot, expiry=self.expiry)
        try:
            ident = parse(self.code)
        except IdentifierError as exc:
            raise rule_problem(422, "invalid-identifier", str(exc), field=field, part=exc.part) from None
        if ident.kind != "sgtin":
            raise rule_problem(
                422, "not-a-pack", f"the code is a {ident.kind}: a pack needs GTIN and serial", field=field
            )
        return ident


def _record_alerts(runtime: Runtime, principal: Principal, result: Verification, pack: Identifier) -> None:
    for code in result.alerts:
        if code in COUNTERFEIT_SIGNALS:
            alerting.raise_alert(
                runtime.engine,
                code,
                result.key or "",
                principal=principal,
                gtin=pack.gtin,
                serial=pack.serial,
                batch_id=result.batch_id,
                sponsor_org=result.sponsor_org,
                detail={
                    "verified_by_org": principal.org_id,
                    "lot": pack.lot,
                    "expiry": pack.expiry.isoformat() if pack.expiry else None,
                },
            )


def _check(runtime: Runtime, principal: Principal, packs: list[Identifier]) -> list[Verification]:
    with runtime.engine.connect() as conn:
        if len(packs) == 1:  # the counter's scan: the one-pack statements
            return [verify_pack(conn, principal, packs[0])]
        return verify_packs(conn, principal, packs)


def _record_all_alerts(
    runtime: Runtime, principal: Principal, flagged: list[tuple[Verification, Identifier]]
) -> None:
    for result, pack in flagged:
        _record_alerts(runtime, principal, result, pack)


async def _verify(runtime: Runtime, principal: Principal, packs: list[Identifier]) -> list[Verification]:
    """On the event loop for SQLite, in a thread for PostgreSQL (`read_on_loop_or_thread`); the
    alerts' writes, rare, in one worker thread: they may wait for the write lock, the loop must not."""
    results = await read_on_loop_or_thread(runtime.engine, _check, runtime, principal, packs)
    flagged = [
        (r, p) for r, p in zip(results, packs, strict=True) if any(c in COUNTERFEIT_SIGNALS for c in r.alerts)
    ]
    if flagged:
        await asyncio.to_thread(_record_all_alerts, runtime, principal, flagged)
    return results


def _audit(request: Request, answers: list[dict[str, Any]]) -> None:
    """What the audit entry of a verification records: which packs were asked about and the verdicts."""
    request.state.audit_detail = json.dumps(
        {"verified": [[a.get("key"), a.get("verdict")] for a in answers]}, separators=(",", ":")
    )


@router.post("/v1/verify", summary="Verify a scanned pack: genuine, status, custody, verdict and evidence")
async def verify(
    request: Request,
    body: PackCode,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
) -> dict[str, Any]:
    (result,) = await _verify(runtime, principal, [body.identifier()])
    answer = result.body
    _audit(request, [answer])
    return answer


class Tote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    packs: list[PackCode] = Field(min_length=1, max_length=500)


@router.post("/v1/verify/bulk", summary="Verify a tote of packs in one request")
async def verify_bulk(
    request: Request,
    body: Tote,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
) -> dict[str, Any]:
    idents = [p.identifier(f"packs[{i}].code") for i, p in enumerate(body.packs)]
    results = [result.body for result in await _verify(runtime, principal, idents)]
    _audit(request, results)
    ok = sum(r["verdict"] == "ok_to_dispense" for r in results)
    return {"results": results, "ok_to_dispense": ok, "do_not_dispense": len(results) - ok}


# ---------------------------------------------------------------------- dispense and undo


class Dispense(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(
        min_length=1, max_length=10_000, description='{"scan": ...} or {"gtin", "serial"}'
    )
    reason: custody.ReasonName = "dispensed"


class Undo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[UnitRef] = Field(min_length=1, max_length=10_000)


SECOND_DECOMMISSION = (PROBLEM_BASE + "already-dispensed", PROBLEM_BASE + "already-decommissioned")


@router.post(
    "/v1/dispense",
    status_code=202,
    responses=ACCEPTED,
    summary="Dispense (or decommission for another reason) packs",
)
async def dispense(
    body: Dispense,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("custody.decommission"))],
    write: WriteDep,
) -> JSONResponse:
    try:
        return await custody.decommission(
            custody.Decommission(units=body.units, reason=body.reason), principal, write
        )
    except Problem as problem:
        if problem.type in SECOND_DECOMMISSION:
            # a pack dispensed twice: the counterfeit signal of the EU FMD, for sponsor and regulators
            item = problem.extensions.get("item") or {}
            alerting.raise_alert(
                runtime.engine,
                ALREADY_DISPENSED,
                str(item.get("key", "")),
                principal=principal,
                gtin=item.get("gtin"),
                serial=item.get("serial"),
                detail={"attempted_by_org": principal.org_id, "reason": body.reason},
            )
        raise


@router.post(
    "/v1/undo",
    status_code=202,
    responses=ACCEPTED,
    summary="Undo your organisation's decommissioning within 240 hours",
)
async def undo(
    body: Undo,
    principal: Annotated[Principal, Depends(Permit("custody.decommission"))],
    write: WriteDep,
) -> JSONResponse:
    return await custody.undo_decommission(custody.UnitList(units=body.units), principal, write)


# ---------------------------------------------------------------------- GS1 Lightweight Messaging (VRS)

FAILURE = {  # (lot matches, expiry matches) -> verificationFailureReason
    (False, False): "No_match_GTIN_Serial_Lot_Expiry",
    (False, True): "No_match_GTIN_Serial_Lot",
    (True, False): "No_match_GTIN_Serial_Expiry",
}


def _exp(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.datetime.strptime(value, "%y%m%d").date()
    except ValueError:
        raise rule_problem(400, "invalid-expiry", "exp is YYMMDD", field="exp") from None


@router.get(
    "/vrs/01/{gtin}/10/{lot}/21/{serial}",
    summary="GS1 Lightweight Messaging verification request (DSCSA VRS) for one product identifier",
)
async def vrs(
    request: Request,
    gtin: Gtin,
    lot: Lot,
    serial: Serial,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
    exp: Annotated[str | None, Query(description="expiry YYMMDD")] = None,
    req_gln: Annotated[Gln | None, Query(alias="reqGLN")] = None,
    corr_uuid: Annotated[str | None, Query(alias="corrUUID", max_length=64)] = None,
    context: Annotated[str, Query(description="e.g. dscsaSaleableReturn")] = "dscsaSaleableReturn",
    link_type: Annotated[str | None, Query(alias="linkType")] = None,
) -> JSONResponse:
    expiry = _exp(exp)
    ident = Identifier("sgtin", gtin=gtin, serial=serial, lot=lot, expiry=expiry)
    (result,) = await _verify(runtime, principal, [ident])
    body = result.body
    _audit(request, [body])
    data: dict[str, Any] = {"verified": False}
    if not body["genuine"]:
        data["verificationFailureReason"] = "No_match_GTIN_Serial"
    else:
        matches = (bool(body["lot_matches"] is not False), bool(body["expiry_matches"] is not False))
        if matches in FAILURE:
            data["verificationFailureReason"] = FAILURE[matches]
        elif body["suspect"] != "not_suspect":
            data["verificationFailureReason"] = "Not_for_re-distribution"
        else:
            data["verified"] = True
        info = (
            "Illegitimate"
            if body["suspect"] == "illegitimate"
            else "Suspect"
            if body["suspect"] == "suspect"
            else (
                "Recalled" if body["batch_status"] == "recalled" else "Expired" if body["expired"] else None
            )
        )
        if info:
            data["additionalInfo"] = info
    cp = body["evidence"]
    answer: dict[str, Any] = {
        "verificationTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "responderGLN": _responder_gln(runtime, body),
        "data": data,
        "context": context,
        "evidence": {"block_number": cp["block_number"], "block_hash": cp["block_hash"]},
    }
    if corr_uuid is not None:
        answer["corrUUID"] = corr_uuid
    if req_gln is not None:
        answer["reqGLN"] = req_gln
    return JSONResponse(answer)


def _responder_gln(runtime: Runtime, body: dict[str, Any]) -> str | None:
    """The manufacturer answers for its product (the network answers on its behalf)."""
    return org_gln(runtime, (body.get("manufacturer") or {}).get("org_id"))


# ---------------------------------------------------------------------- alerts


@router.get(
    "/v1/alerts", summary="Alerts about your products (sponsor), all alerts (regulator), or raised by you"
)
def list_alerts(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read.own"))],
    status: Annotated[Literal["open", "investigating", "closed"] | None, Query()] = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    stmt = select(Alert).order_by(col(Alert.last_at).desc()).limit(limit)
    condition = alerting.visible(principal)
    if condition is not None:
        stmt = stmt.where(condition)
    if status is not None:
        stmt = stmt.where(col(Alert.status) == status)
    if code is not None:
        stmt = stmt.where(col(Alert.code) == code)
    with Session(runtime.engine) as session:
        return [alerting.view(a) for a in session.execute(stmt).scalars()]


class AlertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["investigating", "closed"]
    note: str = Field(default="", max_length=4000)


@router.patch(
    "/v1/alerts/{alert_id}", summary="Investigate or close an alert (the product's sponsor or a regulator)"
)
def handle_alert(
    alert_id: RowId,
    body: AlertUpdate,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("alerts.handle"))],
) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        alert = session.get(Alert, alert_id)
        if alert is None or not (
            alerting.may_handle(principal, alert) or alert.raised_by_org == principal.org_id
        ):
            raise rule_problem(404, "unknown-alert", f"no alert {alert_id} you may see", field="alert_id")
        if not alerting.may_handle(principal, alert):
            raise rule_problem(403, "forbidden", "only the product's sponsor or a regulator handles an alert")
        if alert.status == AlertStatus.CLOSED:
            raise rule_problem(409, "alert-closed", "the alert is closed", field="status")
        alert.status = body.status
        alert.note = body.note
        alert.handled_by_user = principal.user_id
        alert.handled_by_org = principal.org_id
        alert.handled_at = time.time()
        session.add(alert)
        session.commit()
        session.refresh(alert)
        return alerting.view(alert)
