"""EIP-712 relayed actions (RelayedActions.sol, node/ledger/relay.py): type hashes agree with
Python for every relayable function, relayed actions act as the signing key's organisation, and
every way of abusing a signature fails with the exact error."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_abi_to_4byte_selector

from node.ledger.client import SUITE_NAMES, LedgerClient
from node.ledger.consortium import derived_key
from node.ledger.constants import BatchStatus, CertificateKind, SuspectStatus, UnitState
from node.ledger.identifiers import batch_id
from node.ledger.relay import DOMAIN_NAMES, SignedAction, action_type_hash, sign_action
from tests.contracts.conftest import EXPIRY, GTIN, OTHER_GTIN, SITE_GLN, World, b32
from tests.contracts.custody_helpers import (
    BR,
    CL,
    CR,
    ZERO32,
    Reverts,
    block_time,
    container,
    events,
    fingerprint,
    h,
    new_sid,
    one_event,
    set_next_block_time,
    shipment,
    unit,
)

# What the contracts document as relayable (every state-changing function an organisation key
# performs); admin-only functions and relay itself are not.
EXPECTED_RELAYABLE = {
    "ConsortiumRegistry": {"addKey", "revokeKey", "rotateKey"},
    "BatchRegistry": {
        "registerProduct",
        "authorizeManufacturer",
        "revokeManufacturer",
        "createBatch",
        "anchorCertificate",
        "release",
        "releaseWithCertification",
        "reject",
        "recall",
        "suspend",
        "unsuspend",
    },
    "CustodyLedger": {
        "commission",
        "pack",
        "unpack",
        "unpackAll",
        "ship",
        "receiveShipment",
        "rejectShipment",
        "reportMissing",
        "reclaimShipment",
        "decommission",
        "undoDecommission",
        "anchorEvents",
        "flagSuspect",
        "clearSuspect",
        "confirmIllegitimate",
        "flagBatchSuspect",
        "clearBatchSuspect",
        "confirmBatchIllegitimate",
    },
}


@pytest.fixture
def relayer(world: World, accounts: list[LocalAccount]) -> LedgerClient:
    """A funded account that is no organisation's key (an API host's sending account)."""
    return world.client_for(accounts[17])


def _deadline(world: World, ahead: int = 3600) -> int:
    return block_time(world) + ahead


def _nonce(world: World, contract: str, who: str) -> int:
    return int(world.contract(contract).functions.nonces(who).call())


def _functions(world: World, contract: str) -> list[Any]:
    return [e for e in world.contract(contract).abi if e.get("type") == "function"]


def _selector(world: World, contract: str, fn: str) -> bytes:
    (entry,) = [e for e in _functions(world, contract) if e["name"] == fn]
    return bytes(function_abi_to_4byte_selector(entry))


# ------------------------------------------------------------------------------------- type hashes


@pytest.mark.parametrize("contract", SUITE_NAMES)
def test_type_hash_of_every_relayable_function_matches_python(
    world: World, reverts: Reverts, contract: str
) -> None:
    c = world.contract(contract)
    relayable: set[str] = set()
    for entry in _functions(world, contract):
        selector = bytes(function_abi_to_4byte_selector(entry))
        try:
            on_chain = bytes(c.functions.actionTypeHash(selector).call())
        except Exception:
            err = reverts("ActionNotRelayable", world.admin.view, contract, "actionTypeHash", selector)
            assert err.args == (selector,)
            continue
        relayable.add(entry["name"])
        assert on_chain == action_type_hash(c, entry["name"]), f"{contract}.{entry['name']}"
        assert entry["stateMutability"] == "nonpayable", f"{entry['name']} is relayable but not an action"
    assert relayable == EXPECTED_RELAYABLE[contract]


@pytest.mark.parametrize("contract", SUITE_NAMES)
def test_relay_itself_and_views_are_not_relayable(world: World, reverts: Reverts, contract: str) -> None:
    batches = ("batchActions", "relayBatch", "relayInBatch")
    for fn in ("relay", *batches, "actionTypeHash", "nonces", "eip712Domain"):
        selector = _selector(world, contract, fn)
        err = reverts("ActionNotRelayable", world.admin.view, contract, "actionTypeHash", selector)
        assert err.args == (selector,)
    unknown = b"\xde\xad\xbe\xef"
    err = reverts("ActionNotRelayable", world.admin.view, contract, "actionTypeHash", unknown)
    assert err.args == (unknown,)


def test_relaying_a_non_relayable_action_is_refused(
    world: World, reverts: Reverts, relayer: LedgerClient
) -> None:
    # even the consortium admin's signature cannot get an admin-only function run through relay
    n0 = _nonce(world, CR, world.admin.address)
    signed = world.admin.sign(CR, "suspendOrganization", world.tpl.id, ZERO32, deadline=_deadline(world))
    selector = _selector(world, CR, "suspendOrganization")
    err = reverts("ActionNotRelayable", relayer.relay, CR, signed)
    assert err.args == (selector,)
    assert world.contract(CR).functions.isActive(world.tpl.id).call() is True
    assert _nonce(world, CR, world.admin.address) == n0


# ---------------------------------------------------------------------------------- relayed actions


def test_relayed_ship_acts_for_the_signing_key(world: World, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    sid = new_sid()
    signed = world.cmo.client.sign(
        CL, "ship", sid, world.tpl.id, keys, h("ref"), h("ship"), deadline=_deadline(world)
    )
    n0 = _nonce(world, CL, world.cmo.key.address)
    assert signed.nonce == n0

    receipt = relayer.relay(CL, signed)
    assert receipt["from"] == relayer.address
    ev = one_event(world, receipt, "ShipmentDispatched")
    assert ev["from"] == world.cmo.id and ev["to"] == world.tpl.id
    assert ev["signer"] == world.cmo.key.address
    assert bytes(ev["eventHash"]) == h("ship") and bytes(ev["referenceHash"]) == h("ref")
    relayed = one_event(world, receipt, "ActionRelayed")
    assert relayed["signer"] == world.cmo.key.address and relayed["relayer"] == relayer.address
    assert bytes(relayed["selector"]) == _selector(world, CL, "ship") and relayed["nonce"] == n0
    assert _nonce(world, CL, world.cmo.key.address) == n0 + 1
    assert shipment(world, sid).sender == world.cmo.id
    assert unit(world, keys[0]).shipment_id == sid and unit(world, keys[0]).holder == world.cmo.id

    # the addressee settles it as usual, and the custody is the 3PL's, not the relayer's
    world.tpl.client.transact(CL, "receiveShipment", sid, keys, ZERO32)
    assert unit(world, keys[0]).holder == world.tpl.id


def test_relayed_decommission(world: World, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    world.ship(world.cmo, world.pharmacy, keys)
    signed = world.pharmacy.client.sign(
        CL, "decommission", keys, UnitState.DISPENSED, h("dispense"), deadline=_deadline(world)
    )
    receipt = relayer.relay(CL, signed)
    ev = one_event(world, receipt, "UnitsDecommissioned")
    assert ev["org"] == world.pharmacy.id and ev["signer"] == world.pharmacy.key.address
    assert ev["reason"] == UnitState.DISPENSED and bytes(ev["eventHash"]) == h("dispense")
    assert [bytes(k) for k in ev["keys"]] == keys
    for key in keys:
        u = unit(world, key)
        assert u.state == UnitState.DISPENSED and u.holder == world.pharmacy.id
    # the undo belongs to the pharmacy (whose key signed), as with a direct call
    world.pharmacy.client.transact(CL, "undoDecommission", keys, ZERO32)
    assert unit(world, keys[0]).state == UnitState.ACTIVE


def test_relayed_create_batch_and_release(world: World, relayer: LedgerClient) -> None:
    lot = "RELAYED-1"
    bid = batch_id(GTIN, lot)
    signed = world.cmo.client.sign(
        BR, "createBatch", int(GTIN), lot, EXPIRY, SITE_GLN, deadline=_deadline(world)
    )
    receipt = relayer.relay(BR, signed)
    ev = one_event(world, receipt, "BatchCreated", BR)
    assert bytes(ev["batchId"]) == bid and ev["manufacturer"] == world.cmo.id
    assert ev["signer"] == world.cmo.key.address and ev["lot"] == lot and ev["sponsor"] == world.sponsor.id
    core = world.contract(BR).functions.batchCore(bid).call()
    assert core[3] == world.cmo.id and core[4] == world.sponsor.id
    assert world.batch_status(bid) == BatchStatus.QUARANTINE

    world.cmo.client.transact(
        BR, "anchorCertificate", bid, CertificateKind.ANALYSIS, b"\x0a" * 32, b32("approved")
    )
    world.sponsor.client.transact(
        BR, "anchorCertificate", bid, CertificateKind.QP_CERTIFICATION, b"\x0b" * 32, b32("certified")
    )
    signed = world.sponsor.client.sign(BR, "release", bid, h("release record"), deadline=_deadline(world))
    receipt = relayer.relay(BR, signed)
    (changed,) = events(world, receipt, "BatchStatusChanged", BR)
    assert bytes(changed["batchId"]) == bid
    assert (changed["from"], changed["to"]) == (BatchStatus.QUARANTINE, BatchStatus.RELEASED)
    assert changed["org"] == world.sponsor.id and changed["signer"] == world.sponsor.key.address
    assert bytes(changed["reasonHash"]) == h("release record")
    assert world.batch_status(bid) == BatchStatus.RELEASED
    assert one_event(world, receipt, "ActionRelayed", BR)["relayer"] == relayer.address


# ---------------------------------------------------------------------------------------- abuse


def _signed_ship(
    world: World, signer: LedgerClient, keys: list[bytes], **kw: Any
) -> tuple[bytes, SignedAction]:
    sid = new_sid()
    kw.setdefault("deadline", _deadline(world))
    return sid, signer.sign(CL, "ship", sid, world.tpl.id, keys, ZERO32, ZERO32, **kw)


def test_replayed_signature_is_refused(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    sid, signed = _signed_ship(world, world.cmo.client, keys)
    relayer.relay(CL, signed)
    world.tpl.client.transact(CL, "rejectShipment", sid, keys, ZERO32, ZERO32)  # back at the CMO, shippable
    before = fingerprint(world, units=keys, shipments=[sid])

    for who in (relayer, world.admin, world.tpl.client):
        err = reverts("InvalidSignature", who.relay, CL, signed)
        assert err.kwargs["signer"] == world.cmo.key.address
        assert err.kwargs["recovered"] != world.cmo.key.address, "the nonce moved on, so the digest differs"
    assert _nonce(world, CL, world.cmo.key.address) == signed.nonce + 1
    assert fingerprint(world, units=keys, shipments=[sid]) == before


def test_expired_signature(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    now = block_time(world)
    sid, signed = _signed_ship(world, world.cmo.client, keys[:1], deadline=now - 1)
    err = reverts("SignatureExpired", relayer.relay, CL, signed)
    assert err.args == (now - 1,)
    assert shipment(world, sid).seq == 0 and _nonce(world, CL, world.cmo.key.address) == signed.nonce

    # valid up to and including the deadline second, void one second later
    deadline = now + 100
    sid_ok, on_time = _signed_ship(world, world.cmo.client, keys[:1], deadline=deadline)
    set_next_block_time(world, deadline)
    relayer.relay(CL, on_time, gas=400_000)
    assert block_time(world) == deadline and shipment(world, sid_ok).seq != 0

    sid_late, late = _signed_ship(world, world.cmo.client, keys[1:], deadline=deadline)
    set_next_block_time(world, deadline + 1)
    err = reverts("SignatureExpired", relayer.relay, CL, late, gas=400_000)
    assert err.args == (deadline,)
    assert shipment(world, sid_late).seq == 0 and unit(world, keys[1]).shipment_id == ZERO32


def test_signature_by_a_revoked_key(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    key = world.new_key(world.cmo, "to-revoke")
    sid, signed = _signed_ship(world, key, keys)
    receipt = world.admin.transact(CR, "revokeKey", key.address)
    revoked_at = int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    before = fingerprint(world, units=keys)

    err = reverts("KeyIsRevoked", relayer.relay, CL, signed)
    assert err.args == (key.address, revoked_at)
    assert _nonce(world, CL, key.address) == 0
    assert shipment(world, sid).seq == 0 and fingerprint(world, units=keys)[2:] == before[2:]


def test_signature_by_a_suspended_org(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    sid, signed = _signed_ship(world, world.cmo.client, keys)
    world.admin.transact(CR, "suspendOrganization", world.cmo.id, h("audit"))
    err = reverts("OrganizationNotActive", relayer.relay, CL, signed)
    assert err.args[0] == world.cmo.id
    assert shipment(world, sid).seq == 0


def test_valid_key_of_another_org_cannot_ship_what_it_does_not_hold(
    world: World, reverts: Reverts, relayer: LedgerClient
) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 1)
    extra = world.new_key(world.dist, "dist-second-key")
    for signer in (world.dist.client, extra):
        sid, signed = _signed_ship(world, signer, keys)
        err = reverts("NotHolder", relayer.relay, CL, signed)
        assert err.args == (keys[0], world.cmo.id)
        assert shipment(world, sid).seq == 0
    assert unit(world, keys[0]).shipment_id == ZERO32 and unit(world, keys[0]).holder == world.cmo.id


def test_tampered_actions_are_refused(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    cmo = world.cmo.client
    sid, signed = _signed_ship(world, cmo, keys[:1])
    ledger = world.contract(CL)

    def refused(forged: SignedAction, signer: str) -> None:
        err = reverts("InvalidSignature", relayer.relay, CL, forged)
        assert err.kwargs["signer"] == signer
        assert err.kwargs["recovered"] != signer

    def action(*args: Any) -> bytes:
        return bytes.fromhex(ledger.encode_abi("ship", args=list(args))[2:])

    # other destination, other items, other shipment id than signed
    refused(
        SignedAction(
            action(sid, world.dist.id, keys[:1], ZERO32, ZERO32),
            signed.signer,
            signed.deadline,
            signed.signature,
            0,
        ),
        cmo.address,
    )
    refused(
        SignedAction(
            action(sid, world.tpl.id, keys, ZERO32, ZERO32),
            signed.signer,
            signed.deadline,
            signed.signature,
            0,
        ),
        cmo.address,
    )
    refused(
        SignedAction(
            action(new_sid(), world.tpl.id, keys[:1], ZERO32, ZERO32),
            signed.signer,
            signed.deadline,
            signed.signature,
            0,
        ),
        cmo.address,
    )
    # a later deadline than signed
    refused(SignedAction(signed.action, signed.signer, signed.deadline + 1, signed.signature, 0), cmo.address)
    # claiming another organisation's key as the signer
    err = reverts(
        "InvalidSignature",
        relayer.relay,
        CL,
        SignedAction(signed.action, world.sponsor.key.address, signed.deadline, signed.signature, 0),
    )
    assert err.args == (world.sponsor.key.address, cmo.address)
    # signed for a future nonce, for another contract's domain, or for another chain
    refused(
        cmo.sign(
            CL,
            "ship",
            sid,
            world.tpl.id,
            keys[:1],
            ZERO32,
            ZERO32,
            deadline=signed.deadline,
            nonce=signed.nonce + 1,
        ),
        cmo.address,
    )
    for domain, chain in ((DOMAIN_NAMES[BR], cmo.chain_id), (DOMAIN_NAMES[CL], cmo.chain_id + 1)):
        forged = sign_action(
            ledger,
            domain,
            chain,
            world.cmo.key,
            "ship",
            [sid, world.tpl.id, keys[:1], ZERO32, ZERO32],
            nonce=signed.nonce,
            deadline=signed.deadline,
        )
        refused(forged, cmo.address)
    # a truncated signature
    err = reverts(
        "InvalidSignature",
        relayer.relay,
        CL,
        SignedAction(signed.action, signed.signer, signed.deadline, signed.signature[:64], 0),
    )
    assert err.args[0] == cmo.address

    assert shipment(world, sid).seq == 0 and _nonce(world, CL, cmo.address) == signed.nonce
    relayer.relay(CL, signed)  # the untampered original still works
    assert shipment(world, sid).to == world.tpl.id


def test_the_relayer_gains_no_rights(world: World, reverts: Reverts, relayer: LedgerClient) -> None:
    bid = world.new_batch()
    keys = world.commission(bid, 2)
    dist_nonce = _nonce(world, CL, world.dist.key.address)
    sid, signed = _signed_ship(world, world.cmo.client, keys[:1])
    relayer.relay(CL, signed)

    # acting directly, the relayer is nobody
    err = reverts(
        "UnknownKey", relayer.transact, CL, "ship", new_sid(), world.dist.id, keys[1:], ZERO32, ZERO32
    )
    assert err.args == (relayer.address,)
    err = reverts("UnknownKey", relayer.transact, CL, "receiveShipment", sid, keys[:1], ZERO32)
    assert err.args == (relayer.address,)
    # appending the CMO's address to the calldata (the self-call convention) does not make it the CMO
    data = world.contract(CL).encode_abi("ship", args=[new_sid(), world.dist.id, keys[1:], ZERO32, ZERO32])
    forged = bytes.fromhex(data[2:]) + bytes.fromhex(world.cmo.key.address[2:])
    err = reverts("UnknownKey", relayer.sender.send, {"to": world.contract(CL).address, "data": forged})
    assert err.args == (relayer.address,)
    assert _nonce(world, CL, relayer.address) == 0

    # an organisation relaying for another gains nothing either
    sid2, signed2 = _signed_ship(world, world.cmo.client, keys[1:])
    world.dist.client.relay(CL, signed2)
    assert shipment(world, sid2).sender == world.cmo.id and shipment(world, sid2).to == world.tpl.id
    err = reverts("NotAddressee", world.dist.client.transact, CL, "receiveShipment", sid2, keys[1:], ZERO32)
    assert err.args == (sid2, world.dist.id)
    assert unit(world, keys[1]).holder == world.cmo.id
    assert _nonce(world, CL, world.dist.key.address) == dist_nonce
    assert _nonce(world, CL, world.cmo.key.address) == signed.nonce + 2


# ------------------------------------------------------------- every relayable action, relayed
# The type hash alone does not prove the generic struct hash right: each action also declares its
# parameter count and which parameters are arrays or strings. Relaying every action once proves
# that the contract hashes exactly what eth-account signs.


def _relay_as(
    world: World, relayer: LedgerClient, signer: LedgerClient, contract: str, fn: str, *args: Any
) -> Any:
    n0 = _nonce(world, contract, signer.address)
    signed = signer.sign(contract, fn, *args, deadline=_deadline(world))
    receipt = relayer.relay(contract, signed)
    ev = one_event(world, receipt, "ActionRelayed", contract)
    assert ev["signer"] == signer.address and ev["relayer"] == relayer.address
    assert bytes(ev["selector"]) == _selector(world, contract, fn) and ev["nonce"] == n0
    assert _nonce(world, contract, signer.address) == n0 + 1
    return receipt


def test_every_custody_action_relayed(world: World, relayer: LedgerClient) -> None:
    def act(org: Any, fn: str, *args: Any) -> Any:
        return _relay_as(world, relayer, org.client, CL, fn, *args)

    cmo, pharmacy = world.cmo, world.pharmacy
    bid = world.new_batch()
    case, pallet = world.sscc_key(), world.sscc_key()
    in_case, loose = world.unit_keys(2), world.unit_keys(3)
    act(cmo, "commission", bid, [case], in_case, h("c1"))
    act(cmo, "commission", bid, [], loose, h("c2"))
    assert unit(world, in_case[1]).parent_key == case and unit(world, loose[2]).holder == cmo.id
    act(cmo, "pack", pallet, [case], ZERO32)
    assert unit(world, in_case[0]).packed and container(world, case).parent_key == pallet
    act(cmo, "unpack", pallet, [case], ZERO32)
    assert container(world, case).parent_key == ZERO32
    act(cmo, "unpackAll", [pallet], ZERO32)
    assert container(world, pallet).state == 2

    sid = new_sid()
    r = act(cmo, "ship", sid, pharmacy.id, [case, *loose], h("ref"), h("ship"))
    assert one_event(world, r, "ShipmentDispatched")["signer"] == cmo.key.address
    act(pharmacy, "receiveShipment", sid, [case, loose[0]], ZERO32)
    act(pharmacy, "rejectShipment", sid, [loose[1]], h("damaged"), ZERO32)
    r = act(pharmacy, "reportMissing", sid, [loose[2]], h("missing"))
    assert (shipment(world, sid).received, shipment(world, sid).rejected, shipment(world, sid).missing) == (
        2,
        1,
        1,
    )
    assert len(events(world, r, "ShipmentClosed")) == 1
    assert unit(world, loose[0]).holder == pharmacy.id and unit(world, loose[1]).holder == cmo.id

    pharmacy.client.transact(CL, "unpackAll", [case], ZERO32)
    act(pharmacy, "decommission", [in_case[0]], UnitState.DISPENSED, ZERO32)
    assert unit(world, in_case[0]).state == UnitState.DISPENSED
    act(pharmacy, "undoDecommission", [in_case[0]], ZERO32)
    assert unit(world, in_case[0]).state == UnitState.ACTIVE
    r = act(pharmacy, "anchorEvents", [h("inspection"), h("temperature")])
    anchored = one_event(world, r, "EventsAnchored")
    assert (anchored["org"], anchored["signer"]) == (pharmacy.id, pharmacy.key.address)
    assert list(anchored["eventHashes"]) == [h("inspection"), h("temperature")]

    act(pharmacy, "flagSuspect", [in_case[1]], ZERO32)
    act(world.sponsor, "clearSuspect", [in_case[1]], ZERO32)
    assert unit(world, in_case[1]).suspect == SuspectStatus.NOT_SUSPECT
    act(world.regulator, "flagSuspect", [in_case[1]], ZERO32)
    act(world.regulator, "confirmIllegitimate", [in_case[1]], ZERO32)
    assert unit(world, in_case[1]).suspect == SuspectStatus.ILLEGITIMATE

    act(pharmacy, "flagBatchSuspect", bid, h("reaction"), loose[0])
    act(world.sponsor, "clearBatchSuspect", bid, ZERO32)
    act(cmo, "flagBatchSuspect", bid, ZERO32, ZERO32)
    r = act(world.regulator, "confirmBatchIllegitimate", bid, h("fake"))
    assert one_event(world, r, "BatchSuspectStatusChanged")["org"] == world.regulator.id
    assert int(world.contract(CL).functions.batchSuspect(bid).call()) == SuspectStatus.ILLEGITIMATE


def test_every_batch_registry_action_relayed(world: World, relayer: LedgerClient) -> None:
    def act(org: Any, fn: str, *args: Any) -> Any:
        return _relay_as(world, relayer, org.client, BR, fn, *args)

    registry = world.contract(BR).functions
    s2, cmo = world.sponsor2, world.cmo
    gtin = int(OTHER_GTIN)
    act(s2, "registerProduct", gtin)
    assert registry.productOwner(gtin).call() == s2.id
    act(s2, "authorizeManufacturer", gtin, cmo.id)
    assert registry.isAuthorizedManufacturer(gtin, cmo.id).call() is True

    act(cmo, "createBatch", gtin, "LOT-Ü-1", EXPIRY, SITE_GLN)  # a non-ASCII lot: the string is hashed
    bid = batch_id(OTHER_GTIN, "LOT-Ü-1")
    assert registry.batchCore(bid).call()[3] == cmo.id
    act(cmo, "anchorCertificate", bid, CertificateKind.ANALYSIS, h("coa"), b32("approved"))
    act(s2, "releaseWithCertification", bid, h("qp"), b32("released for sale"), h("release"))
    assert world.batch_status(bid) == BatchStatus.RELEASED
    act(s2, "suspend", bid, ZERO32)
    assert world.batch_status(bid) == BatchStatus.SUSPENDED
    act(s2, "unsuspend", bid, ZERO32)
    act(s2, "recall", bid, ZERO32)
    assert world.batch_status(bid) == BatchStatus.RECALLED

    act(cmo, "createBatch", gtin, "LOT-2", EXPIRY, SITE_GLN)
    other = batch_id(OTHER_GTIN, "LOT-2")
    act(s2, "reject", other, ZERO32)
    assert world.batch_status(other) == BatchStatus.REJECTED
    act(s2, "anchorCertificate", other, CertificateKind.QP_CERTIFICATION, h("qp2"), b32("certified"))
    act(s2, "createBatch", gtin, "LOT-3", EXPIRY, SITE_GLN)
    third = batch_id(OTHER_GTIN, "LOT-3")
    act(s2, "anchorCertificate", third, CertificateKind.QP_CERTIFICATION, h("qp3"), b32("certified"))
    act(s2, "release", third, ZERO32)
    assert world.batch_status(third) == BatchStatus.RELEASED
    act(s2, "revokeManufacturer", gtin, cmo.id)
    assert registry.isAuthorizedManufacturer(gtin, cmo.id).call() is False


def test_every_consortium_action_relayed(world: World, relayer: LedgerClient) -> None:
    def act(fn: str, *args: Any) -> Any:
        return _relay_as(world, relayer, world.cmo.client, CR, fn, *args)  # the CMO's key-admin key

    registry = world.contract(CR).functions
    first, second = derived_key("relay-test:first"), derived_key("relay-test:second")
    act("addKey", world.cmo.id, first.address, 0, 0, False)
    assert registry.activeOrgOf(first.address).call() == world.cmo.id
    r = act("rotateKey", first.address, second.address, 0)
    (revoked,) = events(world, r, "KeyRevoked", CR)
    assert revoked["key"] == first.address and revoked["by"] == world.cmo.key.address
    assert registry.activeOrgOf(second.address).call() == world.cmo.id
    assert registry.keyInfo(first.address).call()[3] != 0
    act("revokeKey", second.address)
    assert registry.keyInfo(second.address).call()[3] != 0
