"""CustodyLedger aggregation: pack, unpack, unpackAll, nesting, custody of packed items and the
batches a container carries."""

from __future__ import annotations

from node.chain import ContractRevert
from node.ledger.constants import MAX_CONTAINER_HEIGHT, ContainerState, UnitState
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import (
    CL,
    ZERO32,
    Reverts,
    batch_index,
    container,
    decommission,
    fingerprint,
    h,
    one_event,
    ship,
    unit,
)


def test_three_levels_of_nesting_and_custody_of_packed_items(world: World) -> None:
    bid = world.new_batch()
    index = batch_index(world, bid)
    loose = world.commission(bid, 4)
    case1, case2, pallet, outer = (world.sscc_key() for _ in range(4))
    in_case2 = world.commission(bid, 3, containers=[case2])

    receipt = world.cmo.client.transact(CL, "pack", case1, loose, h("pack case"))
    ev = one_event(world, receipt, "ItemsPacked")
    assert bytes(ev["containerKey"]) == case1 and ev["org"] == world.cmo.id
    assert ev["signer"] == world.cmo.key.address and bytes(ev["eventHash"]) == h("pack case")
    assert [bytes(k) for k in ev["keys"]] == loose
    assert one_event(world, receipt, "ContainerCreated")["containerKey"] == case1

    world.cmo.client.transact(CL, "pack", pallet, [case1, case2], ZERO32)
    world.cmo.client.transact(CL, "pack", outer, [pallet], ZERO32)

    u = unit(world, loose[0])
    assert u.packed and u.parent_key == case1 and u.holder == world.cmo.id and u.state == UnitState.ACTIVE
    assert unit(world, in_case2[0]).parent_key == case2
    c1 = container(world, case1)
    assert c1.packed and c1.parent_key == pallet and c1.height == 1 and c1.contents == {index: 4}
    p = container(world, pallet)
    assert p.packed and p.parent_key == outer and p.height == 2 and p.contents == {index: 7}
    o = container(world, outer)
    assert not o.packed and o.parent_key == ZERO32 and o.height == 3 and o.contents == {index: 7}
    assert o.holder == world.cmo.id

    # the root travels; everything inside follows it
    sid, _ = ship(world, world.cmo, world.tpl, [outer])
    u = unit(world, loose[0])
    assert u.shipment_id == sid and u.holder == world.cmo.id and u.packed
    assert container(world, pallet).shipment_id == sid
    world.tpl.client.transact(CL, "receiveShipment", sid, [outer], ZERO32)
    for key in [*loose, *in_case2]:
        u = unit(world, key)
        assert u.holder == world.tpl.id and u.packed and u.shipment_id == ZERO32
    assert container(world, case2).holder == world.tpl.id


def test_only_the_holder_packs(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    mine = world.commission(bid, 1)
    world.ship(world.cmo, world.tpl, mine)
    box, tpl_box = world.sscc_key(), world.sscc_key()
    world.tpl.client.transact(CL, "pack", tpl_box, mine, ZERO32)
    before = fingerprint(world, units=[*keys, *mine], containers=[box, tpl_box])

    err = reverts("NotHolder", world.tpl.client.transact, CL, "pack", box, keys, ZERO32)
    assert err.args == (keys[0], world.cmo.id)
    # nor into a container someone else holds
    err = reverts("NotHolder", world.cmo.client.transact, CL, "pack", tpl_box, keys, ZERO32)
    assert err.args == (tpl_box, world.tpl.id)
    assert fingerprint(world, units=[*keys, *mine], containers=[box, tpl_box]) == before


def test_packed_and_in_transit_items_cannot_be_packed(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case, pallet, other = world.sscc_key(), world.sscc_key(), world.sscc_key()
    inside = world.commission(bid, 2, containers=[case])
    world.cmo.client.transact(CL, "pack", pallet, [case], ZERO32)
    travelling = world.commission(bid, 1)
    loose = world.commission(bid, 1)
    sid, _ = ship(world, world.cmo, world.sponsor, travelling)
    pallet_sid, _ = ship(world, world.cmo, world.sponsor, [pallet])
    items = {"units": [*inside, *travelling, *loose], "containers": [case, pallet, other]}
    before = fingerprint(world, **items)

    err = reverts("ItemPacked", world.cmo.client.transact, CL, "pack", other, inside[:1], ZERO32)
    assert err.args == (inside[0],)
    err = reverts("ItemPacked", world.cmo.client.transact, CL, "pack", other, [case], ZERO32)
    assert err.args == (case,)
    # packing into a packed container is refused too
    err = reverts("ItemPacked", world.cmo.client.transact, CL, "pack", case, loose, ZERO32)
    assert err.args == (case,)
    err = reverts("InTransit", world.cmo.client.transact, CL, "pack", other, travelling, ZERO32)
    assert err.args == (travelling[0], sid)
    err = reverts("InTransit", world.cmo.client.transact, CL, "pack", other, [pallet], ZERO32)
    assert err.args == (pallet, pallet_sid)
    # and into a container in transit
    err = reverts("InTransit", world.cmo.client.transact, CL, "pack", pallet, loose, ZERO32)
    assert err.args == (pallet, pallet_sid)
    assert fingerprint(world, **items) == before
    assert not container(world, other).exists and not unit(world, loose[0]).packed


def test_decommissioned_units_cannot_be_packed(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    dispensed, destroyed = world.commission(bid, 2)
    decommission(world.cmo, [dispensed], UnitState.DISPENSED)
    decommission(world.cmo, [destroyed], UnitState.DESTROYED)
    box = world.sscc_key()
    err = reverts("AlreadyDispensed", world.cmo.client.transact, CL, "pack", box, [dispensed], ZERO32)
    assert err.args == (dispensed,)
    err = reverts("AlreadyDecommissioned", world.cmo.client.transact, CL, "pack", box, [destroyed], ZERO32)
    assert err.args == (destroyed, UnitState.DESTROYED)
    assert not container(world, box).exists
    assert unit(world, dispensed).state == UnitState.DISPENSED and not unit(world, dispensed).packed


def test_self_packing(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    world.commission(bid, 2, containers=[case])
    before = fingerprint(world, containers=[case])
    err = reverts("SelfPacking", world.cmo.client.transact, CL, "pack", case, [case], ZERO32)
    assert err.args == (case,)
    assert fingerprint(world, containers=[case]) == before


def test_nesting_stops_at_max_height(world: World, reverts: Reverts) -> None:
    assert int(world.contract(CL).functions.MAX_HEIGHT().call()) == MAX_CONTAINER_HEIGHT == 8
    bid = world.new_batch()
    boxes = [world.sscc_key() for _ in range(MAX_CONTAINER_HEIGHT + 1)]
    world.commission(bid, 1, containers=[boxes[0]])
    for level in range(1, MAX_CONTAINER_HEIGHT):
        world.cmo.client.transact(CL, "pack", boxes[level], [boxes[level - 1]], ZERO32)
        assert container(world, boxes[level]).height == level + 1
    top = boxes[MAX_CONTAINER_HEIGHT - 1]
    assert container(world, top).height == MAX_CONTAINER_HEIGHT

    over = boxes[MAX_CONTAINER_HEIGHT]
    err = reverts("NestingTooDeep", world.cmo.client.transact, CL, "pack", over, [top], ZERO32)
    assert err.args == (over, MAX_CONTAINER_HEIGHT + 1)
    assert not container(world, over).exists
    assert not container(world, top).packed


def test_unpack_specific_children(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    index = batch_index(world, bid)
    case, pallet = world.sscc_key(), world.sscc_key()
    in_case = world.commission(bid, 3, containers=[case])
    loose = world.commission(bid, 2)
    world.cmo.client.transact(CL, "pack", pallet, [case, *loose], ZERO32)
    world.ship(world.cmo, world.dist, [pallet])

    # only direct children come out
    err = reverts("NotInContainer", world.dist.client.transact, CL, "unpack", pallet, in_case[:1], ZERO32)
    assert err.args == (in_case[0], pallet)
    err = reverts("ItemPacked", world.dist.client.transact, CL, "unpack", case, in_case[:1], ZERO32)
    assert err.args == (case,)
    err = reverts("NotHolder", world.cmo.client.transact, CL, "unpack", pallet, loose[:1], ZERO32)
    assert err.args == (pallet, world.dist.id)

    receipt = world.dist.client.transact(CL, "unpack", pallet, [loose[0], case], h("unpack"))
    ev = one_event(world, receipt, "ItemsUnpacked")
    assert bytes(ev["containerKey"]) == pallet and ev["org"] == world.dist.id
    assert [bytes(k) for k in ev["keys"]] == [loose[0], case] and bytes(ev["eventHash"]) == h("unpack")

    u = unit(world, loose[0])
    assert not u.packed and u.parent_key == ZERO32 and u.holder == world.dist.id
    c = container(world, case)
    assert not c.packed and c.parent_key == ZERO32 and c.holder == world.dist.id
    assert unit(world, in_case[0]).parent_key == case and unit(world, in_case[0]).packed
    assert container(world, pallet).contents == {index: 1}
    assert unit(world, loose[1]).parent_key == pallet
    # an item that already came out is no longer in the container
    err = reverts("NotInContainer", world.dist.client.transact, CL, "unpack", pallet, [case], ZERO32)
    assert err.args == (case, pallet)


def test_unpack_all_dissolves_the_container(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case1, case2, pallet = world.sscc_key(), world.sscc_key(), world.sscc_key()
    in1 = world.commission(bid, 2, containers=[case1])
    in2 = world.commission(bid, 2, containers=[case2])
    loose = world.commission(bid, 1)
    world.cmo.client.transact(CL, "pack", pallet, [case1, case2, *loose], ZERO32)
    world.ship(world.cmo, world.tpl, [pallet])

    err = reverts("NotHolder", world.cmo.client.transact, CL, "unpackAll", [pallet], ZERO32)
    assert err.args == (pallet, world.tpl.id)
    err = reverts("ItemPacked", world.tpl.client.transact, CL, "unpackAll", [case1], ZERO32)
    assert err.args == (case1,)
    reverts("EmptyList", world.tpl.client.transact, CL, "unpackAll", [], ZERO32)

    receipt = world.tpl.client.transact(CL, "unpackAll", [pallet], h("unpack all"))
    ev = one_event(world, receipt, "ContainersEmptied")
    assert ev["org"] == world.tpl.id and ev["signer"] == world.tpl.key.address
    assert [bytes(k) for k in ev["containerKeys"]] == [pallet] and bytes(ev["eventHash"]) == h("unpack all")

    p = container(world, pallet)
    assert p.exists and p.state == ContainerState.DISSOLVED and p.holder == world.tpl.id
    for case in (case1, case2):
        c = container(world, case)
        assert not c.packed and c.parent_key == ZERO32 and c.holder == world.tpl.id
    u = unit(world, loose[0])
    assert not u.packed and u.parent_key == ZERO32 and u.holder == world.tpl.id
    for key in [*in1, *in2]:  # grandchildren stay in their cases, now held by the 3PL
        u = unit(world, key)
        assert u.packed and u.holder == world.tpl.id

    # the children are the 3PL's loose items: it can ship them on
    world.ship(world.tpl, world.dist, [case1, *loose])
    assert unit(world, in1[0]).holder == world.dist.id and unit(world, loose[0]).holder == world.dist.id
    assert unit(world, in2[0]).holder == world.tpl.id

    # and the dissolved container is finished
    other = world.sscc_key()
    more = world.commission(bid, 1)
    before = fingerprint(world, units=more, containers=[pallet, other])
    reverts("ContainerDissolved", world.tpl.client.transact, CL, "pack", pallet, [case2], ZERO32)
    err = reverts("ContainerDissolved", world.tpl.client.transact, CL, "pack", other, [pallet], ZERO32)
    assert err.args == (pallet,)
    err = reverts(
        "ContainerDissolved",
        world.tpl.client.transact,
        CL,
        "ship",
        h("s"),
        world.dist.id,
        [pallet],
        ZERO32,
        ZERO32,
    )
    assert err.args == (pallet,)
    reverts("ContainerDissolved", world.tpl.client.transact, CL, "unpackAll", [pallet], ZERO32)
    reverts("ContainerDissolved", world.tpl.client.transact, CL, "unpack", pallet, [case2], ZERO32)
    reverts(
        "ContainerDissolved",
        world.cmo.client.transact,
        CL,
        "commission",
        bid,
        [pallet],
        world.unit_keys(1),
        ZERO32,
    )
    assert fingerprint(world, units=more, containers=[pallet, other]) == before


def test_units_of_a_dissolved_case_are_loose_and_can_be_dispensed(world: World) -> None:
    bid = world.new_batch()
    case = world.sscc_key()
    keys = world.commission(bid, 3, containers=[case])
    world.ship(world.cmo, world.pharmacy, [case])
    world.pharmacy.client.transact(CL, "unpackAll", [case], ZERO32)
    u = unit(world, keys[0])
    assert not u.packed and u.holder == world.pharmacy.id
    decommission(world.pharmacy, keys[:2], UnitState.DISPENSED)
    assert (
        unit(world, keys[0]).state == UnitState.DISPENSED and unit(world, keys[0]).holder == world.pharmacy.id
    )
    assert unit(world, keys[2]).state == UnitState.ACTIVE and unit(world, keys[2]).holder == world.pharmacy.id
    # repacking a loose unit of the dissolved case into a new tote works
    tote = world.sscc_key()
    world.pharmacy.client.transact(CL, "pack", tote, keys[2:], ZERO32)
    assert unit(world, keys[2]).parent_key == tote


def test_mixed_pallet_contents_and_after_unpacking(world: World) -> None:
    a, b = world.new_batch(), world.new_batch()
    ia, ib = batch_index(world, a), batch_index(world, b)
    case_a = world.sscc_key()
    units_a = world.commission(a, 3, containers=[case_a])
    units_b = world.commission(b, 2)
    pallet = world.sscc_key()
    world.cmo.client.transact(CL, "pack", pallet, [case_a, *units_b], ZERO32)
    p = container(world, pallet)
    assert p.contents == {ia: 3, ib: 2}
    assert p.height == 2

    world.cmo.client.transact(CL, "unpack", pallet, [case_a], ZERO32)
    assert container(world, pallet).contents == {ib: 2}
    assert container(world, case_a).contents == {ia: 3}
    world.cmo.client.transact(CL, "unpack", pallet, units_b[:1], ZERO32)
    assert container(world, pallet).contents == {ib: 1}
    world.cmo.client.transact(CL, "unpack", pallet, units_b[1:], ZERO32)
    assert container(world, pallet).contents == {}
    # refill with the first batch again
    world.cmo.client.transact(CL, "pack", pallet, [case_a], ZERO32)
    assert container(world, pallet).contents == {ia: 3}
    assert all(unit(world, k).parent_key == case_a for k in units_a)


def _refilled_pallet(world: World) -> tuple[bytes, bytes, int, bytes]:
    """A pallet that carried a unit of batch A and a case of batch B, lost the A unit and got a
    loose B unit: returns (pallet, case of B, index of B, the loose B unit)."""
    a, b = world.new_batch(), world.new_batch()
    pallet, case_b = world.sscc_key(), world.sscc_key()
    (unit_a,) = world.commission(a, 1)
    world.commission(b, 3, containers=[case_b])
    (unit_b,) = world.commission(b, 1)
    world.cmo.client.transact(CL, "pack", pallet, [unit_a, case_b], ZERO32)
    world.cmo.client.transact(CL, "unpack", pallet, [unit_a], ZERO32)
    world.cmo.client.transact(CL, "pack", pallet, [unit_b], ZERO32)
    return pallet, case_b, batch_index(world, b), unit_b


def test_container_lists_each_batch_once_after_refill(world: World) -> None:
    pallet, _, ib, _ = _refilled_pallet(world)
    assert container(world, pallet).contents == {ib: 4}


def test_unpacking_a_case_from_a_refilled_pallet(world: World) -> None:
    pallet, case_b, ib, unit_b = _refilled_pallet(world)
    try:
        world.cmo.client.transact(CL, "unpack", pallet, [case_b], ZERO32)
    except ContractRevert as exc:
        assert (exc.name, exc.args) == ("Panic", (0x11,)), "only the known underflow is expected here"
        raise
    assert container(world, pallet).contents == {ib: 1}
    assert not container(world, case_b).packed
    assert unit(world, unit_b).parent_key == pallet
