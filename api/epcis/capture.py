"""What a captured EPCIS document means on the ledger: each event mapped to the contract action it
stands for, or anchored by hash when it changes no custody, or refused with the reason.

| event | becomes |
|---|---|
| ObjectEvent ADD, bizStep commissioning | `commission` (batch from ILMD lotNumber, expiry checked) |
| AggregationEvent ADD / DELETE | `pack` / `unpack` (`unpackAll` without childEPCs) |
| ObjectEvent OBSERVE, shipping, destinationList | `ship` to the organisation of the destination GLN |
| ObjectEvent, receiving (disposition non_conformant: refused goods) | `receiveShipment` / `rejectShipment` |
| ObjectEvent, dispensing / destroying / decommissioning | `decommission` with the matching reason |
| ObjectEvent, bizStep rxl reactivating | `undoDecommission` |
| other OBSERVE events, TransactionEvent, AssociationEvent | anchored by hash (`anchorEvents`) |
| other ADD/DELETE ObjectEvents, TransformationEvent, class-level custody | refused: no ledger action |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlmodel import Session

from api.edge.auth import Principal
from api.edge.identifiers import shipment_bytes
from api.edge.problems import Problem
from api.edge.rules import problem_from_revert, rule_problem
from api.epcis.plain import ANCHORS_PER_TX, expiry_date, org_gln
from api.epcis.records import cbv_uri, cbv_word, gln_of, item_of, make_record
from api.runtime import Runtime
from api.write.plan import EventRecord, KeyRef, Plan, TxStep, chunks
from node.epcis.events import REACTIVATING, RXL_NS
from node.errors import ContractRevert
from node.gs1.scan import IdentifierError
from node.indexer.schema import Batch, Organization, Shipment, ShipmentItem, table
from node.ledger.constants import UnitState
from node.ledger.identifiers import batch_id

CBVMDA = "urn:epcglobal:cbv:mda:"
REASONS = {s.name.lower(): int(s) for s in UnitState if s >= UnitState.DISPENSED}
_BY_DISPOSITION = {
    "dispensed": "dispensed",
    "partially_dispensed": "dispensed",
    "destroyed": "destroyed",
    "disposed": "destroyed",
    "stolen": "stolen",
}
_PERMISSION = {
    "commission": "custody.commission",
    "pack": "custody.pack",
    "unpack": "custody.pack",
    "ship": "custody.ship",
    "receive": "custody.receive",
    "reject": "custody.receive",
    "decommission": "custody.decommission",
    "undo": "custody.decommission",
}


class Refused(Exception):
    """An event that cannot be applied, with its problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _refuse(status: int, rule: str, detail: str, field: str) -> Refused:
    return Refused(rule_problem(status, rule, detail, field=field))


@dataclass
class Mapped:
    """One event's share of the plan."""

    record: EventRecord
    kind: str  # commission, pack, ..., or "hash"
    steps: list[TxStep] = field(default_factory=list)
    refs: dict[str, KeyRef] = field(default_factory=dict)
    items: int = 0


def prefixes(context: Any) -> dict[str, str]:
    """Namespace prefixes a JSON-LD @context defines (the EPCIS context's `cbvmda` included)."""
    found = {"cbvmda": CBVMDA}
    for entry in context if isinstance(context, list) else [context]:
        if isinstance(entry, Mapping):
            found.update({k: v for k, v in entry.items() if isinstance(v, str)})
    return found


def member(obj: Mapping[str, Any] | None, iri: str, names: Mapping[str, str]) -> Any:
    """The value of the member whose expanded name is `iri` (`cbvmda:lotNumber`, the full IRI...)."""
    for key, value in (obj or {}).items():
        prefix, sep, local = key.partition(":")
        if key == iri or (sep and names.get(prefix, "") + local == iri):
            return value
    return None


class CaptureMapper:
    """Maps the events of one document for one organisation."""

    def __init__(self, runtime: Runtime, principal: Principal, context: Any) -> None:
        self.runtime = runtime
        self.principal = principal
        self.context = context
        self.names = prefixes(context)
        self.gln = org_gln(runtime, principal.org_id)
        self.received_at: dict[str, str] = {}  # item key -> GLN where the document receives it

    def scan(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Where the document's receiving events take place: the destination of a shipping event
        that names none (as in GS1's example 9.6.1) is the organisation receiving its items."""
        for event in events:
            if cbv_word(cbv_uri("BizStep", event.get("bizStep"))) not in ("receiving", "accepting"):
                continue
            place = (event.get("bizLocation") or event.get("readPoint") or {}).get("id")
            gln = gln_of(str(place)) if place else None
            if gln is None:
                continue
            for uri in event.get("epcList") or []:
                try:
                    self.received_at.setdefault(item_of(str(uri)).key, gln)
                except (IdentifierError, ValueError):
                    continue

    def record(self, position: int, event: dict[str, Any]) -> EventRecord:
        """The event's record: Event Hash ID over the document's context. The document's own
        namespace definitions travel with the stored event (an event-level @context, which the hash
        ignores), so an export in rxledger's context still resolves the event's extension fields."""
        record = make_record(event, anchoring="custody", position=position, context=self.context)
        local = [
            c
            for c in (self.context if isinstance(self.context, list) else [self.context])
            if isinstance(c, dict)
        ]
        if local and "@context" not in event:
            record.event = {"@context": local, **event}
        return record

    def apply(self, record: EventRecord, event: dict[str, Any]) -> Mapped:
        """The event's share of the plan; Refused when it cannot be applied."""
        where = f"epcisBody.eventList[{record.position}]"
        kind = self._kind(event, where)
        mapped = Mapped(record, kind)
        if kind == "hash":
            record.anchoring = "hash"
            return mapped
        if not self.principal.may(_PERMISSION[kind]):
            raise Refused(
                rule_problem(403, "forbidden", f"your organisation or role may not {kind}", field=where)
            )
        getattr(self, "_" + kind)(mapped, event, where)
        return mapped

    # ---------------------------------------------------------------- classification

    def _kind(self, event: Mapping[str, Any], where: str) -> str:
        etype, action = event.get("type"), event.get("action")
        if "errorDeclaration" in event:
            # same Event Hash ID as the event it corrects (the hash leaves the declaration out)
            raise _refuse(
                422,
                "error-declaration-unsupported",
                "error declarations are not applied yet: capture the corrective events",
                where + ".errorDeclaration",
            )
        step = cbv_uri("BizStep", event.get("bizStep"))
        word = cbv_word(step)
        if etype == "AggregationEvent":
            return {"ADD": "pack", "DELETE": "unpack"}.get(str(action), "hash")
        if etype == "TransformationEvent":
            raise _refuse(
                422, "unmappable-event", "rxledger has no transformation (repackaging) action", where
            )
        if etype != "ObjectEvent":
            return "hash"  # TransactionEvent, AssociationEvent: no custody changes hands
        if step == REACTIVATING:
            return "undo"
        if word in ("dispensing", "destroying", "decommissioning"):
            return "decommission"
        if word == "commissioning" and action == "ADD":
            return "commission"
        if word == "shipping" and action != "DELETE":
            return "ship"
        if word in ("receiving", "accepting") and action != "DELETE":
            disposition = cbv_word(cbv_uri("Disp", event.get("disposition")))
            return "reject" if disposition == "non_conformant" else "receive"
        if action in ("ADD", "DELETE"):
            raise _refuse(
                422,
                "unmappable-event",
                f"an {action} ObjectEvent with bizStep {event.get('bizStep')!r} creates or ends "
                "identifiers; the ledger does that by commissioning, decommissioning, dispensing or "
                "destroying only",
                where + ".action",
            )
        return "hash"

    # ---------------------------------------------------------------- identifiers

    def _items(
        self, mapped: Mapped, uris: Sequence[Any], path: str, *, units_only: bool = False
    ) -> list[bytes]:
        keys: list[bytes] = []
        for j, uri in enumerate(uris):
            where = f"{path}[{j}]"
            try:
                item = item_of(str(uri))
            except (IdentifierError, ValueError) as exc:
                raise _refuse(422, "invalid-identifier", str(exc), where) from None
            if units_only and item.kind != "unit":
                raise _refuse(422, "not-a-unit", "this action takes serialised packs (SGTIN) only", where)
            if item.key in mapped.refs:
                raise _refuse(
                    422, "duplicate-item", f"listed twice (first as {mapped.refs[item.key].field})", where
                )
            mapped.refs[item.key] = KeyRef(
                item.key, item.kind, where, gtin=item.gtin, serial=item.serial, sscc=item.sscc
            )
            keys.append(bytes.fromhex(item.key[2:]))
        return keys

    def _epcs(
        self, mapped: Mapped, event: Mapping[str, Any], where: str, *, units_only: bool = False
    ) -> list[bytes]:
        if event.get("quantityList"):
            raise _refuse(
                422,
                "class-level-custody",
                "rxledger tracks serialised items: list them in epcList",
                where + ".quantityList",
            )
        keys = self._items(mapped, event.get("epcList") or [], where + ".epcList", units_only=units_only)
        if not keys:
            raise _refuse(422, "empty-list", "list at least one item", where + ".epcList")
        return keys

    def _steps(
        self, mapped: Mapped, fn: str, keys: Sequence[bytes], args: Callable[[list[bytes]], list[Any]]
    ) -> None:
        for part in chunks(list(keys), self.runtime.settings.items_per_tx):
            mapped.steps.append(TxStep("CustodyLedger", fn, args(list(part)), items=len(part)))
        mapped.items += len(keys)

    # ---------------------------------------------------------------- actions

    def _commission(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        keys = self._epcs(mapped, event, where, units_only=True)
        gtins = {ref.gtin for ref in mapped.refs.values()}
        if len(gtins) != 1:
            raise _refuse(
                422, "mixed-products", "one commissioning event is one batch of one GTIN", where + ".epcList"
            )
        (gtin,) = gtins
        assert gtin is not None
        ilmd = event.get("ilmd")
        lot = member(ilmd, CBVMDA + "lotNumber", self.names)
        if not isinstance(lot, str) or not lot:
            raise _refuse(
                422, "missing-lot", "commissioning names its batch: ilmd cbvmda:lotNumber", where + ".ilmd"
            )
        bid = batch_id(gtin, lot)
        with Session(self.runtime.engine) as session:
            batch = session.execute(
                select(table(Batch)).where(table(Batch).c.batch_id == "0x" + bid.hex())
            ).first()
        if batch is None:
            raise _refuse(
                404, "unknown-batch", f"no batch {lot!r} of GTIN {gtin} on the network", where + ".ilmd"
            )
        expiry = member(ilmd, CBVMDA + "itemExpirationDate", self.names)
        expected = expiry_date(int(batch.expiry)).isoformat()
        if expiry is not None and str(expiry) != expected:
            raise _refuse(
                422, "expiry-mismatch", f"the batch expires {expected}, not {expiry}", where + ".ilmd"
            )
        digest = mapped.record.digest
        self._steps(mapped, "commission", keys, lambda part: [bid, [], part, digest])

    def _parent(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> bytes:
        parent = event.get("parentID")
        if not parent:
            raise _refuse(
                422,
                "missing-parent",
                "packing and unpacking name the container (parentID)",
                where + ".parentID",
            )
        try:
            item = item_of(str(parent))
        except (IdentifierError, ValueError) as exc:
            raise _refuse(422, "invalid-identifier", str(exc), where + ".parentID") from None
        if item.kind != "container":
            raise _refuse(422, "not-a-container", "containers are logistic units (SSCC)", where + ".parentID")
        mapped.refs[item.key] = KeyRef(item.key, "container", where + ".parentID", sscc=item.sscc)
        return bytes.fromhex(item.key[2:])

    def _children(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> list[bytes]:
        if event.get("childQuantityList"):
            raise _refuse(
                422,
                "class-level-custody",
                "rxledger tracks serialised items: list them in childEPCs",
                where + ".childQuantityList",
            )
        return self._items(mapped, event.get("childEPCs") or [], where + ".childEPCs")

    def _pack(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        parent = self._parent(mapped, event, where)
        children = self._children(mapped, event, where)
        if not children:
            raise _refuse(422, "empty-list", "list what goes into the container", where + ".childEPCs")
        digest = mapped.record.digest
        self._steps(mapped, "pack", children, lambda part: [parent, part, digest])

    def _unpack(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        parent = self._parent(mapped, event, where)
        children = self._children(mapped, event, where)
        digest = mapped.record.digest
        if not children:
            mapped.steps.append(TxStep("CustodyLedger", "unpackAll", [[parent], digest], items=1))
            mapped.items += 1
            return
        self._steps(mapped, "unpack", children, lambda part: [parent, part, digest])

    def _shipment_id(self, event: Mapping[str, Any], digest: bytes) -> tuple[bytes, bytes]:
        """(shipment id, reference hash). The despatch advice names one despatch: its id becomes the
        shipment's (as the plain endpoint's `shipment_id`). A PO may cover several despatches, so
        without a despatch advice the event's own digest is the id; every business transaction is
        anchored in the reference hash."""
        bts = [
            (cbv_word(cbv_uri("BTT", bt.get("type"))), str(bt.get("bizTransaction", "")))
            for bt in event.get("bizTransactionList") or []
        ]
        desadv = next((value for kind, value in bts if kind == "desadv"), None)
        reference = "\n".join(sorted(value for _, value in bts))
        ref_hash = bytes(keccak(text=reference)) if reference else bytes(32)
        if desadv is None:
            return digest, ref_hash
        if desadv.startswith("urn:epcglobal:cbv:bt:"):
            desadv = desadv.split(":", 5)[-1]  # urn:epcglobal:cbv:bt:<GLN of issuer>:<id>
        raw = desadv.encode()
        return (shipment_bytes(desadv) if 0 < len(raw) <= 32 else bytes(keccak(raw))), ref_hash

    def _ship(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        keys = self._epcs(mapped, event, where)
        to_org = self._destination(event, where, ["0x" + k.hex() for k in keys])
        sid, ref_hash = self._shipment_id(event, mapped.record.digest)
        digest = mapped.record.digest
        parts = list(chunks(keys, self.runtime.settings.items_per_tx))
        for n, part in enumerate(parts):
            # like the plain endpoint: more items than one transaction takes -> "<id>/2", "<id>/3"...
            part_id = sid if n == 0 else bytes(keccak(sid + n.to_bytes(4, "big")))
            mapped.steps.append(
                TxStep(
                    "CustodyLedger", "ship", [part_id, to_org, list(part), ref_hash, digest], items=len(part)
                )
            )
        mapped.items += len(keys)

    def _destination(self, event: Mapping[str, Any], where: str, keys: Sequence[str]) -> int:
        ranked = {"owning_party": 0, "possessing_party": 1, "location": 2}
        dests = sorted(
            enumerate(event.get("destinationList") or []),
            key=lambda d: ranked.get(cbv_word(cbv_uri("SDT", d[1].get("type"))) or "", 3),
        )
        if dests:
            k, dest = dests[0]
            gln = gln_of(str(dest.get("destination", "")))
            at = f"{where}.destinationList[{k}]"
        else:
            received = [self.received_at[key] for key in keys if key in self.received_at]
            if not received:
                raise _refuse(
                    422,
                    "missing-destination",
                    "a shipment names where it goes (destinationList), or the document receives it",
                    where + ".destinationList",
                )
            gln, at = received[0], where + ".destinationList"
        if gln is None:
            raise _refuse(
                422, "invalid-identifier", "the destination is not a GLN (PGLN, SGLN or Digital Link)", at
            )
        with Session(self.runtime.engine) as session:
            org = session.execute(
                select(table(Organization).c.id).where(table(Organization).c.gln == gln)
            ).scalar()
        if org is None:
            raise _refuse(404, "unknown-organization", f"no organisation with GLN {gln} on the network", at)
        return int(org)

    def _settle(self, mapped: Mapped, event: Mapping[str, Any], where: str, fn: str) -> None:
        keys = self._epcs(mapped, event, where)
        hexes = ["0x" + k.hex() for k in keys]
        s, i = table(Shipment), table(ShipmentItem)
        with Session(self.runtime.engine) as session:
            rows = session.execute(
                select(i.c.item_key, i.c.shipment_id)
                .join(s, s.c.shipment_id == i.c.shipment_id)
                .where(i.c.item_key.in_(hexes), i.c.outcome == "pending", s.c.to_org == self.principal.org_id)
            ).all()
        pending = {key: sid for key, sid in rows}
        groups: dict[str, list[bytes]] = {}
        for j, (key, raw) in enumerate(zip(hexes, keys, strict=True)):
            if key not in pending:
                raise _refuse(
                    409,
                    "not-in-shipment",
                    "no shipment to your organisation has this item pending",
                    f"{where}.epcList[{j}]",
                )
            groups.setdefault(pending[key], []).append(raw)
        digest = mapped.record.digest
        # receiveShipment(id, keys, eventHash); rejectShipment(id, keys, reasonHash, eventHash)
        middle: list[Any] = [] if fn == "receiveShipment" else [bytes(32)]
        for sid_hex, group in groups.items():
            sid = bytes.fromhex(sid_hex[2:])
            for part in chunks(group, self.runtime.settings.items_per_tx):
                mapped.steps.append(
                    TxStep("CustodyLedger", fn, [sid, list(part), *middle, digest], items=len(part))
                )
            mapped.items += len(group)

    def _receive(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        self._settle(mapped, event, where, "receiveShipment")

    def _reject(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        self._settle(mapped, event, where, "rejectShipment")

    def _decommission(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        keys = self._epcs(mapped, event, where, units_only=True)
        reason = self._reason(event, where)
        digest = mapped.record.digest
        self._steps(mapped, "decommission", keys, lambda part: [part, REASONS[reason], digest])

    def _reason(self, event: Mapping[str, Any], where: str) -> str:
        explicit = member(event, RXL_NS + "decommissionReason", self.names)
        if explicit is not None:
            if explicit not in REASONS:
                raise _refuse(
                    422, "invalid-reason", f"one of {', '.join(REASONS)}", where + ".rxl:decommissionReason"
                )
            return str(explicit)
        word = cbv_word(cbv_uri("BizStep", event.get("bizStep")))
        if word == "dispensing":
            return "dispensed"
        if word == "destroying":
            return "destroyed"
        disposition = cbv_word(cbv_uri("Disp", event.get("disposition"))) or ""
        if disposition in _BY_DISPOSITION:
            return _BY_DISPOSITION[disposition]
        raise _refuse(
            422,
            "missing-reason",
            "decommissioning says why: disposition dispensed, destroyed or stolen, or "
            f"{RXL_NS}decommissionReason",
            where + ".disposition",
        )

    def _undo(self, mapped: Mapped, event: Mapping[str, Any], where: str) -> None:
        keys = self._epcs(mapped, event, where, units_only=True)
        digest = mapped.record.digest
        self._steps(mapped, "undoDecommission", keys, lambda part: [part, digest])


def assemble(runtime: Runtime, mapped: Sequence[Mapped], *, kind: str = "epcis.capture") -> Plan:
    """One plan for the accepted events: their actions in document order, then one `anchorEvents`
    per chunk of the events anchored by hash."""
    plan = Plan(kind=kind, sequential=True)
    for m in mapped:
        index = len(plan.events)
        plan.events.append(m.record)
        plan.refs.update(m.refs)
        plan.items_total += m.items
        for step in m.steps:
            step.event = index
            plan.steps.append(step)
    hashed = [(i, r.digest) for i, r in enumerate(plan.events) if r.anchoring == "hash"]
    for part in chunks(hashed, ANCHORS_PER_TX):
        plan.steps.append(TxStep("CustodyLedger", "anchorEvents", [[d for _, d in part]], items=0))
    return plan


def revert_problem(plan: Plan, revert: ContractRevert, position: int) -> Problem:
    problem = problem_from_revert(revert, describe_key=plan.describe_key)
    if "field" not in problem.extensions:
        problem.extensions["field"] = f"epcisBody.eventList[{position}]"
    return problem


def problem_entry(problem: Problem, record: EventRecord) -> dict[str, Any]:
    """A refusal as it appears in the capture job's `errors`."""
    body = problem.body()
    body["eventID"] = record.hash_id
    body["event"] = record.position
    return body


def iter_events(document: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    yield from enumerate(document["epcisBody"]["eventList"])
