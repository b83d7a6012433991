"""Raising alerts (deduplicated while open) and who may see and handle them: the product's sponsor
and regulators; the organisation that raised one sees its own. Security alerts about an
organisation's own people (a locked e-signature) are for its key admins and regulators only, and
are closed by what resolves them (unlocking), not through PATCH /v1/alerts."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, and_, or_, select
from sqlmodel import Session, col

from api.edge.auth import REGULATOR, Principal
from api.models import User, UserRole
from api.models.alerts import Alert, AlertStatus
from node.indexer.schema import Product, table

SIGNATURE_LOCKED = "SIGNATURE_LOCKED"  # a user's e-signature locked after repeated wrong credentials
SECURITY_ALERTS = frozenset({SIGNATURE_LOCKED})


def sponsor_of(session: Session, gtin: str | None) -> int | None:
    if gtin is None:
        return None
    found = session.execute(
        select(table(Product).c.sponsor_org).where(table(Product).c.gtin == gtin)
    ).scalar()
    return int(found) if found is not None else None


def _open_alert(session: Session, code: str, subject: str) -> Alert | None:
    """The alert `code` about `subject` that is not closed yet (at most one: raising deduplicates)."""
    stmt = select(Alert).where(
        col(Alert.code) == code, col(Alert.subject) == subject, col(Alert.status) != AlertStatus.CLOSED
    )
    return session.execute(stmt).scalar()


def raise_alert(
    engine: Engine,
    code: str,
    subject: str,
    *,
    principal: Principal | None,
    gtin: str | None = None,
    serial: str | None = None,
    batch_id: str | None = None,
    sponsor_org: int | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Record the signal; a repeat of an alert still open counts on it. Returns the alert's id."""
    with Session(engine) as session:
        existing = _open_alert(session, code, subject)
        if existing is not None:
            existing.count += 1
            existing.last_at = time.time()
            session.add(existing)
            session.commit()
            assert existing.id is not None
            return int(existing.id)
        alert = Alert(
            code=code,
            subject=subject,
            gtin=gtin,
            serial=serial,
            batch_id=batch_id,
            sponsor_org=sponsor_org if sponsor_org is not None else sponsor_of(session, gtin),
            raised_by_org=principal.org_id if principal else None,
            raised_by_user=principal.user_id if principal else None,
            detail=json.dumps(detail or {}, sort_keys=True),
        )
        session.add(alert)
        session.commit()
        session.refresh(alert)
        assert alert.id is not None
        return alert.id


def raise_signature_locked(
    engine: Engine, user: User, subject: str, typed_username: str, failures: int, limit: int
) -> int:
    """Notice to security: an alert for the organisation's key admins (and regulators)."""
    assert user.id is not None
    return raise_alert(
        engine,
        SIGNATURE_LOCKED,
        subject,
        principal=None,  # not "raised by" the signer's organisation: its other members do not see it
        sponsor_org=user.org_id,  # the organisation whose key admins must act
        detail={
            "user_id": user.id,
            "username": user.username,
            "printed_name": user.printed_name,
            "org_id": user.org_id,
            "typed_username": typed_username,
            "failures": failures,
            "limit": limit,
        },
    )


def close_alert(engine: Engine, code: str, subject: str, principal: Principal, note: str) -> int | None:
    """Close the open alert `code` about `subject`, if any, as handled by `principal`; its id."""
    with Session(engine) as session:
        alert = _open_alert(session, code, subject)
        if alert is None:
            return None
        alert.status = AlertStatus.CLOSED
        alert.note = note
        alert.handled_by_user = principal.user_id
        alert.handled_by_org = principal.org_id
        alert.handled_at = time.time()
        session.add(alert)
        session.commit()
        return int(alert.id) if alert.id is not None else None


def visible(principal: Principal) -> Any:
    """The condition on alerts the principal may see."""
    if REGULATOR in principal.org_roles:
        return None
    mine = or_(col(Alert.sponsor_org) == principal.org_id, col(Alert.raised_by_org) == principal.org_id)
    if principal.role == UserRole.KEY_ADMIN:
        return mine
    return and_(mine, col(Alert.code).not_in(SECURITY_ALERTS))


def may_handle(principal: Principal, alert: Alert) -> bool:
    if REGULATOR in principal.org_roles:
        return True
    if alert.code in SECURITY_ALERTS:
        return False  # closed by unlocking (a key admin), not by the people it is about
    return principal.org_id is not None and alert.sponsor_org == principal.org_id


def view(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "code": alert.code,
        "status": alert.status,
        "subject": alert.subject,
        "gtin": alert.gtin,
        "serial": alert.serial,
        "batch_id": alert.batch_id,
        "sponsor_org": alert.sponsor_org,
        "raised_by_org": alert.raised_by_org,
        "count": alert.count,
        "first_at": alert.first_at,
        "last_at": alert.last_at,
        "detail": json.loads(alert.detail),
        "handled_by_user": alert.handled_by_user,
        "handled_by_org": alert.handled_by_org,
        "handled_at": alert.handled_at,
        "note": alert.note,
    }
