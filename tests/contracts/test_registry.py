"""ConsortiumRegistry: every rule, allowed and refused with its exact custom error.

Refused transactions are sent with an explicit gas limit, so they are mined and revert on chain
(`tx_hash` set on the ContractRevert): the "nothing changed" checks that follow them are then about
the contract's own atomicity, not merely about a transaction that was never sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from node.chain import ContractRevert
from node.ledger.client import LedgerClient
from node.ledger.consortium import derived_key, fund
from node.ledger.constants import OrgStatus, Role
from node.ledger.identifiers import with_check_digit
from node.ledger.relay import action_type_hash
from tests.contracts.conftest import GTIN, World

CR = "ConsortiumRegistry"
BR = "BatchRegistry"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MINED_GAS = 1_500_000  # explicit gas: a refused transaction is mined (status 0), not refused at estimation
REASON = b"\x11" * 32
EXPIRY = 281231
SITE_GLN = 4098765000003

Reverts = Callable[..., ContractRevert]

_seq = itertools.count(1)


# --------------------------------------------------------------------------------------- helpers


def registry(world: World) -> Any:
    return world.contract(CR)


def chain_now(world: World) -> int:
    return int(world.w3.eth.get_block("latest")["timestamp"])


def block_time(world: World, receipt: Any) -> int:
    return int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def events(world: World, contract: str, event: str, receipt: Any) -> list[dict[str, Any]]:
    """The decoded args of every `event` of `contract` in the receipt, in order."""
    ev = getattr(world.contract(contract).events, event)()
    return [dict(e["args"]) for e in ev.process_receipt(receipt, errors=DISCARD)]


def new_account(tag: str) -> LocalAccount:
    return derived_key(f"test-registry:{tag}:{next(_seq)}")


def fresh_gln() -> int:
    return int(with_check_digit(f"4000009{next(_seq):05d}"))


def bad_check_digit(valid: int) -> int:
    return valid - valid % 10 + (valid % 10 + 1) % 10


def fresh_gtin() -> int:
    return int(with_check_digit(f"0950600020{next(_seq):03d}"))


def add_key(
    world: World,
    org: int,
    *,
    valid_from: int = 0,
    valid_until: int = 0,
    key_admin: bool = False,
    by: LedgerClient | None = None,
) -> tuple[LedgerClient, Any]:
    """A new funded key of `org`, added by `by` (the consortium admin by default)."""
    account = new_account(f"org{org}")
    fund(world.w3, world.admin, [account.address])
    receipt = (by or world.admin).transact(
        CR, "addKey", org, account.address, valid_from, valid_until, key_admin
    )
    return world.client_for(account), receipt


def key_info(world: World, key: str) -> tuple[int, int, int, int, bool]:
    org, valid_from, valid_until, revoked_at, key_admin = registry(world).functions.keyInfo(key).call()
    return int(org), int(valid_from), int(valid_until), int(revoked_at), bool(key_admin)


def org_state(world: World, org: int) -> tuple[int, OrgStatus]:
    gln, status = registry(world).functions.organization(org).call()
    return int(gln), OrgStatus(status)


def tx_allowed(world: World, sender: str) -> bool:
    return bool(registry(world).functions.transactionAllowed(sender, ZERO_ADDRESS, 0, 0, 0, b"").call())


def was_valid(world: World, key: str, t: int) -> tuple[bool, int]:
    valid, org = registry(world).functions.wasKeyValidAt(key, t).call()
    return bool(valid), int(org)


def roles_of(world: World, org: int) -> dict[bytes, bool]:
    return {role: bool(registry(world).functions.hasRole(org, role).call()) for role in Role.ALL}


def batch_call(world: World, calls: list[Any]) -> list[Any]:
    """Several eth_calls in one JSON-RPC batch (an eth_call costs ~10 ms on Anvil; batched ~3 ms)."""
    with world.w3.batch_requests() as batch:
        for bound in calls:
            batch.add(bound)
        return list(batch.execute())


def registry_state(
    world: World, orgs: tuple[int, ...] = (), keys: tuple[str, ...] = (), glns: tuple[int, ...] = ()
) -> list[Any]:
    """What a refused action must not change: admin, pending admin, organisation count, and the
    status, GLN and roles of `orgs`, the records of `keys`, the organisations under `glns`."""
    r = registry(world).functions
    calls = [r.admin(), r.pendingAdmin(), r.organizationCount()]
    for org in orgs:
        calls += [r.organization(org), *(r.hasRole(org, role) for role in Role.ALL)]
    calls += [r.keyInfo(k) for k in keys]
    calls += [r.organizationByGln(g) for g in glns]
    return batch_call(world, calls)


def refused(
    reverts: Reverts, error: str, client: LedgerClient, contract: str, fn: str, *args: Any
) -> ContractRevert:
    """Send `contract.fn(*args)` as a mined transaction and assert it reverted with `error`."""
    exc = reverts(error, client.transact, contract, fn, *args, gas=MINED_GAS)
    assert exc.tx_hash is not None, "the refused transaction should have been mined"
    return exc


def register_product_works(world: World, client: LedgerClient) -> int:
    """The key acts for the sponsor: it registers a new GTIN."""
    gtin = fresh_gtin()
    client.transact(BR, "registerProduct", gtin)
    return int(world.contract(BR).functions.productOwner(gtin).call())


# -------------------------------------------------------------------------------- onboarding


def test_onboard_organization_records_gln_status_roles_and_events(world: World) -> None:
    r = registry(world).functions
    count = int(r.organizationCount().call())
    gln = fresh_gln()
    receipt = world.admin.transact(
        CR, "onboardOrganization", gln, "New Wholesaler", [Role.DISTRIBUTOR, Role.LOGISTICS, Role.DISTRIBUTOR]
    )
    org = count + 1
    assert int(r.organizationCount().call()) == org
    assert org_state(world, org) == (gln, OrgStatus.ACTIVE)
    assert int(r.organizationByGln(gln).call()) == org
    assert r.isActive(org).call() is True
    assert roles_of(world, org) == {role: role in (Role.DISTRIBUTOR, Role.LOGISTICS) for role in Role.ALL}
    assert events(world, CR, "OrganizationOnboarded", receipt) == [
        {"org": org, "gln": gln, "name": "New Wholesaler"}
    ]
    assert events(world, CR, "OrganizationStatusChanged", receipt) == [
        {"org": org, "from": OrgStatus.NONE, "to": OrgStatus.ACTIVE, "reasonHash": bytes(32)}
    ]
    # A role listed twice is granted (and emitted) once.
    assert events(world, CR, "RoleGranted", receipt) == [
        {"org": org, "role": Role.DISTRIBUTOR},
        {"org": org, "role": Role.LOGISTICS},
    ]


def test_onboard_organization_without_roles(world: World) -> None:
    gln = fresh_gln()
    receipt = world.admin.transact(CR, "onboardOrganization", gln, "No Roles Yet", [])
    org = int(registry(world).functions.organizationByGln(gln).call())
    assert org_state(world, org) == (gln, OrgStatus.ACTIVE)
    assert not any(roles_of(world, org).values())
    assert events(world, CR, "RoleGranted", receipt) == []


ONBOARD_REFUSALS = ["not_admin", "bad_check_digit", "zero", "fourteen_digits", "gln_taken", "unknown_role"]


@pytest.mark.parametrize("case", ONBOARD_REFUSALS)
def test_onboard_organization_refused(world: World, reverts: Reverts, case: str) -> None:
    gln = fresh_gln()
    roles: list[bytes] = [Role.CMO]
    client = world.admin
    if case == "not_admin":
        client = world.sponsor.client
        expected: tuple[Any, ...] = ("NotAdmin", world.sponsor.key.address)
    elif case == "bad_check_digit":
        gln = bad_check_digit(gln)
        expected = ("InvalidGln", gln)
    elif case == "zero":
        gln = 0
        expected = ("InvalidGln", 0)
    elif case == "fourteen_digits":
        gln = int(with_check_digit("4000009000010"))  # a valid GTIN-14, too long for a GLN
        expected = ("InvalidGln", gln)
    elif case == "gln_taken":
        gln = int(world.cmo.gln)
        expected = ("GlnTaken", gln, world.cmo.id)
    else:
        roles = [Role.CMO, b"\x42" * 32]
        expected = ("UnknownRole", b"\x42" * 32)
    before = registry_state(world, orgs=(world.cmo.id,), glns=(gln,))
    exc = refused(reverts, expected[0], client, CR, "onboardOrganization", gln, "Refused Org", roles)
    assert exc.args == expected[1:]
    assert registry_state(world, orgs=(world.cmo.id,), glns=(gln,)) == before


# ------------------------------------------------------------------------------------- roles


def test_grant_and_revoke_role(world: World) -> None:
    org = world.tpl.id
    receipt = world.admin.transact(CR, "grantRole", org, Role.DISTRIBUTOR)
    assert events(world, CR, "RoleGranted", receipt) == [{"org": org, "role": Role.DISTRIBUTOR}]
    assert roles_of(world, org) == {role: role in (Role.LOGISTICS, Role.DISTRIBUTOR) for role in Role.ALL}
    # Granting a held role again is a no-op without an event.
    receipt = world.admin.transact(CR, "grantRole", org, Role.DISTRIBUTOR)
    assert events(world, CR, "RoleGranted", receipt) == []

    receipt = world.admin.transact(CR, "revokeRole", org, Role.LOGISTICS)
    assert events(world, CR, "RoleRevoked", receipt) == [{"org": org, "role": Role.LOGISTICS}]
    assert roles_of(world, org) == {role: role == Role.DISTRIBUTOR for role in Role.ALL}
    receipt = world.admin.transact(CR, "revokeRole", org, Role.LOGISTICS)
    assert events(world, CR, "RoleRevoked", receipt) == []
    assert roles_of(world, org) == {role: role == Role.DISTRIBUTOR for role in Role.ALL}


def test_role_constants_match_python(world: World) -> None:
    r = registry(world).functions
    assert bytes(r.SPONSOR_ROLE().call()) == Role.SPONSOR
    assert bytes(r.CMO_ROLE().call()) == Role.CMO
    assert bytes(r.LOGISTICS_ROLE().call()) == Role.LOGISTICS
    assert bytes(r.DISTRIBUTOR_ROLE().call()) == Role.DISTRIBUTOR
    assert bytes(r.DISPENSER_ROLE().call()) == Role.DISPENSER
    assert bytes(r.REGULATOR_ROLE().call()) == Role.REGULATOR


@pytest.mark.parametrize("fn", ["grantRole", "revokeRole"])
@pytest.mark.parametrize("case", ["not_admin", "unknown_org", "unknown_role"])
def test_grant_revoke_role_refused(world: World, reverts: Reverts, fn: str, case: str) -> None:
    org, role, client = world.tpl.id, Role.LOGISTICS if fn == "revokeRole" else Role.CMO, world.admin
    if case == "not_admin":
        client = world.tpl.client
        expected: tuple[Any, ...] = ("NotAdmin", world.tpl.key.address)
    elif case == "unknown_org":
        org = int(registry(world).functions.organizationCount().call()) + 1
        expected = ("UnknownOrganization", org)
    else:
        role = bytes(31) + b"\x01"
        expected = ("UnknownRole", role)
    before = registry_state(world, orgs=(org,))
    exc = refused(reverts, expected[0], client, CR, fn, org, role)
    assert exc.args == expected[1:]
    assert registry_state(world, orgs=(org,)) == before


def test_revoked_sponsor_role_stops_product_registration(world: World, reverts: Reverts) -> None:
    world.admin.transact(CR, "revokeRole", world.sponsor.id, Role.SPONSOR)
    gtin = fresh_gtin()
    exc = refused(reverts, "MissingRole", world.sponsor.client, BR, "registerProduct", gtin)
    assert exc.args == (world.sponsor.id, Role.SPONSOR)
    world.admin.transact(CR, "grantRole", world.sponsor.id, Role.SPONSOR)
    world.sponsor.client.transact(BR, "registerProduct", gtin)
    assert world.contract(BR).functions.productOwner(gtin).call() == world.sponsor.id


# ------------------------------------------------------------------------ organisation status

ACT, SUS, OFF = OrgStatus.ACTIVE, OrgStatus.SUSPENDED, OrgStatus.OFFBOARDED
ORG_TRANSITIONS: list[tuple[OrgStatus, str, OrgStatus, bool]] = [
    # start, action, target, allowed
    (ACT, "suspendOrganization", SUS, True),
    (ACT, "reactivateOrganization", ACT, False),
    (ACT, "offboardOrganization", OFF, True),
    (SUS, "suspendOrganization", SUS, False),
    (SUS, "reactivateOrganization", ACT, True),
    (SUS, "offboardOrganization", OFF, True),
    (OFF, "suspendOrganization", SUS, False),
    (OFF, "reactivateOrganization", ACT, False),
    (OFF, "offboardOrganization", OFF, False),
]


def put_org_in(world: World, org: int, status: OrgStatus) -> None:
    if status == SUS:
        world.admin.transact(CR, "suspendOrganization", org, b"\x01" * 32)
    elif status == OFF:
        world.admin.transact(CR, "offboardOrganization", org, b"\x01" * 32)
    assert org_state(world, org)[1] == status


@pytest.mark.parametrize(
    ("start", "action", "target", "allowed"),
    ORG_TRANSITIONS,
    ids=[f"{s.name}-{a}" for s, a, _, _ in ORG_TRANSITIONS],
)
def test_org_status_transitions(
    world: World, reverts: Reverts, start: OrgStatus, action: str, target: OrgStatus, allowed: bool
) -> None:
    org = world.sponsor2.id
    gln = int(world.sponsor2.gln)
    put_org_in(world, org, start)
    if allowed:
        receipt = world.admin.transact(CR, action, org, REASON)
        assert org_state(world, org) == (gln, target)
        assert registry(world).functions.isActive(org).call() is (target == ACT)
        assert events(world, CR, "OrganizationStatusChanged", receipt) == [
            {"org": org, "from": start, "to": target, "reasonHash": REASON}
        ]
    else:
        before = registry_state(world, orgs=(org,))
        exc = refused(reverts, "InvalidOrgTransition", world.admin, CR, action, org, REASON)
        assert exc.args == (org, start, target)
        assert registry_state(world, orgs=(org,)) == before


@pytest.mark.parametrize("action", ["suspendOrganization", "reactivateOrganization", "offboardOrganization"])
def test_org_status_change_refused_for_non_admin_and_unknown_org(
    world: World, reverts: Reverts, action: str
) -> None:
    before = registry_state(world, orgs=(world.sponsor2.id,))
    exc = refused(reverts, "NotAdmin", world.sponsor2.client, CR, action, world.sponsor2.id, REASON)
    assert exc.args == (world.sponsor2.key.address,)
    unknown = int(registry(world).functions.organizationCount().call()) + 1
    exc = refused(reverts, "UnknownOrganization", world.admin, CR, action, unknown, REASON)
    assert exc.args == (unknown,)
    assert registry_state(world, orgs=(world.sponsor2.id,)) == before


SUSPENDED_ACTIONS = ["registerProduct", "addKey", "createBatch", "anchorCertificate", "release", "commission"]


@pytest.mark.parametrize("case", SUSPENDED_ACTIONS)
def test_suspended_org_keys_cannot_act_until_reactivated(world: World, reverts: Reverts, case: str) -> None:
    """A suspended organisation's keys are refused by every contract; after reactivation they act again."""
    bid = b""
    if case in ("anchorCertificate", "release"):
        bid = world.new_batch(release=False)
        world.sponsor.client.transact(BR, "anchorCertificate", bid, 3, b"\x0b" * 32, b"\x0c" * 32)
        if case == "release":
            world.cmo.client.transact(BR, "anchorCertificate", bid, 1, b"\x0a" * 32, b"\x0d" * 32)
    if case == "commission":
        bid = world.new_batch()
    new_key = new_account("suspended")
    actions: dict[str, tuple[Any, str, str, tuple[Any, ...]]] = {
        "registerProduct": (world.sponsor, BR, "registerProduct", (fresh_gtin(),)),
        "addKey": (world.sponsor, CR, "addKey", (world.sponsor.id, new_key.address, 0, 0, False)),
        "createBatch": (world.cmo, BR, "createBatch", (int(GTIN), "SUSP-1", EXPIRY, SITE_GLN)),
        "anchorCertificate": (world.cmo, BR, "anchorCertificate", (bid, 1, b"\x0a" * 32, b"\x0d" * 32)),
        "release": (world.sponsor, BR, "release", (bid, REASON)),
        "commission": (world.cmo, "CustodyLedger", "commission", (bid, [], world.unit_keys(2), b"\x01" * 32)),
    }
    org, contract, fn, args = actions[case]
    world.admin.transact(CR, "suspendOrganization", org.id, REASON)
    reverts("OrganizationNotActive", world.admin.view, CR, "activeOrgOf", org.key.address)
    assert tx_allowed(world, org.key.address) is False

    exc = refused(reverts, "OrganizationNotActive", org.client, contract, fn, *args)
    assert exc.args == (org.id, OrgStatus.SUSPENDED)

    world.admin.transact(CR, "reactivateOrganization", org.id, REASON)
    assert int(world.admin.view(CR, "activeOrgOf", org.key.address)) == org.id
    assert tx_allowed(world, org.key.address) is True
    receipt = org.client.transact(contract, fn, *args)
    assert receipt["status"] == 1


def test_offboarding_is_final(world: World, reverts: Reverts) -> None:
    org = world.sponsor2
    gln = int(org.gln)
    world.admin.transact(CR, "offboardOrganization", org.id, REASON)
    exc = refused(reverts, "OrganizationNotActive", org.client, BR, "registerProduct", fresh_gtin())
    assert exc.args == (org.id, OrgStatus.OFFBOARDED)
    assert tx_allowed(world, org.key.address) is False
    exc = refused(reverts, "InvalidOrgTransition", world.admin, CR, "reactivateOrganization", org.id, REASON)
    assert exc.args == (org.id, OrgStatus.OFFBOARDED, OrgStatus.ACTIVE)
    # Its GLN stays with it: nobody can be onboarded under it again.
    exc = refused(reverts, "GlnTaken", world.admin, CR, "onboardOrganization", gln, "Reborn", [Role.SPONSOR])
    assert exc.args == (gln, org.id)
    assert org_state(world, org.id) == (gln, OrgStatus.OFFBOARDED)


# -------------------------------------------------------------------------------------- keys


def test_admin_adds_key(world: World) -> None:
    account = new_account("admin-adds")
    receipt = world.admin.transact(CR, "addKey", world.cmo.id, account.address, 0, 0, False)
    t = block_time(world, receipt)
    assert key_info(world, account.address) == (world.cmo.id, t, 0, 0, False)
    assert events(world, CR, "KeyAdded", receipt) == [
        {
            "org": world.cmo.id,
            "key": account.address,
            "validFrom": t,
            "validUntil": 0,
            "keyAdmin": False,
            "by": world.admin.address,
        }
    ]
    assert int(world.admin.view(CR, "activeOrgOf", account.address)) == world.cmo.id
    assert tx_allowed(world, account.address) is True


def test_key_admin_key_adds_key_to_its_own_org(world: World) -> None:
    account = new_account("keyadmin-adds")
    until = chain_now(world) + 10_000
    receipt = world.sponsor.client.transact(CR, "addKey", world.sponsor.id, account.address, 0, until, True)
    t = block_time(world, receipt)
    assert key_info(world, account.address) == (world.sponsor.id, t, until, 0, True)
    assert events(world, CR, "KeyAdded", receipt) == [
        {
            "org": world.sponsor.id,
            "key": account.address,
            "validFrom": t,
            "validUntil": until,
            "keyAdmin": True,
            "by": world.sponsor.key.address,
        }
    ]
    # The new key acts for the sponsor, and as a key-admin it can add keys itself.
    fund(world.w3, world.admin, [account.address])
    client = world.client_for(account)
    assert register_product_works(world, client) == world.sponsor.id
    third = new_account("keyadmin-adds-3")
    client.transact(CR, "addKey", world.sponsor.id, third.address, 0, 0, False)
    assert key_info(world, third.address)[0] == world.sponsor.id


KEY_ADMIN_REFUSALS = ["plain_key_of_org", "key_admin_of_other_org", "unknown_caller"]


@pytest.mark.parametrize("case", KEY_ADMIN_REFUSALS)
def test_add_key_refused_for_non_key_admin(world: World, reverts: Reverts, case: str) -> None:
    org = world.sponsor.id
    if case == "plain_key_of_org":
        caller, _ = add_key(world, org, key_admin=False)
    elif case == "key_admin_of_other_org":
        caller = world.cmo.client  # a key-admin key, but of the CMO
    else:
        account = new_account("outsider")
        fund(world.w3, world.admin, [account.address])
        caller = world.client_for(account)
    account = new_account("refused")
    before = registry_state(world, keys=(account.address,))
    exc = refused(reverts, "NotKeyAdmin", caller, CR, "addKey", org, account.address, 0, 0, True)
    assert exc.args == (caller.address, org)
    assert registry_state(world, keys=(account.address,)) == before
    assert key_info(world, account.address) == (0, 0, 0, 0, False)


def test_add_key_to_unknown_org_refused(world: World, reverts: Reverts) -> None:
    unknown = int(registry(world).functions.organizationCount().call()) + 1
    account = new_account("unknown-org")
    exc = refused(
        reverts, "UnknownOrganization", world.admin, CR, "addKey", unknown, account.address, 0, 0, False
    )
    assert exc.args == (unknown,)
    assert key_info(world, account.address) == (0, 0, 0, 0, False)


@pytest.mark.parametrize("case", ["active", "revoked", "other_org"])
def test_keys_are_never_reused(world: World, reverts: Reverts, case: str) -> None:
    client, _ = add_key(world, world.cmo.id)
    if case == "revoked":
        world.admin.transact(CR, "revokeKey", client.address)
    target = world.sponsor.id if case == "other_org" else world.cmo.id
    before = registry_state(world, keys=(client.address,))
    for by in (world.admin, world.cmo.client if target == world.cmo.id else world.sponsor.client):
        exc = refused(reverts, "KeyExists", by, CR, "addKey", target, client.address, 0, 0, True)
        assert exc.args == (client.address,)
    assert registry_state(world, keys=(client.address,)) == before


@pytest.mark.parametrize("case", ["zero_address", "until_equals_from", "until_before_from", "until_in_past"])
def test_add_key_invalid_window(world: World, reverts: Reverts, case: str) -> None:
    now = chain_now(world)
    key: str = new_account("window").address
    valid_from, valid_until = now + 1000, 0
    if case == "zero_address":
        key = ZERO_ADDRESS
    elif case == "until_equals_from":
        valid_until = valid_from
    elif case == "until_before_from":
        valid_until = valid_from - 1
    else:
        valid_from, valid_until = 0, now  # "from now" until a moment already past
    before = registry_state(world, keys=(key,))
    exc = refused(
        reverts,
        "InvalidKeyWindow",
        world.admin,
        CR,
        "addKey",
        world.cmo.id,
        key,
        valid_from,
        valid_until,
        False,
    )
    assert exc.tx_hash is not None
    effective_from = valid_from or block_time(world, world.w3.eth.get_transaction_receipt(exc.tx_hash))
    assert exc.args == (key, effective_from, valid_until)
    assert registry_state(world, keys=(key,)) == before


def test_key_valid_from_the_future(world: World, reverts: Reverts) -> None:
    start = chain_now(world) + 1000
    client, receipt = add_key(world, world.sponsor.id, valid_from=start)
    assert key_info(world, client.address) == (world.sponsor.id, start, 0, 0, False)
    assert events(world, CR, "KeyAdded", receipt)[0]["validFrom"] == start

    exc = reverts("KeyNotValidNow", world.admin.view, CR, "activeOrgOf", client.address)
    assert exc.args == (client.address, start, 0)
    exc = refused(reverts, "KeyNotValidNow", client, BR, "registerProduct", fresh_gtin())
    assert exc.args == (client.address, start, 0)
    assert tx_allowed(world, client.address) is False
    assert was_valid(world, client.address, start - 1) == (False, world.sponsor.id)
    assert was_valid(world, client.address, start) == (True, world.sponsor.id)

    world.time_travel(start - chain_now(world) + 1)
    assert int(world.admin.view(CR, "activeOrgOf", client.address)) == world.sponsor.id
    assert tx_allowed(world, client.address) is True
    assert register_product_works(world, client) == world.sponsor.id


def test_key_valid_until_passes(world: World, reverts: Reverts) -> None:
    until = chain_now(world) + 100
    client, _ = add_key(world, world.sponsor.id, valid_until=until)
    assert register_product_works(world, client) == world.sponsor.id
    world.time_travel(until - chain_now(world) + 1)
    exc = reverts("KeyNotValidNow", world.admin.view, CR, "activeOrgOf", client.address)
    valid_from = key_info(world, client.address)[1]
    assert exc.args == (client.address, valid_from, until)
    exc = refused(reverts, "KeyNotValidNow", client, BR, "registerProduct", fresh_gtin())
    assert exc.args == (client.address, valid_from, until)
    assert tx_allowed(world, client.address) is False
    assert was_valid(world, client.address, until) == (True, world.sponsor.id)
    assert was_valid(world, client.address, until + 1) == (False, world.sponsor.id)


def test_expired_key_admin_cannot_manage_keys(world: World, reverts: Reverts) -> None:
    until = chain_now(world) + 100
    keyadmin, _ = add_key(world, world.sponsor.id, valid_until=until, key_admin=True)
    world.time_travel(200)
    account = new_account("by-expired")
    exc = refused(
        reverts, "KeyNotValidNow", keyadmin, CR, "addKey", world.sponsor.id, account.address, 0, 0, False
    )
    assert exc.args[0] == keyadmin.address and exc.args[2] == until
    assert key_info(world, account.address) == (0, 0, 0, 0, False)


@pytest.mark.parametrize("by", ["admin", "key_admin"])
def test_revoke_key(world: World, reverts: Reverts, by: str) -> None:
    client, _ = add_key(world, world.sponsor.id)
    assert register_product_works(world, client) == world.sponsor.id
    revoker = world.admin if by == "admin" else world.sponsor.client
    receipt = revoker.transact(CR, "revokeKey", client.address)
    t = block_time(world, receipt)
    info = key_info(world, client.address)
    assert info[0] == world.sponsor.id and info[3] == t  # kept on record, with its revocation time
    assert events(world, CR, "KeyRevoked", receipt) == [
        {"org": world.sponsor.id, "key": client.address, "revokedAt": t, "by": revoker.address}
    ]
    exc = reverts("KeyIsRevoked", world.admin.view, CR, "activeOrgOf", client.address)
    assert exc.args == (client.address, t)
    exc = refused(reverts, "KeyIsRevoked", client, BR, "registerProduct", fresh_gtin())
    assert exc.args == (client.address, t)
    assert tx_allowed(world, client.address) is False
    # Revoking twice is refused and keeps the first revocation time.
    exc = refused(reverts, "KeyIsRevoked", revoker, CR, "revokeKey", client.address)
    assert exc.args == (client.address, t)
    assert key_info(world, client.address) == info


@pytest.mark.parametrize("case", ["unknown_key", "plain_key_of_org", "key_admin_of_other_org"])
def test_revoke_key_refused(world: World, reverts: Reverts, case: str) -> None:
    victim, _ = add_key(world, world.sponsor.id)
    if case == "unknown_key":
        unknown = new_account("unknown").address
        exc = refused(reverts, "UnknownKey", world.admin, CR, "revokeKey", unknown)
        assert exc.args == (unknown,)
    else:
        caller = add_key(world, world.sponsor.id)[0] if case == "plain_key_of_org" else world.cmo.client
        before = registry_state(world, keys=(victim.address,))
        exc = refused(reverts, "NotKeyAdmin", caller, CR, "revokeKey", victim.address)
        assert exc.args == (caller.address, world.sponsor.id)
        assert registry_state(world, keys=(victim.address,)) == before
    assert key_info(world, victim.address)[3] == 0
    assert register_product_works(world, victim) == world.sponsor.id


def test_revoked_key_admin_cannot_manage_keys(world: World, reverts: Reverts) -> None:
    keyadmin, _ = add_key(world, world.sponsor.id, key_admin=True)
    receipt = world.admin.transact(CR, "revokeKey", keyadmin.address)
    t = block_time(world, receipt)
    account = new_account("by-revoked")
    exc = refused(
        reverts, "KeyIsRevoked", keyadmin, CR, "addKey", world.sponsor.id, account.address, 0, 0, False
    )
    assert exc.args == (keyadmin.address, t)
    assert key_info(world, account.address) == (0, 0, 0, 0, False)


@pytest.mark.parametrize("key_admin", [False, True], ids=["plain", "key_admin"])
@pytest.mark.parametrize("by", ["admin", "org_key_admin"])
def test_rotate_key(world: World, reverts: Reverts, key_admin: bool, by: str) -> None:
    old, _ = add_key(world, world.sponsor.id, key_admin=key_admin)
    new = new_account("rotated")
    fund(world.w3, world.admin, [new.address])
    until = chain_now(world) + 50_000
    rotator = world.admin if by == "admin" else world.sponsor.client
    receipt = rotator.transact(CR, "rotateKey", old.address, new.address, until)
    t = block_time(world, receipt)
    assert key_info(world, new.address) == (world.sponsor.id, t, until, 0, key_admin)
    assert key_info(world, old.address)[3] == t
    assert events(world, CR, "KeyAdded", receipt) == [
        {
            "org": world.sponsor.id,
            "key": new.address,
            "validFrom": t,
            "validUntil": until,
            "keyAdmin": key_admin,
            "by": rotator.address,
        }
    ]
    assert events(world, CR, "KeyRevoked", receipt) == [
        {"org": world.sponsor.id, "key": old.address, "revokedAt": t, "by": rotator.address}
    ]
    new_client = world.client_for(new)
    assert register_product_works(world, new_client) == world.sponsor.id
    exc = refused(reverts, "KeyIsRevoked", old, BR, "registerProduct", fresh_gtin())
    assert exc.args == (old.address, t)
    # The new key inherits the key-admin flag, and with it the power to manage keys.
    extra = new_account("after-rotation")
    if key_admin:
        new_client.transact(CR, "addKey", world.sponsor.id, extra.address, 0, 0, False)
        assert key_info(world, extra.address)[0] == world.sponsor.id
    else:
        exc = refused(
            reverts, "NotKeyAdmin", new_client, CR, "addKey", world.sponsor.id, extra.address, 0, 0, False
        )
        assert exc.args == (new.address, world.sponsor.id)


@pytest.mark.parametrize(
    "case",
    [
        "new_key_exists",
        "old_key_revoked",
        "unknown_old_key",
        "not_key_admin",
        "key_admin_of_other_org",
        "bad_window",
    ],
)
def test_rotate_key_refused_is_atomic(world: World, reverts: Reverts, case: str) -> None:
    old, _ = add_key(world, world.sponsor.id)
    new = new_account("rotate-refused").address
    old_key, caller, until = old.address, world.sponsor.client, 0
    if case == "new_key_exists":
        new = world.cmo.key.address
        expected: tuple[Any, ...] = ("KeyExists", new)
    elif case == "old_key_revoked":
        receipt = world.admin.transact(CR, "revokeKey", old_key)
        expected = ("KeyIsRevoked", old_key, block_time(world, receipt))
    elif case == "unknown_old_key":
        old_key = new_account("nobody").address
        expected = ("UnknownKey", old_key)
    elif case == "not_key_admin":
        caller = add_key(world, world.sponsor.id)[0]
        expected = ("NotKeyAdmin", caller.address, world.sponsor.id)
    elif case == "key_admin_of_other_org":
        caller = world.cmo.client
        expected = ("NotKeyAdmin", caller.address, world.sponsor.id)
    else:
        until = 1
        expected = ("InvalidKeyWindow", new, None, 1)
    before = registry_state(world, keys=(old_key, new))
    exc = refused(reverts, expected[0], caller, CR, "rotateKey", old_key, new, until)
    if case == "bad_window":
        assert exc.args[0] == new and exc.args[2] == 1
    else:
        assert exc.args == expected[1:]
    # Neither half of the rotation happened.
    assert registry_state(world, keys=(old_key, new)) == before


def test_was_key_valid_at_keeps_history(world: World) -> None:
    client, receipt = add_key(world, world.sponsor.id)
    added = block_time(world, receipt)
    world.time_travel(500)
    receipt = world.admin.transact(CR, "revokeKey", client.address)
    revoked = block_time(world, receipt)
    assert revoked > added + 1
    org = world.sponsor.id
    assert was_valid(world, client.address, added - 1) == (False, org)
    assert was_valid(world, client.address, added) == (True, org)
    assert was_valid(world, client.address, revoked - 1) == (True, org)
    assert was_valid(world, client.address, revoked) == (False, org)
    assert was_valid(world, client.address, revoked + 10**6) == (False, org)
    assert was_valid(world, new_account("never").address, added) == (False, 0)
    # History does not depend on the organisation's current status.
    world.admin.transact(CR, "suspendOrganization", org, REASON)
    assert was_valid(world, client.address, revoked - 1) == (True, org)


# ------------------------------------------------------------------------ transactionAllowed

ALLOWED_CASES: list[tuple[str, bool, str | None]] = [
    # case, transactionAllowed, activeOrgOf error (None: resolves to the org)
    ("admin", True, "UnknownKey"),
    ("relayer", True, "UnknownKey"),
    ("relayer_disallowed_again", False, "UnknownKey"),
    ("active_key", True, None),
    ("revoked_key", False, "KeyIsRevoked"),
    ("suspended_org_key", False, "OrganizationNotActive"),
    ("offboarded_org_key", False, "OrganizationNotActive"),
    ("unknown", False, "UnknownKey"),
    ("expired_key", False, "KeyNotValidNow"),
    ("not_yet_valid_key", False, "KeyNotValidNow"),
]


@pytest.mark.parametrize(("case", "allowed", "error"), ALLOWED_CASES, ids=[c[0] for c in ALLOWED_CASES])
def test_transaction_allowed_matrix(
    world: World, reverts: Reverts, case: str, allowed: bool, error: str | None
) -> None:
    org = world.dist
    sender: str = org.key.address
    if case == "admin":
        sender = world.admin.address
    elif case.startswith("relayer"):
        sender = new_account("relayer").address
        receipt = world.admin.transact(CR, "setRelayer", sender, True)
        assert events(world, CR, "RelayerSet", receipt) == [{"relayer": sender, "allowed": True}]
        if case == "relayer_disallowed_again":
            receipt = world.admin.transact(CR, "setRelayer", sender, False)
            assert events(world, CR, "RelayerSet", receipt) == [{"relayer": sender, "allowed": False}]
        assert registry(world).functions.isRelayer(sender).call() is (case == "relayer")
    elif case == "revoked_key":
        world.admin.transact(CR, "revokeKey", sender)
    elif case == "suspended_org_key":
        world.admin.transact(CR, "suspendOrganization", org.id, REASON)
    elif case == "offboarded_org_key":
        world.admin.transact(CR, "offboardOrganization", org.id, REASON)
    elif case == "unknown":
        sender = new_account("unknown").address
    elif case == "expired_key":
        client, _ = add_key(world, org.id, valid_until=chain_now(world) + 10)
        world.time_travel(60)
        sender = client.address
    elif case == "not_yet_valid_key":
        sender = add_key(world, org.id, valid_from=chain_now(world) + 3600)[0].address
    assert tx_allowed(world, sender) is allowed
    if error is None:
        assert int(world.admin.view(CR, "activeOrgOf", sender)) == org.id
    else:
        reverts(error, world.admin.view, CR, "activeOrgOf", sender)


def test_set_relayer_admin_only(world: World, reverts: Reverts) -> None:
    relayer = new_account("relayer").address
    exc = refused(reverts, "NotAdmin", world.tpl.client, CR, "setRelayer", relayer, True)
    assert exc.args == (world.tpl.key.address,)
    assert registry(world).functions.isRelayer(relayer).call() is False
    assert tx_allowed(world, relayer) is False


# ----------------------------------------------------------------------------- admin transfer


def test_two_step_admin_transfer(world: World, reverts: Reverts, accounts: list[LocalAccount]) -> None:
    r = registry(world).functions
    old = world.admin
    new = world.client_for(accounts[7])
    exc = refused(reverts, "NotAdmin", world.sponsor.client, CR, "proposeAdmin", new.address)
    assert exc.args == (world.sponsor.key.address,)
    assert r.pendingAdmin().call() == ZERO_ADDRESS

    receipt = old.transact(CR, "proposeAdmin", new.address)
    assert events(world, CR, "AdminProposed", receipt) == [{"current": old.address, "proposed": new.address}]
    assert r.pendingAdmin().call() == new.address
    assert r.admin().call() == old.address  # nothing changes until the proposed admin accepts
    assert tx_allowed(world, new.address) is False

    exc = refused(reverts, "NotPendingAdmin", world.sponsor.client, CR, "acceptAdmin")
    assert exc.args == (world.sponsor.key.address,)
    exc = refused(reverts, "NotPendingAdmin", old, CR, "acceptAdmin")
    assert exc.args == (old.address,)
    assert (r.admin().call(), r.pendingAdmin().call()) == (old.address, new.address)

    receipt = new.transact(CR, "acceptAdmin")
    assert events(world, CR, "AdminTransferred", receipt) == [
        {"previous": old.address, "current": new.address}
    ]
    assert (r.admin().call(), r.pendingAdmin().call()) == (new.address, ZERO_ADDRESS)
    assert tx_allowed(world, new.address) is True
    assert tx_allowed(world, old.address) is False

    exc = refused(reverts, "NotAdmin", old, CR, "onboardOrganization", fresh_gln(), "Too Late", [])
    assert exc.args == (old.address,)
    exc = refused(reverts, "NotPendingAdmin", new, CR, "acceptAdmin")  # one acceptance only
    assert exc.args == (new.address,)
    gln = fresh_gln()
    new.transact(CR, "onboardOrganization", gln, "By New Admin", [Role.DISPENSER])
    assert int(r.organizationByGln(gln).call()) == int(r.organizationCount().call())


def test_new_proposal_replaces_pending_admin(
    world: World, reverts: Reverts, accounts: list[LocalAccount]
) -> None:
    r = registry(world).functions
    first, second = world.client_for(accounts[8]), world.client_for(accounts[9])
    world.admin.transact(CR, "proposeAdmin", first.address)
    world.admin.transact(CR, "proposeAdmin", second.address)
    exc = refused(reverts, "NotPendingAdmin", first, CR, "acceptAdmin")
    assert exc.args == (first.address,)
    assert (r.admin().call(), r.pendingAdmin().call()) == (world.admin.address, second.address)
    second.transact(CR, "acceptAdmin")
    assert r.admin().call() == second.address


# ------------------------------------------------------------------------- relayed key admin


def relayed_events(world: World, receipt: Any) -> list[dict[str, Any]]:
    return events(world, CR, "ActionRelayed", receipt)


def selector(world: World, fn: str) -> bytes:
    signature = getattr(registry(world).functions, fn).signature
    return bytes(world.w3.keccak(text=signature)[:4])


@pytest.mark.parametrize("fn", ["addKey", "revokeKey", "rotateKey"])
def test_action_type_hashes_match_python(world: World, fn: str) -> None:
    c = registry(world)
    sel = selector(world, fn)
    assert bytes(c.functions.actionTypeHash(sel).call()) == action_type_hash(c, fn)


@pytest.mark.parametrize("fn", ["addKey", "revokeKey", "rotateKey"])
def test_relayed_key_management(world: World, fn: str) -> None:
    """A key-admin key signs; a third party relays and pays; the registry records the signer as `by`."""
    signer, relayer, org = world.sponsor, world.tpl.client, world.sponsor.id
    c = registry(world)
    nonce = int(c.functions.nonces(signer.key.address).call())
    deadline = chain_now(world) + 3600
    victim, _ = add_key(world, org)
    new = new_account("relayed").address
    args: dict[str, tuple[Any, ...]] = {
        "addKey": (org, new, 0, 0, True),
        "revokeKey": (victim.address,),
        "rotateKey": (victim.address, new, 0),
    }
    signed = signer.client.sign(CR, fn, *args[fn], deadline=deadline)
    assert signed.nonce == nonce
    receipt = relayer.relay(CR, signed)
    t = block_time(world, receipt)
    assert relayed_events(world, receipt) == [
        {
            "signer": signer.key.address,
            "relayer": relayer.address,
            "selector": selector(world, fn),
            "nonce": nonce,
        }
    ]
    assert int(c.functions.nonces(signer.key.address).call()) == nonce + 1
    if fn in ("addKey", "rotateKey"):
        assert key_info(world, new) == (org, t, 0, 0, fn == "addKey")
        assert [e["by"] for e in events(world, CR, "KeyAdded", receipt)] == [signer.key.address]
    if fn in ("revokeKey", "rotateKey"):
        assert key_info(world, victim.address)[3] == t
        assert [e["by"] for e in events(world, CR, "KeyRevoked", receipt)] == [signer.key.address]


@pytest.mark.parametrize("case", ["plain_key", "other_org_key_admin"])
def test_relayed_add_key_checks_the_signer(world: World, reverts: Reverts, case: str) -> None:
    signer = add_key(world, world.sponsor.id)[0] if case == "plain_key" else world.cmo.client
    new = new_account("relayed-refused").address
    c = registry(world)
    nonce = int(c.functions.nonces(signer.address).call())
    signed = signer.sign(CR, "addKey", world.sponsor.id, new, 0, 0, True, deadline=chain_now(world) + 3600)
    exc = reverts("NotKeyAdmin", world.tpl.client.relay, CR, signed, gas=MINED_GAS)
    assert exc.tx_hash is not None
    assert exc.args == (signer.address, world.sponsor.id)  # the signer, not the relayer, is checked
    assert key_info(world, new) == (0, 0, 0, 0, False)
    assert int(c.functions.nonces(signer.address).call()) == nonce


@pytest.mark.parametrize("case", ["replay", "tampered", "wrong_signer", "expired", "not_relayable"])
def test_relay_refusals(world: World, reverts: Reverts, case: str) -> None:
    signer, relayer = world.sponsor, world.tpl.client
    c = registry(world)
    new = new_account("relay-refusal").address
    deadline = chain_now(world) + 3600
    signed = signer.client.sign(CR, "addKey", world.sponsor.id, new, 0, 0, False, deadline=deadline)
    if case == "replay":
        relayer.relay(CR, signed)
        new_state = key_info(world, new)
        nonce = int(c.functions.nonces(signer.key.address).call())
        exc = reverts("InvalidSignature", relayer.relay, CR, signed, gas=MINED_GAS)
        assert exc.args[0] == signer.key.address and exc.args[1] != signer.key.address
        assert key_info(world, new) == new_state
        assert int(c.functions.nonces(signer.key.address).call()) == nonce
        return
    nonce = int(c.functions.nonces(signer.key.address).call())
    if case == "tampered":
        other = new_account("swapped").address
        action = c.encode_abi("addKey", args=[world.sponsor.id, other, 0, 0, True])
        exc = reverts(
            "InvalidSignature",
            relayer.transact,
            CR,
            "relay",
            bytes.fromhex(action[2:]),
            signed.signer,
            signed.deadline,
            signed.signature,
            gas=MINED_GAS,
        )
        assert exc.args[0] == signer.key.address and exc.args[1] != signer.key.address
        assert key_info(world, other) == (0, 0, 0, 0, False)
    elif case == "wrong_signer":
        exc = reverts(
            "InvalidSignature",
            relayer.transact,
            CR,
            "relay",
            signed.action,
            world.cmo.key.address,
            signed.deadline,
            signed.signature,
            gas=MINED_GAS,
        )
        assert exc.args[0] == world.cmo.key.address
    elif case == "expired":
        world.time_travel(deadline - chain_now(world) + 1)
        exc = reverts("SignatureExpired", relayer.relay, CR, signed, gas=MINED_GAS)
        assert exc.args == (deadline,)
    else:
        onboard = signer.client.sign(CR, "setRelayer", relayer.address, True, deadline=deadline)
        exc = reverts("ActionNotRelayable", relayer.relay, CR, onboard, gas=MINED_GAS)
        assert exc.args == (bytes(onboard.action[:4]),)
        assert c.functions.isRelayer(relayer.address).call() is False
    assert exc.tx_hash is not None
    assert key_info(world, new) == (0, 0, 0, 0, False)
    assert int(c.functions.nonces(signer.key.address).call()) == nonce


def test_appended_signer_is_trusted_only_from_relay(world: World, reverts: Reverts) -> None:
    """Calling addKey directly with a key-admin's address appended (the ERC-2771 trailer relay uses)
    does not impersonate it: outside a relay self-call the sender acts."""
    outsider = world.tpl.client
    new = new_account("spoof").address
    data = registry(world).encode_abi("addKey", args=[world.sponsor.id, new, 0, 0, True])
    spoofed = data + world.sponsor.key.address[2:].lower()
    with pytest.raises(ContractRevert) as info:
        outsider.sender.send({"to": registry(world).address, "data": spoofed, "value": 0}, gas=MINED_GAS)
    assert info.value.name == "NotKeyAdmin"
    assert info.value.args == (outsider.address, world.sponsor.id)
    assert key_info(world, new) == (0, 0, 0, 0, False)
