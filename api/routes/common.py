"""What every write route does the same way: request ids, Idempotency-Key, accept -> 202 (or wait),
and lookups in the read model that turn a wrong id into a 404 naming the field.

Idempotent retries: the Write dependency (`WriteDep`) looks the (organisation scope, Idempotency-Key)
up before the route's handler runs, after the route's permission (`Permit`) is checked. A request
that matches the first one (same method, path, query without `wait`/`timeout`, and canonical body)
is answered with that operation, as `submit` answers it, and the handler never runs: no new checks,
simulations, documents, EPCIS events or alerts. Another request under the same key is 422
`idempotency-key-reused`. Operations accepted before this lookup existed carry a fingerprint of the
handler's payload instead of the raw request: a retry of one of those may answer 422 instead of the
replay (only JSON EPCIS captures keep the same fingerprint)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.edge.auth import Permit, Principal, PrincipalDep, get_runtime
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE, rule_problem
from api.models.outbox import Operation, OperationStatus
from api.runtime import ChainUnavailable, Runtime
from api.write import outbox
from api.write.plan import Plan
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


async def answer(
    request: Request,
    runtime: Runtime,
    op: Operation,
    *,
    created: bool,
    wait: bool = False,
    timeout: float | None = None,
) -> JSONResponse:
    """The answer for `op`: 202 with the operation when just created, 200 when replayed or already
    succeeded; with `wait`, its outcome (the problem of a failure, with the operation)."""
    request.state.operation_id = op.id
    request.state.operation_created = created
    if wait and op.status not in (OperationStatus.AWAITING_SIGNATURES,):
        limit = min(timeout or runtime.settings.wait_max_seconds, runtime.settings.wait_max_seconds)
        op = await outbox.wait_for(runtime.engine, op.id, limit)
    loaded = await run_in_threadpool(outbox.load, runtime.engine, op.id)
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
    request_print: str | None = None,
    turn: Turn | None = None,
) -> JSONResponse:
    """Accept `plan` into the outbox and answer 202 with the operation (200 when replayed), or
    with the outcome when `wait` (the problem of a failure, with the operation id)."""
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    try:
        # in a worker thread: accepting reads and writes the database and may simulate on the node;
        # on the event loop it held every other request up for that long
        op, created = await run_in_threadpool(
            functools.partial(
                outbox.accept,
                runtime,
                principal,
                plan,
                method=request.method,
                path=request.url.path,
                body=payload,
                idempotency_key=idempotency_key,
                request_id=request_id(request),
                request_print=request_print,
            )
        )
    except ChainUnavailable as exc:
        raise chain_unavailable(exc) from None
    except (ConnectionError, OSError) as exc:
        raise chain_unavailable(exc) from None
    request.state.operation_id = op.id
    request.state.operation_created = created
    if created and on_accepted is not None:
        on_accepted()  # e.g. record the new key, before waiting for the outcome
    if turn is not None:
        turn.release()  # the operation exists: the next request with this key is a replay
    return await answer(request, runtime, op, created=created, wait=wait, timeout=timeout)


class Replayed(Problem):
    """Not an error: the answer for an idempotent replay, raised by the Write dependency so that the
    route's handler never runs; the problem handler answers `response()`, i.e. `answer`'s response."""

    def __init__(self, answered: JSONResponse) -> None:
        super().__init__(answered.status_code, "Idempotent replay")
        self.answered = answered

    def response(self) -> JSONResponse:
        return self.answered


class Turn:
    """One request's hold on its (scope, Idempotency-Key): requests with the same key in this process
    take turns from the replay lookup until the first one's operation is accepted (`release`)."""

    def __init__(self, turns: Turns, key: tuple[int, str], entry: _TurnEntry) -> None:
        self._turns, self._key = turns, key
        self._entry: _TurnEntry | None = entry

    def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.lock.release()
            self._turns.leave(self._key, entry)


@dataclass
class _TurnEntry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Turns:
    """The locks of the keys in use, per application (and so per event loop); a key's lock is
    dropped when no request holds or awaits it."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], _TurnEntry] = {}

    async def take(self, key: tuple[int, str]) -> Turn:
        entry = self._entries.setdefault(key, _TurnEntry())
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting
            self.leave(key, entry)
            raise
        return Turn(self, key, entry)

    def leave(self, key: tuple[int, str], entry: _TurnEntry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._entries.get(key) is entry:
            del self._entries[key]


def _turns(request: Request) -> Turns:
    turns: Turns | None = getattr(request.app.state, "idempotency_turns", None)
    if turns is None:
        turns = request.app.state.idempotency_turns = Turns()
    return turns


@dataclass(frozen=True)
class Write:
    """What every write route takes besides its body: the request, the runtime, and the client's
    Idempotency-Key and `wait`/`timeout` choices (one dependency instead of five parameters), with
    the raw request's fingerprint that the key is bound to."""

    request: Request
    runtime: Runtime
    idempotency_key: str | None
    wait: bool
    timeout: float | None
    request_print: str | None = None
    turn: Turn | None = None

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
            request_print=self.request_print,
            turn=self.turn,
        )


FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


async def raw_fingerprint(request: Request) -> str:
    """The request as an Idempotency-Key is bound to it (`outbox.request_fingerprint`): method, path,
    query without `wait`/`timeout`, and the canonical body. A form is canonicalised by its fields
    (a file by its name, type and SHA-256): its multipart boundary changes from one try to the next."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in FORM_TYPES:
        form = await request.form()  # parsed once per request (FastAPI has, for a form route)
        parts: list[list[Any]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                await value.seek(0)
                file = {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
                parts.append([name, file])
            else:
                parts.append([name, value])
        parts.sort(key=lambda part: json.dumps(part, sort_keys=True))
        canonical = json.dumps({"form": parts}, sort_keys=True, separators=(",", ":"))
    else:
        canonical = outbox.canonical_body(await request.body())  # cached: the handler reads it again
    target = outbox.request_target(request.url.path, request.query_params.multi_items())
    return outbox.request_fingerprint(request.method, target, canonical)


def route_permits(dependant: Dependant) -> list[Permit]:
    """The `Permit` dependencies of a route (at any depth)."""
    found: list[Permit] = []
    for sub in dependant.dependencies:
        if isinstance(sub.call, Permit):
            found.append(sub.call)
        found.extend(route_permits(sub))
    return found


def check_permits(request: Request, principal: Principal) -> None:
    """The route's own `Permit` checks, whatever order FastAPI solves the dependencies in: a replay
    is never served to a principal the route itself would refuse (403)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    permits = route_permits(dependant) if isinstance(dependant, Dependant) else []
    if not permits:  # fail closed: tests/security/test_idempotency.py checks every write route has one
        raise RuntimeError(f"the write route {request.url.path} names no Permit")
    for permit in permits:
        permit.check(request, principal)


ReplayAnswer = Callable[[Runtime, Operation], JSONResponse | None]


def write_dependency(
    replay_answer: ReplayAnswer | None = None,
) -> Callable[..., AsyncIterator[Write]]:
    """The Write dependency; `replay_answer` answers a replay the route's own way (None: as `submit`)."""

    async def replayed(
        request: Request, runtime: Runtime, op: Operation, wait: bool, timeout: float | None
    ) -> Replayed:
        if replay_answer is not None:
            custom = replay_answer(runtime, op)
            if custom is not None:
                request.state.operation_id = op.id
                request.state.operation_created = False
                return Replayed(custom)
        return Replayed(await answer(request, runtime, op, created=False, wait=wait, timeout=timeout))

    async def dependency(
        request: Request,
        runtime: Annotated[Runtime, Depends(get_runtime)],
        principal: PrincipalDep,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = False,
        timeout: Timeout = None,
    ) -> AsyncIterator[Write]:
        if not idempotency_key:
            yield Write(request, runtime, None, wait, timeout)
            return
        check_permits(request, principal)
        print_ = await raw_fingerprint(request)
        scope = principal.org_id if principal.org_id is not None else -1
        turn = await _turns(request).take((scope, idempotency_key))
        try:
            first = outbox.find_idempotent(runtime.engine, principal, idempotency_key, print_)
            if first is not None:
                turn.release()
                raise await replayed(request, runtime, first, wait, timeout)
            try:
                yield Write(request, runtime, idempotency_key, wait, timeout, print_, turn)
            except Replayed:
                raise
            except Problem:
                # Refused by the handler's own checks: if a concurrent twin (in another API
                # process) was accepted meanwhile, its operation is the answer, not this refusal.
                turn.release()
                late = outbox.find_idempotent(runtime.engine, principal, idempotency_key, print_)
                if late is None:
                    raise
                raise await replayed(request, runtime, late, wait, timeout) from None
        finally:
            turn.release()

    return dependency


# scope="function": the exit code runs before the response is sent, so a refusal can still become
# the replay of a concurrent twin's operation (above)
WriteDep = Annotated[Write, Depends(write_dependency(), scope="function")]


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
