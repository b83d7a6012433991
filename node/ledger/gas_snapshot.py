"""CLI of the gas snapshot: `python -m node.ledger.gas_snapshot [--check]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from node.ledger.gas import measure
from node.paths import REPO_ROOT

SNAPSHOT = REPO_ROOT / "contracts" / "gas-snapshot.json"


def render(snapshot: dict[str, object]) -> str:
    return json.dumps(snapshot, indent=2) + "\n"


def main(argv: list[str]) -> int:
    console = Console(stderr=True)
    with console.status("measuring gas on a fresh devnet") as status:
        snapshot = measure(lambda msg: status.update(msg))
    text = render(snapshot)
    journey = snapshot["journey"]
    assert isinstance(journey, dict)
    console.print(
        f"journey: {journey['total_gas']:,} gas for {journey['units']:,} units = "
        f"{journey['gas_per_unit']:,} gas/unit (budget {journey['budget_per_unit']:,})"
    )
    if "--check" in argv:
        committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
        if committed != text:
            console.print(f"[red]{SNAPSHOT} is out of date: run scripts/gas-snapshot[/red]")
            return 1
        return 0
    Path(SNAPSHOT).write_text(text)
    console.print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
