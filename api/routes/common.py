"""What every write route does the same way: request ids, Idempotency-Key, accept -> 202 (or wait),
and lookups in the read model that turn a wrong id into a 404 naming the field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session

from api import outbox
from api.auth import Principal, get_runtime
from api.models.outbox import OperationStatus
from api.plan import Plan
from api.problems import Problem
from api.rules import PROBLEM_BASE, rule_problem
from api.runtime import ChainUnavailable, Runtime
from node.indexer.schema import Batch, Organization, table

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Replaying a request with this key returns the first operation instead of acting again.",
    ),
]
# Row ids (and offsets) are SQL BIGINTs: a larger number names no row, and does not even bind (SQLite
# raises OverflowError, PostgreSQL an out-of-range error): a 500 until bounded here, now a 422 naming the
# parameter (found by tests/api/test_schemathesis.py).
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=0, le=MAX_ROW_ID)]
Wait = Annotated[bool, Query(description="Wait (bounded) for the outcome instead of answering 202 at once.")]
Timeout = Annotated[
    float | None, Query(gt=0, description="Seconds to wait with wait=true (capped by the server).")
]


def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


def chain_unavailable(exc: Exception) -> Problem:
    return Problem(
        503,
        "Chain node unavailable",
        type=PROBLEM_BASE + "chain-unavailable",
        detail=f"the ledger node cannot be reached, so nothing was accepted: {exc}",
        headers={"Retry-After": "5"},
    )


async def submit(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    plan: Plan,
    body: BaseModel | dict[str, Any],
    *,
    idempotency_key: str | None,
    wait: bool = False,
    timeout: float | None = None,
    on_accepted: Callable[[], None] | None = None,
) -> JSONResponse:
    """Accept `plan` into the outbox and answer 202 with the operation (200 when replayed), or
    with the outcome when `wait` (the problem of a failure, with the operation id)."""
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    try:
        op, created = outbox.accept(
            runtime,
            principal,
            plan,
            method=request.method,
            path=request.url.path,
            body=payload,
            idempotency_key=idempotency_key,
            request_id=request_id(request),
        )
    except ChainUnavailable as exc:
        raise chain_unavailable(exc) from None
    except (ConnectionError, OSError) as exc:
        raise chain_unavailable(exc) from None
    request.state.operation_id = op.id
    request.state.operation_created = created
    if created and on_accepted is not None:
        on_accepted()  # e.g. record the new key, before waiting for the outcome
    if wait and op.status not in (OperationStatus.AWAITING_SIGNATURES,):
        limit = min(timeout or runtime.settings.wait_max_seconds, runtime.settings.wait_max_seconds)
        op = await outbox.wait_for(runtime.engine, op.id, limit)
    loaded = outbox.load(runtime.engine, op.id)
    assert loaded is not None
    op, txs = loaded
    view = outbox.view(runtime, op, txs)
    headers = {"Location": view.links["self"]}
    if op.status == OperationStatus.FAILED and wait and view.error:
        problem = dict(view.error)
        problem["operation"] = view.model_dump(mode="json")
        return JSONResponse(
            problem,
            status_code=int(problem.get("status", 409)),
            headers=headers,
            media_type="application/problem+json",
        )
    status = 200 if op.status == OperationStatus.SUCCEEDED else 202 if created else 200
    return JSONResponse(view.model_dump(mode="json"), status_code=status, headers=headers)


@dataclass(frozen=True)
class Write:
    """What every write route takes besides its body: the request, the runtime, and the client's
    Idempotency-Key and `wait`/`timeout` choices (one dependency instead of five parameters)."""

    request: Request
    runtime: Runtime
    idempotency_key: str | None
    wait: bool
    timeout: float | None

    async def submit(
        self,
        principal: Principal,
        plan: Plan,
        body: BaseModel | dict[str, Any],
        *,
        on_accepted: Callable[[], None] | None = None,
    ) -> JSONResponse:
        return await submit(
            self.request,
            self.runtime,
            principal,
            plan,
            body,
            idempotency_key=self.idempotency_key,
            wait=self.wait,
            timeout=self.timeout,
            on_accepted=on_accepted,
        )


def _write(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    idempotency_key: IdempotencyKey = None,
    wait: Wait = False,
    timeout: Timeout = None,
) -> Write:
    return Write(request, runtime, idempotency_key, wait, timeout)


WriteDep = Annotated[Write, Depends(_write)]


def org_row(runtime: Runtime, org_id: int, field: str = "org_id") -> Any:
    with Session(runtime.engine) as session:
        row = session.execute(select(table(Organization)).where(table(Organization).c.id == org_id)).first()
    if row is None:
        raise rule_problem(
            404, "unknown-organization", f"no organisation {org_id} on the network", field=field
        )
    return row


def org_by_gln(runtime: Runtime, gln: str, field: str) -> Any:
    with Session(runtime.engine) as session:
        row = session.execute(select(table(Organization)).where(table(Organization).c.gln == gln)).first()
    if row is None:
        raise rule_problem(
            404, "unknown-organization", f"no organisation with GLN {gln} on the network", field=field
        )
    return row


def batch_row(runtime: Runtime, batch_id: str, field: str = "batch_id") -> Any:
    with Session(runtime.engine) as session:
        row = session.execute(select(table(Batch)).where(table(Batch).c.batch_id == batch_id.lower())).first()
    if row is None:
        raise rule_problem(404, "unknown-batch", f"no batch {batch_id} on the network", field=field)
    return row
