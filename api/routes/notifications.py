"""Notifications for an organisation (server-sent events and signed webhooks) and the sponsor's live
recall view."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict
from sqlalchemy import select
from sqlmodel import Session, col

from api.edge.auth import REGULATOR, Permit, Principal, RuntimeDep
from api.edge.identifiers import Bytes32Hex
from api.edge.rules import rule_problem
from api.models.notifications import Delivery, Notification, Webhook
from api.read import provenance as pv
from api.routes.common import MAX_ROW_ID, RowId
from api.runtime import Runtime
from node.indexer.schema import BatchStatusChange, Organization, Unit, table
from node.ledger.constants import BatchStatus, UnitState

router = APIRouter(prefix="/v1", tags=["notifications and recalls"])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl


@router.post("/webhooks", status_code=201, summary="Register a webhook; its signing secret is shown once")
def add_webhook(
    body: WebhookIn, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("webhooks.manage"))]
) -> dict[str, Any]:
    assert principal.org_id is not None
    hook = Webhook(org_id=principal.org_id, url=str(body.url), secret="whsec_" + secrets.token_hex(32))
    with Session(runtime.engine) as session:
        session.add(hook)
        session.commit()
        session.refresh(hook)
    return {"id": hook.id, "url": hook.url, "secret": hook.secret, "signature_header": "Rxledger-Signature"}


@router.get("/webhooks", summary="Your organisation's webhooks (secrets are not shown again)")
def list_webhooks(
    runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("webhooks.manage"))]
) -> list[dict[str, Any]]:
    with Session(runtime.engine) as session:
        hooks = session.execute(select(Webhook).where(col(Webhook.org_id) == principal.org_id)).scalars()
        return [{"id": h.id, "url": h.url, "active": h.active, "created_at": h.created_at} for h in hooks]


@router.delete("/webhooks/{webhook_id}", summary="Stop delivering to a webhook")
def remove_webhook(
    webhook_id: RowId,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("webhooks.manage"))],
) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        hook = session.get(Webhook, webhook_id)
        if hook is None or hook.org_id != principal.org_id:
            raise rule_problem(
                404, "unknown-webhook", f"no webhook {webhook_id} of yours", field="webhook_id"
            )
        hook.active = False
        session.add(hook)
        session.commit()
        return {"id": webhook_id, "active": False}


def _notifications(runtime: Runtime, org_id: int | None, after: int, limit: int) -> list[dict[str, Any]]:
    with Session(runtime.engine) as session:
        notes = list(
            session.execute(
                select(Notification)
                .where(col(Notification.org_id) == org_id, col(Notification.id) > after)
                .order_by(col(Notification.id))
                .limit(limit)
            ).scalars()
        )
        deliveries: dict[int, list[dict[str, Any]]] = {}
        ids = [n.id for n in notes]
        for d in session.execute(select(Delivery).where(col(Delivery.notification_id).in_(ids))).scalars():
            deliveries.setdefault(d.notification_id, []).append(
                {
                    "webhook_id": d.webhook_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                }
            )
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "subject": n.subject,
            "created_at": n.created_at,
            "data": json.loads(n.payload),
            "deliveries": deliveries.get(n.id or 0, []),
        }
        for n in notes
    ]


@router.get("/notifications", summary="Notifications to your organisation (e.g. recalls of what you hold)")
def list_notifications(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read.own"))],
    after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return _notifications(runtime, principal.org_id, after, limit)


@router.get(
    "/notifications/stream",
    summary="Server-sent events: each new notification as it is made (resumes after Last-Event-ID)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def notification_stream(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("read.own"))],
    last_event_id: Annotated[int, Header(alias="Last-Event-ID", ge=0, le=MAX_ROW_ID)] = 0,
    follow: Annotated[bool, Query(description="false: send what is there and end")] = True,
) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        after, idle = last_event_id, 0.0
        while True:
            notes = await asyncio.to_thread(_notifications, runtime, principal.org_id, after, 100)
            for note in notes:
                after = int(note["id"])
                data = json.dumps(note, separators=(",", ":"))
                yield f"id: {after}\nevent: {note['kind']}\ndata: {data}\n\n"
            if not follow:
                return
            idle = 0.0 if notes else idle + 0.25
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get(
    "/recalls/{batch_id}",
    summary="Live recall view: where the batch's units are, returned, destroyed, dispensed",
)
def recall_view(
    batch_id: Bytes32Hex, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]
) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        batch = pv.batch_row(conn, batch_id.lower())
        if batch is None or not pv.full_view(principal, batch):
            raise rule_problem(404, "unknown-batch", f"no batch {batch_id} you may follow", field="batch_id")
        h = table(BatchStatusChange)
        recall = conn.execute(
            select(h)
            .where(h.c.batch_id == batch["batch_id"], h.c.to_status == BatchStatus.RECALLED)
            .order_by(h.c.block_number.desc())
            .limit(1)
        ).first()
        if recall is None:
            raise rule_problem(409, "not-recalled", "the batch is not recalled", field="batch_id")
        names = {int(r.id): r.name for r in conn.execute(select(table(Organization))).all()}
        counts = pv.units_now(conn, batch["batch_id"])
        back_home = {int(batch["sponsor"]), int(batch["manufacturer"])}
        u = table(Unit)
        dispensed = conn.execute(
            select(u.c.decommissioned_at).where(
                u.c.batch_id == batch["batch_id"], u.c.state == UnitState.DISPENSED
            )
        ).scalars()
        before = after = 0
        for at in dispensed:
            if at is not None and int(at) <= int(recall.timestamp):
                before += 1
            else:
                after += 1
    outstanding = sum(
        n for (holder, s), n in counts.items() if s in ("active", "in_transit") and holder not in back_home
    )
    return {
        "batch_id": batch["batch_id"],
        "gtin": batch["gtin"],
        "lot": batch["lot"],
        "recalled_at": int(recall.timestamp),
        "recall_block": int(recall.block_number),
        "recall_tx": recall.tx_hash,
        "holders": [
            {"org_id": holder, "name": names.get(holder), "status": status, "units": n}
            for (holder, status), n in sorted(counts.items())
        ],
        "returned": sum(n for (holder, s), n in counts.items() if s == "active" and holder in back_home),
        "destroyed": sum(n for (_, s), n in counts.items() if s == "destroyed"),
        "dispensed_before_recall": before,
        "dispensed_after_recall": after,
        "outstanding": outstanding,
        "regulator_view": REGULATOR in principal.org_roles,
    }
