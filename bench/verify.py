"""Verification benchmark: latency (p50/p95/p99) and requests per second of `POST /v1/verify` on a
database of >= 1,000,000 packs built for real on chain, next to a bare FastAPI endpoint measured in
the same run on the same machine, with 1 and 2 uvicorn worker processes.

Phases: an Anvil devnet; the suite deployed; the demo consortium onboarded; the product registered;
released batches of 100,000 packs commissioned directly with the CMO's key in transactions as large as
the block gas limit allows (80% of each batch in cases of 100 that go CMO -> distributor -> pharmacy
and are unpacked there, 10% in cases held by the distributor, 10% loose at the CMO); the indexer
catches up into SQLite (and PostgreSQL with --postgres); a pharmacy user and token are made; then
for each worker count the bare app and the real API (built by `create_app(run_submitter=False)`:
verify is read-only) are served by `uvicorn --workers N` as separate processes and loaded by a
closed-loop generator process on loopback (fixed in-flight requests, keep-alive connections,
warm-up excluded). Request bodies sample random packs: 90% held by the pharmacy (ok_to_dispense),
10% held elsewhere; half are raw scanner strings, half spelled-out GTIN/serial/lot/expiry.

Usage: scripts/bench-verify [--units 1000000] [--duration 20] [--warmup 3] [--concurrency 32]
                            [--clients 1] [--workers 1,2] [--postgres] [--json PATH] [--profile N]
                            [--keep] [--reuse DIR] [--quiet-wait 120]
--profile N times each part of a verification in this process, lists verify_pack's SQL, and runs
cProfile over N whole requests through the ASGI app. --keep leaves the temp dir (SQLite database)
for --reuse, which measures again without rebuilding (SQLite only: the PostgreSQL cluster is
always removed). Every process started here (Anvil, PostgreSQL, uvicorn, generators) is stopped at
the end, also on failure or Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from node.procmem import group_peak_rss_mib

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event

    from rich.console import Console
    from web3 import Web3

    from node.deploy import Manifest
    from node.devnet import Devnet
    from node.ledger.consortium import Org
    from node.settings import Settings

GTIN = "09506000134352"  # node.ledger.journey.JOURNEY_GTIN
EXPIRY_YYMMDD = 281231  # what node.ledger.journey.released_batch records
EXPIRY = "2028-12-31"
CMO_PREFIX = "4098765"
GS = "\x1d"
BATCH_UNITS = 100_000
PER_CASE = 100
OK_SHARE = 0.9  # requests for packs the pharmacy holds (ok_to_dispense); the rest are held elsewhere
SCAN_SHARE = 0.5  # requests sending the raw scanner string; the rest spell out GTIN/serial/lot/expiry
BODY_POOL = 50_000  # pre-built requests per generator process (random packs, sampled with replacement)
UNIT_GAS = 24_000  # commission budget per unit (measured ~23,230 in cases of 100)
# ship/receive/unpackAll budget per case: ~11.5k / 8.1k / 8.0k at a few hundred cases per transaction,
# but ship's gas per case grows with the list (13.3k at 1,800 cases, 14.7k at 2,700: memory
# grows with every item, and memory costs quadratically), so lists stay at CASES_PER_TX
CASE_GAS = 16_000
CASES_PER_TX = 2_000
TX_OVERHEAD_GAS = 1_000_000
P95_BAR_MS = 50.0
RPS_BAR = 0.5
STATE_FILE = "bench-verify.json"
CODE_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the data set's layout


@dataclass(frozen=True)
class Layout:
    """Which pack is where. Each batch of up to 100,000 units: the first 80% in cases that end at the
    pharmacy (unpacked), the next 10% in cases held by the distributor, the last 10% loose at the CMO."""

    units: int

    @property
    def batches(self) -> int:
        return -(-self.units // BATCH_UNITS)

    def batch_range(self, b: int) -> tuple[int, int]:
        return b * BATCH_UNITS, min(self.units, (b + 1) * BATCH_UNITS)

    def segments(self, b: int) -> list[tuple[str, int, int]]:
        """(holder, first unit, end) of batch b, in unit order."""
        start, end = self.batch_range(b)
        size = end - start
        a, c = start + size * 8 // 10, start + size * 9 // 10
        return [("pharmacy", start, a), ("distributor", a, c), ("cmo", c, end)]

    def holder(self, i: int) -> str:
        for name, start, end in self.segments(i // BATCH_UNITS):
            if start <= i < end:
                return name
        raise IndexError(i)

    @staticmethod
    def serial(i: int) -> str:
        return f"V{i:09d}"

    @staticmethod
    def lot(b: int) -> str:
        return f"BV{b:04d}"


def sample_body(layout: Layout, rng: random.Random, scans: bool = True) -> dict[str, Any]:
    """One request body: a random pack, 90% of them held by the pharmacy."""
    want_ok = rng.random() < OK_SHARE
    while True:
        i = rng.randrange(layout.units)
        if (layout.holder(i) == "pharmacy") == want_ok:
            break
    serial, lot = layout.serial(i), layout.lot(i // BATCH_UNITS)
    if scans and rng.random() < SCAN_SHARE:
        return {"code": f"]d201{GTIN}17{EXPIRY_YYMMDD}10{lot}{GS}21{serial}"}
    return {"gtin": GTIN, "serial": serial, "lot": lot, "expiry": EXPIRY}


# ------------------------------------------------------------------ the two apps uvicorn serves


class BareIn(BaseModel):
    code: str | None = None
    gtin: str | None = None
    serial: str | None = None
    lot: str | None = None
    expiry: str | None = None


def bare_app() -> FastAPI:
    """The baseline: one POST endpoint that validates a small JSON body and returns a small dict."""
    app = FastAPI()

    @app.post("/bare")
    async def bare(body: BareIn) -> dict[str, Any]:
        return {"ok": True, "serial": body.serial}

    return app


def _one() -> int:
    return 1


def bare_sync_app() -> FastAPI:
    """The bare endpoint as verify is dispatched: a plain `def` with a plain `def` dependency, so
    both run in the thread pool (profiling only: what the thread hops cost)."""
    app = FastAPI()

    @app.post("/bare")
    def bare(body: BareIn, _: Annotated[int, Depends(_one)]) -> dict[str, Any]:
        return {"ok": True, "serial": body.serial}

    return app


def verify_app() -> FastAPI:
    """The real API from RXLEDGER_* environment variables, without the outbox submitter (verify is
    read-only; a submitter per worker would only poll the outbox)."""
    from api.app import create_app
    from node.settings import Settings

    return create_app(Settings(), run_submitter=False)


# ------------------------------------------------------------------ building the data on chain


@dataclass
class Built:
    tmp: Path
    units: int
    pharmacy_org: int
    token: str
    sqlite_url: str
    pg_url: str | None = None
    pg_pidfile: str | None = None  # the throwaway cluster's postmaster.pid (its CPU is counted)
    rpc_url: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    chain: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        (self.tmp / STATE_FILE).write_text(json.dumps(asdict(self), default=str, indent=2))

    @classmethod
    def load(cls, tmp: Path) -> Built:
        data = json.loads((tmp / STATE_FILE).read_text())
        data["tmp"] = Path(data["tmp"])
        return cls(**data)


def _bar(console: Console) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def _call(sig: str, types: Sequence[str], args: Sequence[Any]) -> str:
    """Calldata by eth_abi directly (web3's encoder takes ~0.7 s for 10,000 keys, this ~20 ms)."""
    from eth_abi.abi import encode
    from eth_utils.abi import function_signature_to_4byte_selector

    return "0x" + (function_signature_to_4byte_selector(sig) + encode(list(types), list(args))).hex()


class Chunks:
    """Send large transactions for one org, keeping a few in flight so that Python builds the next
    one while Anvil executes the last."""

    def __init__(self, org: Org, to: str, in_flight: int = 2) -> None:
        self.org, self.to, self.in_flight = org, to, in_flight
        self.pending: list[Any] = []
        self.gas_used = 0
        self.txs = 0
        self.max_gas = 0

    def send(self, data: str, gas: int) -> None:
        self.pending.append(self.org.client.sender.submit({"to": self.to, "data": data, "value": 0}, gas=gas))
        while len(self.pending) >= self.in_flight:
            self._wait_one()

    def _wait_one(self) -> None:
        receipt = self.org.client.sender.wait(self.pending.pop(0))
        used = int(receipt["gasUsed"])
        self.gas_used += used
        self.max_gas = max(self.max_gas, used)
        self.txs += 1

    def drain(self) -> None:
        while self.pending:
            self._wait_one()


def build(args: argparse.Namespace, tmp: Path, devnet: Devnet, console: Console, phases: Phases) -> Built:
    from eth_utils.crypto import keccak
    from pydantic import SecretStr

    from api.admin.bootstrap import ensure_admin
    from api.database import api_engine
    from api.models import UserRole
    from api.routes.admin import create_user, issue_token
    from api.runtime import Runtime
    from node.accounts import dev_accounts
    from node.chain import make_web3
    from node.deploy import deploy_suite, load_contracts
    from node.ledger.consortium import onboard
    from node.ledger.identifiers import container_key, unit_key
    from node.ledger.journey import released_batch, sscc
    from node.settings import Settings

    layout = Layout(args.units)
    with phases("devnet, deploy, consortium, batches"), console.status("devnet, deploy, consortium..."):
        w3 = make_web3(devnet.rpc_url, timeout=300.0)
        admin = dev_accounts()[0]
        manifest = deploy_suite(w3, admin, manifest_dir=tmp / "deployments")
        contracts = load_contracts(w3, manifest)
        orgs = onboard(w3, contracts, admin, seed="bench-verify")
        sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
        dist, pharmacy = orgs["Euro Wholesale Distribution"], orgs["City Pharmacy"]
        for org in orgs.values():  # base fee 0 on this devnet, but the priority fee still costs
            devnet.rpc("anvil_setBalance", [org.key.address, hex(10**27)])
        sponsor.client.transact("BatchRegistry", "registerProduct", int(GTIN))
        sponsor.client.transact("BatchRegistry", "authorizeManufacturer", int(GTIN), cmo.id)
        batch_ids = [released_batch(cmo, sponsor, layout.lot(b), GTIN) for b in range(layout.batches)]
    ledger = contracts["CustodyLedger"].address
    gas_limit = int(w3.eth.get_block("latest")["gasLimit"])
    units_per_tx = max(PER_CASE, (gas_limit - TX_OVERHEAD_GAS) // UNIT_GAS // PER_CASE * PER_CASE)
    if args.units_per_tx:
        units_per_tx = args.units_per_tx
    cases_per_tx = max(1, min(CASES_PER_TX, (gas_limit - TX_OVERHEAD_GAS) // CASE_GAS))

    def case_key(c: int) -> bytes:
        return container_key(sscc(CMO_PREFIX, c))

    commission = Chunks(cmo, ledger)
    pharmacy_cases: list[bytes] = []
    distributor_cases: list[bytes] = []
    started = time.perf_counter()
    with phases("commission (keys + transactions)"), _bar(console) as bar:
        task = bar.add_task(f"commission ({units_per_tx:,}/tx)", total=layout.units)
        for b in range(layout.batches):
            for holder, start, end in layout.segments(b):
                for s in range(start, end, units_per_tx):
                    e = min(end, s + units_per_tx)
                    keys = [unit_key(GTIN, layout.serial(i)) for i in range(s, e)]
                    cases: list[bytes] = []
                    if holder != "cmo":
                        cases = [case_key(c) for c in range(s // PER_CASE, e // PER_CASE)]
                        (pharmacy_cases if holder == "pharmacy" else distributor_cases).extend(cases)
                    data = _call(
                        "commission(bytes32,bytes32[],bytes32[],bytes32)",
                        ("bytes32", "bytes32[]", "bytes32[]", "bytes32"),
                        (batch_ids[b], cases, keys, bytes(32)),
                    )
                    commission.send(data, min(gas_limit, TX_OVERHEAD_GAS + UNIT_GAS * (e - s)))
                    bar.update(task, completed=e)
        commission.drain()
    commission_s = time.perf_counter() - started

    hops = 0
    with phases("ship, receive, unpack"), _bar(console) as bar:
        both = pharmacy_cases + distributor_cases
        # (step, acting org, action, cases, shipment, addressee)
        plan: list[tuple[str, Org, str, list[bytes], str, int]] = [
            ("ship cmo->distributor", cmo, "ship", both, "to-distributor", dist.id),
            ("receive at distributor", dist, "receive", both, "to-distributor", 0),
            ("ship distributor->pharmacy", dist, "ship", pharmacy_cases, "to-pharmacy", pharmacy.id),
            ("receive at pharmacy", pharmacy, "receive", pharmacy_cases, "to-pharmacy", 0),
            ("unpackAll at pharmacy", pharmacy, "unpack", pharmacy_cases, "", 0),
        ]
        total = sum(-(-len(step[3]) // cases_per_tx) for step in plan)
        task = bar.add_task("logistics (cases)", total=total)
        for name, org, kind, items, shipment, to in plan:
            bar.update(task, description=name)
            sender = Chunks(org, ledger)
            for s in range(0, len(items), cases_per_tx):
                group = items[s : s + cases_per_tx]
                sid = keccak(text=f"bench-verify:{shipment}:{s}")
                if kind == "ship":
                    data = _call(
                        "ship(bytes32,uint32,bytes32[],bytes32,bytes32)",
                        ("bytes32", "uint32", "bytes32[]", "bytes32", "bytes32"),
                        (sid, to, group, bytes(32), bytes(32)),
                    )
                elif kind == "receive":
                    data = _call(
                        "receiveShipment(bytes32,bytes32[],bytes32)",
                        ("bytes32", "bytes32[]", "bytes32"),
                        (sid, group, bytes(32)),
                    )
                else:
                    data = _call("unpackAll(bytes32[],bytes32)", ("bytes32[]", "bytes32"), (group, bytes(32)))
                sender.send(data, min(gas_limit, TX_OVERHEAD_GAS + CASE_GAS * len(group)))
                sender.drain()
                hops += 1
                bar.advance(task)
    height = int(w3.eth.block_number)

    sqlite_url = f"sqlite:///{tmp}/rxledger.db"
    _index(sqlite_url, w3, manifest, console, phases, "index into SQLite")
    pg_url: str | None = None
    if args.pg_url:
        pg_url = args.pg_url
        _index(pg_url, w3, manifest, console, phases, "index into PostgreSQL")

    with phases("users and tokens"):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            rpc_url=devnet.rpc_url,
            database_url=sqlite_url,
            manifest_dir=tmp / "deployments",
            keystore_dir=tmp / "keystore",
            keystore_password=SecretStr("bench-verify"),
            keystore_scrypt_n=2**10,
            documents_dir=tmp / "documents",
            data_dir=tmp,
        )
        token = ""
        for url in [sqlite_url, *([pg_url] if pg_url else [])]:
            engine = api_engine(url)
            runtime = Runtime.create(settings.model_copy(update={"database_url": url}), engine)
            ensure_admin(runtime, admin)  # the consortium admin's bootstrap token (not used below)
            user = create_user(
                runtime,
                username="pharmacy.counter",
                printed_name="Pharmacy counter",
                org_id=pharmacy.id,
                role=UserRole.OPERATOR,
                credential=None,
                created_by=None,
            )
            assert user.id is not None
            issued = issue_token(runtime, user.id, label="bench-verify")
            assert issued.token is not None
            if url == sqlite_url:
                token = issued.token
            else:  # one token for both databases: copy the hash across
                _copy_token(sqlite_url, url, user.id)
            engine.dispose()
    built = Built(
        tmp=tmp,
        units=layout.units,
        pharmacy_org=pharmacy.id,
        token=token,
        sqlite_url=sqlite_url,
        pg_url=pg_url,
        pg_pidfile=args.pg_pidfile,
        rpc_url=devnet.rpc_url,
        phases=dict(phases.seconds),
        chain={
            "block_gas_limit": gas_limit,
            "height": height,
            "batches": layout.batches,
            "units_per_tx": units_per_tx,
            "commission_txs": commission.txs,
            "commission_gas_per_unit": commission.gas_used / layout.units,
            "commission_max_gas_per_tx": commission.max_gas,
            "commission_units_per_s": layout.units / commission_s,
            "cases_to_pharmacy": len(pharmacy_cases),
            "cases_at_distributor": len(distributor_cases),
            "logistics_txs": hops,
        },
    )
    built.save()
    return built


def _copy_token(src_url: str, dst_url: str, user_id: int) -> None:
    """Give the user on `dst_url` the same token as on `src_url` (same secret, one hash)."""
    from sqlalchemy import select, update
    from sqlmodel import Session, col

    from api.models import ApiToken
    from node.db import make_engine

    src, dst = make_engine(src_url), make_engine(dst_url)
    with Session(src) as s:
        token_hash = s.execute(
            select(col(ApiToken.token_hash)).order_by(col(ApiToken.id).desc()).limit(1)
        ).scalar_one()
    with Session(dst) as s:
        s.execute(
            update(ApiToken).where(col(ApiToken.user_id) == user_id).values(token_hash=token_hash)  # type: ignore[arg-type]
        )
        s.commit()
    src.dispose()
    dst.dispose()


def _index(url: str, w3: Web3, manifest: Manifest, console: Console, phases: Phases, name: str) -> None:
    from node.indexer.database import read_model_engine
    from node.indexer.follower import Indexer, Progress

    engine = read_model_engine(url)
    # Devnet, instant finality, and the data far behind any real tip: no undo journal for it (the
    # journal keeps a before-image per row of the last 128 blocks, which here would be all of them).
    # Small ranges keep one database transaction at ~50k packs and let the bar move.
    indexer = Indexer(engine, w3, manifest, reorg_window=0, initial_range=4, max_range=4)
    head = int(w3.eth.block_number)
    with phases(name), _bar(console) as bar:
        task = bar.add_task(name, total=head)

        def report(p: Progress) -> None:
            bar.update(task, completed=p.checkpoint, description=f"{name} ({p.items:,} items)")

        indexer.sync(on_progress=report)
        bar.update(task, completed=head)
    engine.dispose()


# ------------------------------------------------------------------ servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`uvicorn --workers N` in its own process group (killed as a group)."""

    def __init__(self, factory: str, workers: int, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = _free_port()
        self.workers = workers
        self.cmd = [
            sys.executable, "-m", "uvicorn", factory if ":" in factory else f"bench.verify:{factory}",
            "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, path: str, token: str, body: dict[str, Any], timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{self.port}{path}",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10.0,
                )
                if r.status_code == 200:
                    return
                raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:500]}")
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """utime + stime of every process in the server's process group (supervisor and workers)."""
        return _group_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # workers that outlived the supervisor (they share its process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _cpu_where(match: Callable[[int, int, int], bool], reaped_of: int | None = None) -> float:
    """CPU seconds (utime + stime) of the live processes for which match(pid, ppid, pgrp) holds,
    plus, for process `reaped_of`, the CPU of its children that have exited (cutime + cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # [0] state, [1] ppid, [2] pgrp, [11] utime
        if match(int(entry), int(fields[1]), int(fields[2])):
            total += int(fields[11]) + int(fields[12])
            if int(entry) == reaped_of:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / ticks


def _group_cpu(pgid: int) -> float:
    return _cpu_where(lambda pid, ppid, pgrp: pgrp == pgid)


def _postgres_cpu(pidfile: str | None) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster and its children (backends)."""
    if pidfile is None:
        return 0.0
    try:
        postmaster = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    # backends come and go (a new connection is a new process): count the exited ones too
    return _cpu_where(lambda pid, ppid, pgrp: postmaster in (pid, ppid), reaped_of=postmaster)


# ------------------------------------------------------------------ load generator


@dataclass(frozen=True)
class GenConfig:
    port: int
    path: str  # /bare, /v1/verify, /v1/verify/bulk or /vrs (GET, the pack in the path)
    token: str
    connections: int
    seed: int
    units: int
    warmup: float
    duration: float


TOTE = 100  # packs per /v1/verify/bulk request


def _requests(cfg: GenConfig) -> list[bytes]:
    rng = random.Random(cfg.seed)
    layout = Layout(cfg.units)
    out = []
    auth = f"Host: 127.0.0.1:{cfg.port}\r\nAuthorization: Bearer {cfg.token}\r\n"
    for _ in range(BODY_POOL // (TOTE if cfg.path == "/v1/verify/bulk" else 1)):
        if cfg.path == "/vrs":  # GS1 Lightweight Messaging: the product identifier in the path
            pack = sample_body(layout, rng, scans=False)
            target = f"/vrs/01/{GTIN}/10/{pack['lot']}/21/{pack['serial']}?exp={EXPIRY_YYMMDD}"
            out.append(f"GET {target} HTTP/1.1\r\n{auth}\r\n".encode())
            continue
        data = (
            {"packs": [sample_body(layout, rng) for _ in range(TOTE)]}
            if cfg.path == "/v1/verify/bulk"
            else sample_body(layout, rng)
        )
        body = json.dumps(data, separators=(",", ":")).encode()
        head = (
            f"POST {cfg.path} HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


OK_MARK = b'"verdict":"ok_to_dispense"'


async def _load(cfg: GenConfig, requests: list[bytes], start: float) -> dict[str, Any]:
    """Closed loop: `connections` keep-alive HTTP/1.1 connections, one request in flight on each."""
    warm_end, end = start + cfg.warmup, start + cfg.warmup + cfg.duration
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ok = [0]
    conns = [await asyncio.open_connection("127.0.0.1", cfg.port) for _ in range(cfg.connections)]
    while time.monotonic() < start:
        await asyncio.sleep(0.001)
    cpu0: list[float] = []

    async def run(n: int) -> None:
        reader, writer = conns[n]
        i = n * 7919
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                break
            if not cpu0 and t0 >= warm_end:
                cpu0.append(time.process_time())
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            if at < 0:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            length = int(head[at + 15 : head.index(b"\r\n", at)])
            body = await reader.readexactly(length)
            t1 = time.monotonic()
            if warm_end <= t1 <= end:
                latencies.append(t1 - t0)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                if OK_MARK in body or b'"verified":true' in body:
                    ok[0] += 1
        writer.close()

    await asyncio.gather(*(run(n) for n in range(cfg.connections)))
    cpu = time.process_time() - (cpu0[0] if cpu0 else 0.0)
    return {"latencies": latencies, "statuses": statuses, "ok": ok[0], "cpu_s": cpu}


def _generator_main(
    cfg: GenConfig, ready: Event, go: Event, start: Synchronized[float], out: Queue[Any]
) -> None:
    try:
        requests = _requests(cfg)
        ready.set()
        go.wait()
        coro = _load(cfg, requests, start.value)
        try:
            import uvloop

            result = uvloop.run(coro)
        except ImportError:  # pragma: no cover
            result = asyncio.run(coro)
        out.put(result)
    except BaseException as exc:
        out.put({"error": repr(exc)})
        raise


@dataclass
class Measurement:
    backend: str
    app: str
    workers: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    ok_share: float
    server_cpu: float  # cores busy on average over the measured window (uvicorn and its workers)
    client_cpu: float  # load generator process(es)
    machine_cpu: float  # all CPUs, from /proc/stat
    db_cpu: float  # the PostgreSQL cluster's processes (0 for SQLite: in the server's processes)
    other_cpu: float  # what neither the server, the generator nor this process used: other load
    peak_rss_mib: float = 0.0  # largest VmHWM among the server's processes (per worker)


def _pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


PATHS = {"bare": "/bare", "verify": "/v1/verify", "bulk": "/v1/verify/bulk", "vrs": "/vrs"}


def measure(
    label: str,
    backend: str,
    app: str,
    server: Server,
    args: argparse.Namespace,
    token: str,
    console: Console,
    pg_pidfile: str | None = None,
) -> Measurement:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    start = ctx.Value("d", 0.0)
    out: Queue[Any] = ctx.Queue()
    per = [args.concurrency // args.clients + (1 if i < args.concurrency % args.clients else 0)
           for i in range(args.clients)]  # fmt: skip
    procs = []
    readies = []
    for i, connections in enumerate(per):
        cfg = GenConfig(
            port=server.port,
            path=PATHS[app],
            token=token,
            connections=connections,
            seed=1000 + i,
            units=args.units,
            warmup=args.warmup,
            duration=args.duration,
        )
        ready = ctx.Event()
        p = ctx.Process(target=_generator_main, args=(cfg, ready, go, start, out), daemon=True)
        p.start()
        procs.append(p)
        readies.append(ready)
    try:
        for ready in readies:
            if not ready.wait(timeout=120):
                raise RuntimeError("load generator did not start")
        t_start = time.monotonic() + 0.5
        start.value = t_start
        go.set()
        with _bar(console) as bar:
            task = bar.add_task(label, total=round(args.warmup + args.duration))
            cpu_a: float | None = None
            while time.monotonic() < t_start + args.warmup + args.duration:
                now = time.monotonic()
                if cpu_a is None and now >= t_start + args.warmup:
                    cpu_a, wall_a = server.cpu_seconds(), now
                    db_a = _postgres_cpu(pg_pidfile)
                    busy_a, self_a = _machine_jiffies(), time.process_time()
                bar.update(task, completed=min(args.warmup + args.duration, max(0.0, now - t_start)))
                time.sleep(0.2)
            cpu_b, wall_b = server.cpu_seconds(), time.monotonic()
            peak_rss = group_peak_rss_mib(server.proc.pid)
            db_b = _postgres_cpu(pg_pidfile)
            busy_b, self_b = _machine_jiffies(), time.process_time()
            bar.update(task, completed=args.warmup + args.duration)
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"load generator failed: {errors}")
    lat = sorted(x for r in results for x in r["latencies"])
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[int(k)] = statuses.get(int(k), 0) + v
    if not lat:
        raise RuntimeError("no request completed in the measured window")
    assert cpu_a is not None
    server_cpu = (cpu_b - cpu_a) / (wall_b - wall_a)
    client_cpu = sum(r["cpu_s"] for r in results) / args.duration
    machine_cpu = (busy_b[0] - busy_a[0]) / max(1, busy_b[1] - busy_a[1]) * (os.cpu_count() or 1)
    self_cpu = (self_b - self_a) / (wall_b - wall_a)
    db_cpu = (db_b - db_a) / (wall_b - wall_a)
    return Measurement(
        backend=backend,
        app=app,
        workers=server.workers,
        requests=len(lat),
        rps=len(lat) / args.duration,
        p50_ms=_pct(lat, 0.50),
        p95_ms=_pct(lat, 0.95),
        p99_ms=_pct(lat, 0.99),
        mean_ms=statistics.fmean(lat) * 1000,
        max_ms=lat[-1] * 1000,
        errors=sum(v for k, v in statuses.items() if k != 200),
        ok_share=sum(r["ok"] for r in results) / len(lat),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        machine_cpu=machine_cpu,
        db_cpu=db_cpu,
        other_cpu=max(0.0, machine_cpu - server_cpu - db_cpu - client_cpu - self_cpu),
        peak_rss_mib=peak_rss,
    )


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat: user nice system idle iowait irq
    softirq steal)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def wait_quiet(max_wait: float, console: Console, threshold: float = 0.2) -> float:
    """Wait (up to max_wait s) until the machine is idle: other sessions' work would compete with
    both server and generator. Returns the CPU cores busy in the last 2 s sample."""
    deadline = time.monotonic() + max_wait
    cpus = os.cpu_count() or 1
    warned = False
    while True:
        a = _machine_jiffies()
        time.sleep(2.0)
        b = _machine_jiffies()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * cpus
        if busy < threshold or time.monotonic() > deadline:
            if busy >= threshold:
                console.print(
                    f"[yellow]machine still busy ({busy:.2f} cores used by others): measuring anyway[/]"
                )
            return busy
        if not warned:
            console.print(
                f"[yellow]machine busy ({busy:.2f} cores by other processes): waiting up to {max_wait:g} s[/]"
            )
            warned = True


# ------------------------------------------------------------------ profile (in-process)


def _timed(n: int, fn: Callable[[int], object]) -> float:
    """Milliseconds per call of fn(i) over n calls (after one warm-up call)."""
    fn(0)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1000


def _settings_for(built: Built, url: str) -> Settings:
    from node.settings import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        rpc_url=built.rpc_url,
        database_url=url,
        manifest_dir=built.tmp / "deployments",
        keystore_dir=built.tmp / "keystore",
        documents_dir=built.tmp / "documents",
        data_dir=built.tmp,
    )


async def _asgi_requests(app: FastAPI, path: str, bodies: Sequence[dict[str, Any]], token: str) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for body in bodies:
            r = await client.post(path, json=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")


@contextlib.contextmanager
def _inline_threadpool() -> Iterator[None]:
    """Run FastAPI's sync endpoints and dependencies in the calling thread, so that one cProfile
    sees the whole request (profiling only)."""
    import fastapi.dependencies.utils as deps
    import fastapi.routing as routing

    async def inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    name, modules = "run_in_threadpool", (routing, deps)
    saved = [getattr(m, name) for m in modules]
    for m in modules:
        setattr(m, name, inline)
    try:
        yield
    finally:
        for m, original in zip(modules, saved, strict=True):
            setattr(m, name, original)


def profile(built: Built, url: str, n: int, console: Console) -> dict[str, Any]:
    """Where a verification's time goes, in this process, one request after the other: each part of
    the request timed on its own (no profiler), the SQL statements verify_pack runs, the whole
    request through the ASGI app (no HTTP) against the bare app, and a cProfile of whole requests."""
    import cProfile
    import io
    import pstats

    from rich.table import Table
    from sqlalchemy import event
    from starlette.requests import Request

    from api.app import create_app
    from api.database import api_engine
    from api.edge import audit
    from api.edge.auth import Principal, authenticate_request
    from api.read.verify import verify_pack
    from api.routes.verification import PackCode
    from api.runtime import Runtime

    settings = _settings_for(built, url)
    engine = api_engine(url)
    runtime = Runtime.create(settings, engine)
    rng = random.Random(7)
    layout = Layout(built.units)
    bodies = [sample_body(layout, rng) for _ in range(n)]
    idents = [PackCode(**b).identifier() for b in bodies]
    principal = Principal(1, "pharmacy.counter", "Pharmacy counter", "operator", built.pharmacy_org,
                          frozenset({"DISPENSER"}), 1)  # fmt: skip
    app = create_app(settings, run_submitter=False)
    scope = {"type": "http", "method": "POST", "path": "/v1/verify", "query_string": b"", "app": app,
             "client": ("127.0.0.1", 50000),
             "headers": [(b"authorization", f"Bearer {built.token}".encode())]}  # fmt: skip

    def verify_one(i: int) -> None:
        with engine.connect() as conn:
            verify_pack(conn, principal, idents[i % n])

    audit_fields = {"request_id": "bench", "user_id": 1, "username": "pharmacy.counter",
                    "org_id": built.pharmacy_org, "method": "POST", "path": "/v1/verify",
                    "action": "read", "status": 200, "outcome": "ok", "operation_id": None}  # fmt: skip
    parts = {
        "body -> identifier (PackCode, scan parse)": _timed(
            n, lambda i: PackCode(**bodies[i % n]).identifier()
        ),
        "authenticate (token, user, org)": _timed(n, lambda i: authenticate_request(Request(scope), runtime)),
        "verify_pack (read models)": _timed(n, verify_one),
        "audit.append (middleware, every POST)": _timed(n, lambda i: audit.append(engine, **audit_fields)),
    }
    sql: dict[str, list[float]] = {}
    started: dict[int, float] = {}

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        t = time.perf_counter() - started.pop(id(cursor), time.perf_counter())
        sql.setdefault(" ".join(statement.split())[:110], []).append(t)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    for i in range(n):
        verify_one(i)
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)

    bare = bare_app()
    asyncio.run(_asgi_requests(app, "/v1/verify", bodies[:50], built.token))
    asyncio.run(_asgi_requests(bare, "/bare", bodies[:50], built.token))
    whole: dict[str, float] = {}
    targets = (
        ("verify", app, "/v1/verify"),
        ("bare", bare, "/bare"),
        ("bare_sync", bare_sync_app(), "/bare"),
    )
    for name, target, path in targets:
        t0 = time.perf_counter()
        asyncio.run(_asgi_requests(target, path, bodies, built.token))
        whole[name] = (time.perf_counter() - t0) / n * 1000

    table = Table(title=f"one verification, part by part ({n} calls each, one after the other, no profiler)")
    table.add_column("part")
    table.add_column("ms per call", justify="right")
    for name, ms in parts.items():
        table.add_row(name, f"{ms:.3f}")
    table.add_row(
        "whole POST /v1/verify through the ASGI app (httpx client included)", f"{whole['verify']:.3f}"
    )
    table.add_row("whole POST /bare through the ASGI app (httpx client included)", f"{whole['bare']:.3f}")
    table.add_row("  same, `def` endpoint + `def` dependency (thread pool)", f"{whole['bare_sync']:.3f}")
    console.print(table)
    total_sql = sum(sum(v) for v in sql.values())
    of = parts["verify_pack (read models)"]
    table = Table(title=f"SQL statements of verify_pack: {total_sql / n * 1000:.3f} ms of {of:.3f} ms")
    for c in ("statement", "per verify", "mean µs in the driver"):
        table.add_column(c, justify="right" if c != "statement" else "left")
    for stmt, times in sorted(sql.items(), key=lambda kv: -sum(kv[1])):
        table.add_row(stmt, f"{len(times) / n:.2f}", f"{statistics.fmean(times) * 1e6:.0f}")
    console.print(table)

    prof = cProfile.Profile()
    with _inline_threadpool():
        prof.enable()
        asyncio.run(_asgi_requests(app, "/v1/verify", bodies, built.token))
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(r"(/api/|/node/|fastapi|starlette|pydantic)", 45)
    stats.sort_stats("tottime").print_stats(15)
    console.print(buf.getvalue(), highlight=False, markup=False, soft_wrap=True)
    engine.dispose()
    return {
        "parts_ms": parts,
        "whole_ms": whole,
        "sql_ms_per_verify": total_sql / n * 1000,
        "statements_per_verify": sum(len(v) for v in sql.values()) / n,
    }


# ------------------------------------------------------------------ report


def machine(built: Built) -> dict[str, Any]:
    import fastapi
    import uvicorn

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    db = Path(built.sqlite_url.removeprefix("sqlite:///"))
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        packs = int(conn.execute("SELECT count(*) FROM units").fetchone()[0])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "db_bytes": size,
        "packs": packs,
    }


def json_results(
    measurements: list[Measurement], info: dict[str, Any], phases: dict[str, float], args: argparse.Namespace
) -> list[dict[str, Any]]:
    extra = (
        f"{info['cpus']} CPU {info['cpu_model']}; Python {info['python']}; SQLite {info['sqlite']}; "
        f"{info['packs']:,} packs; concurrency {args.concurrency}, {args.clients} generator process(es), "
        f"{args.duration:g} s after {args.warmup:g} s warm-up"
    )
    out: list[dict[str, Any]] = []
    bare = {m.workers: m for m in measurements if m.app == "bare"}
    for m in measurements:
        base = bare.get(m.workers) if m.app != "bare" else None
        where = "" if m.app == "bare" else f" {m.backend}"
        tag = f"{m.app}{where}, {m.workers} worker{'s' if m.workers > 1 else ''}"
        packs = (
            [("packs verified", "packs/s", m.rps * TOTE, base.rps if base else None)]
            if m.app == "bulk"
            else []
        )
        for name, unit, value, baseline in (
            *packs,
            ("p50 latency", "ms", m.p50_ms, base.p50_ms if base else None),
            ("p95 latency", "ms", m.p95_ms, base.p95_ms if base else None),
            ("p99 latency", "ms", m.p99_ms, base.p99_ms if base else None),
            ("throughput", "requests/s", m.rps, base.rps if base else None),
            ("peak memory per worker", "MiB", m.peak_rss_mib, base.peak_rss_mib if base else None),
        ):
            out.append(
                {
                    "name": f"{tag}: {name}",
                    "value": round(value, 3),
                    "unit": unit,
                    "baseline": round(baseline, 3) if baseline is not None else None,
                    "ratio": float(f"{value / baseline:.4g}") if baseline else None,
                    "extra": extra,
                }
            )
    for name, seconds in phases.items():
        out.append({"name": f"phase: {name}", "value": round(seconds, 2), "unit": "s", "baseline": None,
                    "ratio": None, "extra": extra})  # fmt: skip
    return out


def print_report(
    console: Console,
    built: Built,
    measurements: list[Measurement],
    info: dict[str, Any],
    phases: dict[str, float],
    args: argparse.Namespace,
) -> None:
    from rich.table import Table

    console.print(
        f"machine: {info['cpus']} CPUs, {info['cpu_model']}; Python {info['python']}; "
        f"SQLite {info['sqlite']}; FastAPI {info['fastapi']}; uvicorn {info['uvicorn']}\n"
        f"database: {info['packs']:,} packs (SELECT count(*) FROM units), SQLite file "
        f"{info['db_bytes'] / 1e6:,.0f} MB; chain: {built.chain}",
        highlight=False,
    )
    table = Table(title="phases")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in phases.items():
        table.add_row(name, f"{seconds:,.1f}")
    console.print(table)
    bare = {m.workers: m for m in measurements if m.app == "bare"}
    table = Table(
        title=f"POST /v1/verify vs bare FastAPI POST, concurrency {args.concurrency}, "
        f"{args.clients} generator process(es), {args.duration:g} s each after {args.warmup:g} s warm-up"
    )
    cols = ("DB", "workers", "verify p50/p95/p99 ms", "verify rps", "bare p50/p95/p99 ms", "bare rps",
            "rps verify/bare", "p95 verify/bare", "server CPU v/b", "client CPU v/b", "other load v/b",
            "ok share",
            f"bar: p95<{P95_BAR_MS:g} ms & rps>={RPS_BAR:g}x")  # fmt: skip
    for c in cols:
        table.add_column(c, justify="right")
    for m in measurements:
        if m.app == "bare":
            continue
        b = bare[m.workers]
        ratio = m.rps / b.rps
        met = m.p95_ms < P95_BAR_MS and ratio >= RPS_BAR
        table.add_row(
            m.backend if m.app == "verify" else f"{m.backend} {m.app}",
            str(m.workers),
            f"{m.p50_ms:.1f} / {m.p95_ms:.1f} / {m.p99_ms:.1f}",
            f"{m.rps:,.0f}",
            f"{b.p50_ms:.1f} / {b.p95_ms:.1f} / {b.p99_ms:.1f}",
            f"{b.rps:,.0f}",
            f"{ratio:.3f}",
            f"{m.p95_ms / b.p95_ms:.1f}",
            f"{m.server_cpu:.2f}{f'+{m.db_cpu:.2f} PG' if m.db_cpu else ''} / {b.server_cpu:.2f}",
            f"{m.client_cpu:.2f} / {b.client_cpu:.2f}",
            f"{m.other_cpu:.2f} / {b.other_cpu:.2f}",
            f"{m.ok_share:.0%}",
            "[green]met[/]" if met else "[red]not met[/]",
        )
    console.print(table)
    knee = args.concurrency / 0.050
    console.print(
        f"closed loop: {args.concurrency} requests always in flight on keep-alive connections from "
        f"{args.clients} generator process(es) (raw HTTP/1.1, asyncio + uvloop, bodies pre-built); at "
        f"saturation latency = in flight / throughput (Little's law), so p95 < {P95_BAR_MS:g} ms at "
        f"concurrency {args.concurrency} needs more than ~{knee:,.0f} requests/s.\n"
        "verify: create_app(run_submitter=False) under uvicorn --workers N (uvloop, httptools, no access "
        "log), authenticated as a pharmacy operator; bare: one async POST endpoint, same uvicorn options.\n"
        "CPU in cores: server = uvicorn and its workers (+ PostgreSQL's processes), client = generator, "
        "other = what the rest of the machine used meanwhile (other sessions: noise).",
        highlight=False,
    )
    bad = [m for m in measurements if m.errors]
    for m in bad:
        console.print(f"[red]{m.app} {m.backend} x{m.workers}: {m.errors} non-200 answers[/]")


# ------------------------------------------------------------------ main


def _server_env(built: Built, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    env.update(
        RXLEDGER_DATABASE_URL=url,
        RXLEDGER_RPC_URL=built.rpc_url,
        RXLEDGER_MANIFEST_DIR=str(built.tmp / "deployments"),
        RXLEDGER_KEYSTORE_DIR=str(built.tmp / "keystore"),
        RXLEDGER_DOCUMENTS_DIR=str(built.tmp / "documents"),
        RXLEDGER_DATA_DIR=str(built.tmp),
        RXLEDGER_LOG_LEVEL="WARNING",
        # the servers run the same code as this process (their cwd is the temp dir)
        PYTHONPATH=os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
    )
    return env


def run_measurements(
    built: Built, args: argparse.Namespace, console: Console, phases: Phases
) -> list[Measurement]:
    layout = Layout(built.units)
    ok_body = {"gtin": GTIN, "serial": layout.serial(0), "lot": layout.lot(0), "expiry": EXPIRY}
    elsewhere = {"gtin": GTIN, "serial": layout.serial(layout.segments(0)[2][1])}
    backends = [("SQLite", built.sqlite_url)] + ([("PostgreSQL", built.pg_url)] if built.pg_url else [])
    out: list[Measurement] = []
    for workers in args.workers:
        runs = [("-", "", "bare")] + [(b, u, e) for b, u in backends for e in args.endpoints]
        for backend, url, app in runs:
            factory = "bare_app" if app == "bare" else "verify_app"
            label = f"{app}{'' if app == 'bare' else ' ' + backend} x{workers}"
            server = Server(factory, workers, _server_env(built, url), built.tmp, built.tmp / "uvicorn.log")
            pidfile = built.pg_pidfile if backend == "PostgreSQL" else None
            try:
                path = "/bare" if app == "bare" else "/v1/verify"
                server.wait_ready(path, built.token, ok_body)
                if app != "bare":
                    _check_verdicts(server.port, built.token, ok_body, elsewhere)
                if args.quiet_wait > 0:
                    wait_quiet(args.quiet_wait, console)
                with phases(f"measure {label}"):
                    out.append(measure(label, backend, app, server, args, built.token, console, pidfile))
            finally:
                server.stop()
    return out


def _check_verdicts(port: int, token: str, ok_body: dict[str, Any], elsewhere: dict[str, Any]) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
        ok = c.post("/v1/verify", json=ok_body).json()
        other = c.post("/v1/verify", json=elsewhere).json()
    if ok.get("verdict") != "ok_to_dispense" or other.get("verdict") != "do_not_dispense":
        raise RuntimeError(f"unexpected verdicts: {ok} / {other}")


def main() -> None:
    from rich.console import Console

    from api.up import sigterm_as_interrupt

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=1_000_000, help="packs to commission (multiple of 1000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per figure")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument(
        "--endpoints",
        type=lambda s: [x for x in s.split(",") if x],
        default=["verify"],
        help="verify,vrs,bulk: POST /v1/verify, GET /vrs/01/.../21/..., POST /v1/verify/bulk (totes of 100)",
    )
    parser.add_argument("--gas-limit", type=int, default=300_000_000, help="Anvil block gas limit")
    parser.add_argument(
        "--units-per-tx", type=int, default=0, help="default: as many as the gas limit allows"
    )
    parser.add_argument("--postgres", action="store_true", help="also index into a throwaway PostgreSQL")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database) for --reuse")
    parser.add_argument("--reuse", type=Path, default=None, help="measure a kept dir again, no rebuild")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N verify_pack calls in-process")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="wait up to S s for an idle machine")
    parser.add_argument("--no-measure", action="store_true", help="build (and profile) only")
    args = parser.parse_args()
    args.units = -(-args.units // 1000) * 1000
    console = Console(width=None if sys.stdout.isatty() else 200)
    phases = Phases()
    t_all = time.perf_counter()
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        if args.reuse:
            built = Built.load(args.reuse)
            args.units = built.units
            if built.pg_url:
                console.print("--reuse: the throwaway PostgreSQL cluster is gone; SQLite only")
                built.pg_url = built.pg_pidfile = None
            phases.seconds.update(built.phases)
        else:
            from node.devnet import Devnet

            tmp = Path(tempfile.mkdtemp(prefix="rxledger-bench-verify-"))
            if not args.keep:
                stack.callback(shutil.rmtree, tmp, True)
            console.print(f"working in {tmp}")
            pg = None
            if args.postgres:
                from node.indexer.pgtemp import TempPostgres

                pg = TempPostgres().start()
                stack.callback(pg.stop)
                args.pg_url = pg.database_url("bench_verify")
                args.pg_pidfile = str(pg.data / "postmaster.pid")
            else:
                args.pg_url, args.pg_pidfile = None, None
            # Base fee 0 (a consortium chain charges no gas); otherwise 100 full blocks in a row
            # raise it 12.5% each, to ~20,000 gwei.
            devnet = stack.enter_context(
                Devnet(gas_limit=args.gas_limit, extra_args=("--block-base-fee-per-gas", "0"))
            )
            built = build(args, tmp, devnet, console, phases)
        profiled: dict[str, Any] = {}
        if args.profile:
            for label, url in [
                ("SQLite", built.sqlite_url),
                *([("PostgreSQL", built.pg_url)] if built.pg_url else []),
            ]:
                with phases(f"profile {label}"):
                    console.rule(f"profile: verify_pack on {label}")
                    profiled[label] = profile(built, url, args.profile, console)
                    console.print(profiled[label])
        measurements = [] if args.no_measure else run_measurements(built, args, console, phases)
        phases.seconds["total (this run)"] = time.perf_counter() - t_all
        info = machine(built)
        if measurements:
            print_report(console, built, measurements, info, phases.seconds, args)
        if args.json:
            payload = json_results(measurements, info, phases.seconds, args)
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
            console.print(f"figures written to {args.json}")
        if args.keep and not args.reuse:
            console.print(f"kept {built.tmp} (scripts/bench-verify --reuse {built.tmp})")


if __name__ == "__main__":
    main()
