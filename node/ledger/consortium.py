"""Onboard a consortium onto a freshly deployed suite: organisations, roles and signing keys.

Used by the demo seeding (`make up`), the tests and the benchmarks. Keys here are derived from a
seed string, which is only acceptable for a devnet; production keys come from each partner's own
keystore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from node.ledger.client import LedgerClient
from node.ledger.constants import Role


@dataclass(frozen=True)
class OrgSpec:
    name: str
    gln: str
    roles: tuple[bytes, ...]


@dataclass
class Org:
    name: str
    id: int
    gln: str
    roles: tuple[bytes, ...]
    key: LocalAccount
    client: LedgerClient
    extra_keys: list[LocalAccount] = field(default_factory=list)


# The standard demo consortium: one of each kind of partner (GLNs carry valid check digits).
DEMO_ORGS: tuple[OrgSpec, ...] = (
    OrgSpec("Sponsor Pharma AG", "4012345000009", (Role.SPONSOR,)),
    OrgSpec("Contract Manufacturing GmbH", "4098765000003", (Role.CMO,)),
    OrgSpec("Alpine Logistics 3PL", "7612345000008", (Role.LOGISTICS,)),
    OrgSpec("Euro Wholesale Distribution", "5412345000013", (Role.DISTRIBUTOR,)),
    OrgSpec("City Pharmacy", "4000001000005", (Role.DISPENSER,)),
    OrgSpec("National Medicines Agency", "4000002000004", (Role.REGULATOR,)),
)


def derived_key(seed: str) -> LocalAccount:
    """A deterministic devnet key from a seed string (never for production)."""
    account: LocalAccount = Account.from_key(keccak(text=f"rxledger-devnet-key:{seed}"))
    return account


def fund(w3: Web3, admin: LedgerClient, addresses: Sequence[str], wei: int = 10**20) -> None:
    """Give devnet keys gas money (a no-op need on a zero-gas-price consortium chain)."""
    for address in addresses:
        if w3.eth.get_balance(Web3.to_checksum_address(address)) < wei // 2:
            admin.sender.send({"to": Web3.to_checksum_address(address), "value": wei}, gas=21_000)


def onboard(
    w3: Web3,
    contracts: Mapping[str, Contract],
    admin_account: LocalAccount,
    specs: Sequence[OrgSpec] = DEMO_ORGS,
    *,
    seed: str = "demo",
) -> dict[str, Org]:
    """Onboard `specs` with one key-admin key each (derived from `seed` and the org's name)."""
    admin = LedgerClient(w3, contracts, admin_account)
    orgs: dict[str, Org] = {}
    keys = {spec.name: derived_key(f"{seed}:{spec.name}") for spec in specs}
    fund(w3, admin, [k.address for k in keys.values()])
    for spec in specs:
        admin.transact(
            "ConsortiumRegistry", "onboardOrganization", int(spec.gln), spec.name, list(spec.roles)
        )
        org_id = int(admin.view("ConsortiumRegistry", "organizationByGln", int(spec.gln)))
        key = keys[spec.name]
        admin.transact("ConsortiumRegistry", "addKey", org_id, key.address, 0, 0, True)
        orgs[spec.name] = Org(spec.name, org_id, spec.gln, spec.roles, key, LedgerClient(w3, contracts, key))
    return orgs
