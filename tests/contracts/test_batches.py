"""BatchRegistry: products, manufacturer authorisation, batches, certificates, release and the batch
status machine; every rule allowed and refused with its exact custom error.

Refused transactions are sent with an explicit gas limit, so they are mined and revert on chain: the
"nothing changed" checks after them test the contract's atomicity, not an unsent transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from web3.logs import DISCARD

from node.chain import ContractRevert
from node.ledger.client import LedgerClient
from node.ledger.consortium import Org, derived_key, fund
from node.ledger.constants import BatchStatus, CertificateKind, Role
from node.ledger.identifiers import batch_id, with_check_digit
from tests.contracts.conftest import EXPIRY, GTIN, OTHER_GTIN, SITE_GLN, World, b32

BR = "BatchRegistry"
CR = "ConsortiumRegistry"
MINED_GAS = 1_500_000
REASON = b"\x5a" * 32
COA = b"\xc0" * 32
QP = b"\x90" * 32
APPROVED = b32("approved")
RELEASED_FOR_SALE = b32("released for sale")
G = int(GTIN)

Reverts = Callable[..., ContractRevert]

BATCH_FIELDS = (
    "gtin",
    "expiry",
    "index",
    "manufacturer",
    "sponsor",
    "status",
    "suspendedFrom",
    "qpCertified",
    "manufacturerCertified",
    "siteGln",
    "createdAt",
)
CERT_FIELDS = ("documentHash", "meaning", "signer", "org", "kind", "anchoredAt")

_seq = itertools.count(1)


# --------------------------------------------------------------------------------------- helpers


def batches(world: World) -> Any:
    return world.contract(BR)


def block_time(world: World, receipt: Any) -> int:
    return int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def chain_now(world: World) -> int:
    return int(world.w3.eth.get_block("latest")["timestamp"])


def events(world: World, event: str, receipt: Any) -> list[dict[str, Any]]:
    ev = getattr(batches(world).events, event)()
    return [dict(e["args"]) for e in ev.process_receipt(receipt, errors=DISCARD)]


def batch_call(world: World, calls: list[Any]) -> list[Any]:
    """Several eth_calls in one JSON-RPC batch (an eth_call costs ~10 ms on Anvil; batched ~3 ms)."""
    with world.w3.batch_requests() as batch:
        for bound in calls:
            batch.add(bound)
        return list(batch.execute())


def record(world: World, bid: bytes) -> dict[str, Any]:
    return dict(zip(BATCH_FIELDS, batches(world).functions.batch(bid).call(), strict=True))


def certs(world: World, bid: bytes) -> list[dict[str, Any]]:
    return [dict(zip(CERT_FIELDS, c, strict=True)) for c in batches(world).functions.certificates(bid).call()]


def batch_state(world: World, bid: bytes = bytes(32), gtin: int = G, orgs: tuple[int, ...] = ()) -> list[Any]:
    """What a refused action must not change: batch count, the batch record and certificates,
    the product's owner and which of `orgs` are authorised for it."""
    f = batches(world).functions
    calls = [f.batchCount(), f.batch(bid), f.certificates(bid), f.productOwner(gtin)]
    calls += [f.isAuthorizedManufacturer(gtin, o) for o in orgs]
    return batch_call(world, calls)


def refused(reverts: Reverts, error: str, client: LedgerClient, fn: str, *args: Any) -> ContractRevert:
    """Send `BatchRegistry.fn(*args)` as a mined transaction and assert it reverted with `error`."""
    exc = reverts(error, client.transact, BR, fn, *args, gas=MINED_GAS)
    assert exc.tx_hash is not None, "the refused transaction should have been mined"
    return exc


def new_lot() -> str:
    return f"LOT-{next(_seq)}"


def fresh_gtin() -> int:
    return int(with_check_digit(f"0950600030{next(_seq):03d}"))


def bad_check_digit(valid: int) -> int:
    return valid - valid % 10 + (valid % 10 + 1) % 10


def create(world: World, maker: Org, lot: str | None = None, *, gtin: int = G) -> bytes:
    lot = lot or new_lot()
    maker.client.transact(BR, "createBatch", gtin, lot, EXPIRY, SITE_GLN)
    return batch_id(gtin, lot)


def certified_batch(world: World) -> bytes:
    """A CMO batch in quarantine with the CMO's CoA and the sponsor's QP certification anchored."""
    bid = create(world, world.cmo)
    world.cmo.client.transact(BR, "anchorCertificate", bid, CertificateKind.ANALYSIS, COA, APPROVED)
    world.sponsor.client.transact(
        BR, "anchorCertificate", bid, CertificateKind.QP_CERTIFICATION, QP, APPROVED
    )
    return bid


# ---------------------------------------------------------------------------------- products


def test_register_product(world: World) -> None:
    gtin = fresh_gtin()
    assert batches(world).functions.productOwner(gtin).call() == 0
    receipt = world.sponsor2.client.transact(BR, "registerProduct", gtin)
    assert batches(world).functions.productOwner(gtin).call() == world.sponsor2.id
    assert events(world, "ProductRegistered", receipt) == [
        {"gtin": gtin, "sponsor": world.sponsor2.id, "signer": world.sponsor2.key.address}
    ]


PRODUCT_REFUSALS = [
    "cmo_role",
    "dispenser_role",
    "bad_check_digit",
    "zero",
    "fifteen_digits",
    "owned_by_other",
    "owned_by_self",
    "unknown_key",
]


@pytest.mark.parametrize("case", PRODUCT_REFUSALS)
def test_register_product_refused(world: World, reverts: Reverts, case: str) -> None:
    gtin, client = fresh_gtin(), world.sponsor2.client
    if case == "cmo_role":
        client = world.cmo.client
        expected: tuple[Any, ...] = ("MissingRole", world.cmo.id, Role.SPONSOR)
    elif case == "dispenser_role":
        client = world.pharmacy.client
        expected = ("MissingRole", world.pharmacy.id, Role.SPONSOR)
    elif case == "bad_check_digit":
        gtin = bad_check_digit(gtin)
        expected = ("InvalidGtin", gtin)
    elif case == "zero":
        gtin = 0
        expected = ("InvalidGtin", 0)
    elif case == "fifteen_digits":
        gtin = int(with_check_digit("19506000300001"))  # 15 digits
        expected = ("InvalidGtin", gtin)
    elif case == "owned_by_other":
        gtin = G
        expected = ("ProductExists", G, world.sponsor.id)
    elif case == "owned_by_self":
        gtin, client = G, world.sponsor.client
        expected = ("ProductExists", G, world.sponsor.id)
    else:
        account = derived_key(f"test-batches:unknown:{next(_seq)}")
        fund(world.w3, world.admin, [account.address])
        client = world.client_for(account)
        expected = ("UnknownKey", account.address)
    before = batch_state(world, gtin=gtin)
    exc = refused(reverts, expected[0], client, "registerProduct", gtin)
    assert exc.args == expected[1:]
    assert batch_state(world, gtin=gtin) == before


def test_authorize_manufacturer(world: World) -> None:
    f = batches(world).functions
    assert f.isAuthorizedManufacturer(G, world.cmo2.id).call() is False
    receipt = world.sponsor.client.transact(BR, "authorizeManufacturer", G, world.cmo2.id)
    assert f.isAuthorizedManufacturer(G, world.cmo2.id).call() is True
    assert events(world, "ManufacturerAuthorized", receipt) == [
        {
            "gtin": G,
            "manufacturer": world.cmo2.id,
            "sponsor": world.sponsor.id,
            "signer": world.sponsor.key.address,
        }
    ]
    bid = create(world, world.cmo2)
    assert record(world, bid)["manufacturer"] == world.cmo2.id


def test_revoke_manufacturer_stops_new_batches_only(world: World, reverts: Reverts) -> None:
    f = batches(world).functions
    existing = create(world, world.cmo)
    receipt = world.sponsor.client.transact(BR, "revokeManufacturer", G, world.cmo.id)
    assert f.isAuthorizedManufacturer(G, world.cmo.id).call() is False
    assert events(world, "ManufacturerRevoked", receipt) == [
        {
            "gtin": G,
            "manufacturer": world.cmo.id,
            "sponsor": world.sponsor.id,
            "signer": world.sponsor.key.address,
        }
    ]
    count = f.batchCount().call()
    exc = refused(
        reverts, "NotAuthorizedManufacturer", world.cmo.client, "createBatch", G, new_lot(), EXPIRY, SITE_GLN
    )
    assert exc.args == (world.cmo.id, G)
    assert f.batchCount().call() == count
    # Existing batches are unaffected: the CMO still certifies its batch and the sponsor releases it.
    world.cmo.client.transact(BR, "anchorCertificate", existing, CertificateKind.ANALYSIS, COA, APPROVED)
    world.sponsor.client.transact(BR, "releaseWithCertification", existing, QP, RELEASED_FOR_SALE, REASON)
    assert record(world, existing)["status"] == BatchStatus.RELEASED
    # Authorising again restores the right to create batches.
    world.sponsor.client.transact(BR, "authorizeManufacturer", G, world.cmo.id)
    create(world, world.cmo)


MANUFACTURER_REFUSALS = [
    ("authorizeManufacturer", "other_sponsor"),
    ("authorizeManufacturer", "the_cmo_itself"),
    ("authorizeManufacturer", "unknown_product"),
    ("authorizeManufacturer", "target_lacks_cmo_role"),
    ("authorizeManufacturer", "target_unknown_org"),
    ("revokeManufacturer", "other_sponsor"),
    ("revokeManufacturer", "the_cmo_itself"),
    ("revokeManufacturer", "unknown_product"),
]


@pytest.mark.parametrize(("fn", "case"), MANUFACTURER_REFUSALS)
def test_manufacturer_authorisation_refused(world: World, reverts: Reverts, fn: str, case: str) -> None:
    gtin, client = G, world.sponsor.client
    target = world.cmo2.id if fn == "authorizeManufacturer" else world.cmo.id
    if case == "other_sponsor":
        client = world.sponsor2.client
        expected: tuple[Any, ...] = ("NotProductOwner", world.sponsor2.id, G)
    elif case == "the_cmo_itself":
        client = world.cmo.client
        expected = ("NotProductOwner", world.cmo.id, G)
    elif case == "unknown_product":
        gtin = fresh_gtin()
        expected = ("UnknownProduct", gtin)
    elif case == "target_lacks_cmo_role":
        target = world.tpl.id
        expected = ("MissingRole", world.tpl.id, Role.CMO)
    else:
        target = 999
        expected = ("MissingRole", 999, Role.CMO)
    before = batch_state(world, gtin=gtin, orgs=(target, world.cmo.id))
    exc = refused(reverts, expected[0], client, fn, gtin, target)
    assert exc.args == expected[1:]
    assert batch_state(world, gtin=gtin, orgs=(target, world.cmo.id)) == before


# ----------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("maker", ["cmo", "sponsor"])
def test_create_batch_records_everything(world: World, maker: str) -> None:
    org = world.cmo if maker == "cmo" else world.sponsor
    f = batches(world).functions
    count = int(f.batchCount().call())
    lot = "LOT/2026-A"
    bid = batch_id(GTIN, lot)
    assert bytes(f.batchIdOf(G, lot).call()) == bid
    # The function's return value (simulated), then the real transaction.
    assert bytes(org.client.view(BR, "createBatch", G, lot, EXPIRY, SITE_GLN)) == bid
    receipt = org.client.transact(BR, "createBatch", G, lot, EXPIRY, SITE_GLN)
    t = block_time(world, receipt)
    index = count + 1
    assert int(f.batchCount().call()) == index
    assert bytes(f.batchIdAt(index).call()) == bid
    assert record(world, bid) == {
        "gtin": G,
        "expiry": EXPIRY,
        "index": index,
        "manufacturer": org.id,
        "sponsor": world.sponsor.id,
        "status": BatchStatus.QUARANTINE,
        "suspendedFrom": BatchStatus.NONE,
        "qpCertified": False,
        "manufacturerCertified": False,
        "siteGln": SITE_GLN,
        "createdAt": t,
    }
    core = (bid, index, BatchStatus.QUARANTINE, org.id, world.sponsor.id)
    assert tuple(f.batchCore(bid).call()) == core
    assert tuple(f.batchCoreAt(index).call()) == core
    assert certs(world, bid) == []
    assert events(world, "BatchCreated", receipt) == [
        {
            "batchId": bid,
            "gtin": G,
            "manufacturer": org.id,
            "index": index,
            "lot": lot,
            "expiry": EXPIRY,
            "siteGln": SITE_GLN,
            "sponsor": world.sponsor.id,
            "signer": org.key.address,
        }
    ]
    assert events(world, "BatchStatusChanged", receipt) == [
        {
            "batchId": bid,
            "from": BatchStatus.NONE,
            "to": BatchStatus.QUARANTINE,
            "reasonHash": bytes(32),
            "org": org.id,
            "signer": org.key.address,
        }
    ]


def test_unknown_batch_views(world: World) -> None:
    f = batches(world).functions
    bid = batch_id(GTIN, "NEVER-MADE")
    assert record(world, bid)["index"] == 0
    assert tuple(f.batchCore(bid).call()) == (bid, 0, BatchStatus.NONE, 0, 0)
    assert bytes(f.batchIdAt(int(f.batchCount().call()) + 1).call()) == bytes(32)


BATCH_REFUSALS: list[tuple[str, str, dict[str, Any]]] = [
    # case, error, overrides of (maker, gtin, lot, expiry, site)
    ("unknown_product", "UnknownProduct", {"gtin": int(OTHER_GTIN)}),
    ("unauthorised_cmo", "NotAuthorizedManufacturer", {"maker": "cmo2"}),
    ("other_sponsor", "NotAuthorizedManufacturer", {"maker": "sponsor2"}),
    ("logistics", "NotAuthorizedManufacturer", {"maker": "tpl"}),
    ("empty_lot", "InvalidLot", {"lot": ""}),
    ("lot_21_chars", "InvalidLot", {"lot": "A" * 21}),
    ("month_00", "InvalidExpiry", {"expiry": 280015}),
    ("month_13", "InvalidExpiry", {"expiry": 281315}),
    ("day_32", "InvalidExpiry", {"expiry": 281232}),
    ("seven_digits", "InvalidExpiry", {"expiry": 1000101}),
    ("site_bad_check_digit", "InvalidGln", {"site": bad_check_digit(SITE_GLN)}),
    ("site_zero", "InvalidGln", {"site": 0}),
    ("site_14_digits", "InvalidGln", {"site": int(with_check_digit("1950600013435"))}),
]


@pytest.mark.parametrize(("case", "error", "overrides"), BATCH_REFUSALS, ids=[c[0] for c in BATCH_REFUSALS])
def test_create_batch_refused(
    world: World, reverts: Reverts, case: str, error: str, overrides: dict[str, Any]
) -> None:
    maker: Org = getattr(world, overrides.get("maker", "cmo"))
    gtin = overrides.get("gtin", G)
    lot = overrides.get("lot", new_lot())
    expiry = overrides.get("expiry", EXPIRY)
    site = overrides.get("site", SITE_GLN)
    expected_args = {
        "UnknownProduct": (gtin,),
        "NotAuthorizedManufacturer": (maker.id, gtin),
        "InvalidLot": (lot,),
        "InvalidExpiry": (expiry,),
        "InvalidGln": (site,),
    }[error]
    bid = batch_id(gtin, lot)
    before = batch_state(world, bid, gtin)
    exc = refused(reverts, error, maker.client, "createBatch", gtin, lot, expiry, site)
    assert exc.args == expected_args
    assert batch_state(world, bid, gtin) == before


@pytest.mark.parametrize("second_maker", ["cmo", "sponsor"])
def test_create_batch_twice_refused(world: World, reverts: Reverts, second_maker: str) -> None:
    lot = new_lot()
    bid = create(world, world.cmo, lot)
    before = batch_state(world, bid)
    exc = refused(
        reverts,
        "BatchExists",
        getattr(world, second_maker).client,
        "createBatch",
        G,
        lot,
        290101,
        int(world.sponsor.gln),
    )
    assert exc.args == (bid,)
    assert batch_state(world, bid) == before


def test_same_lot_of_another_product_is_another_batch(world: World) -> None:
    other = int(OTHER_GTIN)
    world.sponsor.client.transact(BR, "registerProduct", other)
    lot = new_lot()
    a = create(world, world.cmo, lot)
    b = create(world, world.sponsor, lot, gtin=other)
    assert a != b
    assert b == batch_id(OTHER_GTIN, lot)
    assert (record(world, a)["gtin"], record(world, b)["gtin"]) == (G, other)


@pytest.mark.parametrize(
    ("lot", "expiry"),
    [
        ("A" * 20, EXPIRY),
        ("X", EXPIRY),
        ("END-OF-MONTH", 281200),
        ("Y2K", 101),
        ("LAST", 991231),
        ("LEAP", 280229),
    ],
    ids=["lot_20_chars", "lot_1_char", "day_00_end_of_month", "year_00", "year_99", "leap_day"],
)
def test_create_batch_accepts_edge_values(world: World, lot: str, expiry: int) -> None:
    bid = create_with(world, lot, expiry)
    assert record(world, bid)["expiry"] == expiry


def create_with(world: World, lot: str, expiry: int) -> bytes:
    world.cmo.client.transact(BR, "createBatch", G, lot, expiry, SITE_GLN)
    return batch_id(GTIN, lot)


@pytest.mark.parametrize("expiry", [280230, 270229, 280431], ids=["feb_30", "feb_29_non_leap", "apr_31"])
def test_create_batch_refuses_impossible_calendar_dates(world: World, reverts: Reverts, expiry: int) -> None:
    lot = new_lot()
    exc = refused(reverts, "InvalidExpiry", world.cmo.client, "createBatch", G, lot, expiry, SITE_GLN)
    assert exc.args == (expiry,)


# ------------------------------------------------------------------------------ certificates

ANCHOR_OK = [
    ("cmo", CertificateKind.ANALYSIS),
    ("cmo", CertificateKind.CONFORMANCE),
    ("cmo", CertificateKind.OTHER),
    ("sponsor", CertificateKind.ANALYSIS),
    ("sponsor", CertificateKind.QP_CERTIFICATION),
]


@pytest.mark.parametrize(("who", "kind"), ANCHOR_OK, ids=[f"{w}-{k.name}" for w, k in ANCHOR_OK])
def test_anchor_certificate(world: World, who: str, kind: CertificateKind) -> None:
    org: Org = getattr(world, who)
    bid = create(world, world.cmo)
    world.sponsor.client.transact(
        BR, "anchorCertificate", bid, CertificateKind.OTHER, b"\x01" * 32, b32("note")
    )
    doc, meaning = bytes([0x30 + kind]) * 32, b32(f"meaning {kind.name}")
    receipt = org.client.transact(BR, "anchorCertificate", bid, kind, doc, meaning)
    t = block_time(world, receipt)
    listed = certs(world, bid)
    assert len(listed) == 2
    assert listed[1] == {
        "documentHash": doc,
        "meaning": meaning,
        "signer": org.key.address,
        "org": org.id,
        "kind": kind,
        "anchoredAt": t,
    }
    assert events(world, "CertificateAnchored", receipt) == [
        {
            "batchId": bid,
            "documentHash": doc,
            "org": org.id,
            "kind": kind,
            "meaning": meaning,
            "signer": org.key.address,
            "position": 1,
        }
    ]
    rec = record(world, bid)
    assert rec["qpCertified"] is (kind == CertificateKind.QP_CERTIFICATION)
    # Only the manufacturer's own certificate counts as the manufacturer's.
    assert rec["manufacturerCertified"] is (who == "cmo")
    assert rec["status"] == BatchStatus.QUARANTINE


ANCHOR_REFUSALS: list[tuple[str, str, int, bytes]] = [
    # case, caller, kind, hash
    ("cmo_qp", "cmo", CertificateKind.QP_CERTIFICATION, QP),
    ("third_org_coa", "tpl", CertificateKind.ANALYSIS, COA),
    ("other_cmo_coa", "cmo2", CertificateKind.CONFORMANCE, COA),
    ("other_sponsor_qp", "sponsor2", CertificateKind.QP_CERTIFICATION, QP),
    ("kind_none", "sponsor", CertificateKind.NONE, COA),
    ("zero_hash", "cmo", CertificateKind.ANALYSIS, bytes(32)),
    ("zero_hash_qp", "sponsor", CertificateKind.QP_CERTIFICATION, bytes(32)),
    ("unknown_batch", "sponsor", CertificateKind.QP_CERTIFICATION, QP),
]


@pytest.mark.parametrize(
    ("case", "caller", "kind", "doc"), ANCHOR_REFUSALS, ids=[c[0] for c in ANCHOR_REFUSALS]
)
def test_anchor_certificate_refused(
    world: World, reverts: Reverts, case: str, caller: str, kind: int, doc: bytes
) -> None:
    org: Org = getattr(world, caller)
    bid = create(world, world.cmo)
    if case == "unknown_batch":
        bid = batch_id(GTIN, "NO-SUCH-LOT")
        expected: tuple[Any, ...] = ("UnknownBatch", bid)
    elif case.startswith(("kind_none", "zero_hash")):
        expected = ("InvalidCertificate", kind, doc)
    else:
        expected = ("NotCertifier", org.id, bid, kind)
    before = batch_state(world, bid)
    exc = refused(reverts, expected[0], org.client, "anchorCertificate", bid, kind, doc, APPROVED)
    assert exc.args == expected[1:]
    assert batch_state(world, bid) == before


def test_anchor_certificate_with_out_of_range_kind_is_refused(world: World, reverts: Reverts) -> None:
    """Kind 5 is not a CertificateKind: refused with InvalidCertificate, not a compiler panic."""
    bid = create(world, world.cmo)
    before = batch_state(world, bid)
    exc = refused(
        reverts, "InvalidCertificate", world.sponsor.client, "anchorCertificate", bid, 5, COA, APPROVED
    )
    assert exc.args == (CertificateKind.NONE, COA)
    assert batch_state(world, bid) == before


def test_a_cmo_whose_role_was_withdrawn_cannot_create_batches(world: World, reverts: Reverts) -> None:
    """The per-GTIN authorisation stays on record, but the admin's withdrawal of the CMO role wins."""
    world.admin.transact("ConsortiumRegistry", "revokeRole", world.cmo.id, Role.CMO)
    exc = refused(reverts, "MissingRole", world.cmo.client, "createBatch", G, new_lot(), 281231, SITE_GLN)
    assert exc.args == (world.cmo.id, Role.CMO)


# ----------------------------------------------------------------------------------- release


def test_release_cmo_batch_with_both_certificates(world: World) -> None:
    bid = certified_batch(world)
    receipt = world.sponsor.client.transact(BR, "release", bid, REASON)
    assert record(world, bid)["status"] == BatchStatus.RELEASED
    assert events(world, "BatchStatusChanged", receipt) == [
        {
            "batchId": bid,
            "from": BatchStatus.QUARANTINE,
            "to": BatchStatus.RELEASED,
            "reasonHash": REASON,
            "org": world.sponsor.id,
            "signer": world.sponsor.key.address,
        }
    ]


def test_release_sponsor_batch_needs_no_manufacturer_certificate(world: World) -> None:
    bid = create(world, world.sponsor)
    world.sponsor.client.transact(
        BR, "anchorCertificate", bid, CertificateKind.QP_CERTIFICATION, QP, APPROVED
    )
    assert record(world, bid)["manufacturerCertified"] is False
    world.sponsor.client.transact(BR, "release", bid, REASON)
    assert record(world, bid)["status"] == BatchStatus.RELEASED


RELEASE_REFUSALS = [
    "qp_missing",
    "cmo_certificate_missing",
    "sponsor_coa_is_not_the_cmos",
    "by_cmo",
    "by_other_sponsor",
    "unknown_batch",
]


@pytest.mark.parametrize("case", RELEASE_REFUSALS)
def test_release_refused(world: World, reverts: Reverts, case: str) -> None:
    bid = create(world, world.cmo)
    client = world.sponsor.client
    qp_kind = CertificateKind.QP_CERTIFICATION
    if case == "qp_missing":
        world.cmo.client.transact(BR, "anchorCertificate", bid, CertificateKind.ANALYSIS, COA, APPROVED)
        expected: tuple[Any, ...] = ("QpCertificationMissing", bid)
    elif case == "cmo_certificate_missing":
        world.sponsor.client.transact(BR, "anchorCertificate", bid, qp_kind, QP, APPROVED)
        expected = ("ManufacturerCertificateMissing", bid, world.cmo.id)
    elif case == "sponsor_coa_is_not_the_cmos":
        world.sponsor.client.transact(BR, "anchorCertificate", bid, qp_kind, QP, APPROVED)
        world.sponsor.client.transact(BR, "anchorCertificate", bid, CertificateKind.ANALYSIS, COA, APPROVED)
        expected = ("ManufacturerCertificateMissing", bid, world.cmo.id)
    elif case in ("by_cmo", "by_other_sponsor"):
        bid = certified_batch(world)
        org = world.cmo if case == "by_cmo" else world.sponsor2
        client = org.client
        expected = ("NotProductOwner", org.id, G)
    else:
        bid = batch_id(GTIN, "NO-SUCH-LOT")
        expected = ("UnknownBatch", bid)
    before = batch_state(world, bid)
    exc = refused(reverts, expected[0], client, "release", bid, REASON)
    assert exc.args == expected[1:]
    assert batch_state(world, bid) == before


def test_release_with_certification_anchors_and_releases(world: World) -> None:
    bid = create(world, world.cmo)
    world.cmo.client.transact(BR, "anchorCertificate", bid, CertificateKind.CONFORMANCE, COA, APPROVED)
    receipt = world.sponsor.client.transact(
        BR, "releaseWithCertification", bid, QP, RELEASED_FOR_SALE, REASON
    )
    t = block_time(world, receipt)
    rec = record(world, bid)
    assert (rec["status"], rec["qpCertified"]) == (BatchStatus.RELEASED, True)
    assert certs(world, bid)[1] == {
        "documentHash": QP,
        "meaning": RELEASED_FOR_SALE,
        "signer": world.sponsor.key.address,
        "org": world.sponsor.id,
        "kind": CertificateKind.QP_CERTIFICATION,
        "anchoredAt": t,
    }
    assert events(world, "CertificateAnchored", receipt) == [
        {
            "batchId": bid,
            "documentHash": QP,
            "org": world.sponsor.id,
            "kind": CertificateKind.QP_CERTIFICATION,
            "meaning": RELEASED_FOR_SALE,
            "signer": world.sponsor.key.address,
            "position": 1,
        }
    ]
    assert events(world, "BatchStatusChanged", receipt) == [
        {
            "batchId": bid,
            "from": BatchStatus.QUARANTINE,
            "to": BatchStatus.RELEASED,
            "reasonHash": REASON,
            "org": world.sponsor.id,
            "signer": world.sponsor.key.address,
        }
    ]


RWC_REFUSALS = ["cmo_certificate_missing", "by_cmo", "zero_hash", "already_released", "rejected"]


@pytest.mark.parametrize("case", RWC_REFUSALS)
def test_release_with_certification_refused_is_atomic(world: World, reverts: Reverts, case: str) -> None:
    bid = create(world, world.cmo)
    client, doc = world.sponsor.client, QP
    if case != "cmo_certificate_missing":
        world.cmo.client.transact(BR, "anchorCertificate", bid, CertificateKind.ANALYSIS, COA, APPROVED)
    if case == "cmo_certificate_missing":
        expected: tuple[Any, ...] = ("ManufacturerCertificateMissing", bid, world.cmo.id)
    elif case == "by_cmo":
        client = world.cmo.client
        expected = ("NotCertifier", world.cmo.id, bid, CertificateKind.QP_CERTIFICATION)
    elif case == "zero_hash":
        doc = bytes(32)
        expected = ("InvalidCertificate", CertificateKind.QP_CERTIFICATION, doc)
    elif case == "already_released":
        world.sponsor.client.transact(BR, "releaseWithCertification", bid, QP, RELEASED_FOR_SALE, REASON)
        expected = ("InvalidBatchTransition", bid, BatchStatus.RELEASED, BatchStatus.RELEASED)
    else:
        world.sponsor.client.transact(BR, "reject", bid, REASON)
        expected = ("InvalidBatchTransition", bid, BatchStatus.REJECTED, BatchStatus.RELEASED)
    before = batch_state(world, bid)
    exc = refused(
        reverts, expected[0], client, "releaseWithCertification", bid, doc, RELEASED_FOR_SALE, REASON
    )
    assert exc.args == expected[1:]
    # In particular no QP certificate was left behind by the failed release.
    assert batch_state(world, bid) == before


# ----------------------------------------------------------------------------- status machine

Q, R, REJ, REC, SUS, NONE = (
    BatchStatus.QUARANTINE,
    BatchStatus.RELEASED,
    BatchStatus.REJECTED,
    BatchStatus.RECALLED,
    BatchStatus.SUSPENDED,
    BatchStatus.NONE,
)

# start -> the sponsor's actions that lead there from a certified batch in quarantine
PATHS: dict[str, tuple[str, ...]] = {
    "quarantine": (),
    "released": ("release",),
    "rejected": ("reject",),
    "recalled": ("release", "recall"),
    "suspended_from_quarantine": ("suspend",),
    "suspended_from_released": ("release", "suspend"),
}
START: dict[str, tuple[BatchStatus, BatchStatus]] = {  # status, suspendedFrom
    "quarantine": (Q, NONE),
    "released": (R, NONE),
    "rejected": (REJ, NONE),
    "recalled": (REC, NONE),
    "suspended_from_quarantine": (SUS, Q),
    "suspended_from_released": (SUS, R),
}
# (start, action) -> (new status, True) when allowed, else (the `to` of InvalidBatchTransition, False)
MACHINE: dict[tuple[str, str], tuple[BatchStatus, bool]] = {
    ("quarantine", "release"): (R, True),
    ("quarantine", "reject"): (REJ, True),
    ("quarantine", "recall"): (REC, False),
    ("quarantine", "suspend"): (SUS, True),
    ("quarantine", "unsuspend"): (NONE, False),
    ("released", "release"): (R, False),
    ("released", "reject"): (REJ, False),
    ("released", "recall"): (REC, True),
    ("released", "suspend"): (SUS, True),
    ("released", "unsuspend"): (NONE, False),
    ("rejected", "release"): (R, False),
    ("rejected", "reject"): (REJ, False),
    ("rejected", "recall"): (REC, False),
    ("rejected", "suspend"): (SUS, False),
    ("rejected", "unsuspend"): (NONE, False),
    ("recalled", "release"): (R, False),
    ("recalled", "reject"): (REJ, False),
    ("recalled", "recall"): (REC, False),
    ("recalled", "suspend"): (SUS, False),
    ("recalled", "unsuspend"): (NONE, False),
    ("suspended_from_quarantine", "release"): (R, False),
    ("suspended_from_quarantine", "reject"): (REJ, True),
    ("suspended_from_quarantine", "recall"): (REC, False),
    ("suspended_from_quarantine", "suspend"): (SUS, False),
    ("suspended_from_quarantine", "unsuspend"): (Q, True),
    ("suspended_from_released", "release"): (R, False),
    ("suspended_from_released", "reject"): (REJ, False),
    ("suspended_from_released", "recall"): (REC, True),
    ("suspended_from_released", "suspend"): (SUS, False),
    ("suspended_from_released", "unsuspend"): (R, True),
}


def batch_in(world: World, start: str) -> bytes:
    bid = certified_batch(world)
    for action in PATHS[start]:
        world.sponsor.client.transact(BR, action, bid, b"\x01" * 32)
    rec = record(world, bid)
    assert (rec["status"], rec["suspendedFrom"]) == START[start]
    return bid


@pytest.mark.parametrize(("start", "action"), list(MACHINE), ids=[f"{s}-{a}" for s, a in MACHINE])
def test_batch_status_machine(world: World, reverts: Reverts, start: str, action: str) -> None:
    bid = batch_in(world, start)
    status, suspended_from = START[start]
    target, allowed = MACHINE[(start, action)]
    if allowed:
        receipt = world.sponsor.client.transact(BR, action, bid, REASON)
        rec = record(world, bid)
        assert rec["status"] == target
        assert rec["suspendedFrom"] == (status if target == SUS else NONE)
        assert tuple(batches(world).functions.batchCore(bid).call())[2] == target
        assert events(world, "BatchStatusChanged", receipt) == [
            {
                "batchId": bid,
                "from": status,
                "to": target,
                "reasonHash": REASON,
                "org": world.sponsor.id,
                "signer": world.sponsor.key.address,
            }
        ]
    else:
        before = batch_state(world, bid)
        exc = refused(reverts, "InvalidBatchTransition", world.sponsor.client, action, bid, REASON)
        assert exc.args == (bid, status, target)
        assert batch_state(world, bid) == before
        assert record(world, bid)["suspendedFrom"] == suspended_from


# The state from which each action would be allowed for the sponsor.
VALID_FROM = {
    "release": "quarantine",
    "reject": "quarantine",
    "recall": "released",
    "suspend": "released",
    "unsuspend": "suspended_from_released",
}


@pytest.mark.parametrize("who", ["manufacturer", "other_sponsor", "regulator", "unknown_batch"])
@pytest.mark.parametrize("action", list(VALID_FROM))
def test_batch_status_changes_are_sponsor_only(world: World, reverts: Reverts, action: str, who: str) -> None:
    bid = batch_in(world, VALID_FROM[action])
    org = {"manufacturer": world.cmo, "other_sponsor": world.sponsor2, "regulator": world.regulator}.get(who)
    if org is None:
        target, client = batch_id(GTIN, "NO-SUCH-LOT"), world.sponsor.client
        expected: tuple[Any, ...] = ("UnknownBatch", target)
    else:
        target, client = bid, org.client
        expected = ("NotProductOwner", org.id, G)
    before = batch_state(world, bid)
    exc = refused(reverts, expected[0], client, action, target, REASON)
    assert exc.args == expected[1:]
    assert batch_state(world, bid) == before


def test_suspension_round_trips_restore_the_status(world: World, reverts: Reverts) -> None:
    sponsor = world.sponsor.client
    bid = certified_batch(world)
    sponsor.transact(BR, "suspend", bid, REASON)
    sponsor.transact(BR, "unsuspend", bid, REASON)
    assert (record(world, bid)["status"], record(world, bid)["suspendedFrom"]) == (Q, NONE)
    sponsor.transact(BR, "release", bid, REASON)  # back in quarantine, it can be released as before
    sponsor.transact(BR, "suspend", bid, REASON)
    sponsor.transact(BR, "unsuspend", bid, REASON)
    assert (record(world, bid)["status"], record(world, bid)["suspendedFrom"]) == (R, NONE)
    # Suspended again from released: reject is still refused, recall still allowed.
    sponsor.transact(BR, "suspend", bid, REASON)
    exc = refused(reverts, "InvalidBatchTransition", sponsor, "reject", bid, REASON)
    assert exc.args == (bid, SUS, REJ)
    sponsor.transact(BR, "recall", bid, REASON)
    assert (record(world, bid)["status"], record(world, bid)["suspendedFrom"]) == (REC, NONE)


# ------------------------------------------------------------------------------------ relayed


def test_relayed_create_and_release_record_the_signer(world: World) -> None:
    """A CMO key signs createBatch (with its string lot) and the sponsor's key signs the release;
    a third party relays both; the ledger records the signers, not the relayer."""
    relayer = world.tpl.client
    deadline = chain_now(world) + 3600
    lot = "RELAYED-LOT-1"
    bid = batch_id(GTIN, lot)
    receipt = relayer.relay(
        BR, world.cmo.client.sign(BR, "createBatch", G, lot, EXPIRY, SITE_GLN, deadline=deadline)
    )
    created = events(world, "BatchCreated", receipt)
    assert [(e["batchId"], e["manufacturer"], e["signer"]) for e in created] == [
        (bid, world.cmo.id, world.cmo.key.address)
    ]
    relayer.relay(
        BR, world.cmo.client.sign(BR, "anchorCertificate", bid, 1, COA, APPROVED, deadline=deadline)
    )
    signed = world.sponsor.client.sign(
        BR, "releaseWithCertification", bid, QP, RELEASED_FOR_SALE, REASON, deadline=deadline
    )
    receipt = relayer.relay(BR, signed)
    assert events(world, "BatchStatusChanged", receipt) == [
        {
            "batchId": bid,
            "from": Q,
            "to": R,
            "reasonHash": REASON,
            "org": world.sponsor.id,
            "signer": world.sponsor.key.address,
        }
    ]
    assert [(c["org"], c["signer"]) for c in certs(world, bid)] == [
        (world.cmo.id, world.cmo.key.address),
        (world.sponsor.id, world.sponsor.key.address),
    ]
