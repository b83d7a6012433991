"""What `GET /health` and `rxledger status` report: chain, contracts, indexer, database."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from web3 import Web3

from node.chain import ChainError, connect
from node.db import make_engine, ping
from node.deploy import check_manifest, load_manifest, manifest_path
from node.indexer.schema import Checkpoint, table
from node.settings import Settings


class ChainStatus(BaseModel):
    reachable: bool
    chain_id: int | None = None
    head_block: int | None = None


class ContractStatus(BaseModel):
    name: str
    address: str
    code_matches: bool | None  # None: not checked (chain unreachable)


class IndexerStatus(BaseModel):
    checkpoint_block: int | None = None
    lag_blocks: int | None = None
    running: bool = False


class DatabaseStatus(BaseModel):
    reachable: bool


class OutboxStatus(BaseModel):
    """The partner API's write queue: what waits, for how long, and whether a submitter works on it."""

    queued: int = 0
    running: int = 0
    awaiting_signatures: int = 0
    oldest_waiting_s: float | None = None  # age of the oldest queued or running operation
    submitter_alive: bool = False  # a submitter holds an unexpired lease
    depth: int = 0  # queued + running: what back-pressure counts
    max_depth: int | None = None  # past this, writes answer 503 outbox-full (RXLEDGER_OUTBOX_MAX_DEPTH)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    chain: ChainStatus
    contracts: list[ContractStatus]
    indexer: IndexerStatus
    database: DatabaseStatus
    outbox: OutboxStatus = OutboxStatus()
    problems: list[str]  # why the status is degraded, in words


# The indexer writes its checkpoint at least every 2 s while it runs (a heartbeat when idle).
INDEXER_STALE_AFTER_S = 10.0
# More blocks behind the head than this degrades the status.
INDEXER_MAX_LAG_BLOCKS = 50


def indexer_status(engine: Engine, head_block: int | None, problems: list[str]) -> IndexerStatus:
    """Checkpoint and lag of the indexer writing into this database."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(table(Checkpoint).name):
                problems.append("indexer: no read models yet (run `rxledger indexer run`)")
                return IndexerStatus()
            row = conn.execute(select(table(Checkpoint))).first()
    except (SQLAlchemyError, OSError):
        return IndexerStatus()  # the database problem is reported on its own
    if row is None:
        problems.append("indexer: nothing indexed yet (run `rxledger indexer run`)")
        return IndexerStatus()
    lag = None if head_block is None else max(0, head_block - int(row.block_number))
    running = time.time() - float(row.updated_at) < INDEXER_STALE_AFTER_S
    if not running:
        problems.append("indexer: not running (checkpoint not updated for a while)")
    if lag is not None and lag > INDEXER_MAX_LAG_BLOCKS:
        problems.append(f"indexer: {lag} blocks behind the head")
    return IndexerStatus(checkpoint_block=int(row.block_number), lag_blocks=lag, running=running)


def _chain(settings: Settings, timeout: float, problems: list[str]) -> tuple[ChainStatus, Web3 | None]:
    try:
        w3 = connect(settings, timeout=timeout)
        return ChainStatus(reachable=True, chain_id=w3.eth.chain_id, head_block=w3.eth.block_number), w3
    except ChainError as exc:
        problems.append(str(exc))
        actual = getattr(exc, "actual", None)  # reachable, but the wrong chain
        return ChainStatus(reachable=actual is not None, chain_id=actual), None
    except Exception as exc:  # e.g. a node that answers garbage
        problems.append(f"chain at {settings.rpc_url}: {exc.__class__.__name__}: {exc}")
        return ChainStatus(reachable=False), None


def _contracts(settings: Settings, w3: Web3 | None, problems: list[str]) -> list[ContractStatus]:
    manifest = load_manifest(settings.manifest_dir, settings.chain_id)
    if manifest is None:
        problems.append(
            f"no deployment manifest at {manifest_path(settings.manifest_dir, settings.chain_id)}"
        )
        return []
    if w3 is None:
        return [
            ContractStatus(name=n, address=c.address, code_matches=None)
            for n, c in manifest.contracts.items()
        ]
    checks = check_manifest(w3, manifest)
    problems.extend(c.problem for c in checks if c.problem)
    return [ContractStatus(name=c.name, address=c.address, code_matches=c.code_matches) for c in checks]


# An operation waiting longer than this degrades the status (the node or the submitter is stuck).
OUTBOX_MAX_WAIT_S = 120.0


def outbox_status(engine: Engine, problems: list[str], max_depth: int | None = None) -> OutboxStatus:
    """Counts by status, the oldest waiting operation, and the submitter's lease."""
    from sqlalchemy import func

    from api.models import Operation, SubmitterLease

    now = time.time()
    status = OutboxStatus(max_depth=max_depth)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("api_operations"):
                return status
            op = Operation.__table__  # type: ignore[attr-defined]
            for name, count in conn.execute(select(op.c.status, func.count()).group_by(op.c.status)).all():
                if name in ("queued", "running", "awaiting_signatures"):
                    setattr(status, name, int(count))
            oldest = conn.execute(
                select(func.min(op.c.created_at)).where(op.c.status.in_(("queued", "running")))
            ).scalar()
            lease = conn.execute(select(SubmitterLease.__table__.c.expires_at)).scalar()  # type: ignore[attr-defined]
    except (SQLAlchemyError, OSError):
        return status
    status.oldest_waiting_s = None if oldest is None else round(now - float(oldest), 3)
    status.submitter_alive = lease is not None and float(lease) > now
    waiting = status.queued + status.running
    status.depth = waiting
    if max_depth is not None and waiting >= max_depth:
        problems.append(f"outbox: {waiting} operations wait, at its bound of {max_depth}: writes are refused")
    if waiting and not status.submitter_alive and (status.oldest_waiting_s or 0) > 5:
        problems.append(f"outbox: {waiting} operations wait and no submitter is running")
    elif status.oldest_waiting_s is not None and status.oldest_waiting_s > OUTBOX_MAX_WAIT_S:
        problems.append(f"outbox: the oldest operation has waited {status.oldest_waiting_s:.0f} s")
    return status


def _database(engine: Engine, problems: list[str]) -> DatabaseStatus:
    try:
        ping(engine)
        return DatabaseStatus(reachable=True)
    except (SQLAlchemyError, OSError) as exc:
        problems.append(f"database: {exc.__class__.__name__}")
        return DatabaseStatus(reachable=False)


def collect_health(settings: Settings, engine: Engine | None = None, *, rpc_timeout: float = 2.0) -> Health:
    problems: list[str] = []
    chain, w3 = _chain(settings, rpc_timeout, problems)
    contracts = _contracts(settings, w3, problems)
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    try:
        database = _database(engine, problems)
        indexer = IndexerStatus()
        outbox = OutboxStatus()
        if database.reachable:
            indexer = indexer_status(engine, chain.head_block, problems)
            outbox = outbox_status(engine, problems, settings.outbox_max_depth)
    finally:
        if own_engine:
            engine.dispose()
    return Health(
        status="degraded" if problems else "ok",
        chain=chain,
        contracts=contracts,
        indexer=indexer,
        database=database,
        outbox=outbox,
        problems=problems,
    )
