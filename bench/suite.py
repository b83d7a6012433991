"""All benchmarks in one run: `scripts/bench` runs each benchmark script in its own process, collects
the figures it writes (each next to a baseline measured in the same run), and regenerates
`docs/BENCHMARKS.md` and `bench/results.json` with the machine and the versions they ran on.

Usage: scripts/bench [--quick] [--only gas,verify,api,dispense,dispense-1s,indexer [--merge]]
                     [--docs FILE] [--results FILE]
       scripts/bench --render     (docs/BENCHMARKS.md again from bench/results.json, nothing run)

--quick runs every benchmark at a small size (a smoke run of the whole pipeline, minutes instead of
about half an hour); its figures are not the published ones, so it writes to a temp dir unless
--docs/--results are given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

CODE_ROOT = Path(__file__).resolve().parent.parent
console = Console()


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    reading: str  # how to read the figures (written into BENCHMARKS.md)


DISPENSE_QUICK = ("--seconds", "5", "--clients", "8", "--pharmacies", "2", "--stock-per-pharmacy", "600",
                  "--baseline-per-pharmacy", "100", "--tote-seconds", "3", "--tote-stock-per-pharmacy",
                  "500")  # fmt: skip
DISPENSE_READING = (
    "64 clients of 8 pharmacies each post single-pack `POST /v1/decommission` (202, no waiting) one "
    "after the other for the run's length; then one client per pharmacy posts totes of 100 packs. A "
    "figure counts an operation when it is indexed (its `finished_at`). The baseline is the chain's "
    "capacity on the same devnet: the same single-pack decommissions pre-signed with the pharmacies' "
    "keys and sent pipelined to the node (at most 1,000 in flight), counted when mined. Lost and "
    "duplicated are read from the chain's UnitsDecommissioned logs. Anvil's per-block cost grows with "
    "its state (the empty-block rate at the end of the run against the start shows it)."
)

BENCHES = (
    Bench(
        "gas",
        "Gas per unit over the standard journey",
        "scripts/bench-gas",
        (),
        (),
        "The standard journey (10,000 packs: commission into cases, pallets, ship and receive through "
        "CMO -> 3PL -> distributor -> pharmacy, dispense) on rxledger's contracts, next to the same "
        "journey with one OpenZeppelin ERC-721 token per pack (mint, one transfer per hop, burn on "
        "dispense), compiled from `@openzeppelin/contracts` in the benchmark only, on the same devnet. "
        "A ratio below 1 means rxledger spends less gas.",
    ),
    Bench(
        "verify",
        "Verification at the counter: `POST /v1/verify` at 1,000,000 packs",
        "scripts/bench-verify",
        ("--units", "1000000", "--workers", "1,2", "--postgres", "--endpoints", "verify,vrs,bulk"),
        ("--units", "20000", "--workers", "1", "--duration", "4", "--warmup", "1", "--quiet-wait", "0"),
        "A closed loop keeps 32 requests in flight against the real API (a pharmacy operator's token, "
        "packs drawn at random from the million) and, as the baseline, against a bare FastAPI POST "
        "endpoint served with the same uvicorn options and worker count. Latency ratios above 1 and "
        "throughput ratios below 1 are what authentication, the GS1 parsing and the read-model queries "
        "cost over an empty endpoint. At saturation latency is requests in flight / throughput (Little's "
        "law): one scan alone waits about one service time, 1 / throughput per worker.",
    ),
    Bench(
        "api",
        "Writes through the partner API (commissioning, custody, decommissioning)",
        "scripts/bench-api",
        ("--units", "100000", "--concurrency", "32"),
        ("--units", "3000", "--shipments", "10", "--dispenses", "20"),
        "Each operation is timed from the request to its outcome with the change indexed (`?wait=true`, "
        "followed past the server's bound): HTTP, validation, the pre-check simulation, the outbox, "
        "the submitter and the indexer. The baseline sends the same transactions directly with the "
        "organisation's key, one after the other, each waiting for its receipt. The API runs in its "
        "own process, as `rxledger up` runs it (submitter and indexer in-process).",
    ),
    Bench(
        "dispense",
        "Dispensing at load: single packs and totes from many pharmacies (automine)",
        "scripts/bench-dispense",
        ("--seconds", "60"),
        DISPENSE_QUICK,
        DISPENSE_READING,
    ),
    Bench(
        "dispense-1s",
        "Dispensing at load on 1-s blocks",
        "scripts/bench-dispense",
        ("--seconds", "60", "--block-time", "1"),
        (*DISPENSE_QUICK, "--block-time", "1"),
        DISPENSE_READING,
    ),
    Bench(
        "indexer",
        "Indexer catch-up and memory",
        "scripts/bench-indexer",
        (),
        ("--journeys", "1", "--singles", "100", "--lag-seconds", "3"),
        "From empty read models to the head of a chain of ten standard journeys and 2,000 single-pack "
        "dispenses, in a process of its own. The baseline is a read-only pass over the same chain: the "
        "same `eth_getLogs` ranges, decoding and block headers, nothing written.",
    ),
)


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=CODE_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    pg_ctl = shutil.which("pg_ctl") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))), None
    )
    build_info = CODE_ROOT / "contracts" / "artifacts" / "build-info.json"
    solc = json.loads(build_info.read_text())["compiler"]["version"] if build_info.exists() else "?"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _run([str(pg_ctl), "--version"]) if pg_ctl else "not found",
        "node": _run(["node", "--version"]),
        "anvil": _run([str(CODE_ROOT / "node_modules" / ".bin" / "anvil"), "--version"]),
        "solc": solc,
        "packages": {
            d: _version(d)
            for d in ("fastapi", "uvicorn", "web3", "sqlalchemy", "sqlmodel", "psycopg", "pydantic", "httpx")
        },
        "commit": _run(["git", "rev-parse", "--short", "HEAD"]),
    }


def run_bench(bench: Bench, quick: bool, out: Path) -> dict[str, Any]:
    cmd = [str(CODE_ROOT / bench.script), *(bench.quick if quick else bench.full), "--json", str(out)]
    console.print(Rule(f"{bench.title}  ({' '.join(cmd[1:-2]) or 'defaults'})"))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=CODE_ROOT)
    seconds = time.perf_counter() - t0
    data = json.loads(out.read_text())
    figures = (
        data["figures"] if isinstance(data, dict) else [f for f in data if f.get("baseline") is not None]
    )
    if bench.key == "verify":  # the bare endpoint's own rows are the baselines of the verify rows
        figures = [{**f, "baseline_name": f"bare FastAPI POST, {_workers(f['name'])}"} for f in figures]
    return {
        "command": " ".join(
            ["scripts/" + bench.script.split("/")[-1], *(bench.quick if quick else bench.full)]
        ),
        "seconds": round(seconds, 1),
        "figures": [{"bench": bench.key, **f} for f in figures],
        "raw": data.get("raw") if isinstance(data, dict) else data,
    }


def _workers(name: str) -> str:
    return name.split(",")[1].split(":")[0].strip() if "," in name else "same workers"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench` (do not edit by hand: run it again). Every figure is measured in "
        "the same run as its baseline, on the same machine, and reported with the ratio figure / "
        "baseline. `bench/results.json` holds the same figures, one object each, and the raw output of "
        "every benchmark.",
        "",
        f"- **Run**: {results['generated']}, commit `{m['commit']}`, "
        f"{'quick (small sizes, not the published figures)' if results['quick'] else 'full'}; "
        f"{results['seconds'] / 60:.1f} min in all.",
        f"- **Machine**: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}.",
        f"- **Versions**: Python {m['python']}, SQLite {m['sqlite']}, {m['postgresql']}, Node {m['node']}, "
        f"{m['anvil']}, solc {m['solc']}; {pk}.",
        "",
    ]
    for bench in BENCHES:
        section = results["benches"].get(bench.key)
        if section is None:
            continue
        lines += [
            f"## {bench.title}",
            "",
            f"`{section['command']}` ({section['seconds'] / 60:.1f} min)",
            "",
            bench.reading,
            "",
            "| figure | value | baseline | ratio |",
            "|---|---:|---:|---:|",
        ]
        for f in section["figures"]:
            ratio = "" if f["ratio"] is None else f"{f['ratio']:.3g}"
            lines.append(
                f"| {f['name']} | {_num(f['value'], f['unit'])} "
                f"| {_num(f['baseline'], f['unit'])} | {ratio} |"
            )
        baselines = sorted({f.get("baseline_name", "") for f in section["figures"]} - {""})
        if baselines:
            lines += ["", "Baselines: " + "; ".join(baselines) + "."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the pipeline")
    parser.add_argument(
        "--only", default="", help="comma-separated subset of gas,verify,api,dispense,dispense-1s,indexer"
    )
    parser.add_argument("--docs", type=Path, default=None, help="default docs/BENCHMARKS.md")
    parser.add_argument("--results", type=Path, default=None, help="default bench/results.json")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from the results")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those benchmarks' sections in bench/results.json, keep the others",
    )
    args = parser.parse_args()
    if args.render:
        results_file = args.results or CODE_ROOT / "bench" / "results.json"
        docs_file = args.docs or CODE_ROOT / "docs" / "BENCHMARKS.md"
        docs_file.write_text(markdown(json.loads(results_file.read_text())))
        console.print(f"written: {docs_file} from {results_file}")
        return
    chosen = [b for b in BENCHES if not args.only or b.key in args.only.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="rxledger-bench-"))
    published = not args.quick and (not args.only or args.merge)
    docs = args.docs or (CODE_ROOT / "docs" / "BENCHMARKS.md" if published else scratch / "BENCHMARKS.md")
    out = args.results or (CODE_ROOT / "bench" / "results.json" if published else scratch / "results.json")
    t0 = time.perf_counter()
    benches = {b.key: run_bench(b, args.quick, scratch / f"{b.key}.json") for b in chosen}
    if args.merge and out.exists():  # the other benchmarks' sections as they were
        kept = json.loads(out.read_text())["benches"]
        benches = {
            b.key: benches.get(b.key) or kept[b.key] for b in BENCHES if b.key in benches or b.key in kept
        }
    results = {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
        "figures": [f for section in benches.values() for f in section["figures"]],
        "benches": benches,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(markdown(results))
    console.print(Rule("figures"))
    for f in results["figures"]:
        console.print(
            f"{f['name']}: {_num(f['value'], f['unit'])} (baseline {_num(f['baseline'], f['unit'])}, "
            f"ratio {f['ratio']})",
            highlight=False,
        )
    console.print(f"written: {docs} and {out} in {results['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
