"""Read compiled contract artifacts (contracts/artifacts/*.json); no compiler needed at runtime."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from node.paths import ARTIFACTS_DIR

BUILD_INFO = "build-info.json"


class ArtifactNotFound(LookupError):
    def __init__(self, name: str, artifacts_dir: Path) -> None:
        super().__init__(f"no artifact {name!r} in {artifacts_dir} (build them with `make contracts`)")
        self.name = name
        self.artifacts_dir = artifacts_dir


@dataclass(frozen=True)
class Artifact:
    """One compiled contract. Shared between callers through a cache: treat it as read-only."""

    name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    # (start, length) byte ranges of deployed code that the constructor fills in (immutables).
    immutable_ranges: tuple[tuple[int, int], ...]
    has_link_references: bool
    deployed_sha256: str
    source_sha256: str
    sources: dict[str, str]
    compiler_version: str

    @property
    def deployable(self) -> bool:
        """Interfaces and abstract contracts compile to empty bytecode."""
        return len(self.bytecode) > 0


def _hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _parse(raw: dict[str, Any]) -> Artifact:
    ranges = sorted(
        (int(ref["start"]), int(ref["length"]))
        for refs in raw.get("immutableReferences", {}).values()
        for ref in refs
    )
    links = raw.get("linkReferences", {})
    return Artifact(
        name=raw["contractName"],
        source_name=raw["sourceName"],
        abi=raw["abi"],
        bytecode=_hex_to_bytes(raw["bytecode"]),
        deployed_bytecode=_hex_to_bytes(raw["deployedBytecode"]),
        immutable_ranges=tuple(ranges),
        has_link_references=bool(links.get("bytecode") or links.get("deployedBytecode")),
        deployed_sha256=raw["deployedBytecodeSha256"],
        source_sha256=raw["sourceSha256"],
        sources=dict(raw.get("sources", {})),
        compiler_version=raw["compiler"]["version"],
    )


@lru_cache(maxsize=256)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> Artifact:
    # The stat values are part of the cache key so a rebuilt artifact is re-read.
    with open(path, encoding="utf-8") as fh:
        return _parse(json.load(fh))


def load_artifact(name: str, artifacts_dir: Path | None = None) -> Artifact:
    directory = artifacts_dir or ARTIFACTS_DIR
    path = directory / f"{name}.json"
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ArtifactNotFound(name, directory) from None
    return _load_cached(str(path), stat.st_mtime_ns, stat.st_size)


def artifact_names(artifacts_dir: Path | None = None) -> list[str]:
    directory = artifacts_dir or ARTIFACTS_DIR
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if p.name != BUILD_INFO)


def load_all_artifacts(artifacts_dir: Path | None = None) -> dict[str, Artifact]:
    return {name: load_artifact(name, artifacts_dir) for name in artifact_names(artifacts_dir)}


def load_build_info(artifacts_dir: Path | None = None) -> dict[str, Any]:
    directory = artifacts_dir or ARTIFACTS_DIR
    with open(directory / BUILD_INFO, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
