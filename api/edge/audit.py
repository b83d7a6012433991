"""Append to the audit log, chaining every entry to the one before (SHA-256 over the previous hash
and the entry's canonical JSON), and check the chain."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine, select, text
from sqlmodel import Session, col

from api.models import AuditEntry

_lock = threading.Lock()  # one appender at a time in this process; the database's lock across them
_ADVISORY_KEY = 0x72786C6564676572 & 0x7FFFFFFFFFFFFFFF  # "rxledger"
_HASHED = (
    "at", "request_id", "user_id", "username", "org_id", "method", "path", "action", "status",
    "outcome", "operation_id", "tx_hashes", "detail",
)  # fmt: skip


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    body = json.dumps({k: getattr(entry, k) for k in _HASHED}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append(engine: Engine, **fields: Any) -> AuditEntry:
    """Append one entry; returns once it is committed. Concurrent appends of this process share one
    database transaction (group commit, `GroupCommitter`): one write lock, one commit and one fsync
    for all the requests that arrived meanwhile, instead of one each in turn."""
    return _committer(engine).append(fields)


class GroupCommitter:
    """One thread per engine that writes the entries waiting in its queue in one transaction and
    then answers each caller; a caller blocks until its own entry is durable (or the transaction
    failed: then every caller of that group gets the exception, and nothing of the group is written)."""

    MAX_GROUP = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Mapping[str, Any], Future[AuditEntry]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rxledger-audit", daemon=True)
        self._thread.start()

    def append(self, fields: Mapping[str, Any]) -> AuditEntry:
        done: Future[AuditEntry] = Future()
        self._queue.put((fields, done))
        return done.result()

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
) -> list[AuditEntry]:
    """Append `entries` in order, in one database transaction with whatever `also` writes (the
    outcome they record): the record and the audit entry are durable together or not at all."""
    with _lock, Session(engine, expire_on_commit=False) as session:
        if also is not None:
            also(session)
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        else:
            # SQLite: take the database's write lock before reading the last hash, or another
            # process can read the same one and fork the chain (a write matching no row takes it,
            # and fires no trigger)
            session.execute(text("UPDATE api_audit_log SET id = id WHERE 0"))
        last = session.execute(
            select(col(AuditEntry.entry_hash)).order_by(col(AuditEntry.id).desc()).limit(1)
        ).scalar()
        added: list[AuditEntry] = []
        for fields in entries:
            entry = AuditEntry(**fields)
            entry.at = round(entry.at, 6)
            entry.prev_hash = last or ""
            entry.entry_hash = entry_hash(entry.prev_hash, entry)
            last = entry.entry_hash
            session.add(entry)
            added.append(entry)
        session.commit()  # ids were assigned at the flush: nothing to read back
        return added


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
