"""Append to the audit log, chaining every entry to the one before (SHA-256 over the previous hash
and the entry's canonical JSON), and check the chain."""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text
from sqlmodel import Session

from api.models import AuditEntry
from api.models.base import now

_TABLE = AuditEntry.__table__  # type: ignore[attr-defined]
_LAST_HASH = select(_TABLE.c.entry_hash).order_by(_TABLE.c.id.desc()).limit(1)
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
_PG_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_SQLITE_LOCK = text("UPDATE api_audit_log SET id = id WHERE 0")
_lock = threading.Lock()  # one appender at a time in this process; the database's lock across them
_ADVISORY_KEY = 0x72786C6564676572 & 0x7FFFFFFFFFFFFFFF  # "rxledger"
_HASHED = (
    "at", "request_id", "user_id", "username", "org_id", "method", "path", "action", "status",
    "outcome", "operation_id", "tx_hashes", "detail",
)  # fmt: skip


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return row_hash(prev_hash, {k: getattr(entry, k) for k in _HASHED})


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    body = json.dumps({k: row[k] for k in _HASHED}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _row(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as the table stores it: the model's defaults filled in, `at` to the microsecond."""
    row: dict[str, Any] = {k: None for k in _HASHED}
    row["tx_hashes"] = ""
    row.update(fields)
    row["at"] = round(float(row["at"] if row["at"] is not None else now()), 6)
    return row


def append(engine: Engine, **fields: Any) -> AuditEntry:
    """Append one entry; returns once it is committed. Concurrent appends of this process share one
    database transaction (group commit, `GroupCommitter`): one write lock, one commit and one fsync
    for all the requests that arrived meanwhile, instead of one each in turn."""
    return AuditEntry(**_committer(engine).submit(fields).result())


async def append_async(engine: Engine, **fields: Any) -> None:
    """`append` for the event loop: waits for the group's commit without a worker thread of its own
    (the committer thread resolves the future through the loop)."""
    await asyncio.wrap_future(_committer(engine).submit(fields))


class GroupCommitter:
    """One thread per engine that writes the entries waiting in its queue in one transaction and
    then answers each caller; a caller blocks until its own entry is durable (or the transaction
    failed: then every caller of that group gets the exception, and nothing of the group is written)."""

    MAX_GROUP = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Mapping[str, Any], Future[dict[str, Any]]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rxledger-audit", daemon=True)
        self._thread.start()

    def submit(self, fields: Mapping[str, Any]) -> Future[dict[str, Any]]:
        """Queue one entry; the future has the stored row once its group is committed."""
        done: Future[dict[str, Any]] = Future()
        self._queue.put((fields, done))
        return done

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                entries = append_many(self.engine, [fields for fields, _ in group])
            except BaseException as exc:  # the database is down: every caller of the group hears it
                for _, done in group:
                    done.set_exception(exc)
                continue
            for (_, done), entry in zip(group, entries, strict=True):
                done.set_result(entry)


_committers: dict[int, GroupCommitter] = {}
_committers_lock = threading.Lock()


def _committer(engine: Engine) -> GroupCommitter:
    with _committers_lock:
        committer = _committers.get(id(engine))
        if committer is None or committer.engine is not engine:
            committer = _committers[id(engine)] = GroupCommitter(engine)
        return committer


def append_many(
    engine: Engine, entries: Sequence[Mapping[str, Any]], also: Callable[[Session], None] | None = None
) -> list[dict[str, Any]]:
    """Append `entries` in order, in one database transaction with whatever `also` writes (the
    outcome they record): the record and the audit entry are durable together or not at all.
    Returns the stored rows. One prepared INSERT for all of them: the ORM's unit
    of work cost more than the rest of a verification (scripts/bench-verify --profile)."""
    rows = [_row(fields) for fields in entries]
    with _lock:
        if also is None:  # the middleware's groups: a bare connection, no ORM session around it
            with engine.begin() as conn:
                _insert(engine, conn, rows)
            return rows
        with Session(engine, expire_on_commit=False) as session:
            also(session)
            _insert(engine, session, rows)
            session.commit()
        return rows


def _insert(engine: Engine, db: Connection | Session, rows: list[dict[str, Any]]) -> None:
    if engine.dialect.name == "postgresql":
        db.execute(_PG_LOCK, {"k": _ADVISORY_KEY})
    else:
        # SQLite: take the database's write lock before reading the last hash, or another process
        # can read the same one and fork the chain (a write matching no row takes it, and fires no
        # trigger)
        db.execute(_SQLITE_LOCK)
    last = db.execute(_LAST_HASH).scalar() or ""
    for row in rows:
        row["prev_hash"] = last
        row["entry_hash"] = last = row_hash(last, row)
    ids = db.execute(_INSERT, rows).scalars()
    for row, id_ in zip(rows, ids, strict=True):
        row["id"] = id_


def verify_chain(engine: Engine) -> tuple[int, int | None]:
    """(entries checked, id of the first entry that does not chain, or None when all do)."""
    prev = ""
    count = 0
    with Session(engine) as session:
        for entry in session.exec(select(AuditEntry).order_by(AuditEntry.id)).scalars():  # type: ignore[call-overload,arg-type]
            count += 1
            if entry.prev_hash != prev or entry.entry_hash != entry_hash(prev, entry):
                return count, entry.id
            prev = entry.entry_hash
    return count, None
