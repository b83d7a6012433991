"""Helpers for the CustodyLedger and relay tests: typed views, event decoding, unique ids and a
"nothing changed" fingerprint of the items a refused action touched.

Kept out of conftest.py on purpose (other sessions own that file); only test_custody_*.py and
test_relay.py import it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak
from web3.logs import DISCARD

from node.chain import ContractRevert
from node.ledger.consortium import Org
from tests.contracts.conftest import World

CL = "CustodyLedger"
BR = "BatchRegistry"
CR = "ConsortiumRegistry"
ZERO32 = bytes(32)

Reverts = Callable[..., ContractRevert]

_ids = itertools.count(1)


def h(label: str) -> bytes:
    """A distinct, recognisable 32-byte hash (event hashes, reason hashes, references)."""
    return bytes(keccak(text=f"custody-test:{label}"))


def new_sid(label: str = "shipment") -> bytes:
    """A fresh shipment id."""
    return h(f"{label}:{next(_ids)}")


@dataclass(frozen=True)
class UnitView:
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


@dataclass(frozen=True)
class ContainerView:
    exists: bool
    state: int
    height: int
    holder: int
    packed: bool
    parent_key: bytes
    shipment_id: bytes
    batches: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def contents(self) -> dict[int, int]:
        """batch index -> units; asserts the view lists each batch once."""
        assert len(set(self.batches)) == len(self.batches), f"batch listed twice: {self.batches}"
        return dict(zip(self.batches, self.counts, strict=True))


@dataclass(frozen=True)
class ShipmentView:
    seq: int
    sender: int
    to: int
    items: int
    pending: int
    received: int
    rejected: int
    missing: int
    dispatched_at: int


def unit(world: World, key: bytes) -> UnitView:
    v = world.contract(CL).functions.unit(key).call()
    return UnitView(
        bool(v[0]),
        int(v[1]),
        int(v[2]),
        int(v[3]),
        int(v[4]),
        int(v[5]),
        bool(v[6]),
        bytes(v[7]),
        bytes(v[8]),
        int(v[9]),
    )


def container(world: World, key: bytes) -> ContainerView:
    v = world.contract(CL).functions.container(key).call()
    return ContainerView(
        bool(v[0]),
        int(v[1]),
        int(v[2]),
        int(v[3]),
        bool(v[4]),
        bytes(v[5]),
        bytes(v[6]),
        tuple(int(b) for b in v[7]),
        tuple(int(c) for c in v[8]),
    )


def shipment(world: World, sid: bytes) -> ShipmentView:
    v = world.contract(CL).functions.shipment(sid).call()
    return ShipmentView(*(int(x) for x in v))


def batch_suspect(world: World, bid: bytes) -> int:
    return int(world.contract(CL).functions.batchSuspect(bid).call())


def batch_index(world: World, bid: bytes) -> int:
    index = int(world.contract(BR).functions.batchCore(bid).call()[1])
    assert index != 0
    return index


def events(world: World, receipt: Any, name: str, contract: str = CL) -> list[Any]:
    """Decoded args of every `name` event in the receipt, in log order."""
    return [
        e["args"]
        for e in getattr(world.contract(contract).events, name)().process_receipt(receipt, errors=DISCARD)
    ]


def one_event(world: World, receipt: Any, name: str, contract: str = CL) -> Any:
    found = events(world, receipt, name, contract)
    assert len(found) == 1, f"expected one {name}, got {len(found)}"
    return found[0]


def keys_of(value: Iterable[bytes]) -> list[bytes]:
    return [bytes(k) for k in value]


def fingerprint(
    world: World,
    units: Sequence[bytes] = (),
    containers: Sequence[bytes] = (),
    shipments: Sequence[bytes] = (),
) -> tuple[Any, ...]:
    """Everything the ledger says about these items, plus the block height and shipment count:
    equal before and after a refused action means it changed nothing."""
    ledger = world.contract(CL)
    return (
        world.w3.eth.block_number,
        int(ledger.functions.shipmentCount().call()),
        tuple(unit(world, k) for k in units),
        tuple(container(world, k) for k in containers),
        tuple(shipment(world, s) for s in shipments),
    )


def ship(
    world: World,
    sender: Org,
    to: Org | int,
    keys: Sequence[bytes],
    *,
    sid: bytes | None = None,
    event_hash: bytes = ZERO32,
    reference: bytes = ZERO32,
) -> tuple[bytes, Any]:
    """Dispatch without receiving; returns (shipment id, receipt)."""
    sid = sid or new_sid()
    to_id = to if isinstance(to, int) else to.id
    receipt = sender.client.transact(CL, "ship", sid, to_id, list(keys), reference, event_hash)
    return sid, receipt


def decommission(org: Org, keys: Sequence[bytes], reason: int, event_hash: bytes = ZERO32) -> Any:
    return org.client.transact(CL, "decommission", list(keys), reason, event_hash)


def block_time(world: World) -> int:
    return int(world.w3.eth.get_block("latest")["timestamp"])


def set_next_block_time(world: World, timestamp: int) -> None:
    world.devnet.rpc("evm_setNextBlockTimestamp", [timestamp])


def key_from_int(value: int) -> bytes:
    return value.to_bytes(32, "big")
