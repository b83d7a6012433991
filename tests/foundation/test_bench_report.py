"""The benchmark report: `scripts/bench` writes bench/results.json and docs/BENCHMARKS.md from the
same figures, each with its baseline and ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import indexer as bench_indexer
from bench import writes as bench_api
from bench.suite import BENCHES, markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results.json"


def _figure_ok(f: dict[str, Any]) -> None:
    assert set(f) >= {"name", "value", "unit", "baseline", "ratio"}, f
    assert f["baseline"] not in (None, 0), f
    assert f["ratio"] == pytest.approx(f["value"] / f["baseline"], rel=2e-3), f


def test_api_figures_pair_each_value_with_its_baseline() -> None:
    raw = {
        "units": 1000, "concurrency": 8, "custody_shipments": 10, "dispenses": 20,
        "commission_api_s": 4.0, "commission_direct_s": 1.0,
        "custody_api_ops_per_s": 5.0, "custody_api1_ops_per_s": 4.0, "custody_direct_ops_per_s": 10.0,
        "custody_api_p95_ms": 900.0, "custody_api1_p95_ms": 300.0, "custody_direct_p95_ms": 100.0,
        "single_api_p95_ms": 200.0, "single_direct_p95_ms": 50.0,
        "api_peak_rss_mib": 300.0, "api_idle_rss_mib": 150.0,
    }  # fmt: skip
    figures = bench_api.figures(raw)
    for f in figures:
        _figure_ok(f)
    commission = figures[0]
    assert commission["unit"] == "units/s"
    assert (commission["value"], commission["baseline"], commission["ratio"]) == (250.0, 1000.0, 0.25)


def test_indexer_figures_compare_catch_up_with_the_read_only_pass() -> None:
    run = {
        "backend": "SQLite",
        "items": 1000,
        "items_per_s": 500.0,
        "idle_rss_mib": 100.0,
        "peak_rss_mib": 150.0,
    }
    figures = bench_indexer.figures({"read_only": {"items_per_s": 2000.0}, "catch_up": [run]})
    assert [f["unit"] for f in figures] == ["item events/s", "MiB"]
    for f in figures:
        _figure_ok(f)
    assert figures[0]["ratio"] == 0.25


def test_the_report_has_a_row_per_figure_and_the_machine() -> None:
    figure = {"bench": "gas", "name": "gas per unit", "value": 30.0, "unit": "gas/unit", "baseline": 60.0,
              "baseline_name": "ERC-721", "ratio": 0.5}  # fmt: skip
    results = {
        "generated": "2026-11-25 15:00 UTC",
        "quick": False,
        "seconds": 60.0,
        "machine": {
            "commit": "abc1234",
            "cpus": 2,
            "cpu": "CPU",
            "memory_gib": 24.0,
            "os": "Linux",
            "python": "3.11",
            "sqlite": "3.40",
            "postgresql": "pg_ctl 15",
            "node": "v20",
            "anvil": "anvil 1.0",
            "solc": "0.8.37",
            "packages": {"fastapi": "1"},
        },
        "benches": {"gas": {"command": "scripts/bench-gas", "seconds": 60.0, "figures": [figure]}},
        "figures": [figure],
    }
    text = markdown(results)
    assert "| gas per unit | 30.00 gas/unit | 60.00 gas/unit | 0.5 |" in text
    assert "2 CPUs (CPU), 24.0 GiB" in text and "commit `abc1234`" in text
    assert "## Gas per unit" in text and "## Verification" not in text


def test_the_committed_report_is_generated_from_the_committed_results() -> None:
    assert RESULTS.exists(), "bench/results.json is missing: run scripts/bench and commit what it writes"
    results = json.loads(RESULTS.read_text())
    assert not results["quick"], "the published figures must come from a full run"
    assert {b.key for b in BENCHES} == set(results["benches"])
    for f in results["figures"]:
        _figure_ok(f)
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == markdown(results)
