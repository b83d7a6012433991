"""The committed gas snapshot is current, and the standard journey stays within its budget."""

from __future__ import annotations

import json

from node.ledger.gas import GAS_BUDGET_PER_UNIT, measure
from node.ledger.gas_snapshot import SNAPSHOT, render


def test_gas_snapshot_is_current_and_journey_within_budget() -> None:
    fresh = measure()
    journey = fresh["journey"]
    # The bar: total gas of the standard journey / 10,000 units <= 30,000.
    assert journey["units"] == 10_000
    assert journey["total_gas"] / journey["units"] <= GAS_BUDGET_PER_UNIT
    committed = json.loads(SNAPSHOT.read_text())
    assert render(fresh) == render(committed), "gas changed: run scripts/gas-snapshot and commit the diff"
