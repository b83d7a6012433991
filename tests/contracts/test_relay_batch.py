"""Batches of actions in one transaction (RelayedActions.batch and relayBatch): the actions run in
order as their own signers, a refused one is reported with its custom error and undone on its own
(its relay nonce included) while the others go ahead, and running out of gas inside an action undoes
the whole batch instead of passing for a refusal."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from node.errors import ContractRevert
from node.ledger.client import LedgerClient
from node.ledger.constants import UnitState
from node.ledger.relay import SignedAction
from tests.contracts.conftest import World
from tests.contracts.custody_helpers import CL, Reverts, block_time, events, h, unit


@pytest.fixture
def relayer(world: World, accounts: list[LocalAccount]) -> LedgerClient:
    return world.client_for(accounts[17])


def _dispense(world: World, key: bytes, label: str) -> bytes:
    data = world.contract(CL).encode_abi("decommission", [[key], UnitState.DISPENSED, h(label)])
    return bytes.fromhex(data[2:])


def _as_tuple(s: SignedAction) -> tuple[bytes, str, int, bytes]:
    return (s.action, s.signer, s.deadline, s.signature)


def _nonce(world: World, who: str) -> int:
    return int(world.contract(CL).functions.nonces(who).call())


def test_a_batch_runs_each_action_as_the_sender_and_reports_a_refusal_without_sinking_the_rest(
    world: World,
) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 3)
    world.ship(world.cmo, world.pharmacy, keys)
    world.pharmacy.client.transact(CL, "decommission", [keys[1]], UnitState.DISPENSED, h("before"))
    calls = [_dispense(world, k, f"d{i}") for i, k in enumerate(keys)]

    # the simulation tells which actions would be refused, and why
    refusals = world.contract(CL).functions.batchActions(calls).call({"from": world.pharmacy.key.address})
    assert [bool(r) for r in refusals] == [False, True, False]
    assert ContractRevert.from_data(bytes(refusals[1])).name == "AlreadyDispensed"

    receipt = world.pharmacy.client.transact(CL, "batchActions", calls)
    assert receipt["status"] == 1
    (refused,) = events(world, receipt, "ActionRefused")
    assert refused["index"] == 1 and refused["signer"] == world.pharmacy.key.address
    err = ContractRevert.from_data(bytes(refused["reason"]))
    assert err.name == "AlreadyDispensed" and bytes(err.args[0]) == keys[1]
    done = events(world, receipt, "UnitsDecommissioned")
    assert [bytes(e["eventHash"]) for e in done] == [h("d0"), h("d2")]
    assert all(e["org"] == world.pharmacy.id and e["signer"] == world.pharmacy.key.address for e in done)
    assert all(unit(world, k).state == UnitState.DISPENSED for k in keys)


def test_a_batch_acts_only_for_its_sender(world: World, reverts: Reverts) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    world.ship(world.cmo, world.pharmacy, keys)
    # another organisation batching the pharmacy's pack: refused as that organisation's own action
    receipt = world.tpl.client.transact(CL, "batchActions", [_dispense(world, keys[0], "x")])
    (refused,) = events(world, receipt, "ActionRefused")
    assert ContractRevert.from_data(bytes(refused["reason"])).name == "NotHolder"
    assert unit(world, keys[0]).state != UnitState.DISPENSED


def test_a_batch_refuses_what_relay_refuses(world: World, reverts: Reverts) -> None:
    ledger = world.contract(CL)
    for fn, args in (
        ("relayInBatch", [world.admin.address, b"\x00" * 4, world.admin.address, 0, b""]),
        ("batchActions", [[]]),
    ):
        selector = bytes.fromhex(ledger.encode_abi(fn, args)[2:10])
        err = reverts(
            "ActionNotRelayable",
            world.pharmacy.client.transact,
            CL,
            "batchActions",
            [selector + b"\x00" * 64],
        )
        assert err.args == (selector,)
    err = reverts(
        "OnlySelf",
        world.pharmacy.client.transact,
        CL,
        "relayInBatch",
        world.pharmacy.key.address,
        b"\x00" * 4,
        world.pharmacy.key.address,
        0,
        b"",
    )


def test_a_relayed_batch_carries_several_organisations_and_undoes_a_refused_action_with_its_nonce(
    world: World, relayer: LedgerClient
) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 4)
    world.ship(world.cmo, world.pharmacy, keys[:2])
    world.ship(world.cmo, world.pharmacy2, keys[2:])
    ahead = block_time(world) + 3600
    p1, p2 = world.pharmacy, world.pharmacy2
    n1, n2 = _nonce(world, p1.key.address), _nonce(world, p2.key.address)
    good1 = p1.client.sign(
        CL, "decommission", [keys[0]], UnitState.DISPENSED, h("a"), deadline=ahead, nonce=n1
    )
    # signed by the second pharmacy for a pack the first one holds: the contract refuses it
    wrong = p2.client.sign(
        CL, "decommission", [keys[1]], UnitState.DISPENSED, h("b"), deadline=ahead, nonce=n2
    )
    # the refused action's nonce is given back, so the next one signed with the same nonce goes ahead
    good2 = p2.client.sign(
        CL, "decommission", [keys[2]], UnitState.DISPENSED, h("c"), deadline=ahead, nonce=n2
    )
    expired = p2.client.sign(
        CL,
        "decommission",
        [keys[3]],
        UnitState.DISPENSED,
        h("d"),
        deadline=block_time(world) - 1,
        nonce=n2 + 1,
    )
    forged: Any = SignedAction(good1.action, p2.key.address, ahead, good1.signature, n2 + 1)
    batch = [_as_tuple(s) for s in (good1, wrong, good2, expired, forged)]

    receipt = relayer.transact(CL, "relayBatch", batch)
    refused = {
        e["index"]: ContractRevert.from_data(bytes(e["reason"])).name
        for e in events(world, receipt, "ActionRefused")
    }
    assert refused == {1: "NotHolder", 3: "SignatureExpired", 4: "InvalidSignature"}
    relayed = events(world, receipt, "ActionRelayed")
    assert [(e["signer"], e["relayer"], e["nonce"]) for e in relayed] == [
        (p1.key.address, relayer.address, n1),
        (p2.key.address, relayer.address, n2),
    ]
    assert _nonce(world, p1.key.address) == n1 + 1 and _nonce(world, p2.key.address) == n2 + 1
    assert (
        unit(world, keys[0]).state == UnitState.DISPENSED
        and unit(world, keys[2]).state == UnitState.DISPENSED
    )
    assert (
        unit(world, keys[1]).state != UnitState.DISPENSED
        and unit(world, keys[3]).state != UnitState.DISPENSED
    )


def test_an_action_out_of_gas_undoes_the_whole_batch(world: World) -> None:
    """An action that runs out of gas reverts without data: that is not the contract's verdict, so
    it must not be reported as a refusal while the batch goes on with the gas left."""
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    world.ship(world.cmo, world.pharmacy, keys)
    calls = [_dispense(world, k, f"g{i}") for i, k in enumerate(keys)]
    fn = world.contract(CL).functions.batchActions(calls)
    sender = world.pharmacy.key.address
    needed = int(fn.estimate_gas({"from": sender}))
    outcomes: set[str] = set()
    for gas in range(needed - 1, 30_000, -1_500):
        try:
            refusals = fn.call({"from": sender, "gas": gas})
        except Exception as exc:  # the node's error, decoded below
            data = getattr(exc, "data", None)
            raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""
            outcomes.add(ContractRevert.from_data(raw).name if raw else "no data")
            continue
        assert all(len(r) == 0 for r in refusals), "an action out of gas passed for a refusal"
        outcomes.add("ok")
    assert "ActionOutOfGas" in outcomes
    assert unit(world, keys[0]).state != UnitState.DISPENSED
