"""A small reference model of the custody and batch-status rules of CustodyLedger and BatchRegistry.

It says, for any action by any organisation, whether the contracts must accept it, and if not, which
custom error they must revert with: the checks run in the same order as in the contract code, so the
first failing check names the error. `tests/contracts/test_model.py` drives the contracts and this
model side by side with random actions and compares them after every step.

The model states the rules at the level of meaning, not of storage:

- Custody: an item (unit or container) is *loose* (a root) or *packed* in an active container. Only
  roots carry a holder and a shipment; a packed item's custody is its root container's.
- `unpackAll` dissolves containers for good. The contract does this lazily (children keep pointing at
  the dissolved container); here the children become loose at once, held by whoever dissolved it.
  The observable custody is the same, which is what the test checks.
- A container carries the batches of everything packed in it, directly or nested. The model computes
  this from the tree; the contract keeps running counts. A dissolved container keeps what it carried
  when it was dissolved (the contract's counts stop changing then).
- A container's height is the highest nesting it has ever had (the contract never lowers it).
- Where one item carries several batches that each break a movement rule, the contract reports the
  first in its own internal order, which it does not document; the model then accepts any of their
  errors (`Refused.names` holds all of them).
- Organisations are active or suspended (by the consortium admin); every action first needs an
  active caller. Keys are always valid: key management belongs to ConsortiumRegistry's own tests.

Mutating methods change the model in place and raise `Refused` on a refusal, possibly half-way:
call them on a copy (`attempt`) and keep the copy only if the action was accepted.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from node.ledger.constants import (
    FINAL_REASONS,
    MAX_CONTAINER_HEIGHT,
    SALE_REASONS,
    UNDO_WINDOW_SECONDS,
    BatchStatus,
    CertificateKind,
    ContainerState,
    Role,
    SuspectStatus,
    UnitState,
)

Key = bytes
ZERO = bytes(32)


def is_container_key(key: Key) -> bool:
    """Container keys fit in 88 bits; unit keys do not (zero counts as a container key)."""
    return int.from_bytes(key, "big") >> 88 == 0


class Refused(Exception):
    """The action must revert with one of `names` (custom error names)."""

    def __init__(self, *names: str) -> None:
        super().__init__(" | ".join(sorted(names)))
        self.names = frozenset(names)


# ------------------------------------------------------------------------------------------ state


@dataclass
class Batch:
    batch_id: bytes
    index: int
    manufacturer: int
    sponsor: int
    status: BatchStatus = BatchStatus.QUARANTINE
    suspended_from: BatchStatus = BatchStatus.NONE
    qp_certified: bool = False
    manufacturer_certified: bool = False
    suspect: SuspectStatus = SuspectStatus.NOT_SUSPECT  # kept by CustodyLedger


@dataclass
class Unit:
    batch: int  # batch index
    holder: int  # custodian while loose; the decommissioning organisation once decommissioned
    state: UnitState = UnitState.ACTIVE
    suspect: SuspectStatus = SuspectStatus.NOT_SUSPECT
    parent: Key | None = None  # the active container it is packed in
    shipment: bytes | None = None  # id of the shipment it is in transit in (loose units only)
    decommissioned_at: int = 0


@dataclass
class Container:
    holder: int  # custodian while loose (or, once dissolved, the organisation that dissolved it)
    state: ContainerState = ContainerState.ACTIVE
    height: int = 0
    parent: Key | None = None
    shipment: bytes | None = None
    frozen_contents: Counter[int] | None = None  # what it carried when dissolved


@dataclass
class Shipment:
    sender: int
    to: int
    items: int
    pending: set[Key] = field(default_factory=set)
    received: int = 0
    rejected: int = 0
    missing: int = 0


class UnitView(NamedTuple):
    """CustodyLedger.unit(key), field for field."""

    exists: bool
    state: int
    suspect: int
    batch_suspect: int
    batch_index: int
    holder: int
    packed: bool
    parent_key: bytes
    shipment_id: bytes
    decommissioned_at: int


class ContainerView(NamedTuple):
    """CustodyLedger.container(key), with its batches and counts as {batch index: units}."""

    exists: bool
    state: int
    height: int
    holder: int
    packed: bool
    parent_key: bytes
    shipment_id: bytes
    contents: dict[int, int]


class ShipmentView(NamedTuple):
    """The outcome fields of CustodyLedger.shipment(id)."""

    sender: int
    to: int
    items: int
    pending: int
    received: int
    rejected: int
    missing: int


RECEIVE, REJECT, MISSING = "receive", "reject", "missing"
FLAG, CLEAR, CONFIRM = "flag", "clear", "confirm"


# ------------------------------------------------------------------------------------------ model


@dataclass
class LedgerModel:
    """Organisations (id -> roles), batches, units, containers and shipments, and the block time."""

    roles: dict[int, frozenset[bytes]]
    suspended: set[int] = field(default_factory=set)
    batches: dict[bytes, Batch] = field(default_factory=dict)
    units: dict[Key, Unit] = field(default_factory=dict)
    containers: dict[Key, Container] = field(default_factory=dict)
    shipments: dict[bytes, Shipment] = field(default_factory=dict)
    now: int = 0  # timestamp of the block the next action is mined in

    # -- lookups -------------------------------------------------------------------------------

    def batch_at(self, index: int) -> Batch:
        return next(b for b in self.batches.values() if b.index == index)

    def is_active(self, org: int) -> bool:
        return org in self.roles and org not in self.suspended

    def _caller(self, org: int) -> None:
        """Every action starts by resolving the caller's key to an active organisation."""
        if not self.is_active(org):
            raise Refused("OrganizationNotActive")

    def is_regulator(self, org: int) -> bool:
        return Role.REGULATOR in self.roles.get(org, frozenset())

    def may_take_back_recalled(self, org: int) -> bool:
        """Distributors and logistics partners may carry recalled product back."""
        roles = self.roles.get(org, frozenset())
        return Role.DISTRIBUTOR in roles or Role.LOGISTICS in roles

    def _item(self, key: Key) -> Unit | Container:
        """A unit or a container by key; UnknownItem if there is none."""
        item: Unit | Container | None = (
            self.containers.get(key) if is_container_key(key) else self.units.get(key)
        )
        if item is None:
            raise Refused("UnknownItem")
        return item

    def _container(self, key: Key) -> Container:
        if not is_container_key(key):
            raise Refused("NotAContainer")
        box = self.containers.get(key)
        if box is None:
            raise Refused("UnknownItem")
        return box

    def _unit(self, key: Key) -> Unit:
        unit = self.units.get(key)
        if unit is None:  # also for container keys: they name no unit
            raise Refused("UnknownItem")
        return unit

    def _root(self, item: Unit | Container) -> Unit | Container:
        while item.parent is not None:
            item = self.containers[item.parent]
        return item

    def holder_of(self, item: Unit | Container) -> int:
        return self._root(item).holder

    def shipment_of(self, item: Unit | Container) -> bytes | None:
        return self._root(item).shipment

    def children(self, key: Key) -> list[Key]:
        """Direct children of a container."""
        found = [k for k, u in self.units.items() if u.parent == key]
        return found + [k for k, c in self.containers.items() if c.parent == key]

    def contents(self, key: Key) -> Counter[int]:
        """Units carried by a container, directly or nested, by batch index."""
        box = self.containers[key]
        if box.frozen_contents is not None:
            return Counter(box.frozen_contents)
        carried: Counter[int] = Counter()
        for u in self.units.values():
            if u.parent == key:
                carried[u.batch] += 1
        for k, c in self.containers.items():
            if c.parent == key:
                carried += self.contents(k)
        return carried

    # -- shared checks (named after the contract's helpers) -------------------------------------

    def _require_movable(self, item: Unit | Container, org: int) -> None:
        """Active, loose, not in transit, held by `org`."""
        if isinstance(item, Container):
            if item.state != ContainerState.ACTIVE:
                raise Refused("ContainerDissolved")
        elif item.state == UnitState.DISPENSED:
            raise Refused("AlreadyDispensed")
        elif item.state != UnitState.ACTIVE:
            raise Refused("AlreadyDecommissioned")
        if item.parent is not None:
            raise Refused("ItemPacked")
        if item.shipment is not None:
            raise Refused("InTransit")
        if item.holder != org:
            raise Refused("NotHolder")

    def _require_not_suspect(self, unit: Unit) -> None:
        if unit.suspect != SuspectStatus.NOT_SUSPECT:
            raise Refused("SuspectItem")
        if self.batch_at(unit.batch).suspect != SuspectStatus.NOT_SUSPECT:
            raise Refused("SuspectBatch")

    def move_error(self, sender: int, to: int, index: int) -> str | None:
        """Release rules of one batch for a movement from `sender` to `to`."""
        b = self.batch_at(index)
        if b.suspect != SuspectStatus.NOT_SUSPECT:
            return "SuspectBatch"
        if b.status == BatchStatus.RELEASED:
            return None
        if b.status == BatchStatus.RECALLED:
            ok = to == b.sponsor or self.may_take_back_recalled(to)
            return None if ok else "RecalledProduct"
        # Quarantine, suspended or rejected: only between manufacturer and sponsor.
        parties = {b.manufacturer, b.sponsor}
        return None if sender in parties and to in parties else "BatchNotReleased"

    def _check_move(self, sender: int, to: int, batch_indexes: Iterable[int]) -> None:
        errors = {e for i in batch_indexes if (e := self.move_error(sender, to, i)) is not None}
        if errors:
            raise Refused(*errors)

    def _open_container(self, key: Key, org: int) -> tuple[Container, bool]:
        """The container to fill (new: not yet stored), which must be movable by `org`."""
        if key == ZERO or not is_container_key(key):
            raise Refused("NotAContainer")
        box = self.containers.get(key)
        if box is None:
            return Container(holder=org), True
        self._require_movable(box, org)
        return box, False

    # -- ConsortiumRegistry (by the admin) ------------------------------------------------------

    def suspend_organization(self, org: int) -> None:
        if org not in self.roles:
            raise Refused("UnknownOrganization")
        if org in self.suspended:
            raise Refused("InvalidOrgTransition")
        self.suspended.add(org)

    def reactivate_organization(self, org: int) -> None:
        if org not in self.roles:
            raise Refused("UnknownOrganization")
        if org not in self.suspended:
            raise Refused("InvalidOrgTransition")
        self.suspended.discard(org)

    # -- BatchRegistry --------------------------------------------------------------------------

    def _batch(self, batch_id: bytes) -> Batch:
        b = self.batches.get(batch_id)
        if b is None:
            raise Refused("UnknownBatch")
        return b

    def anchor_certificate(self, org: int, batch_id: bytes, kind: int) -> None:
        """anchorCertificate with a non-zero document hash: a QP certification by the sponsor; the
        other kinds by the sponsor or the manufacturer (which certifies the batch as its maker)."""
        self._caller(org)
        if kind > max(CertificateKind):
            raise Refused("InvalidCertificate")
        b = self._batch(batch_id)
        if kind == CertificateKind.NONE:
            raise Refused("InvalidCertificate")
        may = (b.sponsor,) if kind == CertificateKind.QP_CERTIFICATION else (b.sponsor, b.manufacturer)
        if org not in may:
            raise Refused("NotCertifier")
        if kind == CertificateKind.QP_CERTIFICATION:
            b.qp_certified = True
        elif org == b.manufacturer:
            b.manufacturer_certified = True

    def release(self, org: int, batch_id: bytes, *, with_certification: bool) -> None:
        """release, or releaseWithCertification (anchors the sponsor's QP certification first)."""
        self._caller(org)
        b = self._batch(batch_id)
        if with_certification:
            if org != b.sponsor:
                raise Refused("NotCertifier")
            b.qp_certified = True
        if org != b.sponsor:
            raise Refused("NotProductOwner")
        if b.status != BatchStatus.QUARANTINE:
            raise Refused("InvalidBatchTransition")
        if not b.qp_certified:
            raise Refused("QpCertificationMissing")
        if b.manufacturer != b.sponsor and not b.manufacturer_certified:
            raise Refused("ManufacturerCertificateMissing")
        b.status = BatchStatus.RELEASED

    def transition(self, org: int, batch_id: bytes, op: str) -> None:
        """reject, recall, suspend or unsuspend (sponsor only)."""
        self._caller(org)
        b = self._batch(batch_id)
        if org != b.sponsor:
            raise Refused("NotProductOwner")
        underlying = b.suspended_from if b.status == BatchStatus.SUSPENDED else b.status
        if op == "reject" and underlying == BatchStatus.QUARANTINE:
            b.status = BatchStatus.REJECTED
        elif op == "recall" and underlying == BatchStatus.RELEASED:
            b.status = BatchStatus.RECALLED
        elif op == "suspend" and b.status in (BatchStatus.QUARANTINE, BatchStatus.RELEASED):
            b.suspended_from, b.status = b.status, BatchStatus.SUSPENDED
            return
        elif op == "unsuspend" and b.status == BatchStatus.SUSPENDED:
            b.status = b.suspended_from
        else:
            raise Refused("InvalidBatchTransition")
        b.suspended_from = BatchStatus.NONE

    # -- commissioning and aggregation ------------------------------------------------------------

    def commission(
        self, org: int, batch_id: bytes, container_keys: Sequence[Key], keys: Sequence[Key]
    ) -> None:
        """Only the manufacturer, into a quarantined or released batch; keys split evenly into the
        containers (created if new), group by group."""
        self._caller(org)
        b = self._batch(batch_id)
        if b.manufacturer != org:
            raise Refused("NotManufacturer")
        if b.status not in (BatchStatus.QUARANTINE, BatchStatus.RELEASED):
            raise Refused("BatchNotCommissionable")
        groups = len(container_keys)
        if not keys:
            raise Refused("EmptyList")
        if groups and len(keys) % groups:
            raise Refused("UnevenAggregation")
        per_group = len(keys) // groups if groups else len(keys)
        for g in range(max(groups, 1)):
            parent: Key | None = None
            if groups:
                parent = container_keys[g]
                box, _ = self._open_container(parent, org)
                box.height = max(box.height, 1)
                self.containers[parent] = box
            for key in keys[g * per_group : (g + 1) * per_group]:
                if is_container_key(key):
                    raise Refused("InvalidUnitKey")
                if key in self.units:
                    raise Refused("DuplicateSerial")
                self.units[key] = Unit(batch=b.index, holder=org, parent=parent)

    def pack(self, org: int, container_key: Key, keys: Sequence[Key]) -> None:
        """Loose, active, unsuspected items held by `org` into a container it holds (or a new one)."""
        self._caller(org)
        box, new = self._open_container(container_key, org)
        for key in keys:
            item = self._item(key)  # a new container is stored only at the end: packing it into
            if key == container_key:  # itself finds no item rather than SelfPacking
                raise Refused("SelfPacking")
            self._require_movable(item, org)
            if isinstance(item, Unit):
                self._require_not_suspect(item)
                height = 1
            else:
                height = item.height + 1
            box.height = max(box.height, height)
            item.parent = container_key
        if box.height > MAX_CONTAINER_HEIGHT:
            raise Refused("NestingTooDeep")
        if new:
            self.containers[container_key] = box

    def unpack(self, org: int, container_key: Key, keys: Sequence[Key]) -> None:
        """Direct children out of a loose container held by `org`."""
        self._caller(org)
        box = self._container(container_key)
        self._require_movable(box, org)
        for key in keys:
            item = self._item(key)
            if item.parent != container_key:
                raise Refused("NotInContainer")
            item.parent, item.holder = None, org

    def unpack_all(self, org: int, container_keys: Sequence[Key]) -> None:
        """Dissolve loose containers held by `org`: their children become loose items of `org`."""
        self._caller(org)
        if not container_keys:
            raise Refused("EmptyList")
        for key in container_keys:
            box = self._container(key)
            self._require_movable(box, org)
            box.frozen_contents = self.contents(key)
            for child in self.children(key):
                item = self._item(child)
                item.parent, item.holder = None, org
            box.state = ContainerState.DISSOLVED

    # -- shipments ------------------------------------------------------------------------------

    def ship(self, org: int, shipment_id: bytes, to: int, keys: Sequence[Key]) -> None:
        """Loose items held by `org` leave for another, active organisation, subject to the release
        rules of every batch they carry."""
        self._caller(org)
        if to == org or not self.is_active(to):
            raise Refused("InvalidDestination")
        if shipment_id in self.shipments or shipment_id == ZERO:
            raise Refused("ShipmentExists")
        if not keys:
            raise Refused("EmptyList")
        shipment = Shipment(sender=org, to=to, items=len(keys))
        self.shipments[shipment_id] = shipment
        for key in keys:
            item = self._item(key)
            self._require_movable(item, org)
            if isinstance(item, Unit):
                self._require_not_suspect(item)
                self._check_move(org, to, [item.batch])
            else:
                self._check_move(org, to, self.contents(key))
            item.shipment = shipment_id
            shipment.pending.add(key)

    def settle(self, org: int, shipment_id: bytes, keys: Sequence[Key], outcome: str) -> None:
        """receiveShipment / rejectShipment / reportMissing by the addressee: custody goes to the
        addressee on receipt, back to the sender otherwise."""
        self._caller(org)
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise Refused("UnknownShipment")
        if shipment.to != org:
            raise Refused("NotAddressee")
        self._settle(shipment_id, keys, org if outcome == RECEIVE else shipment.sender)
        n = len(keys)
        if outcome == RECEIVE:
            shipment.received += n
        elif outcome == REJECT:
            shipment.rejected += n
        else:
            shipment.missing += n

    def reclaim(self, org: int, shipment_id: bytes, keys: Sequence[Key]) -> None:
        """reclaimShipment: the sender takes back items in transit to an addressee that is no longer
        active (counted as rejected)."""
        self._caller(org)
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise Refused("UnknownShipment")
        if shipment.sender != org:
            raise Refused("NotSender")
        if self.is_active(shipment.to):
            raise Refused("AddresseeActive")
        self._settle(shipment_id, keys, org)
        shipment.rejected += len(keys)

    def _settle(self, shipment_id: bytes, keys: Sequence[Key], new_holder: int) -> None:
        if not keys:
            raise Refused("EmptyList")
        for key in keys:
            item = self._item(key)
            if item.shipment != shipment_id or item.parent is not None:
                raise Refused("NotInShipment")
            item.shipment = None
            item.holder = new_holder
            self.shipments[shipment_id].pending.discard(key)

    # -- decommissioning ------------------------------------------------------------------------

    def decommission(self, org: int, keys: Sequence[Key], reason: int) -> None:
        """Loose units held by `org`. Suspect units (or units of a suspect batch) only destroyed;
        dispensing, samples and export only from a released batch."""
        self._caller(org)
        if not UnitState.DISPENSED <= reason <= UnitState.CHECKED_OUT:
            raise Refused("InvalidReason")
        for key in keys:
            unit = self._unit(key)
            if unit.state == UnitState.DISPENSED:
                raise Refused("AlreadyDispensed")
            if unit.state != UnitState.ACTIVE:
                raise Refused("AlreadyDecommissioned")
            if unit.parent is not None:
                raise Refused("ItemPacked")
            if unit.shipment is not None:
                raise Refused("InTransit")
            if unit.holder != org:
                raise Refused("NotHolder")
            b = self.batch_at(unit.batch)
            if b.suspect != SuspectStatus.NOT_SUSPECT and reason != UnitState.DESTROYED:
                raise Refused("SuspectBatch")
            if reason in SALE_REASONS and b.status != BatchStatus.RELEASED:
                raise Refused("BatchNotReleased")
            if reason != UnitState.DESTROYED and unit.suspect != SuspectStatus.NOT_SUSPECT:
                raise Refused("SuspectItem")
            unit.state = UnitState(reason)
            unit.holder = org
            unit.decommissioned_at = self.now

    def undo_decommission(self, org: int, keys: Sequence[Key]) -> None:
        """By the decommissioning organisation, within the undo window, unless the reason is final."""
        self._caller(org)
        for key in keys:
            unit = self._unit(key)
            if unit.state == UnitState.ACTIVE:
                raise Refused("NotDecommissioned")
            if unit.state in FINAL_REASONS:
                raise Refused("DecommissionFinal")
            if unit.holder != org:
                raise Refused("NotDecommissioner")
            if self.now > unit.decommissioned_at + UNDO_WINDOW_SECONDS:
                raise Refused("UndoWindowClosed")
            unit.state = UnitState.ACTIVE
            unit.decommissioned_at = 0

    # -- suspect product ------------------------------------------------------------------------

    _SUSPECT_STEPS: ClassVar[dict[str, tuple[SuspectStatus, SuspectStatus]]] = {
        FLAG: (SuspectStatus.NOT_SUSPECT, SuspectStatus.SUSPECT),
        CLEAR: (SuspectStatus.SUSPECT, SuspectStatus.NOT_SUSPECT),
        CONFIRM: (SuspectStatus.SUSPECT, SuspectStatus.ILLEGITIMATE),
    }

    def set_unit_suspect(self, org: int, keys: Sequence[Key], op: str) -> None:
        """flagSuspect (holder, sponsor or regulator), clearSuspect and confirmIllegitimate (sponsor
        or regulator), on loose units."""
        self._caller(org)
        before, after = self._SUSPECT_STEPS[op]
        regulator = self.is_regulator(org)
        for key in keys:
            unit = self._unit(key)
            if unit.parent is not None:
                raise Refused("ItemPacked")
            if not regulator:
                holder_may = op == FLAG and unit.holder == org
                if org != self.batch_at(unit.batch).sponsor and not holder_may:
                    raise Refused("NotAuthorizedForSuspect")
            if unit.suspect != before:
                raise Refused("InvalidSuspectTransition")
            unit.suspect = after

    def set_batch_suspect(self, org: int, batch_id: bytes, op: str, held_unit: Key = ZERO) -> None:
        """flagBatchSuspect (sponsor, manufacturer, regulator, or the holder of one of its units named
        in `held_unit`), clearBatchSuspect and confirmBatchIllegitimate (sponsor or regulator)."""
        self._caller(org)
        b = self._batch(batch_id)
        if op == FLAG:
            if org not in (b.sponsor, b.manufacturer) and not self.is_regulator(org):
                unit = self.units.get(held_unit)
                if unit is None or unit.batch != b.index or self.holder_of(unit) != org:
                    raise Refused("NotAuthorizedForSuspect")
        elif org != b.sponsor and not self.is_regulator(org):
            raise Refused("NotAuthorizedForSuspect")
        before, after = self._SUSPECT_STEPS[op]
        if b.suspect != before:
            raise Refused("InvalidSuspectTransition")
        b.suspect = after

    # -- what the contract's views must show ----------------------------------------------------

    def unit_view(self, key: Key) -> UnitView:
        unit = self.units.get(key)
        if unit is None:
            return UnitView(False, 0, 0, 0, 0, 0, False, ZERO, ZERO, 0)
        return UnitView(
            exists=True,
            state=int(unit.state),
            suspect=int(unit.suspect),
            batch_suspect=int(self.batch_at(unit.batch).suspect),
            batch_index=unit.batch,
            holder=self.holder_of(unit),
            packed=unit.parent is not None,
            parent_key=unit.parent or ZERO,
            shipment_id=self.shipment_of(unit) or ZERO,
            decommissioned_at=unit.decommissioned_at,
        )

    def container_view(self, key: Key) -> ContainerView:
        box = self.containers.get(key) if is_container_key(key) else None
        if box is None:
            return ContainerView(False, 0, 0, 0, False, ZERO, ZERO, {})
        return ContainerView(
            exists=True,
            state=int(box.state),
            height=box.height,
            holder=self.holder_of(box),
            packed=box.parent is not None,
            parent_key=box.parent or ZERO,
            shipment_id=self.shipment_of(box) or ZERO,
            contents={i: n for i, n in self.contents(key).items() if n},
        )

    def shipment_view(self, shipment_id: bytes) -> ShipmentView:
        s = self.shipments[shipment_id]
        return ShipmentView(s.sender, s.to, s.items, len(s.pending), s.received, s.rejected, s.missing)


def attempt(model: LedgerModel, action: Callable[[LedgerModel], None]) -> tuple[LedgerModel, Refused | None]:
    """Run `action` on a copy of `model`: (the copy after it, None) if accepted, else (the
    untouched `model`, the refusal)."""
    trial = copy.deepcopy(model)
    try:
        action(trial)
    except Refused as refusal:
        return model, refusal
    return trial, None
