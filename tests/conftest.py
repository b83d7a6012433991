"""Shared fixtures: one Anvil devnet per test session with the suite deployed, plus snapshots.

Contract tests typically take `deployed` (the suite, deployed by account 0 as admin), `accounts`
and `chain_snapshot` (every chain change of the test is reverted afterwards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from node.accounts import dev_accounts
from node.chain import Sender, make_web3
from node.deploy import Deployment, deploy_suite
from node.devnet import Devnet
from node.errors import ErrorRegistry, default_registry
from node.indexer.pgtemp import TempPostgres

# Files that take minutes run first. `make test` runs two xdist workers that each take one file at a
# time in collection order; a long file started last leaves the other worker idle at the end.
SLOW_FILES_FIRST = (
    "tests/faults/test_chain_node_killed.py",
    "tests/foundation/test_build.py",
    "tests/faults/",
    "tests/api/test_schemathesis.py",
    "tests/foundation/test_cli.py",
    "tests/api/test_identity.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, p in enumerate(SLOW_FILES_FIRST) if path.startswith(p)), len(SLOW_FILES_FIRST))

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    """Anvil on a free port, private cache dir, no state file; stopped at the end of the session."""
    with Devnet(port=0) as node:
        yield node


@pytest.fixture(scope="session")
def w3(devnet: Devnet) -> Web3:
    return make_web3(devnet.rpc_url)


@pytest.fixture(scope="session")
def accounts() -> list[LocalAccount]:
    """The 20 funded devnet accounts, derived from the Anvil test mnemonic."""
    return dev_accounts()


@pytest.fixture(scope="session")
def admin(accounts: list[LocalAccount]) -> LocalAccount:
    return accounts[0]


@pytest.fixture(scope="session")
def manifest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where `deployed` writes the session's manifest (<chain-id>.json)."""
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="session")
def deployed(w3: Web3, admin: LocalAccount, manifest_dir: Path) -> Deployment:
    """The contract suite deployed once per session by account 0 (also the consortium admin)."""
    manifest = deploy_suite(w3, admin, manifest_dir=manifest_dir)
    return Deployment.load(w3, manifest)


@pytest.fixture
def chain_snapshot(devnet: Devnet, deployed: Deployment) -> Iterator[str]:
    """evm_snapshot before the test, evm_revert after it. Depends on `deployed` so that the
    session's deployment is never inside (and undone by) a test's snapshot."""
    snapshot_id = devnet.snapshot()
    yield snapshot_id
    devnet.revert(snapshot_id)


@pytest.fixture(scope="session")
def error_registry() -> ErrorRegistry:
    """Every custom error of every artifact, by selector."""
    return default_registry()


@pytest.fixture(scope="session")
def sender_for(w3: Web3, error_registry: ErrorRegistry) -> Callable[[LocalAccount], Sender]:
    """`sender_for(account).transact(contract.functions.f(...))`: one cached Sender per account."""
    cache: dict[str, Sender] = {}

    def get(account: LocalAccount) -> Sender:
        if account.address not in cache:
            cache[account.address] = Sender(w3, account, registry=error_registry)
        return cache[account.address]

    return get


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    """A PostgreSQL cluster of our own for the session (CI installs the server with apt)."""
    try:
        server = TempPostgres().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
