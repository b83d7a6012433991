"""Fault test: PostgreSQL restarted under load.

The API and the indexer share one throwaway PostgreSQL cluster (node/indexer/pgtemp.py). Client
threads keep writing (single-pack decommissions, accepted with 202 without waiting) and reading
(verification at the counter, inventory) while the cluster is stopped the hard way (`pg_ctl stop -m
immediate`: every backend dies, no shutdown checkpoint), kept down a few seconds and started again
on the same port and data directory, with operations in flight and the submitter's transaction
mined meanwhile. The promises under test:

- while the database is down every request gets a 503 problem document (RFC 9457), soon: not a 500,
  not a hang; /health says degraded;
- the service comes back by itself: nothing restarts the API, the submitter or the indexer;
- every operation accepted (before or after the outage, and those in flight across it) ends
  `succeeded`, exactly once on chain. A client that got no acceptance retries with the same
  Idempotency-Key, as a partner's script would, so a request whose answer was lost with the database
  cannot run twice either.

The verdict is read from the chain (events per pack, the unit's state, the signer's nonce), not from
the database that was just restarted; the read models must then match the contracts (audit).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract

from node.deploy import Deployment
from node.indexer.audit import audit
from node.indexer.pgtemp import TempPostgres
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN
from tests.api.conftest import ApiNet, Consortium, onboard_consortium, running_network
from tests.api.test_custody import released_batch
from tests.faults.test_chain_node_killed import (
    decommissioned_on_chain,
    in_flight,
    indexer_at_head,
    wait_until_settled,
)

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.timeout(360)]

SERIALS = [f"PG{i:05d}" for i in range(400)]  # the write pool: one decommission each, at most
READ_SERIAL = "PGREAD0001"  # verified over and over, never decommissioned
WRITERS = 2  # client threads writing
WRITE_PAUSE = 0.05  # between two accepted writes of a thread
RETRY_PAUSE = 0.25  # a client retries a write that was not accepted (same Idempotency-Key)
READ_PAUSE = 0.1
REQUEST_TIMEOUT = 30.0  # httpx's bound per request; no request may come near it
OUTAGE_ANSWER_BOUND = 10.0  # a request meeting a down database is answered within this
ACCEPTED_BEFORE = 15  # writes accepted before the stop
MIN_IN_FLIGHT = 5  # operations accepted and unfinished when the database goes down
DOWN_SECONDS = 4.0  # how long the database stays down
MIN_REFUSED = 3  # at least this many of each kind of request meet the down database
RECOVERY_TIMEOUT = 60.0  # bound for writes and reads to work again after the start
ACCEPTED_AFTER = 15  # writes accepted after the recovery, before the load stops
PHASE_TIMEOUT = 60.0  # bound of every other wait for the load
ACCEPT_DEADLINE = 120.0  # a client gives up retrying one write after this


# ---------------------------------------------------------------------- the cluster, restartable


class RestartablePostgres:
    """The TempPostgres cluster stopped and started again on the same port and data directory (the
    engine's URL stays valid). The start options are those of `TempPostgres.start`."""

    def __init__(self, server: TempPostgres) -> None:
        self.server = server
        self.down = False

    def _pg_ctl(self, *args: str) -> None:
        s = self.server
        done = subprocess.run(
            [*s.as_user, s.pg_ctl, "-D", str(s.data), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}\n{self.log_tail()}"

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: the postmaster SIGQUITs every backend and exits without a checkpoint, as in a
        crash of the server (the next start runs crash recovery)."""
        self.down = True
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def start(self) -> None:
        s = self.server
        options = f"-p {s.port} -k {s.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(s.base / "log"), "-w", "-t", "60", "start")
        self.down = False

    def log_tail(self, chars: int = 3000) -> str:
        path = self.server.base / "log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@dataclass
class PgNet:
    api: ApiNet
    postgres: RestartablePostgres


@pytest.fixture(scope="module")
def pg_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgNet]:
    """The partner-API network of tests/api/conftest.py on a PostgreSQL cluster of this module's own
    (the session's is shared with other tests and must not be restarted under them)."""
    try:
        server = TempPostgres()  # absent binaries fail the test, as the `postgres_server` fixture does
    except RuntimeError as exc:
        pytest.fail(str(exc))
    postgres = RestartablePostgres(server)
    try:
        server.start()
        url = server.database_url("rx_pg_restart")
        with running_network(tmp_path_factory.mktemp("pgrestart"), url) as api:
            try:
                yield PgNet(api, postgres)
            finally:
                if postgres.down:  # a failure mid-outage: bring it back so that the API shuts down cleanly
                    with contextlib.suppress(Exception):
                        postgres.start()
    finally:
        server.stop()  # pg_ctl stop (fast) and the cluster's directory removed


# ---------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Attempt:
    """One request and what came back (`status` None: no answer at all)."""

    kind: str  # write, verify, inventory
    started: float  # time.monotonic()
    ended: float
    status: int | None
    content_type: str = ""
    body: Any = None
    retry_after: str | None = None
    error: str | None = None

    def during(self, start: float, end: float) -> bool:
        return start <= self.started and self.ended <= end

    def describe(self) -> str:
        what = self.error or f"{self.status} {self.content_type} {str(self.body)[:300]}"
        return f"{self.kind} after {self.ended - self.started:.2f}s: {what}"


@dataclass(frozen=True)
class Acceptance:
    serial: str
    operation_id: str
    at: float  # time.monotonic() of the answer
    status: int  # 202 (new) or 200 (an earlier attempt's operation, replayed by its Idempotency-Key)
    retried: bool  # earlier attempts of this write got no acceptance


class Load:
    """Writer and reader threads against the API. Every request is recorded; a write that is not
    accepted (503, no answer) is retried with the same Idempotency-Key until it is."""

    def __init__(self, base_url: str, write_token: str, read_token: str, batch_id: str) -> None:
        self.base_url = base_url
        self.write_token, self.read_token = write_token, read_token
        self.batch_id = batch_id
        self.attempts: list[Attempt] = []
        self.accepted: list[Acceptance] = []
        self.unaccepted: list[str] = []  # writes given up (a refusal other than 503, or the deadline)
        self.stop = threading.Event()  # no new work; a write under way is still retried to its end
        self.abort = threading.Event()  # give up at once (the test failed)
        self._lock = threading.Lock()
        self._serials = iter(SERIALS)
        self._threads: list[threading.Thread] = []

    # ---- bookkeeping, shared by the threads

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def _next_serial(self) -> str | None:
        with self._lock:
            return next(self._serials, None)

    def accepted_count(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(a.at >= since for a in self.accepted)

    def succeeded_since(self, kind: str, since: float) -> bool:
        with self._lock:
            return any(
                a.kind == kind and a.started >= since and a.status in (200, 202) for a in self.attempts
            )

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    # ---- requests

    def _request(self, http: httpx.Client, kind: str, method: str, path: str, **kwargs: Any) -> Attempt:
        started = time.monotonic()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            attempt = Attempt(kind, started, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}")
        else:
            content_type = response.headers.get("content-type", "")
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text[:500]
            attempt = Attempt(
                kind,
                started,
                time.monotonic(),
                response.status_code,
                content_type,
                body,
                response.headers.get("retry-after"),
            )
        self._record(attempt)
        return attempt

    def _write_until_accepted(self, http: httpx.Client, serial: str) -> None:
        body = {"units": [{"gtin": JOURNEY_GTIN, "serial": serial}], "reason": "destroyed"}
        headers = {"Idempotency-Key": f"pg-restart-{serial}"}
        deadline = time.monotonic() + ACCEPT_DEADLINE
        retried = False
        while not self.abort.is_set() and time.monotonic() < deadline:
            attempt = self._request(http, "write", "POST", "/v1/decommission", json=body, headers=headers)
            if attempt.status in (200, 202) and isinstance(attempt.body, dict) and "id" in attempt.body:
                acceptance = Acceptance(
                    serial, str(attempt.body["id"]), attempt.ended, attempt.status, retried
                )
                with self._lock:
                    self.accepted.append(acceptance)
                return
            if attempt.status is not None and attempt.status != 503:
                break  # refused for good: a failure the verdict reports
            retried = True
            time.sleep(RETRY_PAUSE)
        with self._lock:
            self.unaccepted.append(serial)

    def _writer(self) -> None:
        headers = {"Authorization": f"Bearer {self.write_token}"}
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT, headers=headers) as http:
            while not self.stop.is_set() and not self.abort.is_set():
                serial = self._next_serial()
                if serial is None:
                    return
                self._write_until_accepted(http, serial)
                self.stop.wait(WRITE_PAUSE)

    def _reader(self) -> None:
        headers = {"Authorization": f"Bearer {self.read_token}"}
        pack = {"gtin": JOURNEY_GTIN, "serial": READ_SERIAL}
        params = {"batch_id": self.batch_id, "limit": 20}
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT, headers=headers) as http:
            while not self.stop.is_set() and not self.abort.is_set():
                self._request(http, "verify", "POST", "/v1/verify", json=pack)
                self._request(http, "inventory", "GET", "/v1/inventory", params=params)
                self.stop.wait(READ_PAUSE)

    # ---- lifecycle

    def start(self) -> None:
        targets = [self._writer] * WRITERS + [self._reader]
        for i, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"pg-load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self, timeout: float) -> bool:
        """Stop and join the threads (writes under way finish first); False if one did not end."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def kill(self) -> None:
        self.abort.set()
        self.stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)


def wait_for(condition: Any, timeout: float, poll: float = 0.05) -> float | None:
    """Poll `condition()` until true; seconds taken, or None at the bound."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(poll)
    return time.monotonic() - started


@contextlib.contextmanager
def mining_paused(net: ApiNet) -> Iterator[None]:
    """Automine off: the submitter's transaction waits in the pool and accepted operations pile up
    behind it. Mining resumes on exit (also on failure)."""
    net.devnet.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        net.devnet.rpc("evm_setAutomine", [True])
        net.devnet.rpc("evm_mine")


def signer_of(net: ApiNet, consortium: Consortium) -> ChecksumAddress:
    """The CMO's signing key: the sender of its newest operation's transaction."""
    cmo = consortium.as_("cmo")
    try:
        newest = cmo.get("/v1/operations", limit=1)[0]
    finally:
        cmo.close()
    tx = net.w3.eth.get_transaction(HexStr(newest["transactions"][0]["tx_hash"]))
    return Web3.to_checksum_address(tx["from"])


def ledger(net: ApiNet) -> Contract:
    return Deployment.load(net.w3, net.manifest)["CustodyLedger"]


# ---------------------------------------------------------------------- the test


def test_postgres_restarted_under_load_loses_nothing_and_recovers_by_itself(pg_net: PgNet) -> None:
    net, postgres = pg_net.api, pg_net.postgres
    began = time.monotonic()
    consortium = onboard_consortium(net)
    batch_id = released_batch(consortium, "PG-RESTART-1", [*SERIALS, READ_SERIAL], [])  # loose packs
    sender = signer_of(net, consortium)
    nonce_before = net.w3.eth.get_transaction_count(sender)
    head_before = net.w3.eth.block_number

    load = Load(
        net.base_url,
        consortium.tokens[("cmo", "operator")],
        consortium.tokens[("cmo", "viewer")],
        batch_id,
    )
    health: httpx.Response | None = None
    set_up = time.monotonic()
    load.start()
    try:
        # ---- before: writes flow, then a backlog behind a transaction the chain has not mined yet
        assert wait_for(lambda: load.accepted_count() >= ACCEPTED_BEFORE, PHASE_TIMEOUT) is not None, (
            f"only {load.accepted_count()} writes accepted before the outage: {load.snapshot()[-3:]}"
        )
        with mining_paused(net):
            piled = wait_for(lambda: in_flight(net.engine) >= MIN_IN_FLIGHT, PHASE_TIMEOUT, poll=0.1)
            assert piled is not None, f"no backlog of {MIN_IN_FLIGHT} operations built up"
            flying = in_flight(net.engine)
            stopping = time.monotonic()
            postgres.stop("immediate")
            down = time.monotonic()
        # mining resumed (on exit above) while the database is down: the submitter's transaction is
        # mined now, and the submitter can only record it once the database is back

        # ---- the outage
        with httpx.Client(base_url=net.base_url, timeout=REQUEST_TIMEOUT) as http:
            health = http.get("/health")
        time.sleep(max(0.0, down + DOWN_SECONDS - time.monotonic()))
        starting = time.monotonic()
        postgres.start()
        up = time.monotonic()

        # ---- recovery, with nothing restarted but the database
        recovered = wait_for(
            lambda: load.succeeded_since("write", up) and load.succeeded_since("verify", up),
            RECOVERY_TIMEOUT,
        )
        assert recovered is not None, (
            f"the API did not recover within {RECOVERY_TIMEOUT:.0f}s of the database's start; "
            f"last answers: {[a.describe() for a in load.snapshot()[-4:]]}"
        )
        after = wait_for(lambda: load.accepted_count(since=up) >= ACCEPTED_AFTER, PHASE_TIMEOUT)
        assert after is not None, f"only {load.accepted_count(since=up)} writes accepted after the outage"
        assert load.finish(timeout=ACCEPT_DEADLINE + REQUEST_TIMEOUT), "a client thread did not end"
    finally:
        load.kill()
    attempts, accepted = load.snapshot(), list(load.accepted)
    loaded = time.monotonic()

    # ---- every answer: 2xx, or a 503 problem document; never a 500, never left without an answer
    statuses = Counter((a.kind, a.status) for a in attempts)
    story = (
        f"{len(accepted)} writes accepted ({load.accepted_count(since=up)} after the outage), "
        f"{sum(a.retried for a in accepted)} only when retried, {sum(a.status == 200 for a in accepted)} "
        f"of them the replay of an operation whose acceptance was lost; "
        f"{flying} operations in flight at the stop; stop took {down - stopping:.2f}s, start "
        f"{up - starting:.2f}s, recovered {recovered:.2f}s after the start; answers: {dict(statuses)}"
    )
    print(story)
    unexpected = [a.describe() for a in attempts if a.status not in (200, 202, 503)]
    assert not unexpected, f"{len(unexpected)} answers neither 2xx nor 503, e.g. {unexpected[:5]}"
    assert not load.unaccepted, f"writes never accepted: {load.unaccepted[:5]}"
    refusals = [a for a in attempts if a.status == 503]
    not_problems = [
        a.describe()
        for a in refusals
        if not (
            a.content_type.startswith("application/problem+json")
            and isinstance(a.body, dict)
            and a.body.get("status") == 503
            and str(a.body.get("type", "")).startswith("urn:rxledger:problem:")
            and a.body.get("title")
            and a.retry_after
        )
    ]
    assert not not_problems, f"503s that are no RFC 9457 problem with Retry-After: {not_problems[:3]}"
    slow = [a.describe() for a in refusals if a.ended - a.started > OUTAGE_ANSWER_BOUND]
    assert not slow, f"refusals that took longer than {OUTAGE_ANSWER_BOUND:.0f}s: {slow[:3]}"

    # ---- while the database was down, everything was refused, and the test saw enough of it
    outage = [a for a in attempts if a.during(down, starting)]
    served = [a.describe() for a in outage if a.status != 503]
    assert not served, f"answered while the database was down: {served[:3]}"
    met = Counter(a.kind for a in outage)
    assert all(met[kind] >= MIN_REFUSED for kind in ("write", "verify", "inventory")), met
    assert health is not None and health.status_code == 503, health
    report = health.json()
    assert report["status"] == "degraded" and report["database"]["reachable"] is False, report

    # ---- every accepted operation succeeds: its view, then the chain
    ids = [a.operation_id for a in accepted]
    assert len(set(ids)) == len(ids), "two writes were given the same operation"
    assert len({a.serial for a in accepted}) == len(accepted)
    stall = 2 * net.settings.submitter_stuck_after + 10
    settled_in = wait_until_settled(net.engine, timeout=120.0, stall=stall)
    left = in_flight(net.engine)
    assert left == 0, f"{left} operations unfinished {settled_in:.0f}s after the load: {story}"
    print(
        f"set-up {set_up - began:.1f}s, load {loaded - set_up:.1f}s, all operations finished "
        f"{settled_in:.1f}s after the load"
    )
    cmo = consortium.as_("cmo")
    try:
        views = {a.serial: cmo.get(f"/v1/operations/{a.operation_id}") for a in accepted}
    finally:
        cmo.close()
    not_succeeded = {s: v["status"] for s, v in views.items() if v["status"] != "succeeded"}
    assert not not_succeeded, f"accepted operations that did not succeed: {not_succeeded}"
    miscounted = {
        s: (v["txs_done"], v["txs_total"], v["items_done"], v["items_total"])
        for s, v in views.items()
        if (v["txs_done"], v["items_done"]) != (v["txs_total"], v["items_total"])
    }
    assert not miscounted, f"succeeded operations not counting their work (done/total): {miscounted}"

    carriers = decommissioned_on_chain(ledger(net), head_before + 1)
    key_of = {unit_key(JOURNEY_GTIN, a.serial): a.serial for a in accepted}
    lost = [s for k, s in key_of.items() if k not in carriers]
    assert not lost, f"accepted packs not decommissioned on chain: {lost[:5]}; {story}"
    twice = {key_of.get(k, k.hex()): len(v) for k, v in carriers.items() if len(v) != 1}
    assert not twice, f"packs decommissioned more than once on chain: {twice}"
    assert set(carriers) == set(key_of), "decommissionings on chain that no accepted write asked for"
    reported = {s: [t["tx_hash"] for t in v["transactions"]] for s, v in views.items()}
    wrong = [
        f"{s}: reports {hashes}, on chain {carriers[unit_key(JOURNEY_GTIN, s)]}"
        for s, hashes in reported.items()
        if hashes != carriers[unit_key(JOURNEY_GTIN, s)]
    ]
    assert not wrong, f"operations that disagree with the chain: {wrong[:5]}"
    contract = ledger(net)
    states = Counter(int(contract.functions.unit(k).call()[1]) for k in key_of)
    assert states == Counter({int(UnitState.DESTROYED): len(accepted)}), states
    assert int(contract.functions.unit(unit_key(JOURNEY_GTIN, READ_SERIAL)).call()[1]) == UnitState.ACTIVE
    # one nonce per transaction the operations report (one may carry several: coalesced); a second
    # signing that was mined, even reverted, would be an extra nonce
    used = net.w3.eth.get_transaction_count(sender) - nonce_before
    transactions = {h for hashes in reported.values() for h in hashes}
    assert used == len(transactions), f"the signer used {used} nonces for {len(transactions)} transactions"

    # ---- the read models caught up with the chain by themselves and match the contracts
    assert indexer_at_head(net.engine, net.w3, timeout=60.0), "the indexer does not reach the head"
    contracts = Deployment.load(net.w3, net.manifest).contracts
    consistency = audit(net.engine, net.w3, contracts, sample=None)
    assert consistency.ok, f"read models differ from the contracts: {consistency.divergences[:5]}"
    with httpx.Client(base_url=net.base_url, timeout=REQUEST_TIMEOUT) as http:
        database = http.get("/health").json()["database"]
    assert database["reachable"] is True, database
