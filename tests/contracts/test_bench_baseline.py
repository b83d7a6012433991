"""The gas benchmark's baseline (`scripts/bench-gas`): the ERC-721 contract compiles from the pinned
OpenZeppelin package with our solc-js driver, and its journey runs to the end on a devnet."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gas import BASELINE_SRC, erc721_journey
from node.build import build_contracts
from node.chain import make_web3
from node.devnet import Devnet


@pytest.mark.chain
def test_the_erc721_baseline_journey_runs(tmp_path: Path) -> None:
    build_contracts(src_dir=BASELINE_SRC, out_dir=tmp_path)
    with Devnet(port=0) as devnet:
        result = erc721_journey(make_web3(devnet.rpc_url), tmp_path, units=1200)
    assert list(result.gas_by_step) == [
        "mint",
        "transfer CMO -> 3PL",
        "transfer 3PL -> distributor",
        "transfer distributor -> pharmacy",
        "burn (dispensed)",
    ]
    assert result.tx_by_step["mint"] == 3 and result.tx_by_step["burn (dispensed)"] == 2  # 500 and 1,000 a tx
    # a fresh token costs more than moving it (new storage); every hop costs the same
    hops = [result.gas_by_step[s] for s in list(result.gas_by_step)[1:4]]
    assert result.gas_by_step["mint"] > max(hops) and max(hops) - min(hops) < 1000
    assert 20_000 < result.gas_per_unit < 200_000
