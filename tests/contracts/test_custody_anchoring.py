"""CustodyLedger.anchorEvents: EPCIS events that change no custody are anchored by digest only."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from tests.contracts.conftest import World
from tests.contracts.custody_helpers import CL, Reverts, h, one_event


def test_anchoring_records_the_digests_with_the_signing_organisation(world: World) -> None:
    digests = [h("inspection"), h("temperature"), h("inspection")]  # repeats are the caller's business
    receipt = world.pharmacy.client.transact(CL, "anchorEvents", digests)
    event = one_event(world, receipt, "EventsAnchored")
    assert event["org"] == world.pharmacy.id
    assert event["signer"] == world.pharmacy.key.address
    assert list(event["eventHashes"]) == digests


def test_nothing_to_anchor(world: World, reverts: Reverts) -> None:
    reverts("EmptyList", world.pharmacy.client.transact, CL, "anchorEvents", [])


def test_only_organisation_keys_anchor(world: World, reverts: Reverts, accounts: list[LocalAccount]) -> None:
    outsider = world.client_for(accounts[18])
    err = reverts("UnknownKey", outsider.transact, CL, "anchorEvents", [h("forged")])
    assert err.args == (accounts[18].address,)
