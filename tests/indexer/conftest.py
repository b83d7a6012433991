"""Indexer test fixtures: a dedicated devnet with the demo consortium, and read-model databases on
SQLite and on a throwaway PostgreSQL cluster (initdb/pg_ctl on a free port, removed afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from web3 import Web3

from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Deployment, Manifest, deploy_suite
from node.devnet import Devnet
from node.indexer.database import read_model_engine
from node.indexer.pgtemp import TempPostgres
from node.ledger.consortium import Org, onboard
from node.ledger.journey import JOURNEY_GTIN

_db_counter = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty read-model database on each backend."""
    if request.param == "sqlite":
        eng = read_model_engine(f"sqlite:///{tmp_path}/readmodels.db")
    else:
        server: TempPostgres = request.getfixturevalue("postgres_server")
        eng = read_model_engine(server.database_url(f"rx_{next(_db_counter)}"))
    yield eng
    eng.dispose()


@dataclass
class Chain:
    devnet: Devnet
    w3: Web3
    deployment: Deployment
    orgs: dict[str, Org]

    @property
    def manifest(self) -> Manifest:
        return self.deployment.manifest


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A devnet of the module's own with the suite deployed and the demo consortium onboarded."""
    # Unpruned history: anvil_reorg rebuilds from it (a few hundred small blocks, so little disk).
    with Devnet(port=0, prune_history=False) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin = dev_accounts()[0]
        manifest = deploy_suite(w3, admin, manifest_dir=tmp_path_factory.mktemp("manifest"))
        deployment = Deployment.load(w3, manifest)
        orgs = onboard(w3, deployment.contracts, admin, seed="indexer-tests")
        sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
        sponsor.client.transact("BatchRegistry", "registerProduct", int(JOURNEY_GTIN))
        sponsor.client.transact("BatchRegistry", "authorizeManufacturer", int(JOURNEY_GTIN), cmo.id)
        yield Chain(devnet, w3, deployment, orgs)
