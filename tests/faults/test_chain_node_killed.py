"""Fault test: the chain node is SIGKILLed with hundreds of accepted operations in flight.

Anvil runs with `--state FILE --state-interval 1`, so a SIGKILL loses whatever the chain did after its
last dump (up to about a second): on restart the chain has *rewound*, dropping blocks whose
transactions the submitter may already have seen mined, and its pool is empty. The outbox promises
that every accepted operation ends exactly once on chain anyway (signed bytes are recorded before they
are broadcast, so they can be broadcast again), and the indexer must notice the rewound blocks by hash.

The verdict is read from the chain (events, contract views, the signer's nonce), not from the API's
database: a database that says "succeeded" for a transaction the chain no longer has is the failure
this test exists to catch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_typing import ChecksumAddress, HexStr
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col
from web3 import Web3
from web3.contract import Contract

from api.admin.bootstrap import ensure_admin
from api.client import RxClient
from api.database import api_engine
from api.models import Operation, OperationTx
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Deployment, deploy_suite
from node.devnet import Devnet, free_port
from node.indexer.audit import audit
from node.indexer.follower import Indexer
from node.indexer.schema import Checkpoint, table
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN
from tests.api.conftest import ApiNet, Consortium, api_settings, onboard_consortium, serve, stop_server
from tests.api.test_custody import released_batch

pytestmark = [pytest.mark.chain, pytest.mark.timeout(420)]

OPERATIONS = 620  # single-pack decommissions, each its own operation and transaction
MIN_IN_FLIGHT = 500  # the issue: kill the node with at least this many accepted operations in flight
MINED_BEFORE_KILL = 20  # let the submitter get going (a few state dumps) before the kill
KILL_AFTER_DUMP = 0.5  # kill this long after a state dump (every 1 s): what was mined meanwhile is lost
ACCEPT_WORKERS = 4  # concurrent clients while accepting
NODE_DOWN_SECONDS = 2.0  # how long the node stays dead before it is restarted
SETTLE_TIMEOUT = 240.0  # bound for every operation to reach an outcome after the restart
IN_FLIGHT = ("queued", "running")


@dataclass
class KillableNet:
    """The partner-API network of tests/api/conftest.py, but Anvil keeps its state in a file on a
    fixed port, so it can be killed and brought back with its state at the same URL."""

    api: ApiNet
    devnet: Devnet
    state_file: Path

    @property
    def w3(self) -> Web3:
        return self.api.w3

    def ledger(self) -> Contract:
        return Deployment.load(self.w3, self.api.manifest)["CustodyLedger"]

    def kill_node(self) -> None:
        """SIGKILL: no state dump on exit, the pending pool is gone."""
        pid = self.devnet.pid
        assert pid is not None, "the devnet is not running"
        os.kill(pid, signal.SIGKILL)
        self.devnet.stop()  # reaps the process and removes its cache dir (a late SIGTERM does nothing)

    def wait_for_dump(self, dumps: int = 2, timeout: float = 15.0) -> None:
        """Until Anvil has dumped its state `dumps` times since now (it does every second). After two,
        the last one began after this call: everything done before the call survives a kill."""
        since = time.time()
        for _ in range(dumps):
            deadline = time.monotonic() + timeout
            while not (self.state_file.exists() and self.state_file.stat().st_mtime > since):
                assert time.monotonic() < deadline, f"anvil wrote no state dump to {self.state_file}"
                time.sleep(0.02)
            since = self.state_file.stat().st_mtime

    def restart_node(self) -> None:
        """Same port and state file: every client reconnects to the same URL by itself."""
        self.devnet.start()


@contextlib.contextmanager
def killable_network(tmp: Path) -> Iterator[KillableNet]:
    """Like `running_network` in tests/api/conftest.py, with a state file and a fixed port."""
    state_file = tmp / "anvil" / "state.json"
    devnet = Devnet(port=free_port(), state_file=state_file)
    devnet.start()
    try:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = api_settings(tmp, devnet.rpc_url).model_copy(
            update={"submitter_max_in_flight": TEST_MAX_IN_FLIGHT}
        )
        engine = api_engine(settings.database_url)
        token = ensure_admin(Runtime.create(settings, engine), admin_key)
        assert token is not None and token.token is not None
        indexer = Indexer(engine, make_web3(devnet.rpc_url), manifest)
        stop, mined = threading.Event(), threading.Event()
        indexer_thread = threading.Thread(
            target=indexer.run, args=(stop,), kwargs={"wake": mined}, name="test-indexer", daemon=True
        )
        indexer_thread.start()
        server, thread, base = serve(settings, mined=mined)
        try:
            api = ApiNet(devnet, w3, manifest, settings, engine, base, token.token, stop, tmp)
            yield KillableNet(api, devnet, state_file)
        finally:
            stop_server(server, thread)
            stop.set()
            indexer_thread.join(timeout=10)
            engine.dispose()
    finally:
        devnet.stop()


def in_flight(engine: Engine) -> int:
    """Operations not finished yet. Counted in the outbox (the API lists at most 500 a page); only a
    progress gauge: the verdict comes from the chain."""
    with Session(engine) as session:
        stmt = select(func.count()).select_from(Operation).where(col(Operation.status).in_(IN_FLIGHT))
        return int(session.execute(stmt).scalar_one())


def accept_all(base_url: str, token: str, serials: list[str], key_prefix: str | None = None) -> list[str]:
    """One single-pack decommission per serial, accepted (202) without waiting; their ids in order.
    With `key_prefix`, each carries the Idempotency-Key `<key_prefix><serial>`."""
    local = threading.local()
    clients: list[RxClient] = []

    def accept(serial: str) -> str:
        if not hasattr(local, "client"):
            local.client = RxClient(base_url, token)
            clients.append(local.client)
        body = {"units": [{"gtin": JOURNEY_GTIN, "serial": serial}], "reason": "destroyed"}
        key = None if key_prefix is None else key_prefix + serial
        view: dict[str, Any] = local.client.post("/v1/decommission", body, wait=False, idempotency_key=key)
        assert view["status"] in IN_FLIGHT, view
        return str(view["id"])

    try:
        with ThreadPoolExecutor(ACCEPT_WORKERS, thread_name_prefix="accept") as pool:
            return list(pool.map(accept, serials))
    finally:
        for client in clients:
            client.close()


def decommissioned_on_chain(ledger: Contract, from_block: int) -> dict[bytes, list[str]]:
    """Every UnitsDecommissioned event since `from_block`: unit key -> hashes of the transactions that
    decommissioned it (exactly one each when all is well)."""
    carriers: dict[bytes, list[str]] = {}
    for event in ledger.events.UnitsDecommissioned.get_logs(from_block=from_block, to_block="latest"):
        for key in event["args"]["keys"]:
            carriers.setdefault(bytes(key), []).append("0x" + bytes(event["transactionHash"]).hex())
    return carriers


@contextlib.contextmanager
def mining_paused(devnet: Devnet) -> Iterator[None]:
    """Automine off while the operations are accepted, so that all of them are still in flight when
    the submitter gets going (accepting and sending share one process and its CPU); the submitter's
    first transaction just waits in the pool. Mining resumes on exit."""
    devnet.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        devnet.rpc("evm_setAutomine", [True])
        devnet.rpc("evm_mine")


# The submitter pipelines: with automine it clears hundreds of queued operations within a second, so
# the kill would find none in flight. These tests bound it instead: at most this many transactions
# unmined at once (still sent in batches), and blocks mined every SLOW_BLOCK_SECONDS until the kill.
TEST_MAX_IN_FLIGHT = 16
SLOW_BLOCK_SECONDS = 0.5


class SlowMining:
    """Automine off and one block every `every` seconds from a thread, until stopped: the submitter
    has transactions in the pool, mined and rewound, at the moment a test kills something."""

    def __init__(self, devnet: Devnet, every: float = SLOW_BLOCK_SECONDS) -> None:
        self.devnet, self.every = devnet, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._mine, name="slow-mining", daemon=True)

    def _mine(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # the node is being killed
                self.devnet.rpc("evm_mine")

    def start(self) -> SlowMining:
        self.devnet.rpc("evm_setAutomine", [False])
        self._thread.start()
        return self

    def stop(self, *, automine: bool = True) -> None:
        """Stop mining blocks; automine again unless the node is about to die anyway."""
        self._stop.set()
        self._thread.join(timeout=10)
        if automine:
            self.devnet.rpc("evm_setAutomine", [True])


def wait_for_in_flight(engine: Engine, at_most: int, timeout: float) -> int:
    """Poll (bounded) until no more than `at_most` operations are in flight; the last count seen."""
    deadline = time.monotonic() + timeout
    count = in_flight(engine)
    while count > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
        count = in_flight(engine)
    return count


def wait_until_settled(engine: Engine, timeout: float, stall: float) -> float:
    """Poll (bounded) until no operation of the organisation is queued or running, or nothing
    finished for `stall` seconds (stuck for good: fail now rather than at `timeout`); seconds taken."""
    started = last_progress = time.monotonic()
    left = in_flight(engine)
    while left and time.monotonic() - started < timeout and time.monotonic() - last_progress < stall:
        time.sleep(1.0)
        now_left = in_flight(engine)
        if now_left < left:
            left, last_progress = now_left, time.monotonic()
    return time.monotonic() - started


def stuck_report(net: KillableNet, sender: ChecksumAddress) -> str:
    """What the outbox believes about unfinished operations against what the chain says (diagnostics
    for a failure message only; the verdict never comes from the database)."""
    with Session(net.api.engine) as session:
        rows = session.execute(
            select(
                col(Operation.seq),
                col(Operation.status),
                col(OperationTx.status),
                col(OperationTx.nonce),
                col(OperationTx.attempts),
            )
            .join(OperationTx, col(OperationTx.operation_seq) == col(Operation.seq))
            .where(col(Operation.status).in_(IN_FLIGHT))
            .order_by(col(Operation.seq))
            .limit(5)
        ).all()
    nonce = net.w3.eth.get_transaction_count(sender)
    pending = net.w3.eth.get_transaction_count(sender, "pending")
    return (
        f"chain head {net.w3.eth.block_number}, signer nonce {nonce} (pending {pending}); "
        f"first unfinished (seq, op status, tx status, tx nonce, attempts): {[tuple(r) for r in rows]}"
    )


def indexer_at_head(engine: Engine, w3: Web3, timeout: float = 30.0) -> bool:
    """Poll (bounded) until the indexer's checkpoint is the chain's head block, by number *and* hash:
    it follows the chain the node has now, not blocks lost with a kill."""
    deadline = time.monotonic() + timeout
    while True:
        checkpoint = table(Checkpoint)
        with engine.connect() as conn:
            row = conn.execute(select(checkpoint.c.block_number, checkpoint.c.block_hash)).first()
        head = w3.eth.get_block("latest")
        if row is not None and (int(row[0]), str(row[1])) == (head["number"], head["hash"].to_0x_hex()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillableNet]:
    with killable_network(tmp_path_factory.mktemp("chainkill")) as network:
        yield network


def test_sigkilled_node_loses_and_duplicates_no_accepted_operation(killable: KillableNet) -> None:
    """SIGKILL Anvil with >= 500 accepted single-pack decommissions in flight, restart it from its state
    file on the same port: every accepted operation succeeds, and the chain holds exactly one
    decommissioning per pack, in the transaction the API reports, from exactly one transaction each."""
    net = killable
    consortium: Consortium = onboard_consortium(net.api)
    serials = [f"KILL{i:05d}" for i in range(OPERATIONS)]
    released_batch(consortium, "FAULT-KILL-1", serials, [])  # loose packs: decommissioned one by one
    cmo = consortium.as_("cmo")
    commission = cmo.get("/v1/operations", limit=1)[0]  # the newest: the commissioning just done
    sender = Web3.to_checksum_address(
        net.w3.eth.get_transaction(HexStr(commission["transactions"][0]["tx_hash"]))["from"]
    )
    nonce_before = net.w3.eth.get_transaction_count(sender)
    head_before = net.w3.eth.block_number
    net.wait_for_dump()  # the set-up is in the state file: only the operations under test can be rewound

    net.devnet.rpc("evm_setAutomine", [False])  # all accepted before any is mined
    ids = accept_all(net.api.base_url, consortium.tokens[("cmo", "operator")], serials)
    assert len(set(ids)) == OPERATIONS
    mining = SlowMining(net.devnet).start()
    wait_for_in_flight(net.api.engine, OPERATIONS - MINED_BEFORE_KILL, timeout=60.0)
    net.wait_for_dump(dumps=1)
    time.sleep(KILL_AFTER_DUMP)  # mid-way between two dumps: the kill rewinds what was mined since
    mining.stop(automine=False)
    flying = in_flight(net.api.engine)
    head_at_kill = net.w3.eth.block_number
    net.kill_node()
    assert flying >= MIN_IN_FLIGHT, f"only {flying} operations in flight at the kill: the test proves less"

    time.sleep(NODE_DOWN_SECONDS)
    net.restart_node()
    head_after_restart = net.w3.eth.block_number
    assert head_after_restart >= head_before, "the restarted node lost the set-up: no recent state dump?"
    assert head_after_restart < head_at_kill, "the kill rewound no block: this run proves less, run it again"
    # a lost pool entry is re-sent after `submitter_stuck_after` at the latest: allow twice that
    stall = 2 * net.api.settings.submitter_stuck_after + 10
    settled_in = wait_until_settled(net.api.engine, SETTLE_TIMEOUT, stall)
    left = in_flight(net.api.engine)

    # ---- the verdict, from the chain
    carriers = decommissioned_on_chain(net.ledger(), head_before + 1)
    key_of = {unit_key(JOURNEY_GTIN, s): s for s in serials}
    views = [cmo.get(f"/v1/operations/{op_id}") for op_id in ids]
    lost = [key_of[k] for k in key_of if k not in carriers]
    claimed = sum(v["status"] == "succeeded" for v in views)
    claimed_but_lost = [
        s for v, s in zip(views, serials, strict=True)
        if v["status"] == "succeeded" and unit_key(JOURNEY_GTIN, s) not in carriers
    ]  # fmt: skip
    story = (
        f"{flying} in flight at the kill (block {head_at_kill}); the restarted chain was at block "
        f"{head_after_restart}; {settled_in:.0f}s later {left} operations are unfinished, "
        f"{claimed} report success, {len(lost)} packs are not decommissioned on chain, "
        f"{len(claimed_but_lost)} of them reported succeeded (e.g. {claimed_but_lost[:3]})"
    )
    print(story)  # shown with -s, and with the output of a failure
    assert not claimed_but_lost, f"operations reported succeeded that the chain does not have: {story}"
    assert left == 0, f"operations never finished: {story}; {stuck_report(net, sender)}"
    assert not lost, f"accepted packs never decommissioned on chain: {story}, e.g. {lost[:5]}"
    duplicated = {key_of.get(k, k.hex()): len(v) for k, v in carriers.items() if len(v) != 1}
    assert not duplicated, f"packs decommissioned more than once on chain: {duplicated}"
    assert set(carriers) == set(key_of), "decommissionings on chain of packs nobody asked for"

    states = Counter(int(net.ledger().functions.unit(k).call()[1]) for k in key_of)
    assert states == Counter({int(UnitState.DESTROYED): OPERATIONS}), states
    # One nonce per transaction the operations report (the submitter coalesces waiting operations,
    # so one transaction carries several): a re-broadcast of the same bytes is harmless, a second
    # signing that was mined (even reverted) would show as an extra nonce used.
    used = net.w3.eth.get_transaction_count(sender) - nonce_before
    reported_txs = {t["tx_hash"] for v in views for t in v["transactions"]}
    assert used == len(reported_txs), f"the signer used {used} nonces for {len(reported_txs)} transactions"
    assert len(reported_txs) < OPERATIONS, "no operations were coalesced: this run proves less"

    # ---- and every accepted operation says so, pointing at the transaction that did it (the event is
    # in that transaction, so it is on chain and did not revert)
    wrong: list[str] = []
    for view, serial in zip(views, serials, strict=True):
        reported = [t["tx_hash"] for t in view["transactions"]]
        on_chain = carriers.get(unit_key(JOURNEY_GTIN, serial))
        if view["status"] != "succeeded" or on_chain != reported:
            wrong.append(f"{serial}: {view['status']}, reports {reported}, the chain has it in {on_chain}")
    assert not wrong, f"{len(wrong)} operations disagree with the chain, e.g. {wrong[:5]}"

    # ---- the read models follow the chain as it is now: the indexer rolled back the lost blocks
    assert indexer_at_head(net.api.engine, net.w3), "the indexer does not reach the restarted chain's head"
    report = audit(net.api.engine, net.w3, Deployment.load(net.w3, net.api.manifest).contracts, sample=None)
    assert report.ok, f"read models differ from the contracts: {report.divergences[:5]}"
    assert report.checked["units"] >= OPERATIONS
