"""CustodyLedger decommissioning (EU FMD pack statuses) and its undo window."""

from __future__ import annotations

import pytest

from node.ledger.constants import (
    DECOMMISSION_REASONS,
    FINAL_REASONS,
    SALE_REASONS,
    UNDO_WINDOW_SECONDS,
    BatchStatus,
    UnitState,
)
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import (
    BR,
    CL,
    ZERO32,
    Reverts,
    block_time,
    decommission,
    fingerprint,
    h,
    one_event,
    set_next_block_time,
    unit,
)

REVERSIBLE = [r for r in DECOMMISSION_REASONS if r not in FINAL_REASONS]
NOT_SALE = [r for r in DECOMMISSION_REASONS if r not in SALE_REASONS]


def _at_pharmacy(world: World, n: int = 2, *, bid: bytes | None = None) -> list[bytes]:
    bid = bid or world.new_batch()
    keys = world.commission(bid, n)
    world.ship(world.cmo, world.pharmacy, keys)
    return keys


def test_reason_codes_match_the_contract(world: World) -> None:
    ledger = world.contract(CL).functions
    for state in UnitState:
        if state != UnitState.NONE:
            assert int(getattr(ledger, state.name)().call()) == state
    assert int(ledger.UNDO_WINDOW().call()) == UNDO_WINDOW_SECONDS == 240 * 3600


@pytest.mark.parametrize("reason", DECOMMISSION_REASONS, ids=[r.name for r in DECOMMISSION_REASONS])
def test_every_reason_code(world: World, reason: UnitState) -> None:
    keys = _at_pharmacy(world, 2)
    receipt = decommission(world.pharmacy, keys, reason, h(f"decommission {reason.name}"))
    at = int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    for key in keys:
        u = unit(world, key)
        assert u.exists and u.state == reason and u.holder == world.pharmacy.id
        assert u.decommissioned_at == at and not u.packed and u.shipment_id == ZERO32
    ev = one_event(world, receipt, "UnitsDecommissioned")
    assert (
        ev["reason"] == reason
        and ev["org"] == world.pharmacy.id
        and ev["signer"] == world.pharmacy.key.address
    )
    assert (
        bytes(ev["eventHash"]) == h(f"decommission {reason.name}") and [bytes(k) for k in ev["keys"]] == keys
    )


@pytest.mark.parametrize("reason", [0, 1, 10, 255])
def test_invalid_reason(world: World, reverts: Reverts, reason: int) -> None:
    keys = _at_pharmacy(world, 1)
    before = fingerprint(world, units=keys)
    err = reverts("InvalidReason", decommission, world.pharmacy, keys, reason)
    assert err.args == (reason,)
    assert fingerprint(world, units=keys) == before


def test_only_the_holder_of_a_loose_unit_decommissions(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 2, bid=bid)
    case = world.sscc_key()
    in_case = world.commission(bid, 2, containers=[case])
    world.ship(world.cmo, world.pharmacy, [case])
    unknown = world.unit_keys(1)[0]
    before = fingerprint(world, units=[*keys, *in_case, unknown])

    for org in (world.pharmacy2, world.cmo, world.sponsor, world.regulator):
        err = reverts("NotHolder", decommission, org, keys, UnitState.DESTROYED)
        assert err.args == (keys[0], world.pharmacy.id)
    err = reverts("ItemPacked", decommission, world.pharmacy, [keys[0], in_case[0]], UnitState.DISPENSED)
    assert err.args == (in_case[0],)
    err = reverts("UnknownItem", decommission, world.pharmacy, [keys[0], unknown], UnitState.DISPENSED)
    assert err.args == (unknown,)
    err = reverts("UnknownItem", decommission, world.pharmacy, [case], UnitState.DISPENSED)
    assert err.args == (case,)
    assert fingerprint(world, units=[*keys, *in_case, unknown]) == before


def test_second_dispense_is_the_counterfeit_signal(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 2)
    decommission(world.pharmacy, keys[:1], UnitState.DISPENSED)
    before = fingerprint(world, units=keys)
    for reason in (UnitState.DISPENSED, UnitState.DESTROYED):
        # the holder, with an active unit first in the list: the whole call is refused
        err = reverts("AlreadyDispensed", decommission, world.pharmacy, [keys[1], keys[0]], reason)
        assert err.args == (keys[0],)
        # another pharmacy scanning the same serial gets the same signal, not NotHolder
        err = reverts("AlreadyDispensed", decommission, world.pharmacy2, [keys[0]], reason)
        assert err.args == (keys[0],)
    assert fingerprint(world, units=keys) == before
    assert unit(world, keys[1]).state == UnitState.ACTIVE


@pytest.mark.parametrize(
    "reason",
    [r for r in DECOMMISSION_REASONS if r != UnitState.DISPENSED],
    ids=[r.name for r in DECOMMISSION_REASONS if r != UnitState.DISPENSED],
)
def test_other_decommissions_cannot_be_repeated(world: World, reverts: Reverts, reason: UnitState) -> None:
    keys = _at_pharmacy(world, 1)
    decommission(world.pharmacy, keys, reason)
    before = fingerprint(world, units=keys)
    for org in (world.pharmacy, world.pharmacy2):
        err = reverts("AlreadyDecommissioned", decommission, org, keys, UnitState.DISPENSED)
        assert err.args == (keys[0], reason)
        err = reverts("AlreadyDecommissioned", decommission, org, keys, UnitState.DESTROYED)
        assert err.args == (keys[0], reason)
    assert fingerprint(world, units=keys) == before


@pytest.mark.parametrize("reason", sorted(SALE_REASONS), ids=[r.name for r in sorted(SALE_REASONS)])
def test_sale_like_reasons_need_a_released_batch(world: World, reverts: Reverts, reason: UnitState) -> None:
    bid = world.new_batch(release=False)
    keys = world.commission(bid, 1)
    before = fingerprint(world, units=keys)
    err = reverts("BatchNotReleased", decommission, world.cmo, keys, reason)
    assert err.args == (keys[0], bid, BatchStatus.QUARANTINE)
    assert fingerprint(world, units=keys) == before


@pytest.mark.parametrize("reason", NOT_SALE, ids=[r.name for r in NOT_SALE])
def test_other_reasons_do_not_need_a_release(world: World, reason: UnitState) -> None:
    bid = world.new_batch(release=False)
    keys = world.commission(bid, 1)
    decommission(world.cmo, keys, reason)
    assert unit(world, keys[0]).state == reason


@pytest.mark.parametrize(
    ("action", "status"), [("recall", BatchStatus.RECALLED), ("suspend", BatchStatus.SUSPENDED)]
)
def test_recalled_or_suspended_product_is_not_dispensed_but_may_be_destroyed(
    world: World, reverts: Reverts, action: str, status: BatchStatus
) -> None:
    bid = world.new_batch()
    keys = _at_pharmacy(world, 2, bid=bid)
    world.sponsor.client.transact(BR, action, bid, h("why"))
    for reason in sorted(SALE_REASONS):
        err = reverts("BatchNotReleased", decommission, world.pharmacy, keys, reason)
        assert err.args == (keys[0], bid, status)
    assert unit(world, keys[0]).state == UnitState.ACTIVE
    decommission(world.pharmacy, keys[:1], UnitState.DESTROYED)
    decommission(world.pharmacy, keys[1:], UnitState.LOCKED)
    assert (
        unit(world, keys[0]).state == UnitState.DESTROYED and unit(world, keys[1]).state == UnitState.LOCKED
    )


def test_a_tote_of_several_batches_and_cases(world: World, reverts: Reverts) -> None:
    a, b = world.new_batch(), world.new_batch()
    case_a, case_b = world.sscc_key(), world.sscc_key()
    in_a = world.commission(a, 2, containers=[case_a])
    in_b = world.commission(b, 2, containers=[case_b])
    loose = world.commission(a, 1)
    world.ship(world.cmo, world.pharmacy, [case_a, case_b, *loose])
    world.pharmacy.client.transact(CL, "unpackAll", [case_a, case_b], ZERO32)
    tote = [in_a[0], in_b[0], loose[0], in_a[1], in_b[1]]

    world.sponsor.client.transact(BR, "suspend", b, h("hold"))
    before = fingerprint(world, units=tote)
    err = reverts("BatchNotReleased", decommission, world.pharmacy, tote, UnitState.DISPENSED)
    assert err.args == (in_b[0], b, BatchStatus.SUSPENDED)
    assert fingerprint(world, units=tote) == before

    world.sponsor.client.transact(BR, "unsuspend", b, h("ok"))
    decommission(world.pharmacy, tote, UnitState.DISPENSED)
    assert all(unit(world, k).state == UnitState.DISPENSED for k in tote)
    assert all(unit(world, k).holder == world.pharmacy.id for k in tote)


# ------------------------------------------------------------------------------------------- undo


@pytest.mark.parametrize("reason", REVERSIBLE, ids=[r.name for r in REVERSIBLE])
def test_undo_within_the_window(world: World, reason: UnitState) -> None:
    keys = _at_pharmacy(world, 2)
    decommission(world.pharmacy, keys, reason)
    world.time_travel(UNDO_WINDOW_SECONDS - 3600)
    receipt = world.pharmacy.client.transact(CL, "undoDecommission", keys, h("undo"))
    ev = one_event(world, receipt, "DecommissionsUndone")
    assert ev["org"] == world.pharmacy.id and ev["signer"] == world.pharmacy.key.address
    assert bytes(ev["eventHash"]) == h("undo") and [bytes(k) for k in ev["keys"]] == keys
    for key in keys:
        u = unit(world, key)
        assert u.state == UnitState.ACTIVE and u.decommissioned_at == 0 and u.holder == world.pharmacy.id
    # active again: it can be dispensed (and then undone again)
    decommission(world.pharmacy, keys, UnitState.DISPENSED)
    assert unit(world, keys[0]).state == UnitState.DISPENSED


def test_undo_window_boundary(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 2)
    receipt = decommission(world.pharmacy, keys, UnitState.DISPENSED)
    at = int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    assert unit(world, keys[0]).decommissioned_at == at
    deadline = at + UNDO_WINDOW_SECONDS

    set_next_block_time(world, deadline)  # the last second of the window
    receipt = world.pharmacy.client.transact(CL, "undoDecommission", keys[:1], ZERO32, gas=300_000)
    assert block_time(world) == deadline
    assert unit(world, keys[0]).state == UnitState.ACTIVE

    set_next_block_time(world, deadline + 1)  # one second too late
    err = reverts(
        "UndoWindowClosed",
        world.pharmacy.client.transact,
        CL,
        "undoDecommission",
        keys[1:],
        ZERO32,
        gas=300_000,
    )
    assert err.args == (keys[1], deadline)
    assert unit(world, keys[1]).state == UnitState.DISPENSED and unit(world, keys[1]).decommissioned_at == at


def test_undo_after_the_window_by_time_travel(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 1)
    decommission(world.pharmacy, keys, UnitState.SAMPLE)
    at = unit(world, keys[0]).decommissioned_at
    world.time_travel(UNDO_WINDOW_SECONDS + 60)
    before = fingerprint(world, units=keys)
    err = reverts("UndoWindowClosed", world.pharmacy.client.transact, CL, "undoDecommission", keys, ZERO32)
    assert err.args == (keys[0], at + UNDO_WINDOW_SECONDS)
    assert fingerprint(world, units=keys) == before


def test_only_the_decommissioning_org_undoes(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 1)
    decommission(world.pharmacy, keys, UnitState.DISPENSED)
    before = fingerprint(world, units=keys)
    for org in (world.pharmacy2, world.sponsor, world.cmo, world.regulator):
        err = reverts("NotDecommissioner", org.client.transact, CL, "undoDecommission", keys, ZERO32)
        assert err.args == (keys[0], org.id)
    assert fingerprint(world, units=keys) == before


@pytest.mark.parametrize("reason", sorted(FINAL_REASONS), ids=[r.name for r in sorted(FINAL_REASONS)])
def test_final_decommissions_cannot_be_undone(world: World, reverts: Reverts, reason: UnitState) -> None:
    keys = _at_pharmacy(world, 1)
    decommission(world.pharmacy, keys, reason)
    before = fingerprint(world, units=keys)
    err = reverts("DecommissionFinal", world.pharmacy.client.transact, CL, "undoDecommission", keys, ZERO32)
    assert err.args == (keys[0], reason)
    assert fingerprint(world, units=keys) == before


def test_nothing_to_undo(world: World, reverts: Reverts) -> None:
    keys = _at_pharmacy(world, 2)
    decommission(world.pharmacy, keys[:1], UnitState.DISPENSED)
    before = fingerprint(world, units=keys)
    err = reverts(
        "NotDecommissioned", world.pharmacy.client.transact, CL, "undoDecommission", keys[::-1], ZERO32
    )
    assert err.args == (keys[1],)
    unknown = world.unit_keys(1)[0]
    err = reverts("UnknownItem", world.pharmacy.client.transact, CL, "undoDecommission", [unknown], ZERO32)
    assert err.args == (unknown,)
    assert fingerprint(world, units=keys) == before
    world.pharmacy.client.transact(CL, "undoDecommission", keys[:1], ZERO32)
    err = reverts(
        "NotDecommissioned", world.pharmacy.client.transact, CL, "undoDecommission", keys[:1], ZERO32
    )
    assert err.args == (keys[0],)


# ------------------------------------------------------ refusals behind the dispensing fast path
# decommission() checks the first unit (and any unit whose batch or parent differs from the last)
# in full, then lets units matching the cached batch/parent/holder through an assembly fast path.
# A refused unit placed *after* warm-up units must still be refused with its precise error.


def _warm_tote_world(world: World) -> dict[str, list[bytes]]:
    bid = world.new_batch()
    loose = world.commission(bid, 6)
    case, other_case = world.sscc_key(), world.sscc_key()
    dissolved = world.commission(bid, 4, containers=[case])
    packed = world.commission(bid, 2, containers=[other_case])
    world.ship(world.cmo, world.pharmacy, [*loose, case, other_case])
    world.pharmacy.client.transact(CL, "unpackAll", [case], ZERO32)
    elsewhere = world.commission(bid, 1)
    world.ship(world.cmo, world.pharmacy2, elsewhere)
    travelling = world.commission(bid, 1)
    sid = world.ship(world.cmo, world.pharmacy, travelling, receive=False)
    outbound = world.commission(bid, 1)  # the pharmacy's own unit, in transit away from it
    world.ship(world.cmo, world.pharmacy, outbound)
    out_sid = world.ship(world.pharmacy, world.pharmacy2, outbound, receive=False)
    world.pharmacy.client.transact(CL, "flagSuspect", loose[3:4], ZERO32)
    decommission(world.pharmacy, loose[4:5], UnitState.DISPENSED)
    decommission(world.pharmacy, loose[5:6], UnitState.LOCKED)
    return {
        "loose": loose[:3],
        "dissolved": dissolved,
        "packed": packed,
        "elsewhere": elsewhere,
        "travelling": travelling,
        "suspect": loose[3:4],
        "dispensed": loose[4:5],
        "locked": loose[5:6],
        "outbound": outbound,
        "sid": [sid, out_sid],
    }


@pytest.mark.parametrize("warm", ["loose", "dissolved"])
def test_refusals_after_warm_fast_path(world: World, reverts: Reverts, warm: str) -> None:
    t = _warm_tote_world(world)
    head = t[warm][:2]
    everything = [k for name, ks in t.items() if name != "sid" for k in ks]
    before = fingerprint(world, units=everything)
    cases: list[tuple[str, bytes, tuple[object, ...]]] = [
        ("NotHolder", t["elsewhere"][0], (t["elsewhere"][0], world.pharmacy2.id)),
        ("InTransit", t["travelling"][0], (t["travelling"][0], t["sid"][0])),
        ("InTransit", t["outbound"][0], (t["outbound"][0], t["sid"][1])),  # held by the caller, but away
        ("SuspectItem", t["suspect"][0], (t["suspect"][0], 1)),
        ("AlreadyDispensed", t["dispensed"][0], (t["dispensed"][0],)),
        ("AlreadyDecommissioned", t["locked"][0], (t["locked"][0], UnitState.LOCKED)),
        ("ItemPacked", t["packed"][0], (t["packed"][0],)),
        ("AlreadyDispensed", head[0], (head[0],)),  # the same serial twice in one tote
    ]
    for error, bad, args in cases:
        err = reverts(error, decommission, world.pharmacy, [*head, bad], UnitState.DISPENSED)
        assert err.args == args, error
    assert fingerprint(world, units=everything) == before

    # destroying lets the suspect unit through, but nothing else that is refused
    decommission(world.pharmacy, [*head, t["suspect"][0]], UnitState.DESTROYED)
    assert unit(world, t["suspect"][0]).state == UnitState.DESTROYED
    assert all(unit(world, k).state == UnitState.DESTROYED for k in head)


def test_a_warm_tote_of_mixed_origin_is_dispensed_whole(world: World) -> None:
    t = _warm_tote_world(world)
    tote = [*t["dissolved"][:2], *t["loose"], *t["dissolved"][2:]]
    receipt = decommission(world.pharmacy, tote, UnitState.DISPENSED)
    at = int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    for key in tote:
        u = unit(world, key)
        assert (u.state, u.holder, u.decommissioned_at, u.packed) == (
            UnitState.DISPENSED,
            world.pharmacy.id,
            at,
            False,
        )
    assert unit(world, t["packed"][0]).state == UnitState.ACTIVE


def test_a_second_batch_in_the_same_case_is_checked_on_its_own(world: World, reverts: Reverts) -> None:
    a, b = world.new_batch(), world.new_batch()
    case = world.sscc_key()
    units_a = world.commission(a, 3, containers=[case])
    units_b = world.commission(b, 2, containers=[case])
    world.ship(world.cmo, world.pharmacy, [case])
    world.pharmacy.client.transact(CL, "unpackAll", [case], ZERO32)
    world.sponsor.client.transact(BR, "recall", b, h("recall"))
    before = fingerprint(world, units=[*units_a, *units_b])
    err = reverts(
        "BatchNotReleased", decommission, world.pharmacy, [*units_a, units_b[0]], UnitState.DISPENSED
    )
    assert err.args == (units_b[0], b, BatchStatus.RECALLED)
    assert fingerprint(world, units=[*units_a, *units_b]) == before
    decommission(world.pharmacy, [*units_a, *units_b], UnitState.DESTROYED)
    assert all(unit(world, k).state == UnitState.DESTROYED for k in [*units_a, *units_b])
