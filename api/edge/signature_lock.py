"""Limits on electronic-signature attempts (21 CFR 11.300(d)): every refused attempt counts on the
signer's user row with one atomic UPDATE (parallel attempts all count), a good signature resets the
count, and at `signature_failure_limit` the user's e-signature locks until a key admin of their
organisation (or the consortium admin) unlocks it. Locking raises a SIGNATURE_LOCKED alert
(api.read.alerts.raise_signature_locked)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, case, update

from api.edge.auth import Principal
from api.models import User

_USERS = User.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Attempt:
    """The signer's state after a refused attempt."""

    failures: int  # refused attempts since the last good signature (or unlock), this one included
    locked: bool  # the signature is locked now
    locked_now: bool  # ... and this attempt locked it


def record_failure(engine: Engine, user_id: int, limit: int) -> Attempt:
    """Count a refused attempt; lock when the count reaches `limit`. One statement: the database
    serialises concurrent ones on the row, so none is lost and exactly one of them locks."""
    now = time.time()
    u = _USERS.c
    stmt = (
        update(_USERS)
        .where(u.id == user_id)
        .values(
            signature_failures=u.signature_failures + 1,
            signature_locked_at=case(
                (and_(u.signature_locked_at.is_(None), u.signature_failures + 1 >= limit), now),
                else_=u.signature_locked_at,
            ),
        )
        .returning(u.signature_failures, u.signature_locked_at)
    )
    with engine.begin() as conn:
        row = conn.execute(stmt).one()
    locked_at = row.signature_locked_at
    return Attempt(int(row.signature_failures), locked_at is not None, locked_at == now)


def record_success(engine: Engine, user_id: int) -> bool:
    """Reset the count after a good signature; False (nothing reset) when the signature is locked,
    as it may have become since it was read."""
    u = _USERS.c
    stmt = update(_USERS).where(u.id == user_id, u.signature_locked_at.is_(None)).values(signature_failures=0)
    with engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount == 1)


def unlock(engine: Engine, user_id: int) -> None:
    u = _USERS.c
    with engine.begin() as conn:
        conn.execute(
            update(_USERS).where(u.id == user_id).values(signature_failures=0, signature_locked_at=None)
        )


def subject(user_id: int) -> str:
    """The alert subject of a user's signature lock."""
    return f"user:{user_id}"


def audit_detail(
    principal: Principal,
    typed_username: str,
    *,
    outcome: str,
    failures: int,
    limit: int,
    locked: bool,
    locked_now: bool,
) -> str:
    """The audit row's detail for a signature attempt: who, what was typed as the username, and the
    count - never the credential."""
    detail: dict[str, Any] = {
        "signature": {
            "outcome": outcome,  # signed | wrong-credential | locked
            "user_id": principal.user_id,
            "username": principal.username,
            "typed_username": typed_username[:100],
            "typed_username_matches": typed_username == principal.username,
            "failures": failures,
            "limit": limit,
            "locked": locked,
            "locked_now": locked_now,
        }
    }
    return json.dumps(detail, sort_keys=True, separators=(",", ":"))
