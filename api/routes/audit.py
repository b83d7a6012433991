"""Reading the audit log (there is no route that changes it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session

from api.edge import audit
from api.edge.auth import Permit, Principal, RuntimeDep
from api.models import AuditEntry
from api.routes.common import MAX_ROW_ID

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: float
    request_id: str
    user_id: int | None
    username: str | None
    org_id: int | None
    method: str
    path: str
    action: str
    status: int
    outcome: str
    operation_id: str | None
    tx_hashes: list[str]
    detail: str | None
    entry_hash: str


class ChainCheck(BaseModel):
    entries: int
    intact: bool
    first_broken_id: int | None


@router.get("", summary="Audit entries (my organisation's; all for the consortium admin), newest first")
def list_audit(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("audit.read"))],
    operation_id: str | None = None,
    limit: Annotated[int, Query(gt=0, le=1000)] = 100,
    before_id: Annotated[int | None, Query(gt=0, le=MAX_ROW_ID)] = None,
) -> list[AuditOut]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)  # type: ignore[union-attr]
    if not principal.is_admin:
        stmt = stmt.where(AuditEntry.org_id == principal.org_id)  # type: ignore[arg-type]
    if operation_id:
        stmt = stmt.where(AuditEntry.operation_id == operation_id)  # type: ignore[arg-type]
    if before_id:
        stmt = stmt.where(AuditEntry.id < before_id)  # type: ignore[arg-type,operator]
    with Session(runtime.engine) as session:
        rows = list(session.execute(stmt).scalars())
    return [
        AuditOut(
            **r.model_dump(exclude={"tx_hashes", "prev_hash"}),
            tx_hashes=[h for h in r.tx_hashes.split(",") if h],
        )
        for r in rows
    ]


@router.get("/verify", summary="Check the hash chain of the whole log (consortium admin)")
def verify(runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("audit.verify"))]) -> ChainCheck:
    count, broken = audit.verify_chain(runtime.engine)
    return ChainCheck(entries=count, intact=broken is None, first_broken_id=broken)
