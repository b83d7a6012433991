"""Gas per unit over the standard journey: rxledger's contracts next to the common way, one
OpenZeppelin ERC-721 token per pack (minted by the maker, transferred at each hop, burnt when
dispensed), run on the same devnet in the same run.

The ERC-721 contract (`bench/contracts/PackToken.sol`) is compiled here from the pinned
`@openzeppelin/contracts` npm package with the project's own solc-js driver; it is a baseline, never
part of rxledger. Both sides put the same number of packs in a transaction (500 to make and move,
1,000 to dispense), so the 21,000 gas of a transaction is shared alike. rxledger moves cases and
pallets as one item each; the token moves every pack: that is the difference being measured.

Usage: scripts/bench-gas [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from web3 import Web3

from node.accounts import dev_accounts
from node.artifacts import load_artifact
from node.build import build_contracts
from node.chain import Sender
from node.ledger.gas import measure
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN, JourneyResult
from node.paths import REPO_ROOT

BASELINE_SRC = REPO_ROOT / "bench" / "contracts"
UNITS, MOVE_PER_TX, DISPENSE_PER_TX = 10_000, 500, 1_000


def erc721_journey(
    w3: Web3, artifacts: Path, progress: Progress | None = None, *, units: int = UNITS
) -> JourneyResult:
    """The journey with one token per pack: CMO mints, then CMO -> 3PL -> distributor -> pharmacy,
    then the pharmacy burns every token."""
    cmo, tpl, dist, pharmacy = dev_accounts(5)[1:5]
    artifact = load_artifact("PackToken", artifacts)
    deployed = Sender(w3, cmo).deploy(artifact.abi, artifact.bytecode)
    token = w3.eth.contract(address=deployed["contractAddress"], abi=artifact.abi)
    ids = [int.from_bytes(unit_key(JOURNEY_GTIN, f"T{i:07d}")) for i in range(units)]
    result = JourneyResult(units=units)
    steps: list[tuple[str, LocalAccount, str, list[Any], int]] = [
        ("mint", cmo, "mintBatch", [cmo.address], MOVE_PER_TX),
        ("transfer CMO -> 3PL", cmo, "transferBatch", [tpl.address], MOVE_PER_TX),
        ("transfer 3PL -> distributor", tpl, "transferBatch", [dist.address], MOVE_PER_TX),
        ("transfer distributor -> pharmacy", dist, "transferBatch", [pharmacy.address], MOVE_PER_TX),
        ("burn (dispensed)", pharmacy, "burnBatch", [], DISPENSE_PER_TX),
    ]
    task = progress.add_task("ERC-721 journey", total=len(steps) * units) if progress else None
    for step, account, function, args, per_tx in steps:
        sender = Sender(w3, account)
        for start in range(0, units, per_tx):
            chunk = ids[start : start + per_tx]
            receipt = sender.transact(getattr(token.functions, function)(*args, chunk))
            result.gas_by_step[step] += int(receipt["gasUsed"])
            result.tx_by_step[step] += 1
            if progress and task is not None:
                progress.advance(task, len(chunk))
    if token.functions.balanceOf(pharmacy.address).call() != 0:
        raise RuntimeError("the baseline journey left tokens unburnt")
    return result


def run(console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp)
        build_contracts(src_dir=BASELINE_SRC, out_dir=artifacts)
        baseline: list[JourneyResult] = []
        with Progress(console=console, transient=True) as progress:
            status = progress.add_task("rxledger: every action, then the standard journey", total=None)

            def then(w3: Web3) -> None:
                progress.remove_task(status)
                baseline.append(erc721_journey(w3, artifacts, progress))

            snapshot = measure(lambda msg: progress.update(status, description=f"rxledger: {msg}"), then=then)
    ours = snapshot["journey"]
    token = baseline[0]
    return {
        "units": UNITS,
        "rxledger": {
            "total_gas": ours["total_gas"],
            "gas_per_unit": ours["gas_per_unit"],
            "steps": ours["steps"],
        },
        "erc721": {
            "total_gas": token.total_gas,
            "gas_per_unit": round(token.gas_per_unit, 1),
            "steps": {
                s: {"gas": g, "transactions": token.tx_by_step[s]} for s, g in token.gas_by_step.items()
            },
        },
    }


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """bench/results.json entries: the figure, its baseline, and their ratio."""
    ours, base = r["rxledger"]["gas_per_unit"], r["erc721"]["gas_per_unit"]
    return [
        {
            "name": "gas per unit, standard journey",
            "value": ours,
            "unit": "gas/unit",
            "baseline": base,
            "baseline_name": "OpenZeppelin ERC-721, one token per pack, same devnet",
            "ratio": round(ours / base, 3),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    console = Console()
    r = run(console)
    table = Table(title=f"gas per unit over the standard journey ({r['units']:,} packs, same devnet)")
    for column in ("", "rxledger", "ERC-721 per pack", "ratio"):
        table.add_column(column, justify="right")
    ours, base = r["rxledger"], r["erc721"]
    table.add_row(
        "total gas",
        f"{ours['total_gas']:,}",
        f"{base['total_gas']:,}",
        f"{ours['total_gas'] / base['total_gas']:.3f}",
    )
    table.add_row(
        "gas per unit",
        f"{ours['gas_per_unit']:,.1f}",
        f"{base['gas_per_unit']:,.1f}",
        f"{ours['gas_per_unit'] / base['gas_per_unit']:.3f}",
    )
    console.print(table)
    steps = Table(title="ERC-721 baseline by step")
    for column in ("step", "gas", "transactions", "gas per unit"):
        steps.add_column(column, justify="right")
    for step, entry in base["steps"].items():
        steps.add_row(
            step, f"{entry['gas']:,}", str(entry["transactions"]), f"{entry['gas'] / r['units']:,.1f}"
        )
    console.print(steps)
    if args.json:
        args.json.write_text(json.dumps({"raw": r, "figures": figures(r)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
