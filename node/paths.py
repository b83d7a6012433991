"""Locations inside the checkout. The package is installed editable, so the repo root is two levels up."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_SRC = REPO_ROOT / "contracts" / "src"
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "artifacts"
COMPILE_SCRIPT = REPO_ROOT / "scripts" / "compile-contracts.mjs"
NODE_MODULES = REPO_ROOT / "node_modules"
ANVIL_BIN = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
