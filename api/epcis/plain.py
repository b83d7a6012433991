"""The EPCIS event each plain-JSON custody request stands for. Its digest is what the request's
transactions anchor, so everything the API anchors can be exported as EPCIS and checked by hash."""

from __future__ import annotations

import calendar
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from api.epcis.records import make_record
from api.models import KnownItem
from api.runtime import Runtime
from api.write.plan import EventRecord, KeyRef, Plan, TxStep, chunks
from node.epcis import events as ev
from node.indexer.schema import Organization, table

ANCHORS_PER_TX = 1000  # ~1.1k gas a digest: far below any block's gas limit
UNKNOWN_KEY = "urn:rxledger:key:"  # an item whose identifier this API never learnt (privacy model)


def expiry_date(yymmdd: int) -> dt.date:
    """AI 17 as a date: day 00 is the last day of the month."""
    year, month, day = 2000 + yymmdd // 10000, yymmdd // 100 % 100, yymmdd % 100
    return dt.date(year, month, day or calendar.monthrange(year, month)[1])


def org_gln(runtime: Runtime, org_id: int | None) -> str | None:
    if org_id is None:
        return None
    with Session(runtime.engine) as session:
        gln = session.execute(
            select(table(Organization).c.gln).where(table(Organization).c.id == org_id)
        ).scalar()
    return str(gln) if gln is not None else None


class EventWriter:
    """Builds the EPCIS events of one request: same time and place for all of them."""

    def __init__(self, runtime: Runtime, plan: Plan, org_id: int | None) -> None:
        self.runtime = runtime
        self.plan = plan
        self.at = time.time()
        self.gln = org_gln(runtime, org_id)

    # -------------------------------------------------------------------- identifiers

    def epc(self, key: str) -> str:
        ref = self.plan.refs.get(key)
        if ref is not None:
            return self._ref_epc(ref)
        return UNKNOWN_KEY + key

    @staticmethod
    def _ref_epc(ref: KeyRef) -> str:
        if ref.sscc:
            return ev.sscc_dl(ref.sscc)
        assert ref.gtin and ref.serial
        return ev.sgtin_dl(ref.gtin, ref.serial)

    def learn(self, keys: Sequence[str]) -> None:
        """Identifiers of keys the request did not spell out (e.g. receiving a whole shipment)."""
        missing = [k for k in keys if k not in self.plan.refs]
        with Session(self.runtime.engine) as session:
            for part in chunks(missing, 500):
                for item in session.execute(select(KnownItem).where(col(KnownItem.key).in_(part))).scalars():
                    self.plan.refs[item.key] = KeyRef(
                        item.key, item.kind, "", gtin=item.gtin, serial=item.serial, sscc=item.sscc
                    )

    def _gtin(self, key: str) -> str | None:
        ref = self.plan.refs.get(key)
        return ref.gtin if ref else None

    # -------------------------------------------------------------------- events

    def add(
        self, event: dict[str, Any], keys: list[tuple[str, str, str | None]], anchoring: str
    ) -> EventRecord:
        record = make_record(event, anchoring=anchoring, keys=keys, position=len(self.plan.events))
        self.plan.events.append(record)
        return record

    def objects(self, keys: Sequence[str], *, action: str, biz_step: str, **fields: Any) -> EventRecord:
        event = ev.object_event(
            at=self.at,
            epcs=[self.epc(k) for k in keys],
            action=action,
            biz_step=biz_step,
            location_gln=self.gln,
            **fields,
        )
        return self.add(event, [(k, "epc", self._gtin(k)) for k in keys], "custody")

    def aggregation(
        self, parent: str, children: Sequence[str], *, action: str, biz_step: str, anchoring: str = "custody"
    ) -> EventRecord:
        event = ev.aggregation_event(
            at=self.at,
            parent=self.epc(parent),
            children=[self.epc(k) for k in children],
            action=action,
            biz_step=biz_step,
            disposition="in_progress" if action == "ADD" else None,
            location_gln=self.gln,
        )
        keys = [(parent, "parent", None), *[(k, "child", self._gtin(k)) for k in children]]
        return self.add(event, keys, anchoring)

    def anchor_rest(self) -> None:
        """Events no custody action carries (e.g. the packing of cases at commissioning) are anchored
        by `anchorEvents` after the actions."""
        digests = [r.digest for r in self.plan.events if r.anchoring == "hash"]
        for part in chunks(digests, ANCHORS_PER_TX):
            self.plan.steps.append(TxStep("CustodyLedger", "anchorEvents", [list(part)], items=0))

    def shipment_refs(
        self, sender_gln: str | None, shipment_id: str, reference: str = ""
    ) -> list[tuple[str, str]]:
        refs = [("desadv", ev.shipment_transaction(sender_gln or "0000000000000", shipment_id))]
        if reference:
            refs.append(("po", ev.shipment_transaction(sender_gln or "0000000000000", reference)))
        return refs
