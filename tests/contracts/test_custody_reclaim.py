"""A shipment to an organisation that is suspended in transit can be taken back by its sender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web3 import Web3
from web3.logs import DISCARD

from node.chain import ContractRevert
from tests.contracts.conftest import World, b32

Reverts = Callable[..., ContractRevert]
CL = "CustodyLedger"


def _shipped(world: World) -> tuple[bytes, list[bytes]]:
    bid = world.new_batch()
    keys = world.commission(bid, 3)
    sid = world.ship(world.cmo, world.tpl, keys, receive=False)
    return sid, keys


def test_sender_reclaims_from_a_suspended_addressee(world: World) -> None:
    sid, keys = _shipped(world)
    world.admin.transact("ConsortiumRegistry", "suspendOrganization", world.tpl.id, b32("audit"))
    receipt = world.cmo.client.transact(CL, "reclaimShipment", sid, keys[:2], b32("addressee suspended"))
    events = world.contract(CL).events.ShipmentReclaimed().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.org, list(e.args["keys"])) for e in events] == [(world.cmo.id, keys[:2])]
    for key in keys[:2]:
        u = world.unit(key)
        assert u[5] == world.cmo.id and u[8] == bytes(32)  # holder back to the sender, not in transit
    assert world.unit(keys[2])[8] == sid  # still in transit
    s = world.contract(CL).functions.shipment(sid).call()
    assert (s[4], s[6]) == (1, 2)  # pending, rejected
    world.cmo.client.transact(CL, "reclaimShipment", sid, keys[2:], bytes(32))
    assert world.contract(CL).functions.shipment(sid).call()[4] == 0


def test_reclaim_is_refused_while_the_addressee_is_active(world: World, reverts: Reverts) -> None:
    sid, keys = _shipped(world)
    err = reverts("AddresseeActive", world.cmo.client.transact, CL, "reclaimShipment", sid, keys, bytes(32))
    assert err.args == (sid, world.tpl.id)
    assert world.unit(keys[0])[8] == sid


def test_only_the_sender_reclaims(world: World, reverts: Reverts) -> None:
    sid, keys = _shipped(world)
    world.admin.transact("ConsortiumRegistry", "suspendOrganization", world.tpl.id, b32("audit"))
    err = reverts("NotSender", world.dist.client.transact, CL, "reclaimShipment", sid, keys, bytes(32))
    assert err.args == (sid, world.dist.id)
    unknown = bytes(Web3.keccak(text="no such shipment"))
    reverts("UnknownShipment", world.cmo.client.transact, CL, "reclaimShipment", unknown, keys, bytes(32))


def test_reclaim_can_be_relayed(world: World, accounts: Any) -> None:
    sid, keys = _shipped(world)
    world.admin.transact("ConsortiumRegistry", "suspendOrganization", world.tpl.id, b32("audit"))
    signed = world.cmo.client.sign(CL, "reclaimShipment", sid, keys, bytes(32))
    world.client_for(accounts[17]).relay(CL, signed)
    assert world.unit(keys[0])[5] == world.cmo.id
