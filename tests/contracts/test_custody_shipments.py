"""CustodyLedger shipments: the dispatch/receive handshake, rejection, missing items, closing, and
the release rules every movement must obey."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from node.ledger.constants import BatchStatus, UnitState
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import (
    BR,
    CL,
    CR,
    ZERO32,
    Reverts,
    ShipmentView,
    batch_index,
    container,
    decommission,
    events,
    fingerprint,
    h,
    new_sid,
    one_event,
    ship,
    shipment,
    unit,
)


def _block_time(world: World, receipt: Any) -> int:
    return int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def test_ship_and_receive_moves_custody(world: World) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    loose = world.commission(bid, 2)
    items = [*loose, case]
    count_before = int(world.contract(CL).functions.shipmentCount().call())

    sid, receipt = ship(
        world, world.cmo, world.tpl, items, reference=h("despatch advice"), event_hash=h("ship")
    )
    ev = one_event(world, receipt, "ShipmentDispatched")
    assert bytes(ev["shipmentId"]) == sid and ev["from"] == world.cmo.id and ev["to"] == world.tpl.id
    assert ev["signer"] == world.cmo.key.address
    assert bytes(ev["referenceHash"]) == h("despatch advice") and bytes(ev["eventHash"]) == h("ship")
    assert [bytes(k) for k in ev["keys"]] == items
    assert int(world.contract(CL).functions.shipmentCount().call()) == count_before + 1
    assert shipment(world, sid) == ShipmentView(
        seq=count_before + 1,
        sender=world.cmo.id,
        to=world.tpl.id,
        items=3,
        pending=3,
        received=0,
        rejected=0,
        missing=0,
        dispatched_at=_block_time(world, receipt),
    )
    # in transit: still the sender's custody
    for key in [*loose, *in_case]:
        u = unit(world, key)
        assert u.holder == world.cmo.id and u.shipment_id == sid
    assert container(world, case).shipment_id == sid

    receipt = world.tpl.client.transact(CL, "receiveShipment", sid, items, h("receive"))
    ev = one_event(world, receipt, "ShipmentReceived")
    assert (
        bytes(ev["shipmentId"]) == sid and ev["org"] == world.tpl.id and ev["signer"] == world.tpl.key.address
    )
    assert bytes(ev["eventHash"]) == h("receive") and [bytes(k) for k in ev["keys"]] == items
    closed = one_event(world, receipt, "ShipmentClosed")
    assert (bytes(closed["shipmentId"]), closed["received"], closed["rejected"], closed["missing"]) == (
        sid,
        3,
        0,
        0,
    )
    for key in [*loose, *in_case]:
        u = unit(world, key)
        assert u.holder == world.tpl.id and u.shipment_id == ZERO32
    s = shipment(world, sid)
    assert (s.pending, s.received, s.rejected, s.missing) == (0, 3, 0, 0)


def test_partial_receipt_in_two_steps(world: World) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 3)
    sid, _ = ship(world, world.cmo, world.dist, keys)

    receipt = world.dist.client.transact(CL, "receiveShipment", sid, keys[:2], ZERO32)
    assert events(world, receipt, "ShipmentClosed") == []
    s = shipment(world, sid)
    assert (s.items, s.pending, s.received) == (3, 1, 2)
    assert unit(world, keys[0]).holder == world.dist.id and unit(world, keys[0]).shipment_id == ZERO32
    assert unit(world, keys[2]).holder == world.cmo.id and unit(world, keys[2]).shipment_id == sid

    receipt = world.dist.client.transact(CL, "receiveShipment", sid, keys[2:], ZERO32)
    closed = one_event(world, receipt, "ShipmentClosed")
    assert (closed["received"], closed["rejected"], closed["missing"]) == (3, 0, 0)
    assert unit(world, keys[2]).holder == world.dist.id


def test_reject_and_report_missing_return_custody_to_the_sender(world: World) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 4)
    sid, _ = ship(world, world.cmo, world.tpl, keys)

    world.tpl.client.transact(CL, "receiveShipment", sid, keys[:1], ZERO32)
    receipt = world.tpl.client.transact(CL, "rejectShipment", sid, keys[1:3], h("damaged"), h("reject"))
    ev = one_event(world, receipt, "ShipmentRejected")
    assert (
        bytes(ev["shipmentId"]) == sid and ev["org"] == world.tpl.id and ev["signer"] == world.tpl.key.address
    )
    assert bytes(ev["reasonHash"]) == h("damaged") and bytes(ev["eventHash"]) == h("reject")
    assert [bytes(k) for k in ev["keys"]] == keys[1:3]
    assert events(world, receipt, "ShipmentClosed") == []
    for key in keys[1:3]:
        u = unit(world, key)
        assert u.holder == world.cmo.id and u.shipment_id == ZERO32

    receipt = world.tpl.client.transact(CL, "reportMissing", sid, keys[3:], h("discrepancy report"))
    ev = one_event(world, receipt, "ShipmentDiscrepancyRecorded")
    assert (
        bytes(ev["shipmentId"]) == sid and ev["org"] == world.tpl.id and ev["signer"] == world.tpl.key.address
    )
    assert bytes(ev["reasonHash"]) == h("discrepancy report") and [bytes(k) for k in ev["keys"]] == keys[3:]
    closed = one_event(world, receipt, "ShipmentClosed")
    assert (bytes(closed["shipmentId"]), closed["received"], closed["rejected"], closed["missing"]) == (
        sid,
        1,
        2,
        1,
    )
    assert unit(world, keys[3]).holder == world.cmo.id and unit(world, keys[3]).shipment_id == ZERO32
    assert unit(world, keys[0]).holder == world.tpl.id
    s = shipment(world, sid)
    assert (s.pending, s.received, s.rejected, s.missing) == (0, 1, 2, 1)

    # returned items are the sender's again: it can ship them elsewhere
    world.ship(world.cmo, world.dist, keys[1:])
    assert all(unit(world, k).holder == world.dist.id for k in keys[1:])


def test_only_the_addressee_settles(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    sid, _ = ship(world, world.cmo, world.tpl, keys)
    before = fingerprint(world, units=keys, shipments=[sid])
    for org in (world.cmo, world.dist):
        err = reverts("NotAddressee", org.client.transact, CL, "receiveShipment", sid, keys, ZERO32)
        assert err.args == (sid, org.id)
        err = reverts("NotAddressee", org.client.transact, CL, "rejectShipment", sid, keys, ZERO32, ZERO32)
        assert err.args == (sid, org.id)
        err = reverts("NotAddressee", org.client.transact, CL, "reportMissing", sid, keys, ZERO32)
        assert err.args == (sid, org.id)
    assert fingerprint(world, units=keys, shipments=[sid]) == before


def test_unknown_shipment(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    sid = new_sid("never dispatched")
    err = reverts("UnknownShipment", world.tpl.client.transact, CL, "receiveShipment", sid, keys, ZERO32)
    assert err.args == (sid,)
    reverts("UnknownShipment", world.tpl.client.transact, CL, "rejectShipment", sid, keys, ZERO32, ZERO32)
    reverts("UnknownShipment", world.tpl.client.transact, CL, "reportMissing", sid, keys, ZERO32)
    assert shipment(world, sid).seq == 0


def test_items_not_pending_in_the_shipment(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    keys = world.commission(bid, 3)
    sid, _ = ship(world, world.cmo, world.tpl, [keys[0], case])
    other_sid, _ = ship(world, world.cmo, world.tpl, [keys[1]])
    not_shipped = keys[2]
    world.tpl.client.transact(CL, "receiveShipment", sid, [keys[0]], ZERO32)
    before = fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid, other_sid])

    for key in (not_shipped, keys[1], keys[0], in_case[0]):  # never, other shipment, received, packed
        err = reverts(
            "NotInShipment", world.tpl.client.transact, CL, "receiveShipment", sid, [case, key], ZERO32
        )
        assert err.args == (key, sid)
    err = reverts(
        "NotInShipment", world.tpl.client.transact, CL, "rejectShipment", sid, [case, case], ZERO32, ZERO32
    )
    assert err.args == (case, sid)
    reverts("NotInShipment", world.tpl.client.transact, CL, "reportMissing", sid, [not_shipped], ZERO32)
    reverts("EmptyList", world.tpl.client.transact, CL, "receiveShipment", sid, [], ZERO32)
    assert (
        fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid, other_sid]) == before
    )


def test_shipment_ids_are_unique_and_non_zero(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    sid, _ = ship(world, world.cmo, world.tpl, keys[:1])
    before = fingerprint(world, units=keys, shipments=[sid])
    err = reverts(
        "ShipmentExists", world.cmo.client.transact, CL, "ship", sid, world.dist.id, keys[1:], ZERO32, ZERO32
    )
    assert err.args == (sid,)
    err = reverts(
        "ShipmentExists",
        world.cmo.client.transact,
        CL,
        "ship",
        ZERO32,
        world.dist.id,
        keys[1:],
        ZERO32,
        ZERO32,
    )
    assert err.args == (ZERO32,)
    assert fingerprint(world, units=keys, shipments=[sid]) == before


def test_invalid_destination(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    before = fingerprint(world, units=keys)
    unknown = int(world.contract(CR).functions.organizationCount().call()) + 1
    for to in (world.cmo.id, unknown, 0):
        err = reverts(
            "InvalidDestination", world.cmo.client.transact, CL, "ship", new_sid(), to, keys, ZERO32, ZERO32
        )
        assert err.args == (to,)

    world.admin.transact(CR, "suspendOrganization", world.tpl.id, h("audit"))
    err = reverts(
        "InvalidDestination",
        world.cmo.client.transact,
        CL,
        "ship",
        new_sid(),
        world.tpl.id,
        keys,
        ZERO32,
        ZERO32,
    )
    assert err.args == (world.tpl.id,)
    world.admin.transact(CR, "offboardOrganization", world.dist.id, h("left"))
    reverts(
        "InvalidDestination",
        world.cmo.client.transact,
        CL,
        "ship",
        new_sid(),
        world.dist.id,
        keys,
        ZERO32,
        ZERO32,
    )
    assert fingerprint(world, units=keys)[2:] == before[2:]

    world.admin.transact(CR, "reactivateOrganization", world.tpl.id, h("ok"))
    world.ship(world.cmo, world.tpl, keys)
    assert unit(world, keys[0]).holder == world.tpl.id


def test_what_may_be_shipped(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    keys = world.commission(bid, 4)
    decommission(world.cmo, keys[2:3], UnitState.DISPENSED)
    decommission(world.cmo, keys[3:4], UnitState.LOCKED)
    sid, _ = ship(world, world.cmo, world.tpl, keys[1:2])
    before = fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid])

    def refused(error: str, org_keys: list[bytes], org: Any = None) -> Any:
        org = org or world.cmo
        return reverts(
            error, org.client.transact, CL, "ship", new_sid(), world.dist.id, org_keys, ZERO32, ZERO32
        )

    assert refused("NotHolder", keys[:1], world.tpl).args == (keys[0], world.cmo.id)
    assert refused("ItemPacked", [keys[0], in_case[0]]).args == (in_case[0],)
    assert refused("InTransit", keys[1:2]).args == (keys[1], sid)
    assert refused("InTransit", keys[1:2], world.tpl).args == (keys[1], sid), "not before it is received"
    assert refused("AlreadyDispensed", keys[2:3]).args == (keys[2],)
    assert refused("AlreadyDecommissioned", keys[3:4]).args == (keys[3], UnitState.LOCKED)
    assert refused("EmptyList", []).args == ()
    assert fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid]) == before

    # the same key twice in one shipment: the second sees it in transit; nothing is dispatched
    dup = new_sid()
    err = reverts(
        "InTransit",
        world.cmo.client.transact,
        CL,
        "ship",
        dup,
        world.dist.id,
        [keys[0], keys[0]],
        ZERO32,
        ZERO32,
    )
    assert err.args == (keys[0], dup)
    assert shipment(world, dup).seq == 0
    assert fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid]) == before


def test_in_transit_items_cannot_be_packed_unpacked_or_decommissioned(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    keys = world.commission(bid, 1)
    sid, _ = ship(world, world.cmo, world.pharmacy, [case, *keys])
    before = fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid])
    for org in (world.cmo, world.pharmacy):
        err = reverts("InTransit", decommission, org, keys, UnitState.DISPENSED)
        assert err.args == (keys[0], sid)
        err = reverts("InTransit", org.client.transact, CL, "pack", world.sscc_key(), keys, ZERO32)
        assert err.args == (keys[0], sid)
        err = reverts("InTransit", org.client.transact, CL, "unpack", case, in_case[:1], ZERO32)
        assert err.args == (case, sid)
        err = reverts("InTransit", org.client.transact, CL, "unpackAll", [case], ZERO32)
        assert err.args == (case, sid)
    assert fingerprint(world, units=[*keys, *in_case], containers=[case], shipments=[sid]) == before


# ---------------------------------------------------------------------------------- release rules


def _units_at(world: World, bid: bytes, holder_path: list[Any], n: int = 2) -> list[bytes]:
    keys = world.commission(bid, n)
    for sender, to in itertools.pairwise(holder_path):
        world.ship(sender, to, keys)
    return keys


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("quarantine", BatchStatus.QUARANTINE),
        ("rejected", BatchStatus.REJECTED),
        ("suspended-quarantine", BatchStatus.SUSPENDED),
        ("suspended-released", BatchStatus.SUSPENDED),
    ],
)
def test_unreleased_product_moves_only_between_manufacturer_and_sponsor(
    world: World, reverts: Reverts, setup: str, status: BatchStatus
) -> None:
    bid = world.new_batch(release=setup == "suspended-released")
    case = world.sscc_key()
    world.commission(bid, 2, containers=[case])
    keys = world.commission(bid, 3)
    action = {"rejected": "reject", "quarantine": None}.get(setup, "suspend")
    if action:
        world.sponsor.client.transact(BR, action, bid, h("why"))
    assert world.batch_status(bid) == status

    for to in (world.tpl, world.dist, world.pharmacy, world.cmo2):
        err = reverts(
            "BatchNotReleased",
            world.cmo.client.transact,
            CL,
            "ship",
            new_sid(),
            to.id,
            keys[:1],
            ZERO32,
            ZERO32,
        )
        assert err.args == (keys[0], bid, status)
    err = reverts(
        "BatchNotReleased",
        world.cmo.client.transact,
        CL,
        "ship",
        new_sid(),
        world.tpl.id,
        [case],
        ZERO32,
        ZERO32,
    )
    assert err.args == (case, bid, status)
    assert unit(world, keys[0]).holder == world.cmo.id and unit(world, keys[0]).shipment_id == ZERO32

    # CMO -> sponsor and back is allowed
    world.ship(world.cmo, world.sponsor, [keys[0], keys[1], case])
    assert unit(world, keys[0]).holder == world.sponsor.id
    err = reverts(
        "BatchNotReleased",
        world.sponsor.client.transact,
        CL,
        "ship",
        new_sid(),
        world.tpl.id,
        keys[:1],
        ZERO32,
        ZERO32,
    )
    assert err.args == (keys[0], bid, status)
    world.ship(world.sponsor, world.cmo, keys[:1])
    assert unit(world, keys[0]).holder == world.cmo.id


def test_suspended_product_away_from_manufacturer_and_sponsor_cannot_move(
    world: World, reverts: Reverts
) -> None:
    bid = world.new_batch()
    keys = _units_at(world, bid, [world.cmo, world.tpl], 2)
    world.sponsor.client.transact(BR, "suspend", bid, h("hold"))
    before = fingerprint(world, units=keys)
    # the sender is neither manufacturer nor sponsor: not even back to them
    for to in (world.sponsor, world.cmo, world.dist):
        err = reverts(
            "BatchNotReleased",
            world.tpl.client.transact,
            CL,
            "ship",
            new_sid(),
            to.id,
            keys[:1],
            ZERO32,
            ZERO32,
        )
        assert err.args == (keys[0], bid, BatchStatus.SUSPENDED)
    assert fingerprint(world, units=keys) == before
    decommission(world.tpl, keys[1:], UnitState.DESTROYED)  # destruction needs no release
    world.sponsor.client.transact(BR, "unsuspend", bid, h("ok"))
    world.ship(world.tpl, world.dist, keys[:1])
    assert unit(world, keys[0]).holder == world.dist.id


def test_released_product_moves_freely(world: World) -> None:
    bid = world.new_batch()
    keys = _units_at(world, bid, [world.cmo, world.tpl, world.dist, world.pharmacy, world.pharmacy2])
    assert all(unit(world, k).holder == world.pharmacy2.id for k in keys)


def test_recalled_product_only_goes_back(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    at_pharmacy = _units_at(world, bid, [world.cmo, world.dist, world.pharmacy], 3)
    at_dist = _units_at(world, bid, [world.cmo, world.dist], 3)
    world.sponsor.client.transact(BR, "recall", bid, h("recall"))
    assert world.batch_status(bid) == BatchStatus.RECALLED

    for sender, key, to in (
        (world.dist, at_dist[0], world.pharmacy),
        (world.pharmacy, at_pharmacy[0], world.pharmacy2),
        (world.dist, at_dist[0], world.cmo),  # the manufacturer is not the sponsor
        (world.dist, at_dist[0], world.regulator),
    ):
        err = reverts(
            "RecalledProduct", sender.client.transact, CL, "ship", new_sid(), to.id, [key], ZERO32, ZERO32
        )
        assert err.args == (key, bid, to.id)
    assert unit(world, at_dist[0]).holder == world.dist.id and unit(world, at_dist[0]).shipment_id == ZERO32

    world.ship(world.pharmacy, world.dist, at_pharmacy[:1])  # to a distributor
    world.ship(world.pharmacy, world.sponsor, at_pharmacy[1:2])  # to the sponsor
    world.ship(world.dist, world.tpl, at_dist[:1])  # to a logistics partner
    assert unit(world, at_pharmacy[0]).holder == world.dist.id
    assert unit(world, at_pharmacy[1]).holder == world.sponsor.id
    assert unit(world, at_dist[0]).holder == world.tpl.id


def test_mixed_pallet_obeys_every_batch_it_carries(world: World, reverts: Reverts) -> None:
    released, quarantined = world.new_batch(), world.new_batch(release=False)
    case_r, case_q, pallet = world.sscc_key(), world.sscc_key(), world.sscc_key()
    world.commission(released, 2, containers=[case_r])
    world.commission(quarantined, 2, containers=[case_q])
    world.cmo.client.transact(CL, "pack", pallet, [case_r, case_q], ZERO32)
    assert container(world, pallet).contents == {
        batch_index(world, released): 2,
        batch_index(world, quarantined): 2,
    }
    before = fingerprint(world, containers=[pallet, case_r, case_q])

    err = reverts(
        "BatchNotReleased",
        world.cmo.client.transact,
        CL,
        "ship",
        new_sid(),
        world.tpl.id,
        [pallet],
        ZERO32,
        ZERO32,
    )
    assert err.args == (pallet, quarantined, BatchStatus.QUARANTINE)
    assert fingerprint(world, containers=[pallet, case_r, case_q]) == before

    # once the quarantined case is taken off, the pallet may go to the 3PL
    world.cmo.client.transact(CL, "unpack", pallet, [case_q], ZERO32)
    world.ship(world.cmo, world.tpl, [pallet])
    assert container(world, pallet).holder == world.tpl.id
    assert container(world, case_q).holder == world.cmo.id


def test_mixed_pallet_with_a_recalled_batch(world: World, reverts: Reverts) -> None:
    good, bad = world.new_batch(), world.new_batch()
    units = [*world.commission(good, 2), *world.commission(bad, 2)]
    pallet = world.sscc_key()
    world.cmo.client.transact(CL, "pack", pallet, units, ZERO32)
    world.ship(world.cmo, world.dist, [pallet])
    world.sponsor.client.transact(BR, "recall", bad, h("recall"))
    err = reverts(
        "RecalledProduct",
        world.dist.client.transact,
        CL,
        "ship",
        new_sid(),
        world.pharmacy.id,
        [pallet],
        ZERO32,
        ZERO32,
    )
    assert err.args == (pallet, bad, world.pharmacy.id)
    world.ship(world.dist, world.sponsor, [pallet])
    assert container(world, pallet).holder == world.sponsor.id


# ------------------------------------------------------------------------------------ event hashes


def test_every_custody_event_carries_its_event_hash(world: World) -> None:
    bid = world.new_batch()
    case, tote = world.sscc_key(), world.sscc_key()
    keys = world.unit_keys(4)
    r = world.cmo.client.transact(CL, "commission", bid, [case], keys, h("e:commission"))
    assert bytes(one_event(world, r, "UnitsCommissioned")["eventHash"]) == h("e:commission")

    sid, r = ship(world, world.cmo, world.pharmacy, [case], event_hash=h("e:ship"), reference=h("ref"))
    assert bytes(one_event(world, r, "ShipmentDispatched")["eventHash"]) == h("e:ship")
    r = world.pharmacy.client.transact(CL, "receiveShipment", sid, [case], h("e:receive"))
    assert bytes(one_event(world, r, "ShipmentReceived")["eventHash"]) == h("e:receive")

    r = world.pharmacy.client.transact(CL, "unpack", case, keys[:1], h("e:unpack"))
    assert bytes(one_event(world, r, "ItemsUnpacked")["eventHash"]) == h("e:unpack")
    r = world.pharmacy.client.transact(CL, "pack", tote, keys[:1], h("e:pack"))
    assert bytes(one_event(world, r, "ItemsPacked")["eventHash"]) == h("e:pack")
    r = world.pharmacy.client.transact(CL, "unpackAll", [case], h("e:unpackAll"))
    assert bytes(one_event(world, r, "ContainersEmptied")["eventHash"]) == h("e:unpackAll")

    r = decommission(world.pharmacy, keys[1:3], UnitState.DISPENSED, h("e:dispense"))
    ev = one_event(world, r, "UnitsDecommissioned")
    assert bytes(ev["eventHash"]) == h("e:dispense") and ev["reason"] == UnitState.DISPENSED
    r = world.pharmacy.client.transact(CL, "undoDecommission", keys[2:3], h("e:undo"))
    assert bytes(one_event(world, r, "DecommissionsUndone")["eventHash"]) == h("e:undo")

    sid, _ = ship(world, world.pharmacy, world.dist, keys[3:])
    r = world.dist.client.transact(CL, "rejectShipment", sid, keys[3:], h("reason"), h("e:reject"))
    assert bytes(one_event(world, r, "ShipmentRejected")["eventHash"]) == h("e:reject")
