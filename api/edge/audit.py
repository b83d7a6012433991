"""Append to the audit log, chaining every entry to the one before (SHA-256 over the previous hash
and the entry's canonical JSON), and check the chain."""

from __future__ import annotations

import hashlib
import json
import threading
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
    with _lock, Session(engine) as session:
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
        entry = AuditEntry(**fields)
        entry.at = round(entry.at, 6)
        entry.prev_hash = last or ""
        entry.entry_hash = entry_hash(entry.prev_hash, entry)
        session.add(entry)
        session.commit()
        session.refresh(entry)
        return entry


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
