"""CustodyLedger suspect product: units and batches flagged suspect, cleared or confirmed
illegitimate, and what suspect product may no longer do."""

from __future__ import annotations

import pytest

from node.ledger.constants import DECOMMISSION_REASONS, SuspectStatus, UnitState
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import (
    CL,
    ZERO32,
    Reverts,
    batch_suspect,
    container,
    decommission,
    fingerprint,
    h,
    new_sid,
    one_event,
    unit,
)

NOT_DESTROYED = [r for r in DECOMMISSION_REASONS if r != UnitState.DESTROYED]


def _at_pharmacy(world: World, n: int, bid: bytes | None = None) -> list[bytes]:
    keys = world.commission(bid or world.new_batch(), n)
    world.ship(world.cmo, world.pharmacy, keys)
    return keys


# ------------------------------------------------------------------------------------------ units


@pytest.mark.parametrize("who", ["pharmacy", "sponsor", "regulator"])
def test_flag_suspect_by_holder_sponsor_or_regulator(world: World, who: str) -> None:
    keys = _at_pharmacy(world, 2)
    org = getattr(world, who)
    receipt = org.client.transact(CL, "flagSuspect", keys, h("odd packaging"))
    ev = one_event(world, receipt, "UnitsSuspectStatusChanged")
    assert ev["status"] == SuspectStatus.SUSPECT and ev["org"] == org.id and ev["signer"] == org.key.address
    assert bytes(ev["reasonHash"]) == h("odd packaging") and [bytes(k) for k in ev["keys"]] == keys
    for key in keys:
        u = unit(world, key)
        assert u.suspect == SuspectStatus.SUSPECT and u.holder == world.pharmacy.id
        assert u.state == UnitState.ACTIVE and u.batch_suspect == 0


@pytest.mark.parametrize("who", ["pharmacy2", "cmo", "tpl", "dist", "sponsor2"])
def test_others_may_not_flag_units(world: World, reverts: Reverts, who: str) -> None:
    keys = _at_pharmacy(world, 2)
    org = getattr(world, who)
    before = fingerprint(world, units=keys)
    err = reverts("NotAuthorizedForSuspect", org.client.transact, CL, "flagSuspect", keys, ZERO32)
    assert err.args == (org.id, keys[0])
    assert fingerprint(world, units=keys) == before


def test_flag_is_atomic_and_packed_units_are_refused(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 1, bid)
    theirs = world.commission(bid, 1)  # still at the CMO
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    world.ship(world.cmo, world.pharmacy, [case])
    before = fingerprint(world, units=[*keys, *theirs, *in_case])

    err = reverts(
        "NotAuthorizedForSuspect", world.pharmacy.client.transact, CL, "flagSuspect", [*keys, *theirs], ZERO32
    )
    assert err.args == (world.pharmacy.id, theirs[0])
    for org in (world.pharmacy, world.regulator, world.sponsor):
        err = reverts("ItemPacked", org.client.transact, CL, "flagSuspect", [*keys, in_case[0]], ZERO32)
        assert err.args == (in_case[0],)
    assert fingerprint(world, units=[*keys, *theirs, *in_case]) == before

    # once the case is emptied its units are loose and can be flagged by their holder
    world.pharmacy.client.transact(CL, "unpackAll", [case], ZERO32)
    world.pharmacy.client.transact(CL, "flagSuspect", in_case[:1], ZERO32)
    u = unit(world, in_case[0])
    assert u.suspect == SuspectStatus.SUSPECT and u.holder == world.pharmacy.id and not u.packed
    assert unit(world, in_case[1]).holder == world.pharmacy.id


def test_suspect_units_cannot_move_or_be_dispensed_but_can_be_destroyed(
    world: World, reverts: Reverts
) -> None:
    keys = _at_pharmacy(world, 3)
    world.pharmacy.client.transact(CL, "flagSuspect", keys, ZERO32)
    before = fingerprint(world, units=keys)

    err = reverts(
        "SuspectItem",
        world.pharmacy.client.transact,
        CL,
        "ship",
        new_sid(),
        world.dist.id,
        keys[:1],
        ZERO32,
        ZERO32,
    )
    assert err.args == (keys[0], SuspectStatus.SUSPECT)
    err = reverts(
        "SuspectItem", world.pharmacy.client.transact, CL, "pack", world.sscc_key(), keys[:1], ZERO32
    )
    assert err.args == (keys[0], SuspectStatus.SUSPECT)
    for reason in NOT_DESTROYED:
        err = reverts("SuspectItem", decommission, world.pharmacy, keys[:1], reason)
        assert err.args == (keys[0], SuspectStatus.SUSPECT)
    assert fingerprint(world, units=keys) == before

    decommission(world.pharmacy, keys[:1], UnitState.DESTROYED)
    u = unit(world, keys[0])
    assert u.state == UnitState.DESTROYED and u.suspect == SuspectStatus.SUSPECT


@pytest.mark.parametrize("who", ["pharmacy", "cmo", "dist", "sponsor2"])
def test_only_sponsor_or_regulator_clear_or_confirm(world: World, reverts: Reverts, who: str) -> None:
    keys = _at_pharmacy(world, 1)
    world.regulator.client.transact(CL, "flagSuspect", keys, ZERO32)
    org = getattr(world, who)
    before = fingerprint(world, units=keys)
    for fn in ("clearSuspect", "confirmIllegitimate"):
        err = reverts("NotAuthorizedForSuspect", org.client.transact, CL, fn, keys, ZERO32)
        assert err.args == (org.id, keys[0])
    assert fingerprint(world, units=keys) == before


@pytest.mark.parametrize("judge", ["sponsor", "regulator"])
def test_clearing_a_suspect_unit(world: World, judge: str) -> None:
    keys = _at_pharmacy(world, 1)
    world.pharmacy.client.transact(CL, "flagSuspect", keys, ZERO32)
    org = getattr(world, judge)
    receipt = org.client.transact(CL, "clearSuspect", keys, h("genuine"))
    ev = one_event(world, receipt, "UnitsSuspectStatusChanged")
    assert ev["status"] == SuspectStatus.NOT_SUSPECT and ev["org"] == org.id
    assert bytes(ev["reasonHash"]) == h("genuine")
    assert unit(world, keys[0]).suspect == SuspectStatus.NOT_SUSPECT
    decommission(world.pharmacy, keys, UnitState.DISPENSED)
    assert unit(world, keys[0]).state == UnitState.DISPENSED


def test_illegitimate_units_may_only_be_destroyed(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 1)
    world.pharmacy.client.transact(CL, "flagSuspect", keys, ZERO32)
    receipt = world.regulator.client.transact(CL, "confirmIllegitimate", keys, h("counterfeit"))
    ev = one_event(world, receipt, "UnitsSuspectStatusChanged")
    assert ev["status"] == SuspectStatus.ILLEGITIMATE and ev["org"] == world.regulator.id
    assert unit(world, keys[0]).suspect == SuspectStatus.ILLEGITIMATE
    before = fingerprint(world, units=keys)

    for reason in NOT_DESTROYED:
        err = reverts("SuspectItem", decommission, world.pharmacy, keys, reason)
        assert err.args == (keys[0], SuspectStatus.ILLEGITIMATE)
    err = reverts(
        "SuspectItem",
        world.pharmacy.client.transact,
        CL,
        "ship",
        new_sid(),
        world.sponsor.id,
        keys,
        ZERO32,
        ZERO32,
    )
    assert err.args == (keys[0], SuspectStatus.ILLEGITIMATE)
    reverts("SuspectItem", world.pharmacy.client.transact, CL, "pack", world.sscc_key(), keys, ZERO32)
    assert fingerprint(world, units=keys) == before

    decommission(world.pharmacy, keys, UnitState.DESTROYED)
    assert unit(world, keys[0]).state == UnitState.DESTROYED


def test_invalid_unit_suspect_transitions(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 1)
    key = keys[0]
    s = world.sponsor.client

    def refused(fn: str, frm: SuspectStatus, to: SuspectStatus) -> None:
        before = fingerprint(world, units=keys)
        err = reverts("InvalidSuspectTransition", s.transact, CL, fn, keys, ZERO32)
        assert err.args == (key, frm, to)
        assert fingerprint(world, units=keys) == before

    refused("clearSuspect", SuspectStatus.NOT_SUSPECT, SuspectStatus.NOT_SUSPECT)
    refused("confirmIllegitimate", SuspectStatus.NOT_SUSPECT, SuspectStatus.ILLEGITIMATE)
    s.transact(CL, "flagSuspect", keys, ZERO32)
    refused("flagSuspect", SuspectStatus.SUSPECT, SuspectStatus.SUSPECT)
    s.transact(CL, "confirmIllegitimate", keys, ZERO32)
    refused("clearSuspect", SuspectStatus.ILLEGITIMATE, SuspectStatus.NOT_SUSPECT)
    refused("flagSuspect", SuspectStatus.ILLEGITIMATE, SuspectStatus.SUSPECT)
    refused("confirmIllegitimate", SuspectStatus.ILLEGITIMATE, SuspectStatus.ILLEGITIMATE)


# ---------------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("who", ["sponsor", "cmo", "regulator"])
def test_flag_batch_suspect_by_sponsor_manufacturer_or_regulator(world: World, who: str) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 1, bid)
    org = getattr(world, who)
    receipt = org.client.transact(CL, "flagBatchSuspect", bid, h("complaints"), ZERO32)
    ev = one_event(world, receipt, "BatchSuspectStatusChanged")
    assert bytes(ev["batchId"]) == bid and ev["status"] == SuspectStatus.SUSPECT
    assert (
        ev["org"] == org.id and ev["signer"] == org.key.address and bytes(ev["reasonHash"]) == h("complaints")
    )
    assert batch_suspect(world, bid) == SuspectStatus.SUSPECT
    u = unit(world, keys[0])
    assert u.batch_suspect == SuspectStatus.SUSPECT and u.suspect == SuspectStatus.NOT_SUSPECT


def test_flag_batch_suspect_by_a_holder_naming_its_unit(world: World, reverts: Reverts) -> None:
    bid, other = world.new_batch(), world.new_batch()
    loose = _at_pharmacy(world, 1, bid)
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    world.ship(world.cmo, world.tpl, [case])
    tpl_other = world.commission(other, 1)
    world.ship(world.cmo, world.tpl, tpl_other)

    refusals = [
        (world.pharmacy2, loose[0]),  # someone else's unit
        (world.tpl, loose[0]),
        (world.tpl, tpl_other[0]),  # its own unit, but of another batch
        (world.pharmacy, ZERO32),
        (world.cmo2, in_case[0]),
        (world.sponsor2, ZERO32),
    ]
    for org, held in refusals:
        err = reverts(
            "NotAuthorizedForSuspect", org.client.transact, CL, "flagBatchSuspect", bid, ZERO32, held
        )
        assert err.args == (org.id, bid)
    assert batch_suspect(world, bid) == SuspectStatus.NOT_SUSPECT

    # a unit packed in a case the 3PL holds counts as held
    world.tpl.client.transact(CL, "flagBatchSuspect", bid, h("torn seals"), in_case[0])
    assert batch_suspect(world, bid) == SuspectStatus.SUSPECT
    assert batch_suspect(world, other) == SuspectStatus.NOT_SUSPECT

    unknown = h("no batch")
    err = reverts(
        "UnknownBatch", world.sponsor.client.transact, CL, "flagBatchSuspect", unknown, ZERO32, ZERO32
    )
    assert err.args == (unknown,)


def test_a_pharmacy_flags_the_batch_of_a_unit_it_holds(world: World) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 1, bid)
    receipt = world.pharmacy.client.transact(CL, "flagBatchSuspect", bid, h("reaction"), keys[0])
    assert one_event(world, receipt, "BatchSuspectStatusChanged")["org"] == world.pharmacy.id
    assert unit(world, keys[0]).batch_suspect == SuspectStatus.SUSPECT


def test_suspect_batch_blocks_movement_and_dispensing(world: World, reverts: Reverts) -> None:
    bid, fine = world.new_batch(), world.new_batch()
    case, pallet = world.sscc_key(), world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    loose = world.commission(bid, 2)
    fine_units = world.commission(fine, 1)
    world.cmo.client.transact(CL, "pack", pallet, [case, *fine_units], ZERO32)
    world.ship(world.cmo, world.pharmacy, [pallet, *loose])
    world.sponsor.client.transact(CL, "flagBatchSuspect", bid, ZERO32, ZERO32)
    items = {"units": [*in_case, *loose, *fine_units], "containers": [case, pallet]}
    before = fingerprint(world, **items)

    def ship_refused(keys: list[bytes], culprit: bytes) -> None:
        err = reverts(
            "SuspectBatch",
            world.pharmacy.client.transact,
            CL,
            "ship",
            new_sid(),
            world.sponsor.id,
            keys,
            ZERO32,
            ZERO32,
        )
        assert err.args == (culprit, bid, SuspectStatus.SUSPECT)

    ship_refused(loose[:1], loose[0])
    ship_refused([pallet], pallet)  # the suspect batch is inside (a case inside) the pallet
    err = reverts(
        "SuspectBatch", world.pharmacy.client.transact, CL, "pack", world.sscc_key(), loose[:1], ZERO32
    )
    assert err.args == (loose[0], bid, SuspectStatus.SUSPECT)
    for reason in NOT_DESTROYED:
        err = reverts("SuspectBatch", decommission, world.pharmacy, loose[:1], reason)
        assert err.args == (loose[0], bid, SuspectStatus.SUSPECT)
    assert fingerprint(world, **items) == before

    # unpacked, the units inside are just as blocked; the other batch on the pallet is not
    world.pharmacy.client.transact(CL, "unpackAll", [pallet, case], ZERO32)
    err = reverts("SuspectBatch", decommission, world.pharmacy, in_case[:1], UnitState.DISPENSED)
    assert err.args == (in_case[0], bid, SuspectStatus.SUSPECT)
    ship_refused(in_case[:1], in_case[0])
    decommission(world.pharmacy, fine_units, UnitState.DISPENSED)
    # destroying is allowed
    decommission(world.pharmacy, [in_case[0], loose[0]], UnitState.DESTROYED)
    assert unit(world, in_case[0]).state == UnitState.DESTROYED
    assert container(world, case).holder == world.pharmacy.id


@pytest.mark.parametrize("who", ["cmo", "pharmacy", "tpl", "sponsor2"])
def test_only_sponsor_or_regulator_judge_a_batch(world: World, reverts: Reverts, who: str) -> None:
    bid = world.new_batch()
    _at_pharmacy(world, 1, bid)
    world.cmo.client.transact(CL, "flagBatchSuspect", bid, ZERO32, ZERO32)
    org = getattr(world, who)
    for fn in ("clearBatchSuspect", "confirmBatchIllegitimate"):
        err = reverts("NotAuthorizedForSuspect", org.client.transact, CL, fn, bid, ZERO32)
        assert err.args == (org.id, bid)
    assert batch_suspect(world, bid) == SuspectStatus.SUSPECT


@pytest.mark.parametrize("judge", ["sponsor", "regulator"])
def test_clear_batch_suspect(world: World, judge: str) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 1, bid)
    world.regulator.client.transact(CL, "flagBatchSuspect", bid, ZERO32, ZERO32)
    org = getattr(world, judge)
    receipt = org.client.transact(CL, "clearBatchSuspect", bid, h("cleared"))
    ev = one_event(world, receipt, "BatchSuspectStatusChanged")
    assert bytes(ev["batchId"]) == bid and ev["status"] == SuspectStatus.NOT_SUSPECT and ev["org"] == org.id
    assert batch_suspect(world, bid) == SuspectStatus.NOT_SUSPECT
    decommission(world.pharmacy, keys, UnitState.DISPENSED)
    assert unit(world, keys[0]).state == UnitState.DISPENSED


@pytest.mark.parametrize("judge", ["sponsor", "regulator"])
def test_confirm_batch_illegitimate(world: World, reverts: Reverts, judge: str) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 2, bid)
    world.pharmacy.client.transact(CL, "flagBatchSuspect", bid, ZERO32, keys[0])
    org = getattr(world, judge)
    receipt = org.client.transact(CL, "confirmBatchIllegitimate", bid, h("counterfeit lot"))
    ev = one_event(world, receipt, "BatchSuspectStatusChanged")
    assert ev["status"] == SuspectStatus.ILLEGITIMATE and ev["org"] == org.id
    assert batch_suspect(world, bid) == SuspectStatus.ILLEGITIMATE
    assert unit(world, keys[0]).batch_suspect == SuspectStatus.ILLEGITIMATE

    before = fingerprint(world, units=keys)
    err = reverts("SuspectBatch", decommission, world.pharmacy, keys, UnitState.DISPENSED)
    assert err.args == (keys[0], bid, SuspectStatus.ILLEGITIMATE)
    err = reverts(
        "SuspectBatch",
        world.pharmacy.client.transact,
        CL,
        "ship",
        new_sid(),
        world.sponsor.id,
        keys,
        ZERO32,
        ZERO32,
    )
    assert err.args == (keys[0], bid, SuspectStatus.ILLEGITIMATE)
    assert fingerprint(world, units=keys) == before
    decommission(world.pharmacy, keys, UnitState.DESTROYED)
    assert unit(world, keys[1]).state == UnitState.DESTROYED


def test_invalid_batch_suspect_transitions(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    s = world.sponsor.client

    def refused(fn: str, frm: SuspectStatus, to: SuspectStatus) -> None:
        args = (bid, ZERO32, ZERO32) if fn == "flagBatchSuspect" else (bid, ZERO32)
        err = reverts("InvalidSuspectTransition", s.transact, CL, fn, *args)
        assert err.args == (bid, frm, to)
        assert batch_suspect(world, bid) == frm

    refused("clearBatchSuspect", SuspectStatus.NOT_SUSPECT, SuspectStatus.NOT_SUSPECT)
    refused("confirmBatchIllegitimate", SuspectStatus.NOT_SUSPECT, SuspectStatus.ILLEGITIMATE)
    s.transact(CL, "flagBatchSuspect", bid, ZERO32, ZERO32)
    refused("flagBatchSuspect", SuspectStatus.SUSPECT, SuspectStatus.SUSPECT)
    s.transact(CL, "confirmBatchIllegitimate", bid, ZERO32)
    refused("clearBatchSuspect", SuspectStatus.ILLEGITIMATE, SuspectStatus.NOT_SUSPECT)
    refused("flagBatchSuspect", SuspectStatus.ILLEGITIMATE, SuspectStatus.SUSPECT)
    refused("confirmBatchIllegitimate", SuspectStatus.ILLEGITIMATE, SuspectStatus.ILLEGITIMATE)
