"""Writing EPCIS events with the operation that anchors them, in the same database transaction."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlmodel import Session, col

from api.edge.rules import rule_problem
from api.epcis.records import cbv_uri, location_uri
from api.models.epcis import EpcisEvent, EpcisEventEpc
from api.models.outbox import Operation, OperationStatus
from api.write.plan import EventRecord


def parse_time(value: str) -> float:
    """Seconds since the epoch of an xsd:dateTime with offset (EPCIS eventTime)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def already_captured(session: Session, hash_ids: Sequence[str]) -> dict[str, str]:
    """Of `hash_ids`, those anchored or being anchored already: hash id -> operation id. Events of
    failed operations do not count (they were never anchored) and are cleared so they can be
    captured again."""
    found: dict[str, str] = {}
    stale: list[int] = []
    for start in range(0, len(hash_ids), 500):
        rows = session.execute(
            select(col(EpcisEvent.seq), col(EpcisEvent.hash_id), col(Operation.id), col(Operation.status))
            .join(Operation, col(Operation.id) == col(EpcisEvent.operation_id))
            .where(col(EpcisEvent.hash_id).in_(hash_ids[start : start + 500]))
        ).all()
        for seq, hash_id, op_id, status in rows:
            if status == OperationStatus.FAILED:
                stale.append(seq)
            else:
                found[hash_id] = op_id
    if stale:
        session.execute(delete(EpcisEventEpc).where(col(EpcisEventEpc.event_seq).in_(stale)))
        session.execute(delete(EpcisEvent).where(col(EpcisEvent.seq).in_(stale)))
    return found


def persist(
    session: Session,
    records: Sequence[EventRecord],
    *,
    org_id: int,
    operation_id: str,
    capture_id: str | None,
) -> None:
    """Insert the operation's events and their identifiers (caller commits)."""
    if not records:
        return
    duplicates = already_captured(session, [r.hash_id for r in records])
    if duplicates:
        first = next(r for r in records if r.hash_id in duplicates)
        raise rule_problem(
            409,
            "duplicate-event",
            f"event {first.hash_id} was captured before (operation {duplicates[first.hash_id]})",
            field=f"epcisBody.eventList[{first.position}]",
            eventID=first.hash_id,
        )
    now = time.time()
    for record in records:
        event = record.event
        values = dict(
            hash_id=record.hash_id,
            digest="0x" + record.digest.hex(),
            org_id=org_id,
            operation_id=operation_id,
            capture_id=capture_id,
            position=record.position,
            anchoring=record.anchoring,
            event_type=str(event.get("type")),
            action=event.get("action"),
            biz_step=cbv_uri("BizStep", event.get("bizStep")),
            disposition=cbv_uri("Disp", event.get("disposition")),
            biz_location=location_uri((event.get("bizLocation") or {}).get("id")),
            event_time=parse_time(event["eventTime"]),
            record_time=now,
            body=json.dumps({**event, "eventID": record.hash_id}, separators=(",", ":")),
        )
        # a Core insert: the ORM's unit of work (add, flush, identity map) cost more than the rest
        # of a single-pack request's storage
        seq = session.execute(insert(EpcisEvent.__table__).values(**values)).inserted_primary_key[0]  # type: ignore[attr-defined]
        assert seq is not None
        if record.keys:
            session.execute(
                insert(EpcisEventEpc),
                [
                    {"event_seq": seq, "position": i, "key": key, "role": role, "gtin": gtin}
                    for i, (key, role, gtin) in enumerate(record.keys)
                ],
            )
