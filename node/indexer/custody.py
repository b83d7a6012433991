"""Custody resolution over the read models, exactly as CustodyLedger._custody resolves it on chain:
a packed item's holder and transit are its root container's; a dissolved container's children are
loose and inherit custody from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from node.indexer.schema import Container, table
from node.ledger.constants import ContainerState

MAX_DEPTH = 16  # containers nest at most 8 deep on chain; dissolved chains add at most as many


@dataclass(frozen=True)
class Custody:
    holder: int
    packed: bool
    parent_key: str | None  # the direct parent while packed, else None
    shipment_id: str | None  # the root's shipment while in transit


def _container(conn: Connection, key: str) -> Mapping[str, Any] | None:
    t = table(Container)
    row = conn.execute(select(t).where(t.c.key == key)).first()
    return dict(row._mapping) if row else None


def resolve(conn: Connection, item: Mapping[str, Any]) -> Custody:
    parent_key = item["parent_key"]
    if parent_key is None:
        return Custody(int(item["holder"]), False, None, item["shipment_id"])
    parent = _container(conn, parent_key)
    if parent is None:
        raise LookupError(f"container {parent_key} of {item['key']} is not indexed")
    if parent["state"] == ContainerState.DISSOLVED:
        return Custody(_holder(conn, parent), False, None, None)
    root = parent
    for _ in range(MAX_DEPTH):
        if root["parent_key"] is None:
            break
        up = _container(conn, root["parent_key"])
        if up is None or up["state"] == ContainerState.DISSOLVED:
            break
        root = up
    return Custody(_holder(conn, root), True, parent_key, root["shipment_id"])


def _holder(conn: Connection, item: Mapping[str, Any]) -> int:
    for _ in range(MAX_DEPTH):
        if item["parent_key"] is None:
            break
        up = _container(conn, item["parent_key"])
        if up is None:
            break
        item = up
    return int(item["holder"])
