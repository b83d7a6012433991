"""Seed the demo consortium for `rxledger up`: six organisations with their keys, a product, an
authorised CMO, a released batch commissioned into cases, and some of it shipped down the chain.

Idempotent: when the sponsor's GLN is already onboarded (a resumed devnet), it only reports what is
there. Devnet only: the admin is the first Anvil account and the keys are derived from a seed.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table
from web3 import Web3
from web3.contract import Contract

from node.accounts import dev_accounts
from node.ledger.consortium import DEMO_ORGS, Org, onboard
from node.ledger.constants import Role
from node.ledger.identifiers import container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, released_batch, sscc
from node.settings import Settings

DEMO_LOT = "DEMO-001"
DEMO_SEED = "demo"


def seed_demo(settings: Settings, w3: Web3, contracts: Mapping[str, Contract]) -> None:
    console = Console()
    registry = contracts["ConsortiumRegistry"]
    sponsor_gln = int(DEMO_ORGS[0].gln)
    if registry.functions.organizationByGln(sponsor_gln).call() != 0:
        console.print("demo consortium: already seeded (resumed chain)")
        _print_orgs(console, registry)
        return
    admin = dev_accounts()[0]
    orgs = onboard(w3, contracts, admin, DEMO_ORGS, seed=DEMO_SEED)
    _seed_product_flow(orgs)
    console.print("demo consortium: seeded")
    _print_orgs(console, registry)


def _seed_product_flow(orgs: Mapping[str, Org]) -> None:
    sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
    tpl, pharmacy = orgs["Alpine Logistics 3PL"], orgs["City Pharmacy"]
    gtin = int(JOURNEY_GTIN)
    sponsor.client.transact("BatchRegistry", "registerProduct", gtin)
    sponsor.client.transact("BatchRegistry", "authorizeManufacturer", gtin, cmo.id)
    bid = released_batch(cmo, sponsor, DEMO_LOT)
    cases = [container_key(sscc("4098765", 700_000 + i)) for i in range(4)]
    keys = [unit_key(JOURNEY_GTIN, f"DEMO{i:05d}") for i in range(40)]
    cmo.client.transact("CustodyLedger", "commission", bid, cases, keys, bytes(32))
    cmo.client.transact(
        "CustodyLedger", "ship", b"DEMO-SHIP-1".ljust(32, b"\0"), tpl.id, cases[:2], bytes(32), bytes(32)
    )
    tpl.client.transact(
        "CustodyLedger", "receiveShipment", b"DEMO-SHIP-1".ljust(32, b"\0"), cases[:2], bytes(32)
    )
    tpl.client.transact(
        "CustodyLedger", "ship", b"DEMO-SHIP-2".ljust(32, b"\0"), pharmacy.id, cases[:1], bytes(32), bytes(32)
    )
    pharmacy.client.transact(
        "CustodyLedger", "receiveShipment", b"DEMO-SHIP-2".ljust(32, b"\0"), cases[:1], bytes(32)
    )


def _print_orgs(console: Console, registry: Contract) -> None:
    table = Table(title="demo consortium (devnet keys are derived from the seed 'demo')")
    table.add_column("org")
    table.add_column("name")
    table.add_column("GLN")
    table.add_column("roles")
    for spec in DEMO_ORGS:
        org_id = registry.functions.organizationByGln(int(spec.gln)).call()
        roles = ", ".join(Role.NAMES[r] for r in spec.roles)
        table.add_row(str(org_id), spec.name, spec.gln, roles)
    console.print(table)
