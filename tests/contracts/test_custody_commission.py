"""CustodyLedger.commission: who may commission, into which batches, key rules, and commissioning
straight into cases at the packing line."""

from __future__ import annotations

import pytest

from node.chain import ContractRevert
from node.ledger.constants import BatchStatus, ContainerState, UnitState
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import (
    BR,
    CL,
    ZERO32,
    Reverts,
    UnitView,
    batch_index,
    container,
    events,
    fingerprint,
    h,
    key_from_int,
    one_event,
    unit,
)


@pytest.mark.parametrize("released", [False, True], ids=["quarantine", "released"])
def test_manufacturer_commissions_loose_units(world: World, released: bool) -> None:
    bid = world.new_batch(release=released)
    keys = world.unit_keys(3)
    receipt = world.cmo.client.transact(CL, "commission", bid, [], keys, h("commission"))

    index = batch_index(world, bid)
    for key in keys:
        assert unit(world, key) == UnitView(
            exists=True,
            state=UnitState.ACTIVE,
            suspect=0,
            batch_suspect=0,
            batch_index=index,
            holder=world.cmo.id,
            packed=False,
            parent_key=ZERO32,
            shipment_id=ZERO32,
            decommissioned_at=0,
        )
    ev = one_event(world, receipt, "UnitsCommissioned")
    assert bytes(ev["batchId"]) == bid
    assert ev["org"] == world.cmo.id
    assert ev["signer"] == world.cmo.key.address
    assert bytes(ev["eventHash"]) == h("commission")
    assert list(ev["containerKeys"]) == []
    assert [bytes(k) for k in ev["keys"]] == keys
    assert events(world, receipt, "ContainerCreated") == []


def test_sponsor_commissions_its_own_batch_but_not_the_cmo(world: World, reverts: Reverts) -> None:
    bid = world.new_batch(maker=world.sponsor)
    keys = world.commission(bid, 2, maker=world.sponsor)
    assert all(unit(world, k).holder == world.sponsor.id for k in keys)

    more = world.unit_keys(1)
    err = reverts("NotManufacturer", world.cmo.client.transact, CL, "commission", bid, [], more, ZERO32)
    assert err.args == (world.cmo.id, bid)
    assert not unit(world, more[0]).exists


@pytest.mark.parametrize("who", ["sponsor", "cmo2", "tpl", "regulator"])
def test_only_the_batch_manufacturer_commissions(world: World, reverts: Reverts, who: str) -> None:
    bid = world.new_batch()  # made by the CMO
    org = getattr(world, who)
    keys = world.unit_keys(2)
    case = world.sscc_key()
    err = reverts("NotManufacturer", org.client.transact, CL, "commission", bid, [case], keys, ZERO32)
    assert err.args == (org.id, bid)
    assert not unit(world, keys[0]).exists and not unit(world, keys[1]).exists
    assert not container(world, case).exists


def test_unknown_batch(world: World, reverts: Reverts) -> None:
    bid = h("no such batch")
    keys = world.unit_keys(1)
    err = reverts("UnknownBatch", world.cmo.client.transact, CL, "commission", bid, [], keys, ZERO32)
    assert err.args == (bid,)
    assert not unit(world, keys[0]).exists


@pytest.mark.parametrize(
    ("released", "action", "status"),
    [
        (False, "reject", BatchStatus.REJECTED),
        (True, "recall", BatchStatus.RECALLED),
        (False, "suspend", BatchStatus.SUSPENDED),
        (True, "suspend", BatchStatus.SUSPENDED),
    ],
    ids=["rejected", "recalled", "suspended-from-quarantine", "suspended-from-released"],
)
def test_batch_not_commissionable(
    world: World, reverts: Reverts, released: bool, action: str, status: BatchStatus
) -> None:
    bid = world.new_batch(release=released)
    world.commission(bid, 1)  # fine before
    world.sponsor.client.transact(BR, action, bid, h("why"))
    assert world.batch_status(bid) == status

    keys = world.unit_keys(2)
    err = reverts(
        "BatchNotCommissionable", world.cmo.client.transact, CL, "commission", bid, [], keys, ZERO32
    )
    assert err.args == (bid, status)
    assert not any(unit(world, k).exists for k in keys)

    if action == "suspend":  # lifting the suspension makes it commissionable again
        world.sponsor.client.transact(BR, "unsuspend", bid, h("lifted"))
        world.cmo.client.transact(CL, "commission", bid, [], keys, ZERO32)
        assert all(unit(world, k).exists for k in keys)


def test_duplicate_serial_within_one_call(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    a, b = world.unit_keys(2)
    case = world.sscc_key()
    before = fingerprint(world, units=[a, b], containers=[case])
    err = reverts("DuplicateSerial", world.cmo.client.transact, CL, "commission", bid, [], [a, b, a], ZERO32)
    assert err.args == (a,)
    # also when the duplicate lands in another case of the same call
    err = reverts(
        "DuplicateSerial",
        world.cmo.client.transact,
        CL,
        "commission",
        bid,
        [case, world.sscc_key()],
        [a, b, b, a],
        ZERO32,
    )
    assert err.args == (b,)
    assert fingerprint(world, units=[a, b], containers=[case]) == before
    assert not unit(world, a).exists and not container(world, case).exists


def test_duplicate_serial_across_calls_changes_nothing(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    other = world.new_batch()
    (old,) = world.commission(bid, 1)
    fresh = world.unit_keys(3)
    cases = [world.sscc_key(), world.sscc_key()]
    before = fingerprint(world, units=[old, *fresh], containers=cases)

    err = reverts(
        "DuplicateSerial", world.cmo.client.transact, CL, "commission", bid, cases, [*fresh, old], ZERO32
    )
    assert err.args == (old,)
    # the same serial in another batch is just as much a duplicate
    err = reverts("DuplicateSerial", world.cmo.client.transact, CL, "commission", other, [], [old], ZERO32)
    assert err.args == (old,)

    assert fingerprint(world, units=[old, *fresh], containers=cases) == before
    assert not any(unit(world, k).exists for k in fresh)
    assert not any(container(world, c).exists for c in cases)
    assert unit(world, old).batch_index == batch_index(world, bid)


@pytest.mark.parametrize(
    "bad",
    ["container-key", "zero", "max-88-bit"],
)
def test_invalid_unit_key(world: World, reverts: Reverts, bad: str) -> None:
    bid = world.new_batch()
    key = {"container-key": world.sscc_key(), "zero": ZERO32, "max-88-bit": key_from_int(2**88 - 1)}[bad]
    good = world.unit_keys(1)
    err = reverts(
        "InvalidUnitKey", world.cmo.client.transact, CL, "commission", bid, [], [*good, key], ZERO32
    )
    assert err.args == (key,)
    assert not unit(world, good[0]).exists
    assert not unit(world, key).exists


def test_smallest_valid_unit_key_has_89_bits(world: World) -> None:
    bid = world.new_batch()
    key = key_from_int(2**88)
    world.cmo.client.transact(CL, "commission", bid, [], [key], ZERO32)
    assert unit(world, key).exists
    assert not container(world, key_from_int(2**88 - 1)).exists


@pytest.mark.parametrize("cases", [0, 1])
def test_empty_key_list_is_refused_with_empty_list(world: World, reverts: Reverts, cases: int) -> None:
    bid = world.new_batch()
    boxes = [world.sscc_key() for _ in range(cases)]
    reverts("EmptyList", world.cmo.client.transact, CL, "commission", bid, boxes, [], ZERO32)


@pytest.mark.parametrize("cases", [0, 1])
def test_empty_key_list_is_refused_and_changes_nothing(world: World, reverts: Reverts, cases: int) -> None:
    bid = world.new_batch()
    boxes = [world.sscc_key() for _ in range(cases)]
    before = fingerprint(world, containers=boxes)
    with pytest.raises(ContractRevert) as info:
        world.cmo.client.transact(CL, "commission", bid, boxes, [], ZERO32)
    assert info.value.name == "EmptyList"
    assert fingerprint(world, containers=boxes) == before


@pytest.mark.parametrize(("n_keys", "n_cases"), [(5, 2), (2, 3), (7, 4)])
def test_uneven_aggregation(world: World, reverts: Reverts, n_keys: int, n_cases: int) -> None:
    bid = world.new_batch()
    keys = world.unit_keys(n_keys)
    cases = [world.sscc_key() for _ in range(n_cases)]
    before = fingerprint(world, units=keys, containers=cases)
    err = reverts("UnevenAggregation", world.cmo.client.transact, CL, "commission", bid, cases, keys, ZERO32)
    assert err.args == (n_keys, n_cases)
    assert fingerprint(world, units=keys, containers=cases) == before


def test_commission_straight_into_cases(world: World) -> None:
    bid = world.new_batch(release=False)
    index = batch_index(world, bid)
    keys = world.unit_keys(6)
    cases = [world.sscc_key(), world.sscc_key()]
    receipt = world.cmo.client.transact(CL, "commission", bid, cases, keys, h("packing line"))

    for i, key in enumerate(keys):
        u = unit(world, key)
        assert u.exists and u.state == UnitState.ACTIVE and u.batch_index == index
        assert u.packed is True
        assert u.parent_key == cases[i // 3], "keys are split into consecutive equal groups"
        assert u.holder == world.cmo.id and u.shipment_id == ZERO32
    for case in cases:
        c = container(world, case)
        assert c.exists and c.state == ContainerState.ACTIVE and c.height == 1
        assert (
            c.holder == world.cmo.id and not c.packed and c.parent_key == ZERO32 and c.shipment_id == ZERO32
        )
        assert c.contents == {index: 3}

    created = events(world, receipt, "ContainerCreated")
    assert [bytes(e["containerKey"]) for e in created] == cases
    assert all(e["org"] == world.cmo.id and e["signer"] == world.cmo.key.address for e in created)
    ev = one_event(world, receipt, "UnitsCommissioned")
    assert [bytes(k) for k in ev["containerKeys"]] == cases
    assert [bytes(k) for k in ev["keys"]] == keys
    assert bytes(ev["eventHash"]) == h("packing line")
    assert ev["org"] == world.cmo.id and bytes(ev["batchId"]) == bid


def test_commission_into_an_existing_case_adds_to_it(world: World) -> None:
    a, b = world.new_batch(), world.new_batch()
    case = world.sscc_key()
    first = world.commission(a, 2, containers=[case])
    receipt = world.cmo.client.transact(CL, "commission", b, [case], (second := world.unit_keys(3)), ZERO32)
    assert events(world, receipt, "ContainerCreated") == [], "the case exists already"
    c = container(world, case)
    assert c.contents == {batch_index(world, a): 2, batch_index(world, b): 3}
    assert c.height == 1
    assert all(unit(world, k).parent_key == case for k in [*first, *second])


def test_commission_into_a_case_the_cmo_does_not_hold_or_that_moves(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    case, pallet = world.sscc_key(), world.sscc_key()
    world.commission(bid, 2, containers=[case])
    keys = world.unit_keys(1)

    world.cmo.client.transact(CL, "pack", pallet, [case], ZERO32)
    err = reverts("ItemPacked", world.cmo.client.transact, CL, "commission", bid, [case], keys, ZERO32)
    assert err.args == (case,)

    sid = world.ship(world.cmo, world.tpl, [pallet], receive=False)
    err = reverts("InTransit", world.cmo.client.transact, CL, "commission", bid, [pallet], keys, ZERO32)
    assert err.args == (pallet, sid)

    world.tpl.client.transact(CL, "receiveShipment", sid, [pallet], ZERO32)
    err = reverts("NotHolder", world.cmo.client.transact, CL, "commission", bid, [pallet], keys, ZERO32)
    assert err.args == (pallet, world.tpl.id)

    unit_as_box = world.unit_keys(1)[0]
    err = reverts(
        "NotAContainer", world.cmo.client.transact, CL, "commission", bid, [unit_as_box], keys, ZERO32
    )
    assert err.args == (unit_as_box,)
    err = reverts("NotAContainer", world.cmo.client.transact, CL, "commission", bid, [ZERO32], keys, ZERO32)
    assert err.args == (ZERO32,)
    assert not unit(world, keys[0]).exists
