"""Deployer, manifest and verification against a live devnet."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from node.artifacts import load_artifact
from node.chain import ChainIdMismatch, ChainUnreachable, connect, make_web3
from node.deploy import (
    SUITE,
    Deployment,
    ManifestExists,
    ManifestMismatch,
    deploy_suite,
    ensure_deployed,
    load_manifest,
    manifest_path,
    verify_manifest,
)
from node.devnet import Devnet, free_port
from node.settings import Settings


def test_manifest_records_the_suite(
    w3: Web3, deployed: Deployment, manifest_dir: Path, admin: LocalAccount
) -> None:
    manifest = deployed.manifest
    assert manifest_path(manifest_dir, 31337).exists()
    assert load_manifest(manifest_dir, 31337) == manifest
    assert manifest.chain_id == 31337
    assert manifest.deployer == manifest.admin == admin.address
    assert list(manifest.contracts) == [spec.name for spec in SUITE]
    for name, entry in manifest.contracts.items():
        receipt = w3.eth.get_transaction_receipt(entry.tx_hash)
        assert receipt["contractAddress"] == entry.address
        assert receipt["blockNumber"] == entry.deploy_block
        artifact = load_artifact(name)
        assert entry.artifact_sha256 == artifact.deployed_sha256
        assert entry.source_sha256 == artifact.source_sha256
    assert manifest.deploy_block == min(c.deploy_block for c in manifest.contracts.values())
    assert manifest.compiler_version == load_artifact("ConsortiumRegistry").compiler_version
    assert datetime.fromisoformat(manifest.created_at).tzinfo is not None


def test_constructor_wiring(deployed: Deployment, admin: LocalAccount) -> None:
    registry, batches, custody = (
        deployed[n] for n in ("ConsortiumRegistry", "BatchRegistry", "CustodyLedger")
    )
    assert registry.functions.admin().call() == admin.address
    assert batches.functions.registry().call() == registry.address
    assert custody.functions.registry().call() == registry.address
    assert custody.functions.batches().call() == batches.address


def test_verify_passes_with_immutables_masked(w3: Web3, deployed: Deployment) -> None:
    # The suite uses immutables (EIP-712 domain, wired addresses), so exact comparison alone would fail.
    assert any(load_artifact(name).immutable_ranges for name in deployed.manifest.contracts)
    verify_manifest(w3, deployed.manifest)


def test_redeploy_is_refused(w3: Web3, admin: LocalAccount, manifest_dir: Path) -> None:
    before = manifest_path(manifest_dir, 31337).read_bytes()
    head = w3.eth.block_number
    with pytest.raises(ManifestExists, match="force"):
        deploy_suite(w3, admin, manifest_dir=manifest_dir)
    assert manifest_path(manifest_dir, 31337).read_bytes() == before
    assert w3.eth.block_number == head  # refused before sending anything


def test_force_redeploys(
    w3: Web3, admin: LocalAccount, manifest_dir: Path, tmp_path: Path, chain_snapshot: str
) -> None:
    copy = tmp_path / "deployments"
    shutil.copytree(manifest_dir, copy)
    old = load_manifest(copy, 31337)
    new = deploy_suite(w3, admin, manifest_dir=copy, force=True)
    assert old is not None
    assert load_manifest(copy, 31337) == new
    assert {c.address for c in new.contracts.values()}.isdisjoint(c.address for c in old.contracts.values())
    verify_manifest(w3, new)


def test_verify_detects_replaced_code(
    devnet: Devnet, w3: Web3, deployed: Deployment, chain_snapshot: str
) -> None:
    address = deployed.manifest.address("BatchRegistry")
    code = bytes(w3.eth.get_code(address))
    artifact = load_artifact("BatchRegistry")

    # A byte changed inside an immutable slot: that is constructor data, still a match.
    start, _ = artifact.immutable_ranges[0]
    patched = bytearray(code)
    patched[start] ^= 0xFF
    devnet.rpc("anvil_setCode", [address, "0x" + patched.hex()])
    verify_manifest(w3, deployed.manifest)

    # A byte changed anywhere else in the code: mismatch.
    outside = next(
        i for i in range(len(code)) if not any(s <= i < s + n for s, n in artifact.immutable_ranges)
    )
    patched = bytearray(code)
    patched[outside] ^= 0xFF
    devnet.rpc("anvil_setCode", [address, "0x" + patched.hex()])
    with pytest.raises(ManifestMismatch, match="BatchRegistry: code at"):
        verify_manifest(w3, deployed.manifest)

    devnet.rpc("anvil_setCode", [address, "0x6000"])
    with pytest.raises(ManifestMismatch) as caught:
        verify_manifest(w3, deployed.manifest)
    assert len(caught.value.problems) == 1


def test_fresh_chain_with_stale_manifest(deployed: Deployment) -> None:
    with Devnet() as fresh, pytest.raises(ManifestMismatch) as caught:
        verify_manifest(make_web3(fresh.rpc_url), deployed.manifest)
    assert len(caught.value.problems) == len(SUITE)
    assert all("no code" in p for p in caught.value.problems)


def test_manifest_of_another_chain(deployed: Deployment) -> None:
    with Devnet(chain_id=1337) as other, pytest.raises(ManifestMismatch, match="chain 31337"):
        verify_manifest(make_web3(other.rpc_url), deployed.manifest)


def test_ensure_deployed_deploys_once_then_verifies(tmp_path: Path, admin: LocalAccount) -> None:
    with Devnet() as node:
        w3 = make_web3(node.rpc_url)
        first, deployed_now = ensure_deployed(w3, admin, manifest_dir=tmp_path)
        assert deployed_now
        head = w3.eth.block_number
        again, deployed_now = ensure_deployed(w3, admin, manifest_dir=tmp_path)
        assert not deployed_now and again == first
        assert w3.eth.block_number == head
        node.rpc("anvil_setCode", [first.contracts["CustodyLedger"].address, "0x"])
        with pytest.raises(ManifestMismatch, match="CustodyLedger: no code"):
            ensure_deployed(w3, admin, manifest_dir=tmp_path)


def test_load_contracts(deployed: Deployment) -> None:
    assert set(deployed.contracts) == {spec.name for spec in SUITE}
    for name, contract in deployed.contracts.items():
        assert contract.address == deployed.manifest.address(name)
        assert contract.abi == load_artifact(name).abi


def test_connect_checks_chain_id(devnet: Devnet) -> None:
    assert connect(Settings(_env_file=None, rpc_url=devnet.rpc_url)).eth.chain_id == 31337  # type: ignore[call-arg]
    with pytest.raises(ChainIdMismatch, match="expect chain 5"):
        connect(Settings(_env_file=None, rpc_url=devnet.rpc_url, chain_id=5))  # type: ignore[call-arg]
    with pytest.raises(ChainUnreachable):
        connect(Settings(_env_file=None, rpc_url=f"http://127.0.0.1:{free_port()}"), timeout=1)  # type: ignore[call-arg]
