"""Accepting a write: idempotency, pre-checks, and the outbox rows the submitter will work through.

`accept` runs in the request: it refuses what can be refused now (a rule the contract would revert
on, simulated with eth_call as the organisation's key), then writes the operation and all of its
transactions in one database transaction. From then on the operation is durable: the submitter
resumes it after any crash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from sqlalchemy import Engine, Insert, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from web3.types import RPCEndpoint

from api.edge.auth import Principal
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE, problem_from_revert, rule_problem
from api.epcis.store import persist as persist_events
from api.models import KnownItem, Operation, OperationStatus, OperationTx, OrgSigner, SignerMode
from api.models.outbox import TERMINAL, TxStatus
from api.runtime import ChainUnavailable, Runtime
from api.write.plan import Plan, encode_args, encode_call, has_deferred
from node.errors import ContractRevert, translate_reverts
from node.indexer.custody import resolve as resolve_custody
from node.indexer.schema import Container, Organization, OrgKey, Unit, table
from node.ledger.relay import DOMAIN_NAMES, typed_data

RELAY_DEADLINE_SECONDS = 24 * 3600
IN_FLIGHT = (OperationStatus.QUEUED, OperationStatus.RUNNING, OperationStatus.AWAITING_SIGNATURES)


class TxView(BaseModel):
    position: int
    contract: str
    function: str
    items: int
    status: str
    tx_hash: str | None = None
    block_number: int | None = None
    gas_used: int | None = None


class OperationView(BaseModel):
    id: str
    kind: str
    status: str
    org_id: int | None
    subject: str | None
    signing: str
    items_total: int
    items_done: int
    txs_total: int
    txs_done: int
    created_at: float
    updated_at: float
    finished_at: float | None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    transactions: list[TxView]
    # external signers: the EIP-712 typed data to sign, one per transaction, in order
    to_sign: list[dict[str, Any]] | None = None
    links: dict[str, str]


def fingerprint(method: str, path: str, body: Mapping[str, Any]) -> str:
    """The fingerprint of a payload a handler built (what `accept` stored before the early replay
    lookup; still its fallback when no request fingerprint is passed in)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return request_fingerprint(method, path, canonical)


# Query parameters that choose how to answer, not what to do: a retry may change them.
ANSWER_PARAMETERS = frozenset({"wait", "timeout"})
# Fields whose values never enter a fingerprint: the stored fingerprint would be a plain SHA-256 of
# the e-signature credential next to a stored copy of everything else in the body (`request`).
SECRET_FIELDS = frozenset({"credential"})


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<redacted>" if k in SECRET_FIELDS else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def canonical_body(raw: bytes) -> str:
    """A raw request body as the fingerprint sees it: "" for no (or a blank) body, canonical JSON
    (sorted keys, no spaces, secret fields redacted) for JSON, else the SHA-256 of the bytes."""
    if not raw.strip():
        return ""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (JSONDecodeError, UnicodeDecodeError are ValueErrors)
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    return json.dumps(_redacted(value), sort_keys=True, separators=(",", ":"), default=str)


def request_target(path: str, query: Sequence[tuple[str, str]]) -> str:
    """The path, plus the query parameters that are part of the request (sorted), without
    `wait`/`timeout`."""
    kept = sorted((k, v) for k, v in query if k not in ANSWER_PARAMETERS)
    return f"{path}?{urlencode(kept)}" if kept else path


def request_fingerprint(method: str, target: str, canonical: str) -> str:
    """What an Idempotency-Key is bound to: SHA-256 of the method, the target (`request_target`)
    and the canonical body (`canonical_body`). For a JSON body without query parameters this is
    the same value `fingerprint` gives for the parsed body."""
    return hashlib.sha256(f"{method} {target}\n{canonical}".encode()).hexdigest()


def claim_pending_signers(session: Session) -> None:
    """Keys created with an onboarding belong to the organisation once the indexer shows it."""
    pending = list(
        session.execute(select(OrgSigner).where(col(OrgSigner.purpose).like("pending-org:%"))).scalars()
    )
    for signer in pending:
        gln = signer.purpose.split(":", 1)[1]
        row = session.execute(
            select(table(Organization).c.id).where(table(Organization).c.gln == gln)
        ).first()
        if row is not None:
            signer.org_id = int(row[0])
            signer.purpose = "org"
            session.add(signer)
    if pending:
        session.commit()


def signer_for(session: Session, org_id: int | None) -> OrgSigner | None:
    claim_pending_signers(session)
    purpose = "org" if org_id is not None else "admin"
    stmt = select(OrgSigner).where(
        OrgSigner.org_id == org_id,  # type: ignore[arg-type]
        OrgSigner.purpose == purpose,  # type: ignore[arg-type]
        OrgSigner.active == True,  # type: ignore[arg-type]  # noqa: E712
    )
    rows = list(session.execute(stmt).scalars())
    if org_id is not None:
        # Only keys the chain accepts now (as indexed): a rotated or revoked key is never picked.
        k, now = table(OrgKey), int(time.time())
        valid = {
            str(a)
            for a in session.execute(
                select(k.c.address).where(
                    k.c.org_id == org_id,
                    k.c.revoked_at == 0,
                    k.c.valid_from <= now,
                    (k.c.valid_until == 0) | (k.c.valid_until >= now),
                )
            ).scalars()
        }
        rows = [r for r in rows if r.address.lower() in valid]
    # prefer custodial keys (no round trip to the client), then the newest
    rows.sort(key=lambda s: (s.mode != SignerMode.CUSTODIAL, -s.created_at))
    return rows[0] if rows else None


def relayer_for(session: Session) -> OrgSigner | None:
    stmt = select(OrgSigner).where(
        OrgSigner.purpose == "relayer",  # type: ignore[arg-type]
        OrgSigner.active == True,  # type: ignore[arg-type]  # noqa: E712
    )
    return session.execute(stmt).scalars().first()


def find_idempotent(engine: Engine, principal: Principal, key: str | None, print_: str) -> Operation | None:
    if not key:
        return None
    scope = principal.org_id if principal.org_id is not None else -1
    with Session(engine) as session:
        op: Operation | None = session.execute(
            select(Operation).where(col(Operation.org_scope) == scope, col(Operation.idempotency_key) == key)
        ).scalar()
    if op is None:
        return None
    if op.request_fingerprint != print_:
        raise rule_problem(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request",
            field="Idempotency-Key",
            operation_id=op.id,
        )
    return op


# Errors the contract checks before the holder: told to a caller who does not hold the item, they
# would say something about someone else's goods (packed, in transit) before "not yours"
_BEFORE_HOLDER = frozenset({"ItemPacked", "InTransit"})


def holder_first(runtime: Runtime, revert: ContractRevert, org_id: int | None) -> ContractRevert:
    """`revert` as a caller of `org_id` should see it: NotHolder when the contract refused a packed
    or in-transit item that the caller's organisation does not hold (read models, resolved as the
    contract resolves custody); otherwise `revert` itself."""
    if revert.name not in _BEFORE_HOLDER or org_id is None or not revert.args:
        return revert
    key = revert.args[0]
    key_hex = "0x" + key.hex() if isinstance(key, bytes) else str(key).lower()
    with runtime.engine.connect() as conn:
        for model in (Unit, Container):
            t = table(model)
            row = conn.execute(select(t).where(t.c.key == key_hex)).first()
            if row is not None:
                try:
                    holder = resolve_custody(conn, dict(row._mapping)).holder
                except LookupError:  # not indexed yet: the contract's own answer stands
                    return revert
                if holder == org_id:
                    return revert
                return ContractRevert("NotHolder", (key, holder), arg_names=("key", "holder"))
    return revert


def _simulate(runtime: Runtime, plan: Plan, signer: str, org_id: int | None) -> None:
    chain = runtime.chain()
    for step in plan.steps:
        if has_deferred(step.args):
            continue  # depends on an earlier step of the same plan
        contract = chain.contracts[step.contract]
        data = encode_call(contract, step.function, step.args)
        try:
            with translate_reverts(runtime.registry):
                chain.w3.eth.call({"from": signer, "to": contract.address, "data": "0x" + data.hex()})  # type: ignore[typeddict-item]
        except ContractRevert as revert:
            seen = holder_first(runtime, revert, org_id)
            raise problem_from_revert(seen, describe_key=plan.describe_key) from None
        except (ConnectionError, OSError) as exc:
            raise ChainUnavailable(str(exc)) from exc


class StepRevert(Exception):
    """A step of a sequential plan would revert: which one, and the decoded error."""

    def __init__(self, index: int, revert: ContractRevert) -> None:
        super().__init__(f"step {index}: {revert}")
        self.index = index
        self.revert = revert


def simulate_sequence(runtime: Runtime, plan: Plan, signer: str) -> None:
    """Simulate the plan's steps in order, each seeing the state the earlier ones leave
    (`eth_simulateV1`, on Anvil and Besu); raise StepRevert for the first that would revert."""
    chain = runtime.chain()
    calls = []
    for step in plan.steps:
        contract = chain.contracts[step.contract]
        data = encode_call(contract, step.function, step.args)
        calls.append({"from": signer, "to": contract.address, "data": "0x" + data.hex()})
    response: dict[str, Any] = {}
    for _attempt in range(3):  # a block mined between reading the head and simulating: read it again
        try:
            head = chain.w3.eth.get_block("latest")
            # the next block's time: a simulated block otherwise starts at time 0 on Anvil, before
            # every key's validity window (block numbers do not matter to the contracts)
            block = {"time": hex(max(int(head["timestamp"]) + 1, int(time.time())))}
            response = dict(
                chain.w3.provider.make_request(
                    RPCEndpoint("eth_simulateV1"),
                    [{"blockStateCalls": [{"blockOverrides": block, "calls": calls}]}, "latest"],
                )
            )
        except (ConnectionError, OSError) as exc:
            raise ChainUnavailable(str(exc)) from exc
        if "error" not in response:
            break
    if "error" in response:
        raise ChainUnavailable(f"eth_simulateV1: {response['error']}")
    results = response["result"][0]["calls"]
    for index, result in enumerate(results):
        if int(result["status"], 16) == 0:
            data = bytes.fromhex(result.get("returnData", "0x")[2:])
            raise StepRevert(index, ContractRevert.from_data(data, runtime.registry))


def _simulate_sequence(runtime: Runtime, plan: Plan, signer: str, org_id: int | None) -> None:
    try:
        simulate_sequence(runtime, plan, signer)
    except StepRevert as failed:
        seen = holder_first(runtime, failed.revert, org_id)
        raise problem_from_revert(seen, describe_key=plan.describe_key) from None


def has_in_flight(session: Session, scope: int) -> bool:
    stmt = select(col(Operation.seq)).where(
        col(Operation.org_scope) == scope, col(Operation.status).in_(IN_FLIGHT)
    )
    stmt = stmt.limit(1)
    return session.execute(stmt).first() is not None


def _next_relay_nonce(session: Session, runtime: Runtime, contract: str, signer: str) -> int:
    chain = runtime.chain()
    onchain = int(chain.contracts[contract].functions.nonces(signer).call())
    stmt = select(col(OperationTx.relay_nonce)).where(
        OperationTx.signer == signer,  # type: ignore[arg-type]
        OperationTx.contract == contract,  # type: ignore[arg-type]
        OperationTx.relay_nonce.is_not(None),  # type: ignore[union-attr]
        OperationTx.status.in_((TxStatus.PENDING, TxStatus.SIGNED, TxStatus.SENT)),  # type: ignore[attr-defined]
    )
    pending = [int(n) for n in session.execute(stmt).scalars() if n is not None]
    return max([onchain, *(n + 1 for n in pending)])


def remember_items(engine: Engine, plan: Plan, session: Session | None = None) -> None:
    """Record the identifiers behind the plan's keys (first sight wins; identical anyway), in
    `session`'s transaction when given (the caller commits)."""
    if not plan.refs:
        return
    rows = [
        {
            "key": r.key,
            "kind": r.kind,
            "gtin": r.gtin,
            "serial": r.serial,
            "sscc": r.sscc,
            "learnt_at": time.time(),
        }
        for r in plan.refs.values()
    ]
    table = KnownItem.__table__  # type: ignore[attr-defined]
    dialect = engine.dialect.name
    # one single-row statement, executemany: compiling a many-row VALUES clause is the slow part
    stmt: Insert
    if dialect == "postgresql":
        stmt = pg_insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(table)
    if session is not None:
        session.execute(stmt, rows)
        return
    with engine.begin() as conn:
        conn.execute(stmt, rows)


# (engine id) -> (when counted, queued or running operations): counted at most every DEPTH_MAX_AGE
# seconds, not once per request
_depth: dict[int, tuple[float, int]] = {}
DEPTH_MAX_AGE = 0.25


def outbox_depth(engine: Engine, *, max_age: float = DEPTH_MAX_AGE) -> int:
    """How many accepted operations wait for the submitter (queued or running)."""
    at, depth = _depth.get(id(engine), (0.0, 0))
    now = time.monotonic()
    if now - at < max_age:
        return depth
    with Session(engine) as session:
        depth = int(
            session.execute(
                select(func.count())
                .select_from(Operation)
                .where(col(Operation.status).in_((OperationStatus.QUEUED, OperationStatus.RUNNING)))
            ).scalar_one()
        )
    _depth[id(engine)] = (now, depth)
    return depth


def check_back_pressure(runtime: Runtime) -> None:
    """Refuse new work while the outbox is deeper than its bound: a client retries later rather than
    the queue (and every operation's wait) growing without limit."""
    depth = outbox_depth(runtime.engine)
    if depth >= runtime.settings.outbox_max_depth:
        raise Problem(
            503,
            "Outbox full",
            type=PROBLEM_BASE + "outbox-full",
            detail=f"{depth} accepted operations are waiting to be sent (the bound is "
            f"{runtime.settings.outbox_max_depth}); nothing was accepted, retry later",
            headers={"Retry-After": "2"},
        )


def accept(
    runtime: Runtime,
    principal: Principal,
    plan: Plan,
    *,
    method: str,
    path: str,
    body: Mapping[str, Any],
    idempotency_key: str | None,
    request_id: str,
    simulate: bool = True,
    request_print: str | None = None,
) -> tuple[Operation, bool]:
    """Persist `plan` as an operation; (operation, created). A replayed Idempotency-Key returns the
    first operation and created=False.

    `request_print` is the fingerprint of the raw request (`request_fingerprint`, computed by the
    routes' Write dependency, which looks the key up before the handler runs); it is what is stored
    and compared here too, so the early lookup and the race below agree. Without it, the fingerprint
    of `body` (the payload the handler built) is used, as before."""
    print_ = request_print if request_print is not None else fingerprint(method, path, body)
    existing = find_idempotent(runtime.engine, principal, idempotency_key, print_)
    if existing is not None:
        return existing, False
    if not plan.steps:
        raise rule_problem(422, "empty-request", "the request names nothing to do")
    check_back_pressure(runtime)
    scope = principal.org_id if principal.org_id is not None else -1
    with Session(runtime.engine) as session:
        signer = signer_for(session, principal.org_id)
        if signer is None:
            raise rule_problem(
                409, "no-signing-key", "your organisation has no active signing key registered with this API"
            )
        external = signer.mode == SignerMode.EXTERNAL
        if not external and not runtime.keystore.usable:
            raise Problem(
                503,
                "Custodial signing unavailable",
                type=PROBLEM_BASE + "keystore-locked",
                detail="the API has no keystore password (RXLEDGER_KEYSTORE_PASSWORD)",
            )
        relayer = relayer_for(session) if external else None
        if external and relayer is None:
            raise rule_problem(409, "no-relayer", "this API has no relayer key to send signed actions")
        if simulate and not plan.prechecked and not has_in_flight(session, scope):
            # With earlier operations still in flight the state they will create is not on chain
            # yet; then the contract alone judges, when the submitter sends.
            if plan.sequential:
                _simulate_sequence(runtime, plan, signer.address, principal.org_id)
            else:
                _simulate(runtime, plan, signer.address, principal.org_id)
        op = Operation(
            id=uuid.uuid4().hex,
            kind=plan.kind,
            org_id=principal.org_id,
            org_scope=scope,
            user_id=principal.user_id,
            signing=signer.mode,
            idempotency_key=idempotency_key,
            request_fingerprint=print_,
            request=json.dumps(body, sort_keys=True, separators=(",", ":"), default=str),
            subject=plan.subject,
            status=OperationStatus.AWAITING_SIGNATURES if external else OperationStatus.QUEUED,
            items_total=plan.items_total,
            txs_total=len(plan.steps),
            result=json.dumps(plan.result) if plan.result else None,
            request_id=request_id,
        )
        session.add(op)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()  # a concurrent request with the same Idempotency-Key won the race
            winner = find_idempotent(runtime.engine, principal, idempotency_key, print_)
            if winner is None:
                raise
            return winner, False
        assert op.seq is not None
        nonces: dict[str, int] = {}
        deadline = int(time.time()) + RELAY_DEADLINE_SECONDS
        for position, step in enumerate(plan.steps):
            tx = OperationTx(
                operation_seq=op.seq,
                position=position,
                contract=step.contract,
                function=step.function,
                args=encode_args(step.args),
                items=step.items,
                signer=signer.address,
                sender=relayer.address if relayer is not None else signer.address,
            )
            if external:
                if step.contract not in nonces:
                    nonces[step.contract] = _next_relay_nonce(session, runtime, step.contract, signer.address)
                tx.relay_nonce = nonces[step.contract]
                tx.relay_deadline = deadline
                nonces[step.contract] += 1
            session.add(tx)
        if plan.events:
            assert principal.org_id is not None
            persist_events(
                session, plan.events, org_id=principal.org_id, operation_id=op.id, capture_id=plan.capture_id
            )
        remember_items(runtime.engine, plan, session)  # one write transaction per request
        session.commit()
        session.refresh(op)
    runtime.wake.set()
    return op, True


def load(engine: Engine, op_id: str) -> tuple[Operation, list[OperationTx]] | None:
    with Session(engine) as session:
        op = session.execute(select(Operation).where(Operation.id == op_id)).scalar()  # type: ignore[arg-type]
        if op is None:
            return None
        txs = list(
            session.execute(
                select(OperationTx).where(OperationTx.operation_seq == op.seq).order_by(OperationTx.position)  # type: ignore[arg-type]
            ).scalars()
        )
        return op, txs


def typed_data_for(runtime: Runtime, tx: OperationTx) -> dict[str, Any]:
    from api.write.plan import decode_args

    chain = runtime.chain()
    contract = chain.contracts[tx.contract]
    assert tx.relay_nonce is not None and tx.relay_deadline is not None
    args = decode_args(contract, tx.function, tx.args)
    return typed_data(
        contract,
        DOMAIN_NAMES[tx.contract],
        chain.chain_id,
        tx.function,
        args,
        nonce=tx.relay_nonce,
        deadline=tx.relay_deadline,
    )


def view(runtime: Runtime, op: Operation, txs: Sequence[OperationTx]) -> OperationView:
    to_sign = None
    if op.status == OperationStatus.AWAITING_SIGNATURES:
        to_sign = [typed_data_for(runtime, tx) for tx in txs]
    return OperationView(
        id=op.id,
        kind=op.kind,
        status=op.status,
        org_id=op.org_id,
        subject=op.subject,
        signing=op.signing,
        items_total=op.items_total,
        items_done=op.items_done,
        txs_total=op.txs_total,
        txs_done=op.txs_done,
        created_at=op.created_at,
        updated_at=op.updated_at,
        finished_at=op.finished_at,
        result=json.loads(op.result) if op.result else None,
        error=json.loads(op.error) if op.error else None,
        transactions=[
            TxView(
                position=t.position,
                contract=t.contract,
                function=t.function,
                items=t.items,
                status=t.status,
                tx_hash=t.tx_hash if t.status in (TxStatus.SENT, TxStatus.MINED, TxStatus.FAILED) else None,
                block_number=t.block_number,
                gas_used=t.gas_used,
            )
            for t in txs
        ],
        to_sign=to_sign,
        links={"self": f"/v1/operations/{op.id}", "events": f"/v1/operations/{op.id}/events"},
    )


def _status(engine: Engine, op_id: str) -> str | None:
    with engine.connect() as conn:
        status: str | None = conn.execute(
            select(col(Operation.status)).where(col(Operation.id) == op_id)
        ).scalar()
        return status


async def wait_for(engine: Engine, op_id: str, timeout: float) -> Operation:
    """Poll (the status column only) until the operation is terminal or `timeout` passes; returns
    its latest state."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        status = await asyncio.to_thread(_status, engine, op_id)
        if status in TERMINAL or time.monotonic() >= deadline:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 1.2, 0.02)
    loaded = await asyncio.to_thread(load, engine, op_id)
    assert loaded is not None
    return loaded[0]
