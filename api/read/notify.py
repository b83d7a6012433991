"""The notifier: turns recalls indexed from the chain into notifications for the batch's current
holders and its sponsor, and delivers them to the organisations' webhooks, signed with HMAC-SHA256
and retried with back-off until a 2xx acknowledges them. It reads the read models (not the request
that asked for the recall), so a recall made through any API node reaches everyone. It works only
while its process holds the submitter's lease: one notifier per database."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any

import httpx
from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from api.models.notifications import Delivery, Notification, NotifierState, Webhook
from api.read.provenance import units_now
from api.runtime import Runtime
from node.indexer.schema import Batch, BatchStatusChange, table
from node.ledger.constants import BatchStatus

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Rxledger-Signature"
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 300.0
DELIVERIES_PER_ROUND = 50


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`: the receiver recomputes it with its
    secret and rejects stale timestamps (replays)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def notify(session: Session, org_id: int, kind: str, subject: str, payload: dict[str, Any]) -> Notification:
    """A notification for the organisation and a pending delivery to each of its active webhooks."""
    note = Notification(
        org_id=org_id, kind=kind, subject=subject, payload=json.dumps(payload, sort_keys=True)
    )
    session.add(note)
    session.flush()
    assert note.id is not None
    hooks = session.execute(
        select(Webhook).where(col(Webhook.org_id) == org_id, col(Webhook.active))
    ).scalars()
    for hook in hooks:
        assert hook.id is not None
        session.add(Delivery(notification_id=note.id, webhook_id=hook.id))
    return note


def scan_recalls(runtime: Runtime) -> int:
    """Notifications for recalls indexed since the last scan; returns how many were made."""
    h = table(BatchStatusChange)
    made = 0
    with Session(runtime.engine) as session:
        state = session.get(NotifierState, 1) or NotifierState(id=1)
        rows = session.execute(
            select(h)
            .where(
                h.c.to_status == BatchStatus.RECALLED,
                or_(
                    h.c.block_number > state.block_number,
                    and_(h.c.block_number == state.block_number, h.c.log_index > state.log_index),
                ),
            )
            .order_by(h.c.block_number, h.c.log_index)
        ).all()
        for row in rows:
            batch = session.execute(
                select(table(Batch)).where(table(Batch).c.batch_id == row.batch_id)
            ).first()
            if batch is None:
                continue
            held: dict[int, int] = {}
            for (holder, status), n in units_now(session.connection(), row.batch_id).items():
                if status in ("active", "in_transit") and n:
                    held[holder] = held.get(holder, 0) + n
            base = {
                "type": "batch.recalled",
                "batch_id": row.batch_id,
                "gtin": batch.gtin,
                "lot": batch.lot,
                "block_number": row.block_number,
                "tx_hash": row.tx_hash,
                "recalled_at": row.timestamp,
            }
            for org in sorted(set(held) | {int(batch.sponsor)}):
                notify(
                    session, org, "batch.recalled", row.batch_id, {**base, "units_you_hold": held.get(org, 0)}
                )
                made += 1
            state.block_number, state.log_index = int(row.block_number), int(row.log_index)
        session.add(state)
        session.commit()
    return made


def deliver_due(runtime: Runtime, client: httpx.Client, *, now: float | None = None) -> int:
    """Attempt the deliveries that are due; returns how many were acknowledged."""
    now = now or time.time()
    acknowledged = 0
    with Session(runtime.engine) as session:
        due = session.execute(
            select(Delivery, Notification, Webhook)
            .join(Notification, col(Notification.id) == col(Delivery.notification_id))
            .join(Webhook, col(Webhook.id) == col(Delivery.webhook_id))
            .where(col(Delivery.status) == "pending", col(Delivery.next_at) <= now, col(Webhook.active))
            .order_by(col(Delivery.next_at))
            .limit(DELIVERIES_PER_ROUND)
        ).all()
        for delivery, note, hook in due:
            body = json.dumps(
                {
                    "id": note.id,
                    "kind": note.kind,
                    "created_at": note.created_at,
                    "data": json.loads(note.payload),
                },
                sort_keys=True,
            ).encode()
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(hook.secret, stamp, body),
                "Rxledger-Delivery": str(delivery.id),
            }
            delivery.attempts += 1
            try:
                response = client.post(hook.url, content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                error = None if ok else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                delivery.status, delivery.delivered_at, delivery.last_error = "delivered", time.time(), None
                acknowledged += 1
            else:
                delay = min(RETRY_BASE_SECONDS * 2 ** (delivery.attempts - 1), RETRY_MAX_SECONDS)
                delivery.next_at, delivery.last_error = time.time() + delay, error
            session.add(delivery)
            session.commit()
    return acknowledged


class Notifier:
    def __init__(self, runtime: Runtime, holds_lease: Any) -> None:
        self.runtime = runtime
        self.holds_lease = holds_lease  # () -> bool: the submitter's lease

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set():
                try:
                    if self.holds_lease():
                        scan_recalls(self.runtime)
                        deliver_due(self.runtime, client)
                except Exception:  # keep notifying: a database hiccup must not stop recalls reaching anyone
                    log.exception("notifier round failed")
                stop.wait(interval)


def start_notifier(runtime: Runtime, holds_lease: Any) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=Notifier(runtime, holds_lease).run, args=(stop,), name="rxledger-notifier", daemon=True
    )
    thread.start()
    return thread, stop
