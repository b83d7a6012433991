"""EPCIS queries over the anchored events, limited to what the caller's organisation may see: its
own events and those naming items it holds or held (directly, or inside a container it held);
regulators see everything."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Session, col

from api.edge.auth import REGULATOR, Principal
from api.edge.rules import rule_problem
from api.epcis.records import cbv_uri, item_of, location_uri
from api.models.epcis import EpcisEvent, EpcisEventEpc
from api.models.outbox import Operation, OperationStatus
from node.epcis.events import timestamp
from node.gs1.scan import IdentifierError
from node.indexer.schema import Certificate, CustodyEvent, CustodyEventItem, Unit, table

ALL_ROLES = ("epc", "child", "input", "output", "parent")


@dataclass
class EventQuery:
    """The EPCIS 2.0 SimpleEventQuery parameters rxledger answers (lists mean "any of")."""

    event_types: list[str] = field(default_factory=list)
    biz_steps: list[str] = field(default_factory=list)
    dispositions: list[str] = field(default_factory=list)
    biz_locations: list[str] = field(default_factory=list)
    match_epc: list[str] = field(default_factory=list)
    match_any_epc: list[str] = field(default_factory=list)
    ge_event_time: float | None = None
    lt_event_time: float | None = None
    per_page: int = 100
    after: int = 0  # from nextPageToken


def page_token(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": seq}).encode()).decode().rstrip("=")


def read_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded))["after"]
        if not isinstance(after, int) or after < 0:
            raise ValueError(after)
        return after
    except (ValueError, KeyError, TypeError):
        raise rule_problem(
            400, "invalid-page-token", "not a token this server gave", field="nextPageToken"
        ) from None


def epc_keys(values: list[str], param: str) -> list[str]:
    keys = []
    for value in values:
        try:
            keys.append(item_of(value).key)
        except (IdentifierError, ValueError) as exc:
            raise rule_problem(422, "invalid-identifier", str(exc), field=param) from None
    return keys


def held_keys(org_id: int) -> CTE:
    """Keys of every item the organisation acted on or was shipped, and, recursively, of what was
    packed into a container among them (as the EPCIS aggregation events recorded it)."""
    ci, ce = table(CustodyEventItem), table(CustodyEvent)
    direct = (
        select(ci.c.item_key.label("key"))
        .join(ce, and_(ce.c.block_number == ci.c.block_number, ce.c.log_index == ci.c.log_index))
        .where(or_(ce.c.org_id == org_id, ce.c.counterparty == org_id))
    )
    held = direct.cte("held", recursive=True)
    child = EpcisEventEpc.__table__.alias("child")  # type: ignore[attr-defined]
    parent = EpcisEventEpc.__table__.alias("parent")  # type: ignore[attr-defined]
    events = EpcisEvent.__table__  # type: ignore[attr-defined]
    inner = (
        select(child.c.key)
        .join(parent, and_(parent.c.event_seq == child.c.event_seq, parent.c.role == "parent"))
        .join(events, events.c.seq == child.c.event_seq)
        .join(held, held.c.key == parent.c.key)
        .where(child.c.role == "child", events.c.action == "ADD")
    )
    return held.union(inner)


def _with_roles(keys: list[str], roles: tuple[str, ...]) -> ColumnElement[bool]:
    sub = select(col(EpcisEventEpc.event_seq)).where(
        col(EpcisEventEpc.key).in_(keys), col(EpcisEventEpc.role).in_(roles)
    )
    return col(EpcisEvent.seq).in_(sub)


def visible(principal: Principal) -> ColumnElement[bool] | None:
    """The condition on events the principal may see (None: everything)."""
    if REGULATOR in principal.org_roles:
        return None
    assert principal.org_id is not None
    held = held_keys(principal.org_id)
    named = select(col(EpcisEventEpc.event_seq)).where(col(EpcisEventEpc.key).in_(select(held.c.key)))
    return or_(col(EpcisEvent.org_id) == principal.org_id, col(EpcisEvent.seq).in_(named))


def statement(principal: Principal, query: EventQuery) -> Select[Any]:
    stmt = (
        select(EpcisEvent)
        .join(Operation, col(Operation.id) == col(EpcisEvent.operation_id))
        .where(col(Operation.status) == OperationStatus.SUCCEEDED, col(EpcisEvent.seq) > query.after)
    )
    if query.event_types:
        stmt = stmt.where(col(EpcisEvent.event_type).in_(query.event_types))
    if query.biz_steps:
        stmt = stmt.where(col(EpcisEvent.biz_step).in_([cbv_uri("BizStep", v) for v in query.biz_steps]))
    if query.dispositions:
        stmt = stmt.where(col(EpcisEvent.disposition).in_([cbv_uri("Disp", v) for v in query.dispositions]))
    if query.biz_locations:
        stmt = stmt.where(col(EpcisEvent.biz_location).in_([location_uri(v) for v in query.biz_locations]))
    if query.match_epc:
        stmt = stmt.where(_with_roles(epc_keys(query.match_epc, "MATCH_epc"), ("epc", "child")))
    if query.match_any_epc:
        stmt = stmt.where(_with_roles(epc_keys(query.match_any_epc, "MATCH_anyEPC"), ALL_ROLES))
    if query.ge_event_time is not None:
        stmt = stmt.where(col(EpcisEvent.event_time) >= query.ge_event_time)
    if query.lt_event_time is not None:
        stmt = stmt.where(col(EpcisEvent.event_time) < query.lt_event_time)
    condition = visible(principal)
    if condition is not None:
        stmt = stmt.where(condition)
    return stmt.order_by(col(EpcisEvent.seq)).limit(query.per_page + 1)


def run(
    session: Session, principal: Principal, query: EventQuery, *, base_url: str = ""
) -> tuple[list[dict[str, Any]], str | None]:
    """The page of events (as stored JSON, with recordTime and certificationInfo) and the next
    page's token, if any."""
    rows = list(session.execute(statement(principal, query)).scalars())
    more = len(rows) > query.per_page
    rows = rows[: query.per_page]
    certified = certified_batches(session, [r.seq for r in rows if r.seq is not None])
    events = []
    for row in rows:
        event = as_json(row)
        links = [f"{base_url.rstrip('/')}/v1/batches/{b}" for b in certified.get(row.seq or 0, [])]
        if links:
            # the batch view lists the certificates; outside the Event Hash ID (CBV 2.0)
            event["certificationInfo"] = links[0] if len(links) == 1 else links
        events.append(event)
    return events, page_token(rows[-1].seq or 0) if more and rows else None


def certified_batches(session: Session, seqs: list[int]) -> dict[int, list[str]]:
    """For each event, the batches of the packs it names that have certificates anchored."""
    if not seqs:
        return {}
    e, u, c = EpcisEventEpc.__table__, table(Unit), table(Certificate)  # type: ignore[attr-defined]
    rows = session.execute(
        select(e.c.event_seq, u.c.batch_id)
        .join(u, u.c.key == e.c.key)
        .where(e.c.event_seq.in_(seqs), u.c.batch_id.in_(select(c.c.batch_id)))
        .distinct()
        .order_by(e.c.event_seq, u.c.batch_id)
    ).all()
    found: dict[int, list[str]] = {}
    for seq, batch in rows:
        found.setdefault(int(seq), []).append(str(batch))
    return found


def as_json(row: EpcisEvent) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(row.body)
    event["recordTime"] = timestamp(row.record_time)
    return event
