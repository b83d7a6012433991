"""The outbox end to end, with real parts only: Anvil, the contracts, SQLite, the API over HTTP and the
submitter. Idempotency, waiting, server-sent events and splitting run on the shared network (its
submitter runs inside the API). Crashes, a dead node, stuck transactions and reverts at send time need
a network whose submitter the test drives step by step: `iso`, a devnet and API of this module's own,
served without a submitter."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_typing import HexStr
from eth_utils.crypto import keccak
from sqlalchemy import Engine, func, select, update
from sqlmodel import Session, col
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from api.admin.bootstrap import ensure_admin
from api.client import ApiProblem, RxClient
from api.database import api_engine
from api.models import Operation, OperationTx, SubmitterLease
from api.runtime import Runtime
from api.write.outbox import DEPTH_MAX_AGE
from api.write.submitter import Submitter
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Deployment, Manifest, deploy_suite
from node.devnet import Devnet
from node.indexer.follower import Indexer
from node.ledger.constants import UnitState
from node.ledger.identifiers import container_key, unit_key, with_check_digit
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from node.settings import Settings
from tests.api.conftest import CREDENTIAL, Consortium, api_settings, serve, stop_server

P = "urn:rxledger:problem:"
DEAD_RPC = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def bearer(token: str | None, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def ops_with_key(engine: Engine, key: str) -> list[Operation]:
    with Session(engine) as session:
        return list(session.execute(select(Operation).where(col(Operation.idempotency_key) == key)).scalars())


def op_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(Operation)).scalar_one())


def op_row(engine: Engine, op_id: str) -> Operation:
    with Session(engine) as session:
        op: Operation = session.execute(select(Operation).where(col(Operation.id) == op_id)).scalar_one()
        return op


def tx_rows(engine: Engine, op_id: str) -> list[OperationTx]:
    seq = op_row(engine, op_id).seq
    with Session(engine) as session:
        stmt = (
            select(OperationTx)
            .where(col(OperationTx.operation_seq) == seq)
            .order_by(col(OperationTx.position))
        )
        return list(session.execute(stmt).scalars())


def poll(client: RxClient, op_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """GET the operation until it is terminal; every state seen, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(f"/v1/operations/{op_id}")
        seen.append(view)
        if view["status"] in ("succeeded", "failed"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"operation {op_id} still {seen[-1]['status']} after {timeout}s")


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10].upper()


# ====================================================================== the shared network


def test_idempotency_key_replays_the_first_operation(consortium: Consortium) -> None:
    net = consortium.net
    sponsor = consortium.as_("sponsor")
    token = consortium.tokens[("sponsor", "operator")]
    gtin, other = with_check_digit("0950600013501"), with_check_digit("0950600013502")
    key = uuid.uuid4().hex

    first = sponsor.http.post("/v1/products", json={"gtin": gtin}, headers=bearer(token, key))
    assert first.status_code == 202, first.text
    replay = sponsor.http.post("/v1/products", json={"gtin": gtin}, headers=bearer(token, key))
    assert replay.status_code == 200, replay.text  # a replay is not a new acceptance
    assert replay.json()["id"] == first.json()["id"]
    assert replay.headers["Location"] == first.headers["Location"]
    assert [op.id for op in ops_with_key(net.engine, key)] == [first.json()["id"]]
    listed = [op["id"] for op in sponsor.get("/v1/operations", limit=500)]
    assert listed.count(first.json()["id"]) == 1
    assert poll(sponsor, first.json()["id"])[-1]["status"] == "succeeded"

    # The same key for another request is refused and changes nothing.
    before = op_count(net.engine)
    reused = sponsor.http.post("/v1/products", json={"gtin": other}, headers=bearer(token, key))
    assert reused.status_code == 422 and reused.headers["content-type"].startswith("application/problem+json")
    problem = reused.json()
    assert problem["type"] == P + "idempotency-key-reused"
    assert problem["field"] == "Idempotency-Key" and problem["operation_id"] == first.json()["id"]
    assert op_count(net.engine) == before
    assert other not in [p["gtin"] for p in sponsor.get("/v1/products")]


def burst(bases: list[str], path: str, body: dict[str, Any], headers: dict[str, str]) -> list[httpx.Response]:
    """POST the same request to each base URL at once (one thread each, released together)."""
    barrier = threading.Barrier(len(bases))
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            barrier.wait()
            response = http.post(path, json=body, headers=headers)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post, args=(base,)) for base in bases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_concurrent_duplicates_create_one_operation(consortium: Consortium) -> None:
    """Six clients send the same request with the same key at once, to two API processes on the same
    database (one process alone serialises them: `accept` runs in its event loop). Three rounds, so
    that the race between two acceptances happens in at least one of them."""
    net, sponsor = consortium.net, consortium.as_("sponsor")
    token = consortium.tokens[("sponsor", "operator")]
    server, thread, second = serve(net.settings, run_submitter=False)
    try:
        for base in (net.base_url, second):  # connect both to the chain: a cold one would lose every race
            warm = httpx.post(f"{base}/v1/products", json={"gtin": JOURNEY_GTIN}, headers=bearer(token))
            assert warm.status_code == 409, warm.text  # refused by the pre-check: no operation
        for n in range(3):
            key = uuid.uuid4().hex
            body = {"gtin": with_check_digit(f"095060001351{n}")}
            answers = burst([net.base_url, second] * 3, "/v1/products", body, bearer(token, key))
            assert len(answers) == 6
            assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
            assert [a.status_code for a in answers].count(202) <= 1  # only the one that created it
            ids = {a.json()["id"] for a in answers}
            assert len(ids) == 1
            assert [op.id for op in ops_with_key(net.engine, key)] == list(ids)
            assert poll(sponsor, ids.pop())[-1]["status"] == "succeeded"
    finally:
        stop_server(server, thread)


def new_batch_body() -> dict[str, str]:
    return {"gtin": JOURNEY_GTIN, "lot": unique("OB"), "expiry": "2029-01-31", "site_gln": SITE_GLN}


def test_wait_returns_the_outcome_and_202_points_to_it(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    token = consortium.tokens[("cmo", "operator")]
    waited = cmo.http.post(
        "/v1/batches", json=new_batch_body(), params={"wait": "true"}, headers=bearer(token)
    )
    assert waited.status_code == 200, waited.text
    done = waited.json()
    assert done["status"] == "succeeded"
    assert done["txs_done"] == done["txs_total"] == 1
    assert done["transactions"][0]["status"] == "mined" and done["transactions"][0]["tx_hash"]
    assert cmo.get(f"/v1/batches/{done['result']['batch_id']}")["status"] == "quarantine"

    accepted = cmo.http.post("/v1/batches", json=new_batch_body(), headers=bearer(token))
    assert accepted.status_code == 202, accepted.text
    view = accepted.json()
    assert view["status"] in ("queued", "running")
    assert accepted.headers["Location"] == f"/v1/operations/{view['id']}" == view["links"]["self"]
    final = poll(cmo, view["id"])[-1]
    assert final["status"] == "succeeded" and final["txs_done"] == final["txs_total"] == 1
    assert final["finished_at"] is not None


def test_server_sent_events_end_with_the_outcome(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    token = consortium.tokens[("cmo", "operator")]
    view = cmo.post("/v1/batches", new_batch_body(), wait=False)
    events: list[tuple[int, str, dict[str, Any]]] = []
    deadline = time.monotonic() + 30
    with (
        httpx.Client(base_url=consortium.net.base_url, timeout=10) as http,
        http.stream("GET", f"/v1/operations/{view['id']}/events", headers=bearer(token)) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in stream.iter_lines():  # ends when the server closes the stream
            assert time.monotonic() < deadline, "the event stream did not end"
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    assert events, "no events"
    assert [e[0] for e in events] == list(range(1, len(events) + 1))
    assert all(name == data["status"] and data["id"] == view["id"] for _, name, data in events)
    assert all(name not in ("succeeded", "failed") for _, name, _ in events[:-1])
    last = events[-1][2]
    assert events[-1][1] == "succeeded" and last["txs_done"] == last["txs_total"] == 1
    assert last == cmo.get(f"/v1/operations/{view['id']}")


def test_large_request_is_split_and_reports_progress(consortium: Consortium) -> None:
    net, cmo = consortium.net, consortium.as_("cmo")
    assert net.settings.items_per_tx == 500
    bid = cmo.post("/v1/batches", new_batch_body())["result"]["batch_id"]
    prefix = unique("S")
    serials = [f"{prefix}{i:04d}" for i in range(1200)]
    accepted = cmo.post("/v1/commission", {"batch_id": bid, "serials": serials}, wait=False)
    assert accepted["items_total"] == 1200 and accepted["txs_total"] == 3
    assert [t["items"] for t in accepted["transactions"]] == [500, 500, 200]

    seen = poll(cmo, accepted["id"], timeout=60)
    done = seen[-1]
    assert done["status"] == "succeeded", done
    assert done["items_done"] == 1200 and done["txs_done"] == 3
    progress = [v["items_done"] for v in seen]
    assert progress == sorted(progress) and set(progress) <= {0, 500, 1000, 1200}
    assert [v["txs_done"] for v in seen] == sorted(v["txs_done"] for v in seen)
    hashes = [t["tx_hash"] for t in done["transactions"]]
    assert len(set(hashes)) == 3 and all(t["status"] == "mined" for t in done["transactions"])
    suite = Deployment.load(net.w3, net.manifest)
    for tx_hash, serial in zip(hashes, (serials[0], serials[500], serials[-1]), strict=True):
        receipt = net.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        unit = suite["CustodyLedger"].functions.unit(unit_key(JOURNEY_GTIN, serial)).call()
        assert unit[0] and unit[5] == consortium.org_ids["cmo"]  # exists, held by the CMO


# ====================================================================== a network of our own


@dataclass
class Iso:
    devnet: Devnet
    w3: Web3
    manifest: Manifest
    settings: Settings
    engine: Engine
    base_url: str
    admin: RxClient
    admin_address: str
    tmp: Path

    def runtime(self, **overrides: Any) -> Runtime:
        """A fresh runtime on this network's database, as a newly started process has."""
        return Runtime.create(self.settings.model_copy(update=overrides), self.engine)

    def contract(self, name: str) -> Any:
        return Deployment.load(self.w3, self.manifest)[name]

    def queued(self) -> list[str]:
        with Session(self.engine) as session:
            stmt = select(col(Operation.id)).where(col(Operation.status).in_(("queued", "running")))
            return list(session.execute(stmt).scalars())

    def nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(self.admin_address)))


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Iso]:
    """Like the package's `net`, but the API runs no submitter: the tests drive one themselves.
    Two items per transaction, so that small requests take several transactions."""
    tmp = tmp_path_factory.mktemp("outbox")
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = api_settings(tmp, devnet.rpc_url, items_per_tx=2)
        engine = api_engine(settings.database_url)
        token = ensure_admin(Runtime.create(settings, engine), admin_key)
        assert token is not None and token.token is not None
        stop = threading.Event()
        indexer = threading.Thread(target=Indexer(engine, w3, manifest).run, args=(stop,), daemon=True)
        indexer.start()
        server, thread, base = serve(settings, run_submitter=False)
        try:
            yield Iso(devnet, w3, manifest, settings, engine, base, RxClient(base, token.token),
                      admin_key.address, tmp)  # fmt: skip
        finally:
            stop_server(server, thread)
            stop.set()
            indexer.join(timeout=10)
            engine.dispose()


@contextmanager
def submitting(iso: Iso) -> Iterator[None]:
    """A submitter running in the background, as inside the API; stopped (lease released) on exit."""
    submitter = Submitter(iso.runtime(), owner="background")
    stop = threading.Event()
    thread = threading.Thread(target=submitter.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def drain(iso: Iso, owner: str = "drain") -> None:
    submitter = Submitter(iso.runtime(), owner=owner)
    submitter.drain(timeout=30)
    submitter.release_lease()


def onboard(iso: Iso, gln: str, name: str, kind: str = "sponsor") -> dict[str, Any]:
    """Accept an onboarding (two transactions: the organisation, then its key); not sent yet."""
    view: dict[str, Any] = iso.admin.post("/v1/organizations", {"gln": gln, "name": name, "roles": [kind]},
                                          wait=False)  # fmt: skip
    assert view["status"] == "queued" and view["txs_total"] == 2
    return view


@dataclass
class Stock:
    """On the isolated network: a sponsor, a CMO and a 3PL; a released batch commissioned into cases
    held by the CMO."""

    cmo: RxClient
    org_ids: dict[str, int]
    glns: dict[str, str]
    cases: list[str]


@pytest.fixture(scope="module")
def stock(iso: Iso) -> Stock:
    glns = {"sponsor": with_check_digit("400100000001"), "cmo": with_check_digit("400100000002"),
            "3pl": with_check_digit("400100000003")}  # fmt: skip
    kinds = {"sponsor": "sponsor", "cmo": "cmo", "3pl": "logistics"}
    users: dict[tuple[str, str], RxClient] = {}
    with submitting(iso):
        for short, gln in glns.items():
            iso.admin.post("/v1/organizations", {"gln": gln, "name": f"Iso {short}", "roles": [kinds[short]]})
        orgs = {o["gln"]: o["id"] for o in iso.admin.get("/v1/organizations")}
        org_ids = {short: orgs[gln] for short, gln in glns.items()}
        for short in ("sponsor", "cmo"):
            for role in ("operator", "qp"):
                body = {
                    "username": f"iso.{short}.{role}",
                    "printed_name": f"Iso {short} {role}",
                    "role": role,
                    "credential": CREDENTIAL,
                }
                created = iso.admin.post(f"/v1/organizations/{org_ids[short]}/users", body, wait=False)
                users[(short, role)] = RxClient(iso.base_url, created["token"]["token"])
        sponsor, sponsor_qp = users[("sponsor", "operator")], users[("sponsor", "qp")]
        cmo, cmo_qp = users[("cmo", "operator")], users[("cmo", "qp")]
        sponsor.post("/v1/products", {"gtin": JOURNEY_GTIN})
        sponsor.post(f"/v1/products/{JOURNEY_GTIN}/manufacturers", {"org_id": org_ids["cmo"]})
        bid = cmo.post("/v1/batches", new_batch_body())["result"]["batch_id"]
        cmo_qp.post(f"/v1/batches/{bid}/certificates", files={"file": ("coa.txt", b"CoA iso", "text/plain")})
        doc = sponsor_qp.post(
            "/v1/documents", wait=False, files={"file": ("qp.txt", b"QP iso", "text/plain")}
        )
        decision = {
            "meaning": "released",
            "signature": {"username": "iso.sponsor.qp", "credential": CREDENTIAL},
            "qp_certificate_sha256": doc["document_sha256"],
        }
        assert sponsor_qp.post(f"/v1/batches/{bid}/release", decision)["status"] == "succeeded"
        cases = [sscc("4001000", 900 + i) for i in range(4)]
        serials = [f"ISO{i:04d}" for i in range(8)]
        done = cmo.post("/v1/commission", {"batch_id": bid, "serials": serials, "containers": cases})
        # two items a transaction, then one anchoring the four cases' packing events
        assert done["status"] == "succeeded" and done["txs_total"] == 5
    return Stock(cmo, org_ids, glns, cases)


def test_crash_between_signing_and_sending_is_resumed_once(iso: Iso) -> None:
    assert not iso.queued()
    gln = with_check_digit("401234500000")
    view = onboard(iso, gln, "Crash Test Sponsor")
    nonce = iso.nonce()

    crashing = Submitter(iso.runtime(), owner="before-the-crash")
    crashing.crash_after_signing = True
    with pytest.raises(SystemExit):
        for _ in range(10):
            crashing.step()
    signed = tx_rows(iso.engine, view["id"])[0]
    assert signed.status == "signed" and signed.nonce == nonce
    assert signed.raw_tx is not None and signed.tx_hash is not None
    assert "0x" + keccak(bytes.fromhex(signed.raw_tx[2:])).hex() == signed.tx_hash
    assert json.loads(signed.hashes) == [signed.tx_hash]
    assert iso.devnet.rpc("eth_getTransactionByHash", [signed.tx_hash]) is None  # never sent
    assert iso.nonce() == nonce
    assert op_row(iso.engine, view["id"]).status == "running"

    # The restarted process has a new owner string: while the dead one's lease runs it must not send.
    restarted = Submitter(iso.runtime(), owner="after-the-restart")
    assert restarted.step().busy is False
    assert tx_rows(iso.engine, view["id"])[0].status == "signed"
    assert iso.devnet.rpc("eth_getTransactionByHash", [signed.tx_hash]) is None
    # The lease would lapse LEASE_SECONDS after the crash; simulate the lapse (expires_at = 0 in the
    # lease row) instead of waiting for it. The old owner never releases it: it is dead.
    with Session(iso.engine) as session:
        session.execute(update(SubmitterLease).values(expires_at=0.0))
        session.commit()
    restarted.drain(timeout=30)
    restarted.release_lease()

    done = iso.admin.get(f"/v1/operations/{view['id']}")
    assert done["status"] == "succeeded" and done["txs_done"] == 2, done
    first = tx_rows(iso.engine, view["id"])[0]
    assert first.status == "mined" and first.tx_hash == signed.tx_hash  # the recorded bytes were sent
    assert json.loads(first.hashes) == [signed.tx_hash]  # and nothing else was signed for that nonce
    mined = iso.w3.eth.get_transaction(HexStr(signed.tx_hash))
    assert mined["blockNumber"] is not None and mined["nonce"] == nonce
    assert iso.nonce() == nonce + 2  # the operation's two transactions, each nonce used once
    assert iso.contract("ConsortiumRegistry").functions.organizationByGln(int(gln)).call() != 0
    assert gln in [o["gln"] for o in iso.admin.get("/v1/organizations")]


def test_node_down_refuses_writes_with_503_and_changes_nothing(iso: Iso, stock: Stock) -> None:
    assert not iso.queued()
    dead = iso.settings.model_copy(update={"rpc_url": DEAD_RPC})
    server, thread, base = serve(dead, run_submitter=False)
    try:
        before = op_count(iso.engine)
        response = httpx.post(f"{base}/v1/batches", json=new_batch_body(), headers=bearer(stock.cmo.token))
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == P + "chain-unavailable"
        assert int(response.headers["Retry-After"]) > 0
        assert op_count(iso.engine) == before
    finally:
        stop_server(server, thread)


def test_node_down_submitter_backs_off_and_loses_nothing(iso: Iso) -> None:
    assert not iso.queued()
    gln = with_check_digit("401234500001")
    view = onboard(iso, gln, "Back-off Test Sponsor")

    cut_off = Submitter(iso.runtime(rpc_url=DEAD_RPC), owner="cut-off")
    assert cut_off.step().busy is False
    tx = tx_rows(iso.engine, view["id"])[0]
    assert tx.status == "pending" and tx.attempts == 1 and tx.raw_tx is None
    first_retry = tx.next_attempt_at
    assert first_retry > time.time()
    assert cut_off.step().busy is False  # too early: no new attempt
    assert tx_rows(iso.engine, view["id"])[0].attempts == 1
    time.sleep(max(0.0, first_retry - time.time()) + 0.05)
    cut_off.step()
    tx = tx_rows(iso.engine, view["id"])[0]
    assert tx.attempts == 2 and tx.status == "pending"
    assert tx.next_attempt_at - time.time() > first_retry - time.time()  # the delay grows
    assert op_row(iso.engine, view["id"]).status == "running"
    cut_off.release_lease()

    drain(iso, owner="reconnected")
    done = iso.admin.get(f"/v1/operations/{view['id']}")
    assert done["status"] == "succeeded" and done["txs_done"] == 2, done
    assert iso.contract("ConsortiumRegistry").functions.organizationByGln(int(gln)).call() != 0


def test_stuck_transaction_is_replaced_at_the_same_nonce(iso: Iso) -> None:
    assert not iso.queued()
    gln = with_check_digit("401234500002")
    view = onboard(iso, gln, "Stuck Test Sponsor")  # funds its new key: needs mining, so before the stop
    nonce = iso.nonce()
    stuck_after = 2.0  # long enough that a loaded CI machine does not look "stuck" between two steps
    submitter = Submitter(iso.runtime(submitter_stuck_after=stuck_after), owner="stuck")
    iso.devnet.rpc("evm_setAutomine", [False])
    try:
        assert submitter.step().busy
        sent = tx_rows(iso.engine, view["id"])[0]
        assert sent.status == "sent" and sent.nonce == nonce and sent.max_fee and sent.priority_fee
        with pytest.raises(TransactionNotFound):
            iso.w3.eth.get_transaction_receipt(HexStr(str(sent.tx_hash)))
        assert submitter.step().busy is False  # not stuck yet: nothing is replaced
        assert json.loads(tx_rows(iso.engine, view["id"])[0].hashes) == [sent.tx_hash]

        time.sleep(stuck_after + 0.1)
        assert submitter.step().busy
        replaced = tx_rows(iso.engine, view["id"])[0]
        hashes = json.loads(replaced.hashes)
        assert hashes == [sent.tx_hash, replaced.tx_hash] and replaced.tx_hash != sent.tx_hash
        assert replaced.nonce == nonce and replaced.status == "sent"
        assert replaced.max_fee is not None and replaced.max_fee > sent.max_fee
        assert replaced.priority_fee is not None and replaced.priority_fee > sent.priority_fee
        iso.devnet.rpc("evm_mine")
    finally:
        iso.devnet.rpc("evm_setAutomine", [True])
    submitter.drain(timeout=30)
    submitter.release_lease()

    done = iso.admin.get(f"/v1/operations/{view['id']}")
    assert done["status"] == "succeeded" and done["txs_done"] == 2, done
    receipts = []
    for tx_hash in hashes:
        try:
            receipts.append(iso.w3.eth.get_transaction_receipt(HexStr(tx_hash)))
        except TransactionNotFound:
            continue
    assert len(receipts) == 1 and receipts[0]["status"] == 1
    winner = "0x" + bytes(receipts[0]["transactionHash"]).hex()
    assert tx_rows(iso.engine, view["id"])[0].tx_hash == winner
    assert iso.w3.eth.get_transaction(HexStr(winner))["nonce"] == nonce
    assert iso.nonce() == nonce + 2  # the stuck nonce was used once, the next one by the second tx
    assert iso.contract("ConsortiumRegistry").functions.organizationByGln(int(gln)).call() != 0


def test_revert_at_send_time_fails_the_operation_and_cancels_the_rest(iso: Iso, stock: Stock) -> None:
    """The pre-check cannot see what an operation still in flight will do; the contract refuses it
    when the submitter sends, and the operation fails naming the item."""
    assert not iso.queued()
    a, b, c, d = stock.cases
    ship = {"to_gln": stock.glns["3pl"], "containers": [a, b]}
    first = stock.cmo.post("/v1/shipments", ship | {"shipment_id": unique("F")}, wait=False)
    again = {"to_gln": stock.glns["3pl"], "containers": [a, c, d], "shipment_id": unique("G")}
    # Accepted: with the first still in flight the pre-check leaves the judgement to the contract
    # (and simulated now, on chain the case is still the CMO's anyway).
    second = stock.cmo.post("/v1/shipments", again, wait=False)
    assert (first["status"], second["status"]) == ("queued", "queued")
    assert second["txs_total"] == 2  # [a, c] and [d]

    drain(iso)
    assert stock.cmo.get(f"/v1/operations/{first['id']}")["status"] == "succeeded"
    failed = stock.cmo.get(f"/v1/operations/{second['id']}")
    assert failed["status"] == "failed" and failed["txs_done"] == 0 and failed["finished_at"]
    error = failed["error"]
    assert error["type"] in (P + "in-transit", P + "not-holder"), error
    assert error["status"] == 409 and error["transaction"] == 0
    assert error["item"]["sscc"] == a and error["item"]["kind"] == "container"
    # named as the pre-check would have named it: the field, and the shipment as the client wrote it
    assert error["field"] == "containers[0]" and error["detail"].startswith("containers[0]: ")
    if error["type"] == P + "in-transit":
        assert "0x" not in error["detail"]
    assert [t["status"] for t in failed["transactions"]] == ["failed", "cancelled"]
    rows = tx_rows(iso.engine, second["id"])
    assert rows[1].raw_tx is None and rows[1].tx_hash is None  # the cancelled one was never signed
    custody = iso.contract("CustodyLedger")
    for case in (c, d):  # nothing of the failed operation happened
        view = custody.functions.container(container_key(case)).call()
        assert view[3] == stock.org_ids["cmo"] and view[6] == bytes(32)
    assert custody.functions.container(container_key(a)).call()[6] != bytes(32)  # shipped by the first


# ====================================================================== known bugs (strict: fixed = fails)


def test_onboarding_replayed_after_success_returns_the_first_operation(iso: Iso) -> None:
    assert not iso.queued()
    key = uuid.uuid4().hex
    body = {"gln": with_check_digit("401234500003"), "name": "Replay Test Sponsor", "roles": ["sponsor"]}
    first = httpx.post(f"{iso.base_url}/v1/organizations", json=body, headers=bearer(iso.admin.token, key))
    assert first.status_code == 202, first.text
    drain(iso)
    assert iso.admin.get(f"/v1/operations/{first.json()['id']}")["status"] == "succeeded"
    # the client never saw the answer and retries with the same key: it must get the first operation
    replay = httpx.post(f"{iso.base_url}/v1/organizations", json=body, headers=bearer(iso.admin.token, key))
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == first.json()["id"]


def test_onboarding_with_the_node_down_is_503(iso: Iso) -> None:
    assert not iso.queued()
    server, thread, base = serve(iso.settings.model_copy(update={"rpc_url": DEAD_RPC}), run_submitter=False)
    try:
        before = op_count(iso.engine)
        body = {"gln": with_check_digit("401234500004"), "name": "Dead Node Sponsor", "roles": ["sponsor"]}
        response = httpx.post(f"{base}/v1/organizations", json=body, headers=bearer(iso.admin.token))
        assert op_count(iso.engine) == before
        assert response.status_code == 503, response.text
        assert response.json()["type"] == P + "chain-unavailable" and "Retry-After" in response.headers
    finally:
        stop_server(server, thread)


def test_a_waiting_client_gets_the_send_time_problem_with_its_operation(iso: Iso, stock: Stock) -> None:
    """`?wait=true` on a write the contract refuses only when sent: the answer is the problem (409,
    naming the item) with the failed operation attached, not a 200 with a failed status inside."""
    assert not iso.queued()
    case = stock.cases[2]  # still the CMO's (the test above leaves it untouched)
    first = {"to_gln": stock.glns["3pl"], "containers": [case], "shipment_id": unique("W")}
    stock.cmo.post("/v1/shipments", first, wait=False)
    answer: dict[str, Any] = {}

    def waiting_client() -> None:
        client = RxClient(str(stock.cmo.http.base_url), stock.cmo.token)
        again = {"to_gln": stock.glns["3pl"], "containers": [case], "shipment_id": unique("X")}
        try:
            answer["ok"] = client.post("/v1/shipments", again)  # waits (bounded) for the outcome
        except ApiProblem as problem:
            answer["problem"] = problem

    thread = threading.Thread(target=waiting_client)
    thread.start()
    deadline = time.monotonic() + 20
    while len(iso.queued()) < 2:  # accepted, and now waiting for the submitter
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    drain(iso)
    thread.join(timeout=30)
    assert "ok" not in answer, answer
    problem = answer["problem"]
    assert problem.status == 409 and problem.type in (P + "in-transit", P + "not-holder")
    assert problem.body["item"]["sscc"] == case and problem.body["field"] == "containers[0]"
    operation = problem.body["operation"]
    assert operation["status"] == "failed" and operation["error"]["type"] == problem.type


def test_a_full_outbox_refuses_writes_with_503_and_accepts_nothing(iso: Iso, stock: Stock) -> None:
    """Back-pressure: at `outbox_max_depth` queued or running operations a write answers 503
    outbox-full with Retry-After and creates nothing; /health shows the depth and the bound."""
    assert not iso.queued()
    bounded = iso.settings.model_copy(update={"outbox_max_depth": 2})
    server, thread, base = serve(bounded, run_submitter=False)
    try:
        headers = bearer(stock.cmo.token)
        for _ in range(2):
            accepted = httpx.post(f"{base}/v1/batches", json=new_batch_body(), headers=headers)
            assert accepted.status_code == 202, accepted.text
        time.sleep(DEPTH_MAX_AGE + 0.05)  # the depth is counted at most this often
        before = op_count(iso.engine)
        refused = httpx.post(f"{base}/v1/batches", json=new_batch_body(), headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"] == P + "outbox-full"
        assert int(refused.headers["Retry-After"]) > 0
        assert op_count(iso.engine) == before
        outbox = httpx.get(f"{base}/health").json()["outbox"]
        assert outbox["depth"] == 2 and outbox["max_depth"] == 2, outbox
    finally:
        stop_server(server, thread)
    drain(iso)
    assert not iso.queued()


# ====================================================================== coalescing


def _loose_units(iso: Iso, stock: Stock, n: int) -> list[str]:
    """`n` new loose units of a new (quarantined) batch, held by the CMO; already mined."""
    with submitting(iso):
        bid = stock.cmo.post("/v1/batches", new_batch_body())["result"]["batch_id"]
        serials = [unique("CO") for _ in range(n)]
        assert (
            stock.cmo.post("/v1/commission", {"batch_id": bid, "serials": serials})["status"] == "succeeded"
        )
    return serials


def _destroy(stock: Stock, serial: str) -> dict[str, Any]:
    body = {"units": [{"gtin": JOURNEY_GTIN, "serial": serial}], "reason": "destroyed"}
    view: dict[str, Any] = stock.cmo.post("/v1/decommission", body, wait=False)
    assert view["status"] == "queued", view
    return view


def test_waiting_actions_of_one_sender_share_a_transaction_and_a_refusal_fails_only_its_own(
    iso: Iso, stock: Stock
) -> None:
    """Several operations of one organisation waiting together go in one transaction (batchActions).
    An action the simulation refuses is failed before sending, the rest go; with earlier
    transactions of the sender still unmined the simulation cannot judge, so the chain does: the
    batch's receipt names the refused action (ActionRefused) and only its operation fails."""
    assert not iso.queued()
    x0, x1, x2, x3 = _loose_units(iso, stock, 4)
    submitter = Submitter(iso.runtime(items_per_tx=100), owner="coalescing")
    custody = iso.contract("CustodyLedger")

    # refused by the simulation: the second destroys what the first destroys
    a, b, c = _destroy(stock, x0), _destroy(stock, x0), _destroy(stock, x1)
    assert submitter.step().busy
    (ra,), (rb,), (rc,) = (tx_rows(iso.engine, v["id"]) for v in (a, b, c))
    assert rb.status == "failed" and rb.raw_tx is None and rb.tx_hash is None  # never signed
    assert ra.tx_hash == rc.tx_hash and ra.nonce == rc.nonce and (ra.batch_index, rc.batch_index) == (0, 1)
    sent = iso.w3.eth.get_transaction(HexStr(str(ra.tx_hash)))
    assert custody.decode_function_input(sent["input"])[0].fn_name == "batchActions"
    refused = stock.cmo.get(f"/v1/operations/{b['id']}")
    assert refused["status"] == "failed" and refused["error"]["item"]["serial"] == x0, refused

    # refused by the chain: the sender has a transaction in flight when the pair is signed
    submitter.drain(timeout=30)
    iso.devnet.rpc("evm_setAutomine", [False])
    try:
        d = _destroy(stock, x2)
        assert submitter.step().busy
        (rd,) = tx_rows(iso.engine, d["id"])
        assert rd.status == "sent" and rd.batch_index is None
        e, f = _destroy(stock, x3), _destroy(stock, x3)
        assert submitter.step().busy
        (re_,), (rf,) = tx_rows(iso.engine, e["id"]), tx_rows(iso.engine, f["id"])
        assert re_.status == rf.status == "sent" and re_.tx_hash == rf.tx_hash
        assert rd.nonce is not None and re_.nonce == rd.nonce + 1
        iso.devnet.rpc("evm_mine")
    finally:
        iso.devnet.rpc("evm_setAutomine", [True])
    submitter.drain(timeout=30)
    submitter.release_lease()
    receipt = iso.w3.eth.get_transaction_receipt(HexStr(str(re_.tx_hash)))
    assert receipt["status"] == 1
    (event,) = custody.events.ActionRefused().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["index"] == 1
    for view, status in (
        (a, "succeeded"),
        (c, "succeeded"),
        (d, "succeeded"),
        (e, "succeeded"),
        (f, "failed"),
    ):
        assert stock.cmo.get(f"/v1/operations/{view['id']}")["status"] == status, view
    failed = stock.cmo.get(f"/v1/operations/{f['id']}")
    assert failed["error"]["status"] == 409 and failed["error"]["item"]["serial"] == x3, failed
    assert failed["transactions"][0]["tx_hash"] == re_.tx_hash  # the transaction that refused it
    for serial in (x0, x1, x2, x3):
        assert custody.functions.unit(unit_key(JOURNEY_GTIN, serial)).call()[1] == UnitState.DESTROYED
