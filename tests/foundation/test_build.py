"""The compile pipeline: deterministic artifacts, loud failures, and the byte-for-byte check."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from node.artifacts import artifact_names, load_all_artifacts, load_artifact, load_build_info
from node.build import ArtifactsOutOfDate, CompileFailed, build_contracts
from node.deploy import SUITE
from node.paths import ARTIFACTS_DIR, CONTRACTS_SRC
from tests.foundation.conftest import PROBE_SRC

PINNED_SOLC = json.loads((ARTIFACTS_DIR.parent.parent / "package.json").read_text())["dependencies"]["solc"]


@pytest.mark.slow
def test_committed_artifacts_reproduce_byte_for_byte() -> None:
    """CI gate: contracts/artifacts is exactly what the pinned compiler makes of contracts/src."""
    build_contracts(check=True)


def test_committed_artifacts_cover_every_source_and_the_suite() -> None:
    names = artifact_names()
    for spec in SUITE:
        assert spec.name in names
        assert load_artifact(spec.name).deployable
    build_info = load_build_info()
    own_sources = {p.relative_to(CONTRACTS_SRC).as_posix() for p in CONTRACTS_SRC.rglob("*.sol")}
    assert own_sources <= set(build_info["sources"])
    for name, source in build_info["sources"].items():
        if name in own_sources:
            assert hashlib.sha256((CONTRACTS_SRC / name).read_bytes()).hexdigest() == source


def test_probe_artifact_contents(probe_artifacts: Path) -> None:
    raw = json.loads((probe_artifacts / "Probe.json").read_text())
    assert raw["contractName"] == "Probe"
    assert raw["sourceName"] == "Probe.sol"
    assert raw["compiler"]["version"].startswith(f"{PINNED_SOLC}+")
    assert raw["settings"]["evmVersion"] == "cancun"
    assert raw["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    metadata_settings = json.loads(raw["metadata"])["settings"]
    assert metadata_settings["optimizer"] == raw["settings"]["optimizer"]
    assert metadata_settings["evmVersion"] == raw["settings"]["evmVersion"]
    assert metadata_settings.get("viaIR", False) == raw["settings"]["viaIR"]
    assert set(raw["sources"]) == {
        "Probe.sol",
        "interfaces/IProbe.sol",
        "@openzeppelin/contracts/utils/Context.sol",
    }
    assert raw["sourceSha256"] == hashlib.sha256((PROBE_SRC / "Probe.sol").read_bytes()).hexdigest()
    deployed = bytes.fromhex(raw["deployedBytecode"][2:])
    assert raw["deployedBytecodeSize"] == len(deployed) > 0
    assert raw["deployedBytecodeSha256"] == hashlib.sha256(deployed).hexdigest()
    assert len(raw["immutableReferences"]) == 2  # owner, createdAt
    # Stable formatting: sorted keys, two-space indent, trailing newline.
    text = (probe_artifacts / "Probe.json").read_text()
    assert text == json.dumps(raw, indent=2, sort_keys=True) + "\n"
    # Interfaces get an artifact too (their ABI carries errors for the decoder), with no code.
    interface = load_artifact("IProbe", probe_artifacts)
    assert not interface.deployable
    assert {e["name"] for e in interface.abi if e["type"] == "error"} == {"NotAllowed"}


def test_loader_reads_fields(probe_artifacts: Path) -> None:
    artifact = load_artifact("Probe", probe_artifacts)
    assert artifact.name == "Probe"
    major, minor, patch = (int(p) for p in PINNED_SOLC.split("."))
    # The CBOR metadata trailer ends with the compiler version and its own length (0x0033).
    assert artifact.deployed_bytecode.endswith(b"solcC" + bytes([major, minor, patch]) + b"\x00\x33")
    assert hashlib.sha256(artifact.deployed_bytecode).hexdigest() == artifact.deployed_sha256
    assert len(artifact.immutable_ranges) >= 2  # every place an immutable is read
    assert all(length == 32 for _, length in artifact.immutable_ranges)
    assert set(load_all_artifacts(probe_artifacts)) == {"Probe", "IProbe"}
    with pytest.raises(LookupError, match="make contracts"):
        load_artifact("Nope", probe_artifacts)


def test_check_passes_then_catches_tampering_and_stale_files(probe_artifacts: Path, tmp_path: Path) -> None:
    committed = tmp_path / "committed"
    shutil.copytree(probe_artifacts, committed)
    build_contracts(check=True, src_dir=PROBE_SRC, out_dir=committed)  # fresh build: identical bytes

    probe = committed / "Probe.json"
    probe.write_text(probe.read_text().replace('"runs": 200', '"runs": 201', 1))
    (committed / "Old.json").write_text(json.dumps({"contractName": "Old"}))
    (committed / "IProbe.json").unlink()
    with pytest.raises(ArtifactsOutOfDate) as caught:
        build_contracts(check=True, src_dir=PROBE_SRC, out_dir=committed)
    text = str(caught.value)
    assert "Probe.json: differs in settings" in text
    assert "Old.json: stale" in text
    assert "IProbe.json: missing" in text


def test_build_writes_removes_stale_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "Gone.json").write_text(json.dumps({"contractName": "Gone"}))
    (out / "notes.json").write_text("[1, 2]")  # not an artifact: left alone
    build_contracts(src_dir=PROBE_SRC, out_dir=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["IProbe.json", "Probe.json", "build-info.json", "notes.json"]


def test_compile_errors_are_loud(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Broken.sol").write_text("pragma solidity ^0.8.24;\ncontract Broken { function f() { x = 1; } }\n")
    with pytest.raises(CompileFailed) as caught:
        build_contracts(src_dir=src, out_dir=tmp_path / "out")
    assert "Broken.sol:2" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_missing_import_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "A.sol").write_text('pragma solidity ^0.8.24;\nimport "@nowhere/pkg/B.sol";\ncontract A {}\n')
    with pytest.raises(CompileFailed, match=r"@nowhere/pkg/B\.sol"):
        build_contracts(src_dir=src, out_dir=tmp_path / "out")
