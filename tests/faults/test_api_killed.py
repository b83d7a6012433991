"""Fault test: the API process, with the outbox submitter in it, is SIGKILLed with hundreds of accepted
operations in flight, and started again on the same database and port.

The API runs as its own OS process, the way docker-compose.yml runs it (`uvicorn --factory
api.app:create_app`, configured by RXLEDGER_* variables). It reaches the node through a JSON-RPC
pass-through that can hold one `eth_sendRawTransaction`: the kill lands at the worst moment the
outbox has, transactions signed and recorded but their broadcast still on the wire (the submitter
sends a step's transactions in one JSON-RPC batch, so a batch is held). The held broadcast is then
delivered to the node after its sender died (the node mines it), so the restarted process finds
transactions its database calls `signed` that the chain already has: sending them again must not
sign second ones. The restarted process (same database, same port; it talks to the node
directly, the proxy was only there to time the kill) also has to wait out the dead one's lease.

Clients send every request with an Idempotency-Key; a few retry after the restart, as a client whose
answer was lost would: they get the first operation back, and no second one exists.

The verdict is read from the chain (events, contract views, the signer's nonce), not from the API's
database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_typing import HexStr
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col
from web3 import Web3
from web3.contract import Contract

from api.admin.bootstrap import ensure_admin
from api.database import api_engine
from api.edge import audit as api_audit
from api.models import AuditEntry, Operation, OperationTx
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Deployment, deploy_suite
from node.devnet import Devnet, _pdeathsig_preexec, free_port
from node.indexer.audit import audit
from node.indexer.follower import Indexer
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN
from node.settings import Settings
from tests.api.conftest import ApiNet, Consortium, api_settings, onboard_consortium
from tests.api.test_custody import released_batch
from tests.faults.test_chain_node_killed import (
    IN_FLIGHT,
    TEST_MAX_IN_FLIGHT,
    SlowMining,
    accept_all,
    decommissioned_on_chain,
    in_flight,
    indexer_at_head,
    wait_for_in_flight,
    wait_until_settled,
)

pytestmark = [pytest.mark.chain, pytest.mark.timeout(540)]

OPERATIONS = 300  # single-pack decommissions, each its own operation and transaction
MIN_IN_FLIGHT = 200  # kill the API with at least this many accepted operations unfinished
DONE_BEFORE_KILL = 20  # let the submitter finish some first: the restart finds every state there is
START_TIMEOUT = 90.0  # bound for the API process to answer HTTP
HOLD_TIMEOUT = 60.0  # bound for the submitter to broadcast once the proxy is armed
SETTLE_TIMEOUT = 240.0  # bound for every operation to reach an outcome after the restart
UVICORN = Path(sys.executable).parent / "uvicorn"
DECOMMISSION = "/v1/decommission"


class Phases:
    """Seconds per phase of the test, for its output (timings vary with the machine's load)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.marks: list[str] = []

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.marks.append(f"{name} {now - self.last:.0f}s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.marks)


def decommission_body(serial: str, reason: str = "destroyed") -> dict[str, Any]:
    return {"units": [{"gtin": JOURNEY_GTIN, "serial": serial}], "reason": reason}


KEY_PREFIX = "apikill-"  # each operation's Idempotency-Key: the prefix and its serial


def idempotency_key(serial: str) -> str:
    return KEY_PREFIX + serial


class SendHoldingProxy:
    """A JSON-RPC pass-through to the node. Once armed, it holds the next request that sends
    transactions (one eth_sendRawTransaction or a batch of them) and says so until released;
    released, it delivers it after all, or drops it."""

    def __init__(self, upstream: str) -> None:
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.released = threading.Event()
        self.deliver_held = True
        self.held_raws: list[str] = []
        self._claim = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as web3's session expects

            def setup(self) -> None:
                super().setup()
                self.upstream = httpx.Client(timeout=60.0)

            def finish(self) -> None:
                self.upstream.close()
                super().finish()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if proxy.armed.is_set() and proxy._hold(raw):
                    proxy.released.wait(HOLD_TIMEOUT)
                    if not proxy.deliver_held:
                        self.close_connection = True
                        return
                answer = self.upstream.post(
                    upstream, content=raw, headers={"Content-Type": "application/json"}
                )
                try:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    self.close_connection = True  # the API process is gone

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="rpc-proxy", daemon=True)
        self.thread.start()

    def _hold(self, raw: bytes) -> bool:
        """Whether this request is the one to hold (the first send since armed)."""
        payload = json.loads(raw)
        calls = payload if isinstance(payload, list) else [payload]
        sends = [c for c in calls if c.get("method") == "eth_sendRawTransaction"]
        if not sends:
            return False
        with self._claim:
            if self.holding.is_set():
                return False
            self.held_raws = [str(c["params"][0]) for c in sends]
            self.holding.set()
            return True

    @property
    def held_hashes(self) -> list[str]:
        assert self.held_raws, "nothing held"
        return [Web3.keccak(hexstr=HexStr(raw)).to_0x_hex() for raw in self.held_raws]

    def release(self, *, deliver: bool) -> None:
        self.deliver_held = deliver
        self.armed.clear()
        self.released.set()

    def close(self) -> None:
        self.release(deliver=False)
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def process_env(settings: Settings) -> dict[str, str]:
    """The settings as RXLEDGER_* variables (the ones the test network sets; the rest default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"RXLEDGER_{name.upper()}"] = str(value)
    return env


class ApiProcess:
    """The API as docker-compose.yml runs it: `uvicorn --factory api.app:create_app` in a process of
    its own, the submitter inside. Restarted on the same port; each run logs to its own file."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int, workers: int = 1) -> None:
        self.env = env
        self.workers = workers
        self.workdir = workdir  # no .env there: only the variables above configure it
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"api-{self.runs}.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def spawn(self) -> None:
        """Start the process; `wait_ready` waits for it to serve (it takes seconds to import)."""
        assert self.proc is None or self.proc.poll() is not None, "the API process is running"
        self.runs += 1
        cmd = [
            str(UVICORN),
            "--factory",
            "api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(["--workers", str(self.workers)] if self.workers > 1 else []),
        ]
        with self.log.open("wb") as out:  # a file: an unread pipe could fill and block the process
            self.proc = subprocess.Popen(
                [*cmd, "--log-level", "warning"],
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig_preexec(),  # dies with the test run, whatever happens to it
            )

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"the API process exited at start:\n{self.log_tail()}"
            try:
                httpx.get(self.base_url + "/v1/operations", timeout=2.0)  # 401 is an answer: it serves
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"the API did not start:\n{self.log_tail()}"
                time.sleep(0.1)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> int:
        """SIGKILL: no shutdown, no lease released, whatever it was doing stops where it was."""
        assert self.proc is not None and self.proc.poll() is None, "the API process is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class ApiKillNet:
    api: ApiNet  # base_url is the API process's
    process: ApiProcess
    proxy: SendHoldingProxy

    @property
    def w3(self) -> Web3:
        return self.api.w3

    @property
    def engine(self) -> Engine:
        return self.api.engine

    def ledger(self) -> Contract:
        return Deployment.load(self.w3, self.api.manifest)["CustodyLedger"]


@contextlib.contextmanager
def api_process_network(tmp: Path) -> Iterator[ApiKillNet]:
    """Devnet + suite + the API in its own process (through the proxy) + the indexer in a thread of
    this process, writing the same SQLite file, + the bootstrapped admin."""
    with Devnet(port=0) as devnet:
        proxy = SendHoldingProxy(devnet.rpc_url)
        try:
            settings = api_settings(tmp, proxy.url).model_copy(
                update={"submitter_max_in_flight": TEST_MAX_IN_FLIGHT}
            )
            engine = api_engine(settings.database_url)  # migrated here, before the process starts
            process = ApiProcess(process_env(settings), tmp, free_port())
            stop = threading.Event()
            indexer_thread: threading.Thread | None = None
            try:
                process.spawn()  # it imports while the suite is deployed: it needs the chain only later
                w3 = make_web3(devnet.rpc_url)
                admin_key = dev_accounts()[0]
                manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
                token = ensure_admin(Runtime.create(settings, engine), admin_key)
                assert token is not None and token.token is not None
                indexer = Indexer(engine, make_web3(devnet.rpc_url), manifest)
                indexer_thread = threading.Thread(
                    target=indexer.run, args=(stop,), name="test-indexer", daemon=True
                )
                indexer_thread.start()
                process.wait_ready()
                api = ApiNet(devnet, w3, manifest, settings, engine, process.base_url, token.token, stop, tmp)
                yield ApiKillNet(api, process, proxy)
            finally:
                process.stop()
                stop.set()
                if indexer_thread is not None:
                    indexer_thread.join(timeout=10)
                engine.dispose()
        finally:
            proxy.close()


@dataclass
class OutboxState:
    """What the outbox holds about the operations under test (a gauge and diagnostics: the verdict
    comes from the chain)."""

    operations: int
    op_status: Counter[str]
    tx_status: Counter[str]
    signed: list[tuple[str, str | None]]  # (operation id, tx hash) of transactions signed, not sent


def outbox_state(engine: Engine, after_seq: int) -> OutboxState:
    with Session(engine) as session:
        ops = session.execute(
            select(col(Operation.status), func.count())
            .where(col(Operation.seq) > after_seq)
            .group_by(col(Operation.status))
        ).all()
        txs = session.execute(
            select(col(OperationTx.status), func.count())
            .where(col(OperationTx.operation_seq) > after_seq)
            .group_by(col(OperationTx.status))
        ).all()
        signed = session.execute(
            select(col(Operation.id), col(OperationTx.tx_hash))
            .join(OperationTx, col(OperationTx.operation_seq) == col(Operation.seq))
            .where(col(Operation.seq) > after_seq, col(OperationTx.status) == "signed")
        ).all()
    op_status = Counter({str(s): int(n) for s, n in ops})
    return OutboxState(
        operations=sum(op_status.values()),
        op_status=op_status,
        tx_status=Counter({str(s): int(n) for s, n in txs}),
        signed=[(str(i), h) for i, h in signed],
    )


def recorded_transactions(
    engine: Engine, after_seq: int
) -> dict[str, list[tuple[str, int | None, list[str]]]]:
    """Operation id -> its transactions as the outbox recorded them: (sender, nonce, every hash)."""
    out: dict[str, list[tuple[str, int | None, list[str]]]] = {}
    with Session(engine) as session:
        rows = session.execute(
            select(
                col(Operation.id), col(OperationTx.sender), col(OperationTx.nonce), col(OperationTx.hashes)
            )
            .join(OperationTx, col(OperationTx.operation_seq) == col(Operation.seq))
            .where(col(Operation.seq) > after_seq)
        ).all()
    for op_id, sender, nonce, hashes in rows:
        out.setdefault(str(op_id), []).append((str(sender), nonce, list(json.loads(hashes))))
    return out


def last_seq(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.max(col(Operation.seq)))).scalar() or 0)


def retry_post(base_url: str, token: str, serial: str, reason: str = "destroyed") -> httpx.Response:
    """The POST a client sends again when it does not know whether the first one was accepted."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": idempotency_key(serial)}
    return httpx.post(
        base_url + DECOMMISSION, json=decommission_body(serial, reason), headers=headers, timeout=60
    )


@pytest.fixture(scope="module")
def apikill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiKillNet]:
    with api_process_network(tmp_path_factory.mktemp("apikill")) as network:
        yield network


def test_sigkilled_api_loses_and_duplicates_no_accepted_operation(apikill: ApiKillNet) -> None:
    """SIGKILL the API process with >= 200 of 300 accepted single-pack decommissions unfinished and a
    signed transaction's broadcast on the wire, deliver that broadcast to the node, restart the
    process: every accepted operation succeeds, the chain holds exactly one decommissioning per pack
    from exactly one transaction each, and retried requests name the first operations."""
    net = apikill
    phases = Phases()
    consortium: Consortium = onboard_consortium(net.api)
    serials = [f"AK{i:05d}" for i in range(OPERATIONS)]
    released_batch(consortium, "FAULT-APIKILL-1", serials, [])  # loose packs: decommissioned one by one
    phases.mark("set-up")
    cmo = consortium.as_("cmo")
    token = consortium.tokens[("cmo", "operator")]
    commission = cmo.get("/v1/operations", limit=1)[0]  # the newest: the commissioning just done
    sender = Web3.to_checksum_address(
        net.w3.eth.get_transaction(HexStr(commission["transactions"][0]["tx_hash"]))["from"]
    )
    nonce_before = net.w3.eth.get_transaction_count(sender)
    head_before = net.w3.eth.block_number
    seq_before = last_seq(net.engine)

    # ---- accept them all (mining paused, so that all are still in flight when the submitter starts)
    net.api.devnet.rpc("evm_setAutomine", [False])  # all accepted before any is mined
    ids = accept_all(net.api.base_url, token, serials, KEY_PREFIX)
    mining = SlowMining(net.api.devnet).start()  # a block every SLOW_BLOCK_SECONDS until the kill
    phases.mark("accepting")
    assert len(set(ids)) == OPERATIONS
    serial_of = dict(zip(ids, serials, strict=True))

    # ---- kill the API process with a signed transaction's broadcast held on the wire
    wait_for_in_flight(net.engine, OPERATIONS - DONE_BEFORE_KILL, timeout=120.0)
    net.proxy.armed.set()
    assert net.proxy.holding.wait(HOLD_TIMEOUT), "the submitter broadcast nothing more"
    returncode = net.process.kill()
    mining.stop()
    phases.mark("until the kill")
    assert returncode == -signal.SIGKILL
    at_kill = outbox_state(net.engine, seq_before)  # nobody writes the outbox now: exactly as it died
    flying = sum(at_kill.op_status[s] for s in IN_FLIGHT)
    story = f"at the kill: operations {dict(at_kill.op_status)}, transactions {dict(at_kill.tx_status)}"
    print(story)  # shown with -s, and with the output of a failure
    assert at_kill.operations == OPERATIONS, story
    assert flying >= MIN_IN_FLIGHT, f"only {flying} operations in flight at the kill: the test proves less"
    assert at_kill.op_status["succeeded"] >= DONE_BEFORE_KILL, story
    # the held broadcast carries exactly the outbox's signed-not-sent transactions: recorded before
    # broadcast
    held = net.proxy.held_hashes
    # (one transaction may carry several operations: the submitter coalesces waiting ones)
    assert sorted({str(h) for _, h in at_kill.signed}) == sorted(held), f"{story}; signed: {at_kill.signed}"
    held_ops = {h: op for op, h in at_kill.signed}
    held_op = held_ops[held[0]]

    # ---- the broadcast reaches the node after its sender died, and is mined
    net.proxy.release(deliver=True)
    for held_hash in held:
        receipt = net.w3.eth.wait_for_transaction_receipt(HexStr(held_hash), timeout=30, poll_latency=0.05)
        assert receipt["status"] == 1

    # ---- the same process again, same database and port: it waits out the dead one's lease. (It
    # talks to the node directly now: the proxy was there to time the kill, nothing more.)
    net.process.env["RXLEDGER_RPC_URL"] = net.api.devnet.rpc_url
    net.process.start()

    # ---- clients that lost their answers retry with the same Idempotency-Key: the first operation
    phases.mark("restart")
    retried = {serials[0]: "succeeded before the kill", serial_of[held_op]: "signed at the kill"}
    retried[serials[OPERATIONS // 2]] = "queued at the kill"
    retried[serials[-1]] = "queued at the kill, accepted last"
    for serial, when in retried.items():
        answer = retry_post(net.api.base_url, token, serial)
        assert answer.status_code == 200, f"{serial} ({when}): {answer.status_code} {answer.text}"
        assert answer.json()["id"] == ids[serials.index(serial)], f"{serial} ({when}): a new operation"
    reused = retry_post(net.api.base_url, token, serials[1], reason="dispensed")  # same key, other request
    assert reused.status_code == 422 and "idempotency-key-reused" in reused.json()["type"], reused.text
    assert outbox_state(net.engine, seq_before).operations == OPERATIONS, "a retry created an operation"

    # a lost lease is taken over after 15 s, a lost pool entry re-sent after `submitter_stuck_after`
    stall = 2 * net.api.settings.submitter_stuck_after + 20
    settled_in = wait_until_settled(net.engine, SETTLE_TIMEOUT, stall)
    left = in_flight(net.engine)
    after = outbox_state(net.engine, seq_before)

    # ---- the verdict, from the chain
    phases.mark("settling")
    carriers = decommissioned_on_chain(net.ledger(), head_before + 1)
    key_of = {unit_key(JOURNEY_GTIN, s): s for s in serials}
    listed = {v["id"]: v for v in cmo.get("/v1/operations", limit=500)}  # newest first: all of ours
    views = [listed[op_id] for op_id in ids]
    lost = [key_of[k] for k in key_of if k not in carriers]
    claimed = sum(v["status"] == "succeeded" for v in views)
    story += (
        f"; {settled_in:.0f}s after the restart: {left} unfinished, operations {dict(after.op_status)}, "
        f"{claimed} report success, {len(lost)} packs not decommissioned on chain; phases: {phases}"
    )
    print(story)
    assert left == 0, f"operations never finished: {story}\n{net.process.log_tail()}"
    assert not lost, f"accepted packs never decommissioned on chain: {story}, e.g. {lost[:5]}"
    duplicated = {key_of.get(k, k.hex()): len(v) for k, v in carriers.items() if len(v) != 1}
    assert not duplicated, f"packs decommissioned more than once on chain: {duplicated}"
    assert set(carriers) == set(key_of), "decommissionings on chain of packs nobody asked for"

    ledger = net.ledger()
    with net.w3.batch_requests() as batch:  # the 300 views in one round trip
        for key in key_of:
            batch.add(ledger.functions.unit(key))
        units: list[Any] = list(batch.execute())
    states = Counter(int(unit[1]) for unit in units)
    assert states == Counter({int(UnitState.DESTROYED): OPERATIONS}), states
    # One transaction per operation, several operations per transaction (coalesced): a second
    # signing that was mined (even reverted) would show as an extra nonce used, and as a second
    # transaction or hash in the outbox.
    used = net.w3.eth.get_transaction_count(sender) - nonce_before
    recorded = recorded_transactions(net.engine, seq_before)
    nonces = sorted({n for txs in recorded.values() for s, n, _ in txs if s == sender and n is not None})
    assert used < OPERATIONS, f"{used} transactions for {OPERATIONS} operations: none coalesced"
    expected = list(range(nonce_before, nonce_before + used))
    assert nonces == expected, (
        f"the outbox's nonces are not the chain's: missing {sorted(set(expected) - set(nonces))[:5]}, "
        f"extra or repeated {sorted((Counter(nonces) - Counter(expected)).elements())[:5]}; {story}"
    )
    # (a fee-bumped replacement of an unmined transaction keeps its nonce: that is not a second one)
    resigned = {serial_of[i]: txs for i, txs in recorded.items() if len(txs) != 1}
    assert not resigned, f"operations with more than one transaction: {resigned}"
    replaced = [h for op, h in at_kill.signed if recorded[op][0][2] != [h]]
    assert not replaced, f"transactions signed at the kill were replaced: {replaced}"

    # ---- every accepted operation says so, pointing at the transaction that did it
    wrong: list[str] = []
    for view, serial in zip(views, serials, strict=True):
        reported = [t["tx_hash"] for t in view["transactions"]]
        on_chain = carriers.get(unit_key(JOURNEY_GTIN, serial))
        if view["status"] != "succeeded" or on_chain != reported:
            wrong.append(f"{serial}: {view['status']}, reports {reported}, the chain has it in {on_chain}")
    assert not wrong, f"{len(wrong)} operations disagree with the chain, e.g. {wrong[:5]}"

    phases.mark("verdict")

    # ---- and the read models equal the contracts
    assert indexer_at_head(net.engine, net.w3), "the indexer does not reach the head of the chain"
    report = audit(net.engine, net.w3, Deployment.load(net.w3, net.api.manifest).contracts, sample=None)
    assert report.ok, f"read models differ from the contracts: {report.divergences[:5]}"
    assert report.checked["units"] >= OPERATIONS
    phases.mark("audit")
    print(f"phases: {phases}")


AUDIT_KILL_ANSWERS = 300  # verifications answered before the kill (more arrive while it lands)


def test_sigkilled_api_keeps_the_audit_entry_of_every_answer(apikill: ApiKillNet) -> None:
    """16 clients verify packs as fast as the API answers, each request with its own X-Request-ID;
    the process is SIGKILLed mid-stream. Every request that got its answer has its audit entry (the
    answer leaves only once its group of entries is committed), and the hash chain is whole."""
    net = apikill
    if net.process.proc is None or net.process.proc.poll() is not None:
        net.process.start()
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {net.api.admin_token}"}

    def client(c: int) -> None:
        with httpx.Client(base_url=net.process.base_url, timeout=15.0) as http:
            i = 0
            while not stop.is_set():
                rid = f"audit-kill-{c}-{i}"
                body = {"gtin": JOURNEY_GTIN, "serial": f"AK{i % OPERATIONS:05d}"}
                i += 1
                try:
                    r = http.post("/v1/verify", json=body, headers={**headers, "X-Request-ID": rid})
                except httpx.TransportError:
                    return  # the kill: no answer, so no promise
                if r.status_code == 200:
                    with lock:
                        answered.append(rid)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(answered) < AUDIT_KILL_ANSWERS:
        assert time.monotonic() < deadline, f"only {len(answered)} verifications answered"
        time.sleep(0.01)
    assert net.process.kill() == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(timeout=20)
    with Session(net.engine) as session:
        recorded = set(
            session.execute(
                select(col(AuditEntry.request_id)).where(col(AuditEntry.request_id).like("audit-kill-%"))
            ).scalars()
        )
    missing = sorted(set(answered) - recorded)
    assert not missing, f"{len(missing)} of {len(answered)} answered verifications have no audit entry"
    assert api_audit.verify_chain(net.engine)[1] is None
    net.process.start()  # the module's other tests and its teardown find it serving
