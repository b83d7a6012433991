"""Deploy the contract suite, record it in deployments/<chain-id>.json, and verify it later.

The manifest is what every other component (indexer, API, CLI) trusts for contract addresses, so
verification compares the code on chain with the artifact byte for byte and fails loudly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from pydantic import AfterValidator, BaseModel, ConfigDict
from web3 import Web3
from web3.contract import Contract

from node.artifacts import Artifact, load_artifact
from node.chain import Sender

ADMIN = "@admin"  # constructor argument placeholder: the consortium admin address


@dataclass(frozen=True)
class ContractSpec:
    """One contract of the suite; `args` are ADMIN or names of contracts deployed before it."""

    name: str
    args: tuple[str, ...] = ()


# The suite, in deployment order. Change it here and nowhere else.
SUITE: tuple[ContractSpec, ...] = (
    ContractSpec("ConsortiumRegistry", (ADMIN,)),
    ContractSpec("BatchRegistry", ("ConsortiumRegistry",)),
    ContractSpec("CustodyLedger", ("ConsortiumRegistry", "BatchRegistry")),
)


class DeployError(RuntimeError):
    pass


class ManifestExists(DeployError):
    pass


class ManifestMismatch(RuntimeError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "deployment manifest does not match the chain:\n" + "\n".join(f"  - {p}" for p in problems)
        )
        self.problems = problems


# Validated and normalised to EIP-55 on load, so a hand-edited manifest cannot carry a bad address.
Address = Annotated[ChecksumAddress, AfterValidator(Web3.to_checksum_address)]


class DeployedContract(BaseModel):
    model_config = ConfigDict(frozen=True)

    address: Address
    tx_hash: HexStr
    deploy_block: int
    artifact_sha256: str  # sha256 of the artifact's deployedBytecode
    source_sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    chain_id: int
    deployer: Address
    admin: Address
    deploy_block: int  # the lowest deploy block: where an indexer starts
    compiler_version: str
    created_at: str
    contracts: dict[str, DeployedContract]

    def address(self, name: str) -> ChecksumAddress:
        return self.contracts[name].address


def manifest_path(manifest_dir: Path, chain_id: int) -> Path:
    return manifest_dir / f"{chain_id}.json"


def load_manifest(manifest_dir: Path, chain_id: int) -> Manifest | None:
    path = manifest_path(manifest_dir, chain_id)
    if not path.exists():
        return None
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))


def write_manifest(manifest: Manifest, manifest_dir: Path) -> Path:
    """Write atomically (temp file + rename): a half-written manifest would break every reader."""
    manifest_dir.mkdir(parents=True, exist_ok=True)
    path = manifest_path(manifest_dir, manifest.chain_id)
    fd, tmp = tempfile.mkstemp(dir=manifest_dir, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _resolve_args(spec: ContractSpec, admin: str, deployed: dict[str, DeployedContract]) -> list[Any]:
    args: list[Any] = []
    for arg in spec.args:
        if arg == ADMIN:
            args.append(Web3.to_checksum_address(admin))
        elif arg in deployed:
            args.append(deployed[arg].address)
        else:
            raise DeployError(f"{spec.name}: argument {arg!r} is neither {ADMIN} nor an earlier contract")
    return args


def deploy_suite(
    w3: Web3,
    deployer: LocalAccount,
    *,
    manifest_dir: Path,
    admin: str | None = None,
    force: bool = False,
    suite: tuple[ContractSpec, ...] = SUITE,
    artifacts_dir: Path | None = None,
) -> Manifest:
    """Deploy `suite` in order and write the manifest. Refuses to replace a manifest of the same
    chain unless force=True (the old addresses would silently be forgotten)."""
    chain_id = w3.eth.chain_id
    path = manifest_path(manifest_dir, chain_id)
    if path.exists() and not force:
        raise ManifestExists(
            f"{path} already exists for chain {chain_id}; pass force=True (--force) to redeploy"
        )
    admin = admin or deployer.address
    artifacts = {spec.name: load_artifact(spec.name, artifacts_dir) for spec in suite}
    for name, artifact in artifacts.items():
        if not artifact.deployable or artifact.has_link_references:
            raise DeployError(f"{name} is abstract, an interface, or needs library linking")
    sender = Sender(w3, deployer)
    deployed: dict[str, DeployedContract] = {}
    for spec in suite:
        artifact = artifacts[spec.name]
        receipt = sender.deploy(artifact.abi, artifact.bytecode, _resolve_args(spec, admin, deployed))
        address = receipt["contractAddress"]
        if address is None:
            raise DeployError(f"{spec.name}: receipt has no contract address")
        deployed[spec.name] = DeployedContract(
            address=address,
            tx_hash=HexStr(receipt["transactionHash"].to_0x_hex()),
            deploy_block=receipt["blockNumber"],
            artifact_sha256=artifact.deployed_sha256,
            source_sha256=artifact.source_sha256,
        )
    manifest = Manifest(
        chain_id=chain_id,
        deployer=deployer.address,
        admin=admin,
        deploy_block=min(c.deploy_block for c in deployed.values()),
        compiler_version=next(iter(artifacts.values())).compiler_version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        contracts=deployed,
    )
    write_manifest(manifest, manifest_dir)
    return manifest


def code_matches(onchain: bytes, artifact: Artifact) -> bool:
    """Exact comparison, except the immutable slots the constructor wrote (masked on both sides)."""
    expected = artifact.deployed_bytecode
    if len(onchain) != len(expected):
        return False
    if not artifact.immutable_ranges:
        return onchain == expected
    left, right = bytearray(onchain), bytearray(expected)
    for start, length in artifact.immutable_ranges:
        left[start : start + length] = bytes(length)
        right[start : start + length] = bytes(length)
    return left == right


@dataclass(frozen=True)
class CodeCheck:
    name: str
    address: str
    code_matches: bool
    problem: str | None = None


def check_manifest(w3: Web3, manifest: Manifest, artifacts_dir: Path | None = None) -> list[CodeCheck]:
    """One check per contract of the manifest; never raises for a mismatch (the caller decides)."""
    checks: list[CodeCheck] = []
    for name, entry in manifest.contracts.items():
        problem: str | None = None
        try:
            artifact = load_artifact(name, artifacts_dir)
        except LookupError as exc:
            checks.append(CodeCheck(name, entry.address, False, str(exc)))
            continue
        code = bytes(w3.eth.get_code(entry.address))
        if not code:
            problem = f"{name}: no code at {entry.address} (fresh chain with a stale manifest?)"
        elif not code_matches(code, artifact):
            sizes = f"{len(code)} bytes on chain, {len(artifact.deployed_bytecode)} in the artifact"
            problem = f"{name}: code at {entry.address} differs from the artifact ({sizes})"
        elif artifact.deployed_sha256 != entry.artifact_sha256:
            problem = (
                f"{name}: manifest records artifact {entry.artifact_sha256[:12]}..., "
                f"artifact is now {artifact.deployed_sha256[:12]}... (rebuilt since deployment)"
            )
        checks.append(CodeCheck(name, entry.address, problem is None, problem))
    return checks


def verify_manifest(w3: Web3, manifest: Manifest, artifacts_dir: Path | None = None) -> None:
    """Raise ManifestMismatch unless every contract's code on chain is its artifact's code."""
    problems: list[str] = []
    chain_id = w3.eth.chain_id
    if chain_id != manifest.chain_id:
        problems.append(f"manifest is for chain {manifest.chain_id}, node serves chain {chain_id}")
    problems += [c.problem for c in check_manifest(w3, manifest, artifacts_dir) if c.problem]
    if problems:
        raise ManifestMismatch(problems)


def ensure_deployed(
    w3: Web3,
    deployer: LocalAccount,
    *,
    manifest_dir: Path,
    admin: str | None = None,
    artifacts_dir: Path | None = None,
) -> tuple[Manifest, bool]:
    """Deploy when there is no manifest for this chain, else verify it. Returns (manifest, deployed_now)."""
    manifest = load_manifest(manifest_dir, w3.eth.chain_id)
    if manifest is None:
        return deploy_suite(
            w3, deployer, manifest_dir=manifest_dir, admin=admin, artifacts_dir=artifacts_dir
        ), True
    verify_manifest(w3, manifest, artifacts_dir)
    return manifest, False


def load_contracts(w3: Web3, manifest: Manifest, artifacts_dir: Path | None = None) -> dict[str, Contract]:
    """web3 contract objects by name, at the manifest's addresses."""
    return {
        name: w3.eth.contract(address=manifest.address(name), abi=load_artifact(name, artifacts_dir).abi)
        for name in manifest.contracts
    }


@dataclass(frozen=True)
class Deployment:
    """A verified suite: its manifest and web3 contract objects (`deployment["BatchRegistry"]`)."""

    manifest: Manifest
    contracts: dict[str, Contract]

    def __getitem__(self, name: str) -> Contract:
        return self.contracts[name]

    @classmethod
    def load(cls, w3: Web3, manifest: Manifest, artifacts_dir: Path | None = None) -> Deployment:
        return cls(manifest, load_contracts(w3, manifest, artifacts_dir))
