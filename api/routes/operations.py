"""Operations: status by polling or server-sent events; external signers post their signatures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlmodel import Session, col

from api.edge.auth import Permit, Principal, RuntimeDep
from api.edge.rules import rule_problem
from api.models import Operation, OperationStatus, OperationTx
from api.models.outbox import TERMINAL
from api.runtime import Runtime
from api.write import outbox
from node.ledger.relay import recover_signer

router = APIRouter(prefix="/v1/operations", tags=["operations"])


def _visible(runtime: Runtime, principal: Principal, op_id: str) -> tuple[Operation, list[OperationTx]]:
    loaded = outbox.load(runtime.engine, op_id)
    if loaded is None or not (principal.is_admin or loaded[0].org_id == principal.org_id):
        raise rule_problem(404, "unknown-operation", f"no operation {op_id} of yours", field="operation_id")
    return loaded


@router.get("", summary="My organisation's operations, newest first")
def list_operations(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
    status: Annotated[
        str | None, Query(pattern="^(awaiting_signatures|queued|running|succeeded|failed)$")
    ] = None,
    limit: Annotated[int, Query(gt=0, le=500)] = 50,
) -> list[outbox.OperationView]:
    stmt = select(Operation).order_by(Operation.seq.desc()).limit(limit)  # type: ignore[union-attr]
    if not principal.is_admin:
        stmt = stmt.where(Operation.org_id == principal.org_id)  # type: ignore[arg-type]
    if status:
        stmt = stmt.where(Operation.status == status)  # type: ignore[arg-type]
    with Session(runtime.engine) as session:
        ops = list(session.execute(stmt).scalars())
        txs: dict[int, list[OperationTx]] = {op.seq: [] for op in ops if op.seq is not None}
        if txs:  # every listed operation's transactions in one query
            query = select(OperationTx).where(col(OperationTx.operation_seq).in_(list(txs)))
            for tx in session.execute(query.order_by(col(OperationTx.position))).scalars():
                txs[tx.operation_seq].append(tx)
    return [outbox.view(runtime, op, txs.get(op.seq or 0, [])) for op in ops]


@router.get("/{operation_id}", summary="An operation's status and progress")
def get_operation(
    operation_id: str, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> outbox.OperationView:
    return outbox.view(runtime, *_visible(runtime, principal, operation_id))


@router.get(
    "/{operation_id}/events",
    summary="Server-sent events: the operation's state on every change, until it ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def operation_events(
    operation_id: str, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> StreamingResponse:
    _visible(runtime, principal, operation_id)

    async def stream() -> AsyncIterator[str]:
        last = ""
        seq = 0
        idle = 0.0
        while True:
            loaded = await asyncio.to_thread(outbox.load, runtime.engine, operation_id)
            assert loaded is not None
            view = outbox.view(runtime, *loaded).model_dump(mode="json")
            data = json.dumps(view, separators=(",", ":"))
            if data != last:
                seq += 1
                last = data
                idle = 0.0
                yield f"id: {seq}\nevent: {view['status']}\ndata: {data}\n\n"
                if view["status"] in TERMINAL:
                    return
            else:
                idle += 0.1
                if idle >= 15:  # keep proxies from closing a quiet stream
                    idle = 0.0
                    yield ": keep-alive\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class Signatures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signatures: list[Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$")]] = Field(
        min_length=1, description="EIP-712 signatures over `to_sign`, in the same order"
    )


@router.post("/{operation_id}/signatures", summary="Post the EIP-712 signatures of an external signer")
def post_signatures(
    operation_id: str,
    body: Signatures,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read"))],
) -> outbox.OperationView:
    op, txs = _visible(runtime, principal, operation_id)
    if op.status != OperationStatus.AWAITING_SIGNATURES:
        raise rule_problem(
            409, "not-awaiting-signatures", f"the operation is {op.status}", field="operation_id"
        )
    if op.user_id != principal.user_id:
        raise rule_problem(
            403, "not-your-operation", "only the user who made the request signs it", field="operation_id"
        )
    if len(body.signatures) != len(txs):
        raise rule_problem(
            422,
            "signature-count",
            f"{len(txs)} signatures are needed, got {len(body.signatures)}",
            field="signatures",
        )
    for i, (tx, sig) in enumerate(zip(txs, body.signatures, strict=True)):
        typed = outbox.typed_data_for(runtime, tx)
        recovered = recover_signer(typed, bytes.fromhex(sig[2:]))
        if to_checksum_address(recovered) != to_checksum_address(tx.signer):
            raise rule_problem(
                422,
                "invalid-signature",
                f"signed by {recovered}, expected {tx.signer}",
                field=f"signatures[{i}]",
            )
    with Session(runtime.engine) as session:
        for tx, sig in zip(txs, body.signatures, strict=True):
            session.execute(update(OperationTx).where(OperationTx.id == tx.id).values(relay_signature=sig))  # type: ignore[arg-type]
        session.execute(
            update(Operation)
            .where(Operation.seq == op.seq, Operation.status == OperationStatus.AWAITING_SIGNATURES)  # type: ignore[arg-type]
            .values(status=OperationStatus.QUEUED)
        )
        session.commit()
    runtime.wake.set()
    return outbox.view(runtime, *_visible(runtime, principal, operation_id))
