"""A consortium on the session's devnet for the contract tests, and helpers to act in it.

The consortium is onboarded once per session (outside any test's snapshot); every contract test
runs inside `chain_snapshot`, so whatever it does to the chain is undone afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from node.chain import ContractRevert
from node.deploy import Deployment
from node.devnet import Devnet
from node.ledger.client import LedgerClient
from node.ledger.consortium import DEMO_ORGS, Org, OrgSpec, derived_key, fund, onboard
from node.ledger.constants import BatchStatus, CertificateKind, Role
from node.ledger.identifiers import batch_id, container_key, unit_key, with_check_digit

GTIN = "09506000134352"
OTHER_GTIN = with_check_digit("0950600013436")
SITE_GLN = 4098765000003
EXPIRY = 281231

EXTRA_ORGS: tuple[OrgSpec, ...] = (
    OrgSpec("Second CMO", "4000003000003", (Role.CMO,)),
    OrgSpec("Second Pharmacy", "4000004000002", (Role.DISPENSER,)),
    OrgSpec("Second Sponsor", with_check_digit("400000500000"), (Role.SPONSOR,)),
)


def b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


@dataclass
class World:
    """The demo consortium plus a second CMO, pharmacy and sponsor; GTIN owned by the sponsor with
    the CMO authorised."""

    w3: Web3
    devnet: Devnet
    deployment: Deployment
    admin: LedgerClient
    orgs: dict[str, Org]
    _serials: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- the parties
    @property
    def sponsor(self) -> Org:
        return self.orgs["Sponsor Pharma AG"]

    @property
    def cmo(self) -> Org:
        return self.orgs["Contract Manufacturing GmbH"]

    @property
    def tpl(self) -> Org:
        return self.orgs["Alpine Logistics 3PL"]

    @property
    def dist(self) -> Org:
        return self.orgs["Euro Wholesale Distribution"]

    @property
    def pharmacy(self) -> Org:
        return self.orgs["City Pharmacy"]

    @property
    def regulator(self) -> Org:
        return self.orgs["National Medicines Agency"]

    @property
    def cmo2(self) -> Org:
        return self.orgs["Second CMO"]

    @property
    def pharmacy2(self) -> Org:
        return self.orgs["Second Pharmacy"]

    @property
    def sponsor2(self) -> Org:
        return self.orgs["Second Sponsor"]

    def contract(self, name: str) -> Any:
        return self.deployment[name]

    # -- identifiers
    def unit_keys(self, n: int) -> list[bytes]:
        return [unit_key(GTIN, f"T{next(self._serials):08d}") for _ in range(n)]

    def sscc_key(self) -> bytes:
        return container_key(with_check_digit(f"04098765{next(self._serials):09d}"))

    # -- common set-ups
    def new_batch(self, *, maker: Org | None = None, release: bool = True, gtin: str = GTIN) -> bytes:
        maker = maker or self.cmo
        lot = f"L{next(self._serials)}"
        maker.client.transact("BatchRegistry", "createBatch", int(gtin), lot, EXPIRY, SITE_GLN)
        bid = batch_id(gtin, lot)
        if release:
            if maker.id != self.sponsor.id:
                maker.client.transact(
                    "BatchRegistry",
                    "anchorCertificate",
                    bid,
                    CertificateKind.ANALYSIS,
                    b"\x0a" * 32,
                    b32("approved"),
                )
            self.sponsor.client.transact(
                "BatchRegistry",
                "releaseWithCertification",
                bid,
                b"\x0b" * 32,
                b32("released for sale"),
                b"\x0c" * 32,
            )
        return bid

    def commission(
        self, bid: bytes, n: int = 3, *, containers: list[bytes] | None = None, maker: Org | None = None
    ) -> list[bytes]:
        keys = self.unit_keys(n)
        (maker or self.cmo).client.transact(
            "CustodyLedger", "commission", bid, containers or [], keys, b"\x01" * 32
        )
        return keys

    def ship(self, sender: Org, to: Org, keys: list[bytes], *, receive: bool = True) -> bytes:
        sid = bytes(Web3.keccak(text=f"shipment-{next(self._serials)}"))
        sender.client.transact("CustodyLedger", "ship", sid, to.id, keys, b"\x02" * 32, b"\x03" * 32)
        if receive:
            to.client.transact("CustodyLedger", "receiveShipment", sid, keys, b"\x04" * 32)
        return sid

    def batch_status(self, bid: bytes) -> BatchStatus:
        return BatchStatus(self.contract("BatchRegistry").functions.batchCore(bid).call()[2])

    def unit(self, key: bytes) -> Any:
        return self.contract("CustodyLedger").functions.unit(key).call()

    def time_travel(self, seconds: int) -> None:
        self.devnet.rpc("evm_increaseTime", [seconds])
        self.devnet.mine()

    def new_key(self, org: Org, seed: str, *, key_admin: bool = False) -> LedgerClient:
        account = derived_key(f"test:{seed}:{next(self._serials)}")
        fund(self.w3, self.admin, [account.address])
        self.admin.transact("ConsortiumRegistry", "addKey", org.id, account.address, 0, 0, key_admin)
        return LedgerClient(self.w3, self.deployment.contracts, account)

    def client_for(self, account: LocalAccount) -> LedgerClient:
        return LedgerClient(self.w3, self.deployment.contracts, account)


@pytest.fixture(scope="session")
def world(w3: Web3, devnet: Devnet, deployed: Deployment, admin: LocalAccount) -> World:
    orgs = onboard(w3, deployed.contracts, admin, (*DEMO_ORGS, *EXTRA_ORGS), seed="tests")
    sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
    sponsor.client.transact("BatchRegistry", "registerProduct", int(GTIN))
    sponsor.client.transact("BatchRegistry", "authorizeManufacturer", int(GTIN), cmo.id)
    return World(w3, devnet, deployed, LedgerClient(w3, deployed.contracts, admin), orgs)


@pytest.fixture(autouse=True)
def _isolated(chain_snapshot: str) -> None:
    """Every contract test runs inside an evm snapshot."""


@pytest.fixture
def reverts() -> Callable[..., ContractRevert]:
    """`reverts("ErrorName", fn, *args)`: calls fn and asserts it reverts with that custom error;
    returns the decoded revert for further checks of its arguments."""

    def check(error: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ContractRevert:
        with pytest.raises(ContractRevert) as info:
            fn(*args, **kwargs)
        assert info.value.name == error, f"expected {error}, got {info.value}"
        return info.value

    return check
