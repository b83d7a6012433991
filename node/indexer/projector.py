"""Apply decoded events to the read models, mirroring the contracts' state transitions exactly."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from node.indexer.events import DecodedLog
from node.indexer.schema import (
    AnchoredEvent,
    Batch,
    BatchStatusChange,
    Certificate,
    Container,
    CustodyEvent,
    CustodyEventItem,
    ManufacturerAuthorization,
    Organization,
    OrgKey,
    Product,
    Relayer,
    Shipment,
    ShipmentItem,
    Unit,
    table,
)
from node.indexer.store import Store
from node.ledger.constants import ContainerState, Role, UnitState

ROLE_NAMES = {r: n for r, n in Role.NAMES.items()}
CONTAINER_KEY_LIMIT = 1 << 88


def hx(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def is_container(key: str) -> bool:
    return int(key, 16) < CONTAINER_KEY_LIMIT


def gtin14(value: int) -> str:
    return f"{value:014d}"


def gln13(value: int) -> str:
    return f"{value:013d}"


class Projector:
    """Applies one block's logs at a time through a Store (which journals while near the tip)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.handlers: dict[str, Callable[[DecodedLog, int], None]] = {
            "OrganizationOnboarded": self._org_onboarded,
            "OrganizationStatusChanged": self._org_status,
            "RoleGranted": self._role_granted,
            "RoleRevoked": self._role_revoked,
            "KeyAdded": self._key_added,
            "KeyRevoked": self._key_revoked,
            "RelayerSet": self._relayer_set,
            "ProductRegistered": self._product_registered,
            "ManufacturerAuthorized": self._manufacturer_authorized,
            "ManufacturerRevoked": self._manufacturer_revoked,
            "BatchCreated": self._batch_created,
            "CertificateAnchored": self._certificate_anchored,
            "BatchStatusChanged": self._batch_status_changed,
            "ContainerCreated": self._container_created,
            "UnitsCommissioned": self._units_commissioned,
            "ItemsPacked": self._items_packed,
            "ItemsUnpacked": self._items_unpacked,
            "ContainersEmptied": self._containers_emptied,
            "ShipmentDispatched": self._shipment_dispatched,
            "ShipmentReceived": self._shipment_received,
            "ShipmentRejected": self._shipment_rejected,
            "ShipmentDiscrepancyRecorded": self._shipment_missing,
            "ShipmentReclaimed": self._shipment_reclaimed,
            "ShipmentClosed": self._shipment_closed,
            "UnitsDecommissioned": self._units_decommissioned,
            "DecommissionsUndone": self._decommissions_undone,
            "EventsAnchored": self._events_anchored,
            "UnitsSuspectStatusChanged": self._units_suspect,
            "BatchSuspectStatusChanged": self._batch_suspect,
        }

    def apply(self, log: DecodedLog, timestamp: int) -> bool:
        handler = self.handlers.get(log.name)
        if handler is None:
            return False
        handler(log, timestamp)
        return True

    # ------------------------------------------------------------ registry

    def _org_onboarded(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.insert(
            Organization,
            [
                {
                    "id": a["org"],
                    "gln": gln13(a["gln"]),
                    "name": a["name"],
                    "status": 0,
                    "roles": "",
                    "onboarded_block": log.block_number,
                }
            ],
        )

    def _org_status(self, log: DecodedLog, ts: int) -> None:
        self.store.update_row(Organization, {"id": log.args["org"]}, {"status": log.args["to"]})

    def _set_role(self, org: int, role: bytes, granted: bool) -> None:
        row = self.store.get(Organization, id=org)
        if row is None:
            return
        roles = {r for r in row["roles"].split(",") if r}
        name = ROLE_NAMES.get(bytes(role), hx(role))
        roles = roles | {name} if granted else roles - {name}
        self.store.update_row(Organization, {"id": org}, {"roles": ",".join(sorted(roles))})

    def _role_granted(self, log: DecodedLog, ts: int) -> None:
        self._set_role(log.args["org"], log.args["role"], True)

    def _role_revoked(self, log: DecodedLog, ts: int) -> None:
        self._set_role(log.args["org"], log.args["role"], False)

    def _key_added(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.insert(
            OrgKey,
            [
                {
                    "address": a["key"].lower(),
                    "org_id": a["org"],
                    "valid_from": a["validFrom"],
                    "valid_until": a["validUntil"],
                    "revoked_at": 0,
                    "key_admin": a["keyAdmin"],
                    "added_by": a["by"].lower(),
                }
            ],
        )

    def _key_revoked(self, log: DecodedLog, ts: int) -> None:
        self.store.update_row(
            OrgKey, {"address": log.args["key"].lower()}, {"revoked_at": log.args["revokedAt"]}
        )

    def _relayer_set(self, log: DecodedLog, ts: int) -> None:
        address = log.args["relayer"].lower()
        if self.store.get(Relayer, address=address) is None:
            self.store.insert(Relayer, [{"address": address, "allowed": log.args["allowed"]}])
        else:
            self.store.update_row(Relayer, {"address": address}, {"allowed": log.args["allowed"]})

    # ------------------------------------------------------------- batches

    def _product_registered(self, log: DecodedLog, ts: int) -> None:
        self.store.insert(Product, [{"gtin": gtin14(log.args["gtin"]), "sponsor_org": log.args["sponsor"]}])

    def _set_authorization(self, log: DecodedLog, active: bool) -> None:
        pk = {"gtin": gtin14(log.args["gtin"]), "org_id": log.args["manufacturer"]}
        if self.store.get(ManufacturerAuthorization, **pk) is None:
            self.store.insert(ManufacturerAuthorization, [{**pk, "active": active}])
        else:
            self.store.update_row(ManufacturerAuthorization, pk, {"active": active})

    def _manufacturer_authorized(self, log: DecodedLog, ts: int) -> None:
        self._set_authorization(log, True)

    def _manufacturer_revoked(self, log: DecodedLog, ts: int) -> None:
        self._set_authorization(log, False)

    def _batch_created(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.insert(
            Batch,
            [
                {
                    "batch_id": hx(a["batchId"]),
                    "idx": a["index"],
                    "gtin": gtin14(a["gtin"]),
                    "lot": a["lot"],
                    "expiry": a["expiry"],
                    "site_gln": gln13(a["siteGln"]),
                    "manufacturer": a["manufacturer"],
                    "sponsor": a["sponsor"],
                    "status": 0,
                    "suspect": 0,
                    "created_block": log.block_number,
                }
            ],
        )

    def _certificate_anchored(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.append(
            Certificate,
            [
                {
                    "batch_id": hx(a["batchId"]),
                    "position": a["position"],
                    "document_hash": hx(a["documentHash"]),
                    "kind": a["kind"],
                    "meaning": hx(a["meaning"]),
                    "org_id": a["org"],
                    "signer": a["signer"].lower(),
                    "block_number": log.block_number,
                    "tx_hash": log.tx_hash,
                    "timestamp": ts,
                }
            ],
        )

    def _batch_status_changed(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        batch = hx(a["batchId"])
        self.store.update_row(Batch, {"batch_id": batch}, {"status": a["to"]})
        self.store.append(
            BatchStatusChange,
            [
                {
                    "block_number": log.block_number,
                    "log_index": log.log_index,
                    "batch_id": batch,
                    "from_status": a["from"],
                    "to_status": a["to"],
                    "reason_hash": hx(a["reasonHash"]),
                    "org_id": a["org"],
                    "signer": a["signer"].lower(),
                    "tx_hash": log.tx_hash,
                    "timestamp": ts,
                }
            ],
        )

    def _batch_suspect(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.update_row(Batch, {"batch_id": hx(a["batchId"])}, {"suspect": a["status"]})
        self._custody_event(
            log,
            ts,
            "batch_suspect_status",
            [],
            subject=hx(a["batchId"]),
            reason=a["status"],
            reason_hash=hx(a["reasonHash"]),
        )

    # ------------------------------------------------------------- custody

    def _custody_event(
        self,
        log: DecodedLog,
        ts: int,
        action: str,
        keys: Sequence[str],
        *,
        org: int | None = None,
        counterparty: int | None = None,
        reason: int | None = None,
        reason_hash: str | None = None,
        subject: str | None = None,
    ) -> None:
        a = log.args
        self.store.append(
            CustodyEvent,
            [
                {
                    "block_number": log.block_number,
                    "tx_index": log.tx_index,
                    "log_index": log.log_index,
                    "tx_hash": log.tx_hash,
                    "timestamp": ts,
                    "action": action,
                    "org_id": org if org is not None else a["org"],
                    "signer": a["signer"].lower(),
                    "counterparty": counterparty,
                    "event_hash": hx(a.get("eventHash", bytes(32))),
                    "reason": reason,
                    "reason_hash": reason_hash,
                    "subject": subject,
                    "item_count": len(keys),
                }
            ],
        )
        self.store.append(
            CustodyEventItem,
            [
                {"block_number": log.block_number, "log_index": log.log_index, "position": i, "item_key": k}
                for i, k in enumerate(keys)
            ],
        )

    def _split(self, keys: Sequence[str]) -> tuple[list[str], list[str]]:
        units = [k for k in keys if not is_container(k)]
        containers = [k for k in keys if is_container(k)]
        return units, containers

    def _set_items(self, keys: Sequence[str], values: Mapping[str, Any]) -> None:
        units, containers = self._split(keys)
        self.store.update_keys(Unit, "key", units, values)
        self.store.update_keys(Container, "key", containers, values)

    def _container_created(self, log: DecodedLog, ts: int) -> None:
        self.store.insert(
            Container,
            [
                {
                    "key": hx(log.args["containerKey"]),
                    "state": ContainerState.ACTIVE,
                    "height": 0,
                    "holder": log.args["org"],
                    "parent_key": None,
                    "shipment_id": None,
                    "created_block": log.block_number,
                }
            ],
        )

    def _materialize_container(self, key: str, org: int, *, min_height: int = 0) -> None:
        row = self.store.get(Container, key=key)
        height = max(row["height"] if row else 0, min_height)
        self.store.update_row(Container, {"key": key}, {"parent_key": None, "holder": org, "height": height})

    def _units_commissioned(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        keys = [hx(k) for k in a["keys"]]
        containers = [hx(k) for k in a["containerKeys"]]
        batch = hx(a["batchId"])
        per = len(keys) // len(containers) if containers else len(keys)
        rows = []
        for i, key in enumerate(keys):
            parent = containers[i // per] if containers else None
            rows.append(
                {
                    "key": key,
                    "batch_id": batch,
                    "state": UnitState.ACTIVE,
                    "suspect": 0,
                    "holder": a["org"],
                    "parent_key": parent,
                    "shipment_id": None,
                    "decommissioned_at": None,
                    "commissioned_block": log.block_number,
                }
            )
        self.store.insert(Unit, rows)
        for c in containers:
            self._materialize_container(c, a["org"], min_height=1)
        self._custody_event(log, ts, "commissioned", keys, subject=batch)

    def _items_packed(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        box = hx(a["containerKey"])
        keys = [hx(k) for k in a["keys"]]
        units, containers = self._split(keys)
        height = 1 if units else 0
        if containers:
            containers_table = table(Container)
            self.store.flush()
            heights = self.store.conn.execute(
                select(containers_table.c.height).where(containers_table.c.key.in_(containers))
            ).scalars()
            height = max([height, *[h + 1 for h in heights]])
        self._materialize_container(box, a["org"], min_height=height)
        self._set_items(keys, {"parent_key": box, "holder": a["org"]})
        self._custody_event(log, ts, "packed", keys, subject=box)

    def _items_unpacked(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        keys = [hx(k) for k in a["keys"]]
        self._set_items(keys, {"parent_key": None, "holder": a["org"]})
        self._custody_event(log, ts, "unpacked", keys, subject=hx(a["containerKey"]))

    def _containers_emptied(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        keys = [hx(k) for k in a["containerKeys"]]
        self.store.update_keys(
            Container,
            "key",
            keys,
            {"state": ContainerState.DISSOLVED, "parent_key": None, "holder": a["org"]},
        )
        self._custody_event(log, ts, "emptied", keys)

    def _shipment_dispatched(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        sid = hx(a["shipmentId"])
        keys = [hx(k) for k in a["keys"]]
        self.store.insert(
            Shipment,
            [
                {
                    "shipment_id": sid,
                    "from_org": a["from"],
                    "to_org": a["to"],
                    "items": len(keys),
                    "pending": len(keys),
                    "received": 0,
                    "rejected": 0,
                    "missing": 0,
                    "reference_hash": hx(a["referenceHash"]),
                    "event_hash": hx(a["eventHash"]),
                    "dispatched_block": log.block_number,
                    "dispatched_at": ts,
                    "closed": False,
                }
            ],
        )
        self.store.insert(
            ShipmentItem, [{"shipment_id": sid, "item_key": k, "outcome": "pending"} for k in keys]
        )
        self._set_items(keys, {"parent_key": None, "holder": a["from"], "shipment_id": sid})
        self._custody_event(
            log,
            ts,
            "shipped",
            keys,
            org=a["from"],
            counterparty=a["to"],
            subject=sid,
            reason_hash=hx(a["referenceHash"]),
        )

    def _settle(self, log: DecodedLog, ts: int, outcome: str, action: str) -> None:
        a = log.args
        sid = hx(a["shipmentId"])
        keys = [hx(k) for k in a["keys"]]
        shipment = self.store.get(Shipment, shipment_id=sid)
        assert shipment is not None, f"settlement of unknown shipment {sid}"
        holder = a["org"] if outcome == "received" else shipment["from_org"]
        self._set_items(keys, {"shipment_id": None, "holder": holder})
        counter = {"received": "received", "rejected": "rejected", "missing": "missing"}[outcome]
        self.store.update_row(
            Shipment,
            {"shipment_id": sid},
            {"pending": shipment["pending"] - len(keys), counter: shipment[counter] + len(keys)},
        )
        self.store.update_keys(
            ShipmentItem, "item_key", keys, {"outcome": outcome}, where={"shipment_id": sid}
        )
        reason_hash = hx(a["reasonHash"]) if "reasonHash" in a else None
        self._custody_event(
            log, ts, action, keys, counterparty=shipment["from_org"], subject=sid, reason_hash=reason_hash
        )

    def _shipment_received(self, log: DecodedLog, ts: int) -> None:
        self._settle(log, ts, "received", "received")

    def _shipment_rejected(self, log: DecodedLog, ts: int) -> None:
        self._settle(log, ts, "rejected", "rejected")

    def _shipment_missing(self, log: DecodedLog, ts: int) -> None:
        self._settle(log, ts, "missing", "reported_missing")

    def _shipment_reclaimed(self, log: DecodedLog, ts: int) -> None:
        self._settle(log, ts, "rejected", "reclaimed")

    def _shipment_closed(self, log: DecodedLog, ts: int) -> None:
        self.store.update_row(Shipment, {"shipment_id": hx(log.args["shipmentId"])}, {"closed": True})

    def _units_decommissioned(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        keys = [hx(k) for k in a["keys"]]
        self.store.update_keys(
            Unit,
            "key",
            keys,
            {
                "state": a["reason"],
                "decommissioned_at": ts,
                "parent_key": None,
                "holder": a["org"],
                "shipment_id": None,
            },
        )
        self._custody_event(log, ts, "decommissioned", keys, reason=a["reason"])

    def _decommissions_undone(self, log: DecodedLog, ts: int) -> None:
        keys = [hx(k) for k in log.args["keys"]]
        self.store.update_keys(Unit, "key", keys, {"state": UnitState.ACTIVE, "decommissioned_at": None})
        self._custody_event(log, ts, "decommission_undone", keys)

    def _events_anchored(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        self.store.append(
            AnchoredEvent,
            [
                {
                    "block_number": log.block_number,
                    "log_index": log.log_index,
                    "position": i,
                    "tx_hash": log.tx_hash,
                    "timestamp": ts,
                    "org_id": a["org"],
                    "signer": a["signer"].lower(),
                    "event_hash": hx(digest),
                }
                for i, digest in enumerate(a["eventHashes"])
            ],
        )

    def _units_suspect(self, log: DecodedLog, ts: int) -> None:
        a = log.args
        keys = [hx(k) for k in a["keys"]]
        for key in keys:
            unit = self.store.get(Unit, key=key)
            assert unit is not None, f"suspect status of unknown unit {key}"
            holder = resolve_holder(self.store, unit)
            self.store.update_row(
                Unit, {"key": key}, {"suspect": a["status"], "parent_key": None, "holder": holder}
            )
        self._custody_event(
            log, ts, "suspect_status", keys, reason=a["status"], reason_hash=hx(a["reasonHash"])
        )


def resolve_holder(store: Store, item: Mapping[str, Any]) -> int:
    """The holder of an item as the contract resolves it: up the parent chain to a container with no
    parent (a packed item's root, or the last holder of a dissolved container)."""
    holder = int(item["holder"])
    parent = item["parent_key"]
    while parent is not None:
        row = store.get(Container, key=parent)
        if row is None:
            break
        holder, parent = int(row["holder"]), row["parent_key"]
    return holder
