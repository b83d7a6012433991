"""The submitter: works through the outbox in acceptance order, one transaction at a time.

Crash safety: a transaction is signed and *recorded* (raw bytes, hash, nonce) before it is broadcast;
after a crash the recorded bytes are broadcast again (same hash, so never executed twice) or their
receipt is found. Node down: back-off with a cap, nothing is dropped. Stuck (unmined past
`submitter_stuck_after`): re-signed at the same nonce with fees raised by 25%, every hash kept, and
whichever is mined counts. A revert fails the operation with the decoded custom error and cancels
its remaining transactions. Only one submitter signs at a time (a lease row in the database).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from sqlalchemy import Engine, select, update
from sqlmodel import Session, col
from web3.exceptions import TransactionNotFound, Web3RPCError

from api.edge import audit
from api.edge.rules import problem_from_revert
from api.models import KnownItem, Operation, OperationStatus, OperationTx, SubmitterLease, TxStatus
from api.runtime import Chain, ChainUnavailable, Runtime
from api.write.plan import decode_args, encode_call, resolve_deferred
from node.chain import DEFAULT_PRIORITY_FEE, MIN_MAX_FEE, revert_data_of_failed_tx
from node.errors import ContractRevert
from node.indexer.schema import Checkpoint, table

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
# How far back, in blocks, transactions seen mined are checked again after the node was away: a node
# restarted from an older state (Anvil's --state dump after a SIGKILL) or a reorg can drop them.
RECHECK_BLOCKS = 128
# Receipts are read per block while the submitter keeps up; further behind (a start, a long outage)
# by hash, once for every transaction in flight.
RECEIPT_BLOCKS_PER_STEP = 256
BUSY_STEP_INTERVAL = 0.02
# What the submitter coalesces into one transaction: the custody ledger's relayable actions (the only
# selectors RelayedActions.batchActions takes; the registries' admin functions are not relayable).
COALESCED_CONTRACT = "CustodyLedger"
COALESCED_FUNCTIONS = frozenset(
    {
        "commission",
        "pack",
        "unpack",
        "unpackAll",
        "ship",
        "receiveShipment",
        "rejectShipment",
        "reportMissing",
        "reclaimShipment",
        "decommission",
        "undoDecommission",
        "anchorEvents",
        "flagSuspect",
        "clearSuspect",
        "confirmIllegitimate",
        "flagBatchSuspect",
        "clearBatchSuspect",
        "confirmBatchIllegitimate",
    }
)
ACTION_REFUSED = "0x" + keccak(text="ActionRefused(uint256,address,bytes)").hex()
NODE_ERRORS = (requests.exceptions.RequestException, ConnectionError, OSError, ChainUnavailable, TimeoutError)


class NodeDown(Exception):
    pass


@dataclass
class StepResult:
    busy: bool  # something happened: look again at once
    idle_wait: float = 0.05  # otherwise, how long to wait for new work before looking again


@dataclass
class Work:
    """An unfinished operation and its transactions, as read at the start of a step."""

    op: Operation
    txs: list[OperationTx]


@dataclass(frozen=True)
class Head:
    number: int
    base_fee: int
    gas_limit: int


def _field_in_request(request: dict[str, Any], item: KnownItem) -> str | None:
    """Where the request named `item` (the same field path the pre-check reports)."""
    if item.kind == "container":
        if request.get("container") == item.sscc:
            return "container"
        containers = request.get("containers") or []
        return f"containers[{containers.index(item.sscc)}]" if item.sscc in containers else None
    for i, unit in enumerate(request.get("units") or []):
        if isinstance(unit, dict) and unit.get("gtin") == item.gtin and unit.get("serial") == item.serial:
            return f"units[{i}]"
    serials = request.get("serials") or []
    if item.serial in serials:
        return f"serials[{serials.index(item.serial)}]"
    held = request.get("held_unit")
    if isinstance(held, dict) and held.get("serial") == item.serial:
        return "held_unit"
    return None


def describe_key_from_db(
    engine: Engine, key: str, request: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    with Session(engine) as session:
        item = session.get(KnownItem, key.lower())
    if item is None:
        return None
    out: dict[str, Any] = {"kind": item.kind, "key": item.key}
    for name in ("gtin", "serial", "sscc"):
        if getattr(item, name) is not None:
            out[name] = getattr(item, name)
    field = _field_in_request(request, item) if request else None
    if field is not None:
        out = {"field": field, **out}
    return out


class Submitter:
    def __init__(self, runtime: Runtime, *, owner: str | None = None) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings = runtime.settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._lease_until = 0.0
        self.nonces: dict[str, int] = {}  # next nonce per sender, never below the node's count
        # look for transactions the chain lost before sending anything new: at start (the node may
        # have restarted meanwhile) and whenever the node was unreachable or forgot nonces we used
        self._recheck = True
        # test hook: raise after a transaction is recorded as signed, before broadcasting it
        self.crash_after_signing = False
        self._http = requests.Session()
        self._scanned: int | None = None  # the last block whose receipts were read
        self._paused_until = 0.0  # the node failed while only receipts were awaited: back off
        self._block_gas_limit = 0
        self._busy_senders: set[str] = set()
        self._outage = 0  # consecutive node failures while only receipts were awaited

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        log.info("submitter %s started", self.owner)
        while not stop.is_set():
            started = time.monotonic()
            try:
                result = self.step()
            except Exception:  # the database is down, or a bug: neither may kill the loop
                log.exception("submitter step failed; retrying in 1 s")
                stop.wait(1.0)
                result = StepResult(False)
            if not result.busy:
                self.runtime.wake.wait(result.idle_wait)
                self.runtime.wake.clear()
            else:
                # Busy: each step costs a few calls and commits whatever it carries, so a short
                # floor between steps lets one step carry what arrived meanwhile.
                stop.wait(max(0.0, started + BUSY_STEP_INTERVAL - time.monotonic()))
        try:
            self.release_lease()
        except Exception:  # the lease expires by itself
            log.warning("could not release the submitter lease", exc_info=True)

    def drain(self, timeout: float = 60.0) -> None:
        """Work until no operation is queued or running (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.step().busy and self._next_operation() is None:
                return
            time.sleep(0.005)
        raise TimeoutError("the outbox did not drain")

    # ------------------------------------------------------------------ lease

    def acquire_lease(self) -> bool:
        now = time.time()
        if self._lease_until - now > LEASE_SECONDS / 3:
            return True
        with Session(self.engine) as session:
            lease = session.get(SubmitterLease, 1)
            if lease is None:
                session.add(SubmitterLease(id=1, owner=self.owner, expires_at=now + LEASE_SECONDS))
                try:
                    session.commit()
                except Exception:
                    return False
                self._lease_until = now + LEASE_SECONDS
                return True
            result = session.execute(
                update(SubmitterLease)
                .where(
                    SubmitterLease.id == 1,  # type: ignore[arg-type]
                    (SubmitterLease.owner == self.owner) | (SubmitterLease.expires_at < now),  # type: ignore[arg-type,operator]
                )
                .values(owner=self.owner, expires_at=now + LEASE_SECONDS)
            )
            session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                self._lease_until = now + LEASE_SECONDS
                return True
        return False

    def release_lease(self) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(SubmitterLease)
                .where(SubmitterLease.owner == self.owner)  # type: ignore[arg-type]
                .values(expires_at=0.0)
            )
            session.commit()
        self._lease_until = 0.0

    # ------------------------------------------------------------------ one step

    def _next_operation(self) -> Operation | None:
        with Session(self.engine) as session:
            stmt = (
                select(Operation)
                .where(Operation.status.in_((OperationStatus.QUEUED, OperationStatus.RUNNING)))  # type: ignore[attr-defined]
                .order_by(Operation.seq)  # type: ignore[arg-type]
                .limit(1)
            )
            return session.execute(stmt).scalar()

    def _load_work(self) -> list[Work]:
        """The oldest `submitter_window` unfinished operations with their transactions, in
        acceptance order: two queries, however many there are."""
        with Session(self.engine, expire_on_commit=False) as session:
            ops = list(
                session.execute(
                    select(Operation)
                    .where(col(Operation.status).in_((OperationStatus.QUEUED, OperationStatus.RUNNING)))
                    .order_by(col(Operation.seq))
                    .limit(self.settings.submitter_window)
                ).scalars()
            )
            if not ops:
                return []
            by_seq: dict[int, Work] = {int(op.seq or 0): Work(op, []) for op in ops}
            for tx in session.execute(
                select(OperationTx)
                .where(col(OperationTx.operation_seq).in_(list(by_seq)))
                .order_by(col(OperationTx.operation_seq), col(OperationTx.position))
            ).scalars():
                by_seq[tx.operation_seq].txs.append(tx)
            queued = [seq for seq, w in by_seq.items() if w.op.status == OperationStatus.QUEUED]
            if queued:
                session.execute(
                    update(Operation)
                    .where(col(Operation.seq).in_(queued))
                    .values(status=OperationStatus.RUNNING, updated_at=time.time())
                )
                session.commit()
                for seq in queued:
                    by_seq[seq].op.status = OperationStatus.RUNNING
        return list(by_seq.values())

    def _streams(
        self, work: list[Work], now: float
    ) -> tuple[list[OperationTx], list[OperationTx], list[Work]]:
        """(transactions to sign and send, signed ones to broadcast again, operations whose
        transactions are all mined) for this step.

        Each sender's operations form one stream in acceptance order; its transactions go out in
        that order with consecutive nonces, so the chain executes them in it. Several operations are
        in flight at once: a transaction may follow earlier ones of its sender before they are mined.
        Within an operation a transaction waits for the one before it to be mined (a revert cancels
        the rest), and so does everything after it in its stream: a later operation may depend on
        the effects of this one's remaining transactions."""
        to_sign: list[OperationTx] = []
        to_broadcast: list[OperationTx] = []
        done: list[Work] = []
        blocked: set[str] = set()
        budget = self.settings.submitter_max_in_flight - sum(
            1 for w in work for t in w.txs if t.status == TxStatus.SENT
        )
        for w in work:
            nxt = next((t for t in w.txs if t.status != TxStatus.MINED), None)
            if nxt is None:
                done.append(w)
                continue
            sender = nxt.sender
            if sender in blocked:
                continue
            last = nxt.position == w.txs[-1].position
            if nxt.status == TxStatus.PENDING:
                if nxt.next_attempt_at > now or budget <= 0:
                    blocked.add(sender)
                    continue
                to_sign.append(nxt)
                budget -= 1
            elif nxt.status == TxStatus.SIGNED:
                to_broadcast.append(nxt)
            elif nxt.status != TxStatus.SENT:
                continue  # failed or cancelled: _fail finished the operation
            if not last:
                blocked.add(sender)
        return to_sign, to_broadcast, done

    def step(self) -> StepResult:
        if not self.acquire_lease():  # held while idle too: /health tells a live submitter by it
            return StepResult(False, idle_wait=1.0)
        work = self._load_work()
        if not work:
            return StepResult(False)
        now = time.time()
        to_sign, to_broadcast, done = self._streams(work, now)
        waiting = any(t.status == TxStatus.SENT for w in work for t in w.txs)
        self._busy_senders = {
            t.sender for w in work for t in w.txs if t.status in (TxStatus.SENT, TxStatus.SIGNED)
        }
        busy = self._finish_all(done)
        if not (to_sign or to_broadcast or waiting) or now < self._paused_until:
            # all mined, waiting for the indexer (woken by `mined`): look again soon
            return StepResult(busy, idle_wait=0.005 if done else 0.05)
        try:
            chain = self.runtime.chain()
            if self._recheck and self._recover_lost(chain):
                return StepResult(True)  # operations reopened: read the outbox again
            head = self._head(chain)
            if waiting:
                busy |= self._collect_receipts(chain, work, head)
            if to_broadcast:
                busy |= self._broadcast_all(chain, to_broadcast)
            if to_sign:
                by_seq = {int(w.op.seq or 0): w.op for w in work}
                busy |= self._sign_and_send_all(chain, head, to_sign, by_seq)
        except NODE_ERRORS as exc:
            self._back_off([*to_sign, *to_broadcast], exc)
            return StepResult(False)
        return StepResult(busy, idle_wait=0.005 if waiting or to_sign else 0.05)

    # ------------------------------------------------------------------ the node, in batches

    def _rpc_batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """One JSON-RPC batch request (web3.py refuses eth_sendRawTransaction in its batches):
        each answer is {"result": ...} or {"error": {...}}, in the order of `calls`."""
        if not calls:
            return []
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        response = self._http.post(self.settings.rpc_url, json=cast(Any, payload), timeout=30)
        response.raise_for_status()
        answers = response.json()
        if not isinstance(answers, list):  # a node that refuses batches answers with one error
            raise ChainUnavailable(f"JSON-RPC batch refused: {answers}")
        by_id = {a.get("id"): a for a in answers}
        return [by_id.get(i) or {"error": {"message": "no answer"}} for i in range(len(calls))]

    def _head(self, chain: Chain) -> Head:
        """The latest block: its number (receipts), base fee (fees) and gas limit (gas caps); one
        call per step (raw JSON-RPC: web3's formatters cost more than the call)."""
        (answer,) = self._rpc_batch([("eth_getBlockByNumber", ["latest", False])])
        block = answer.get("result")
        if not block:
            raise ChainUnavailable(f"eth_getBlockByNumber: {answer.get('error')}")
        return Head(
            int(block["number"], 16), int(block.get("baseFeePerGas") or "0x0", 16), int(block["gasLimit"], 16)
        )

    def _collect_receipts(self, chain: Chain, work: list[Work], head: Head) -> bool:
        """Receipts of every transaction in flight: all receipts of each new block in one batch
        (`eth_getBlockReceipts`), never a poll per hash; after a start or a recheck, once by hash."""
        sent = [t for w in work for t in w.txs if t.status == TxStatus.SENT]
        found: dict[str, dict[str, Any]] = {}
        if self._scanned is None or head.number - self._scanned > RECEIPT_BLOCKS_PER_STEP:
            hashes = [h for t in sent for h in json.loads(t.hashes)]
            answers = self._rpc_batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            for h, a in zip(hashes, answers, strict=True):
                if a.get("result"):
                    found[h] = a["result"]
        elif head.number > self._scanned:
            blocks = range(self._scanned + 1, head.number + 1)
            for a in self._rpc_batch([("eth_getBlockReceipts", [hex(b)]) for b in blocks]):
                if "error" in a:
                    raise ChainUnavailable(f"eth_getBlockReceipts: {a['error']}")
                for receipt in a.get("result") or []:
                    found[str(receipt["transactionHash"]).lower()] = receipt
        self._scanned = head.number
        mined: list[tuple[OperationTx, dict[str, Any]]] = []
        busy = False
        now = time.time()
        stuck: dict[tuple[str, int | None], list[OperationTx]] = {}
        for tx in sent:
            receipt = next((found[h] for h in reversed(json.loads(tx.hashes)) if h in found), None)
            if receipt is None:
                assert tx.sent_at is not None
                if now - tx.sent_at > self.settings.submitter_stuck_after:
                    stuck.setdefault((tx.sender, tx.nonce), []).append(tx)
                continue
            mined.append((tx, receipt))
        for rows in stuck.values():  # one replacement per transaction, however many actions it carries
            self._replace(chain, sorted(rows, key=lambda t: t.batch_index or 0))
            busy = True
        if mined:
            self._record_receipts(chain, work, mined)
            busy = True
        return busy

    def _record_receipts(
        self, chain: Chain, work: list[Work], mined: list[tuple[OperationTx, dict[str, Any]]]
    ) -> None:
        """Outcomes of mined transactions. A transaction carrying a batch succeeds for every action
        but those its receipt reports refused (ActionRefused: that action failed with its custom
        error, the others went ahead); a batch that ran out of gas is signed again with room."""
        ops = {int(w.op.seq or 0): w.op for w in work}
        ok: list[tuple[OperationTx, str, int, int]] = []
        by_hash: dict[str, tuple[dict[str, Any], list[OperationTx]]] = {}
        for tx, receipt in mined:
            by_hash.setdefault(str(receipt["transactionHash"]).lower(), (receipt, []))[1].append(tx)
        for tx_hash, (receipt, rows) in by_hash.items():
            block, gas_used = int(receipt["blockNumber"], 16), int(receipt["gasUsed"], 16)
            if int(receipt["status"], 16) == 1:
                refused = _refusals(receipt)
                for tx in rows:
                    refusal = refused.get(tx.batch_index) if tx.batch_index is not None else None
                    if refusal is None:
                        ok.append((tx, tx_hash, block, gas_used))
                        continue
                    refused_with = ContractRevert.from_data(refusal, self.runtime.registry, tx_hash=tx_hash)  # type: ignore[arg-type]
                    self._set_tx(tx.id, tx_hash=tx_hash, block_number=block, gas_used=gas_used)
                    self._fail(ops[tx.operation_seq], tx, refused_with)
                continue
            gas = rows[0].gas or 0
            out_of_gas = bool(gas) and gas_used >= gas * 63 // 64
            revert: ContractRevert | None = None
            if not out_of_gas:
                data, reason = revert_data_of_failed_tx(chain.w3, HexBytes(tx_hash))
                revert = ContractRevert.from_data(data, self.runtime.registry, tx_hash=tx_hash, reason=reason)  # type: ignore[arg-type]
                out_of_gas = revert.name == "ActionOutOfGas"
            if out_of_gas and gas < self._gas_cap(chain):
                # out of gas (a limit guessed while earlier transactions of its sender were unmined):
                # nothing happened but the nonce; sign again with room, at the sender's next nonce.
                # The spent hash can never be mined again: only hashes of the new nonce are kept.
                log.warning("transaction %s ran out of gas (%d): signing again", tx_hash, gas)
                for tx in rows:
                    self._set_tx(
                        tx.id,
                        status=TxStatus.PENDING,
                        nonce=None,
                        batch_index=None,
                        hashes="[]",
                        gas=min(gas * 2, self._gas_cap(chain)),
                    )
                continue
            if revert is None:
                data, reason = revert_data_of_failed_tx(chain.w3, HexBytes(tx_hash))
                revert = ContractRevert.from_data(data, self.runtime.registry, tx_hash=tx_hash, reason=reason)  # type: ignore[arg-type]
            for tx in rows:
                self._set_tx(tx.id, tx_hash=tx_hash, block_number=block, gas_used=gas_used)
                self._fail(ops[tx.operation_seq], tx, revert)
        if not ok:
            return
        now = time.time()
        # Each transaction's MINED and its operation's counters in one database transaction: the
        # database going down between two commits left a mined transaction whose operation never
        # counted it (txs_done short, no last_block, so `_finish` did not wait for the indexer).
        with Session(self.engine) as session:
            for tx, tx_hash, block, gas_used in ok:
                session.execute(
                    update(OperationTx)
                    .where(col(OperationTx.id) == tx.id)
                    .values(status=TxStatus.MINED, tx_hash=tx_hash, block_number=block, gas_used=gas_used)
                )
                session.execute(
                    update(Operation)
                    .where(col(Operation.seq) == tx.operation_seq)
                    .values(
                        txs_done=Operation.txs_done + 1,
                        items_done=Operation.items_done + tx.items,
                        last_block=block,
                        updated_at=now,
                    )
                )
            session.commit()
        self.runtime.mined.set()

    def _gas_cap(self, chain: Chain) -> int:
        return self._block_gas_limit or int(chain.w3.eth.get_block("latest")["gasLimit"])

    def _coalesce(self, txs: list[OperationTx]) -> list[list[OperationTx]]:
        """The transactions to sign: each sender's waiting actions in stream order, consecutive
        coalescible ones together (same contract, same signing, up to `submitter_batch_actions`
        actions and `items_per_tx` items), anything else alone. Groups of one sender come out in its
        stream order, so that nonces follow it."""
        limit, per_tx = self.settings.submitter_batch_actions, self.settings.items_per_tx
        groups: list[list[OperationTx]] = []
        taking: dict[str, list[OperationTx]] = {}  # each sender's group still taking actions
        for tx in txs:
            group = taking.get(tx.sender)
            if (
                group is not None
                and _coalescible(tx)
                and group[0].contract == tx.contract
                and (group[0].relay_signature is None) == (tx.relay_signature is None)
                and len(group) < limit
                and sum(t.items for t in group) + tx.items <= per_tx
            ):
                group.append(tx)
                continue
            groups.append([tx])
            if _coalescible(tx) and limit > 1:
                taking[tx.sender] = groups[-1]
            else:
                taking.pop(tx.sender, None)
        return groups

    def _sign_and_send_all(
        self, chain: Chain, head: Head, txs: list[OperationTx], ops: dict[int, Operation]
    ) -> bool:
        """Sign every transaction of this step, record them all (one commit) and broadcast them
        all (one batch). Waiting actions of one sender are coalesced (`_coalesce`). Gas comes from
        one batch of estimates, and a batch's refused actions from a simulation in the same round
        trip: those are failed and left out before sending. A transaction whose sender has earlier
        ones in flight is judged on a state without them, so a refusal there is left to the chain
        (with a limit of room) and only a sender's first may fail without being sent."""
        self._block_gas_limit = head.gas_limit
        senders = sorted({t.sender for t in txs})
        counts = self._rpc_batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
        for sender, answer in zip(senders, counts, strict=True):
            if "error" in answer:
                raise ChainUnavailable(f"eth_getTransactionCount: {answer['error']}")
            onchain = int(answer["result"], 16)
            if onchain < self.nonces.get(sender, 0):
                # The node forgot transactions we sent (restarted from an older state, or its pool
                # was emptied): signing above its count would leave a gap that is never mined.
                self._recheck = True
                return True
            self.nonces[sender] = max(onchain, self.nonces.get(sender, 0))
        groups = self._coalesce(txs)
        calls = [self._group_call(chain, g) for g in groups]
        requests_: list[tuple[str, list[Any]]] = []
        for g, c in zip(groups, calls, strict=True):
            request = {"from": g[0].sender, "to": c["to"], "data": c["data"]}
            requests_.append(("eth_estimateGas", [request]))
            if len(g) > 1:
                requests_.append(("eth_call", [request, "latest"]))
        answers = iter(self._rpc_batch(requests_))
        in_flight = set(self._busy_senders)
        priority = DEFAULT_PRIORITY_FEE
        max_fee = max(2 * head.base_fee + priority, MIN_MAX_FEE)
        signed: list[tuple[OperationTx, dict[str, Any]]] = []
        for group, call in zip(groups, calls, strict=True):
            estimate = next(answers)
            simulated = next(answers) if len(group) > 1 else None
            sender = group[0].sender
            if "error" in estimate:
                revert = self._estimate_revert(estimate["error"])
                if revert is None:
                    raise ChainUnavailable(f"eth_estimateGas: {estimate['error']}")
                if sender not in in_flight:
                    for tx in group:
                        self._fail(ops[tx.operation_seq], tx, revert)
                    continue
                gas = head.gas_limit // 4  # the chain judges; unused gas is not paid for
            else:
                gas = min(int(int(estimate["result"], 16) * 1.3) + 20_000, head.gas_limit)
            if simulated is not None and "result" in simulated and sender not in in_flight:
                (refusals,) = abi_decode(["bytes[]"], bytes.fromhex(simulated["result"][2:]))
                kept = []
                for tx, reason in zip(group, refusals, strict=True):
                    if reason:
                        self._fail(
                            ops[tx.operation_seq], tx, ContractRevert.from_data(reason, self.runtime.registry)
                        )
                    else:
                        kept.append(tx)
                if not kept:
                    continue
                if len(kept) < len(group):
                    group, call = kept, self._group_call(chain, kept)
            # signed again after running out of gas: at least the room it was given
            gas = max([gas, *(t.gas or 0 for t in group)])
            nonce = self.nonces[sender]
            self.nonces[sender] = nonce + 1
            in_flight.add(sender)
            values = self._sign(chain, sender, call, nonce=nonce, gas=gas, max_fee=max_fee, priority=priority)
            for i, tx in enumerate(group):
                signed.append((tx, _row_values(tx, values, i if len(group) > 1 else None)))
        if not signed:
            return True
        with Session(self.engine) as session:  # recorded before broadcast: a crash resends the bytes
            for tx, values in signed:
                session.execute(update(OperationTx).where(col(OperationTx.id) == tx.id).values(**values))
                for name, value in values.items():
                    setattr(tx, name, value)
            session.commit()
        if self.crash_after_signing:
            raise SystemExit("crash injected after signing")
        return self._broadcast_all(chain, [tx for tx, _ in signed])

    def _estimate_revert(self, error: dict[str, Any]) -> ContractRevert | None:
        """The custom error of a refused estimate, or None when the error is not a revert."""
        message = str(error.get("message", ""))
        if error.get("code") != 3 and "revert" not in message.lower():
            return None  # the node's trouble (funds, limits), not the contract's verdict
        data = error.get("data")
        if isinstance(data, dict):
            data = data.get("data")
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""
        return ContractRevert.from_data(raw, self.runtime.registry)

    def _broadcast_all(self, chain: Chain, txs: list[OperationTx]) -> bool:
        """Broadcast recorded bytes in one batch (a transaction carrying several actions once);
        each answer is judged as `_broadcast` judges one."""
        raws = list(dict.fromkeys(str(tx.raw_tx) for tx in txs))
        by_raw = dict(
            zip(raws, self._rpc_batch([("eth_sendRawTransaction", [r]) for r in raws]), strict=True)
        )
        sent: list[OperationTx] = []
        for tx in txs:
            answer = by_raw[str(tx.raw_tx)]
            if "error" not in answer:
                sent.append(tx)
                continue
            text = str(answer["error"].get("message", "")).lower()
            if "already known" in text or "already imported" in text:
                sent.append(tx)  # sent before a crash: fine
            elif "nonce too low" in text:
                # The nonce is used: by one of our own hashes (then its receipt will show) or by
                # something else (then none of ours can ever be mined and signing again is safe).
                if self._receipt(chain, tx) is None:
                    self._set_tx(tx.id, status=TxStatus.PENDING, nonce=None)
                    self.nonces.pop(tx.sender, None)
                else:
                    sent.append(tx)
            else:
                raise ChainUnavailable(f"eth_sendRawTransaction: {answer['error']}")
        if sent:
            now = time.time()
            with Session(self.engine) as session:
                for tx in sent:
                    session.execute(
                        update(OperationTx)
                        .where(col(OperationTx.id) == tx.id)
                        .values(status=TxStatus.SENT, sent_at=tx.sent_at or now, next_attempt_at=0.0)
                    )
                session.commit()
        return True

    # ------------------------------------------------------------------ transitions

    def _set_op(self, seq: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        with Session(self.engine) as session:
            session.execute(update(Operation).where(Operation.seq == seq).values(**values))  # type: ignore[arg-type]
            session.commit()

    def _set_tx(self, tx_id: int | None, **values: Any) -> None:
        with Session(self.engine) as session:
            session.execute(update(OperationTx).where(OperationTx.id == tx_id).values(**values))  # type: ignore[arg-type]
            session.commit()

    def _back_off(self, txs: Sequence[OperationTx], exc: BaseException) -> None:
        """The node failed: the transactions this step was to send wait, longer each attempt (the
        first one's count sets the delay); with none to send, the whole loop waits."""
        attempts = (txs[0].attempts if txs else self._outage) + 1
        delay = min(self.settings.submitter_max_backoff, 0.25 * 2 ** min(attempts, 10))
        log.warning("node unavailable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
        retry_at = time.time() + delay
        if txs:
            with Session(self.engine) as session:
                for tx in txs:
                    session.execute(
                        update(OperationTx)
                        .where(col(OperationTx.id) == tx.id)
                        .values(attempts=tx.attempts + 1, next_attempt_at=retry_at)
                    )
                session.commit()
        else:
            self._outage = attempts
            self._paused_until = retry_at
        self.runtime.reset_chain()
        self._recheck = True

    def _account(self, address: str) -> LocalAccount:
        return self.runtime.keystore.account(address)

    def _action_data(self, chain: Chain, tx: OperationTx) -> bytes:
        contract = chain.contracts[tx.contract]
        args = decode_args(contract, tx.function, tx.args)
        args = resolve_deferred(args, chain.contracts["ConsortiumRegistry"])
        return encode_call(contract, tx.function, args)

    def _call_data(self, chain: Chain, tx: OperationTx) -> dict[str, Any]:
        contract = chain.contracts[tx.contract]
        data = self._action_data(chain, tx)
        if tx.relay_signature is not None:
            data = encode_call(contract, "relay", [data, tx.signer, tx.relay_deadline, _signature(tx)])
        return {"to": contract.address, "data": "0x" + data.hex(), "value": 0}

    def _group_call(self, chain: Chain, group: Sequence[OperationTx]) -> dict[str, Any]:
        """The call of one transaction: an action alone, or several as one batch (batchActions for
        the sender's own, relayBatch for externally signed ones)."""
        if len(group) == 1:
            return self._call_data(chain, group[0])
        contract = chain.contracts[group[0].contract]
        actions = [self._action_data(chain, tx) for tx in group]
        if group[0].relay_signature is not None:
            signed = [
                (a, tx.signer, tx.relay_deadline, _signature(tx))
                for a, tx in zip(actions, group, strict=True)
            ]
            data = encode_call(contract, "relayBatch", [signed])
        else:
            data = encode_call(contract, "batchActions", [actions])
        return {"to": contract.address, "data": "0x" + data.hex(), "value": 0}

    def _sign(
        self,
        chain: Chain,
        sender: str,
        call: dict[str, Any],
        *,
        nonce: int,
        gas: int,
        max_fee: int,
        priority: int,
    ) -> dict[str, Any]:
        """The signed transaction as the row values that record it (not yet written; each row
        carried adds its own `hashes` and `batch_index`, see `_row_values`)."""
        account = self._account(sender)
        signed = account.sign_transaction(
            {
                **call,
                "chainId": chain.chain_id,
                "nonce": nonce,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": priority,
            }
        )
        return {
            "status": TxStatus.SIGNED,
            "nonce": nonce,
            "gas": gas,
            "max_fee": max_fee,
            "priority_fee": priority,
            "tx_hash": "0x" + bytes(signed.hash).hex(),
            "raw_tx": "0x" + bytes(signed.raw_transaction).hex(),
        }

    def _recover_lost(self, chain: Chain) -> int:
        """Make the chain hold again what we recorded as sent or mined. The node may have come back
        from an older state: blocks we saw are gone with their transactions, and its pool is empty.
        Every recent transaction whose receipt the node no longer has is broadcast again from its
        recorded bytes, in nonce order per sender (same bytes, same hash: it can only execute once);
        the operations of lost mined ones run again until their receipt shows. Cached nonces are
        dropped, so that the next nonce is the node's own count again."""
        self.nonces.clear()
        self._scanned = None  # read receipts by hash once: blocks may be gone or new
        head = chain.w3.eth.block_number
        with Session(self.engine) as session:
            txs = list(
                session.execute(
                    select(OperationTx)
                    .where(
                        col(OperationTx.raw_tx).is_not(None),
                        col(OperationTx.nonce).is_not(None),
                        (col(OperationTx.status) == TxStatus.SENT)
                        | (
                            col(OperationTx.status).in_((TxStatus.MINED, TxStatus.FAILED))
                            & (col(OperationTx.block_number) > head - RECHECK_BLOCKS)
                        ),
                    )
                    .order_by(col(OperationTx.sender), col(OperationTx.nonce))
                ).scalars()
            )
        lost = 0
        for tx in txs:
            if tx.status != TxStatus.SENT and self._receipt(chain, tx) is not None:
                continue  # still on chain
            if tx.status == TxStatus.MINED:
                lost += 1
                self._reopen(tx)
            self._broadcast(chain, tx)
            if tx.status == TxStatus.FAILED:  # reverted before: only its nonce matters; keep FAILED
                self._set_tx(tx.id, status=TxStatus.FAILED)
        if lost:
            log.warning("%d mined transactions are no longer on chain: sent again", lost)
        self._recheck = False
        return lost

    def _reopen(self, tx: OperationTx) -> None:
        """A transaction seen mined is gone from the chain: its operation runs again (its status goes
        back to running) until the transaction is mined again."""
        now = time.time()
        with Session(self.engine) as session:
            session.execute(
                update(OperationTx)
                .where(col(OperationTx.id) == tx.id)
                .values(status=TxStatus.SENT, sent_at=now, next_attempt_at=0.0)
            )
            session.execute(
                update(Operation)
                .where(col(Operation.seq) == tx.operation_seq)
                .values(
                    status=OperationStatus.RUNNING,
                    txs_done=Operation.txs_done - 1,
                    items_done=Operation.items_done - tx.items,
                    finished_at=None,
                    updated_at=now,
                )
            )
            session.commit()

    def _reload(self, tx: OperationTx) -> OperationTx:
        with Session(self.engine) as session:
            fresh = session.get(OperationTx, tx.id)
            assert fresh is not None
            return fresh

    def _broadcast(self, chain: Chain, tx: OperationTx) -> bool:
        assert tx.raw_tx is not None
        try:
            chain.w3.eth.send_raw_transaction(HexBytes(tx.raw_tx))
        except Web3RPCError as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text:
                pass  # sent before the crash: fine
            elif "nonce too low" in text:
                # The nonce is used: by one of our own hashes (then its receipt will show) or by
                # something else (then none of ours can ever be mined and signing again is safe).
                if self._receipt(chain, tx) is None:
                    self._set_tx(tx.id, status=TxStatus.PENDING, nonce=None)
                    self.nonces.pop(tx.sender, None)
                    return True
            else:
                raise
        self._set_tx(tx.id, status=TxStatus.SENT, sent_at=tx.sent_at or time.time(), next_attempt_at=0.0)
        return True

    def _receipt(self, chain: Chain, tx: OperationTx) -> Any:
        for tx_hash in reversed(json.loads(tx.hashes)):
            try:
                return chain.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                continue
        return None

    def _replace(self, chain: Chain, rows: list[OperationTx]) -> None:
        """Same nonce, fees up 25% (nodes want at least +10%), the same actions: whichever hash is
        mined counts. `rows` are the actions one transaction carries, in batch order."""
        tx = rows[0]
        assert tx.nonce is not None and tx.max_fee is not None and tx.priority_fee is not None and tx.gas
        block = chain.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0))
        priority = tx.priority_fee * 5 // 4 + 1
        max_fee = max(tx.max_fee * 5 // 4 + 1, 2 * base_fee + priority)
        log.warning(
            "transaction %s unmined for %.0fs: replacing at nonce %d",
            tx.tx_hash,
            time.time() - (tx.sent_at or 0),
            tx.nonce,
        )
        call = self._group_call(chain, rows) if tx.batch_index is not None else self._call_data(chain, tx)
        values = self._sign(
            chain, tx.sender, call, nonce=tx.nonce, gas=tx.gas, max_fee=max_fee, priority=priority
        )
        for row in rows:
            self._set_tx(row.id, **_row_values(row, values, row.batch_index))
        for row in rows:
            self._broadcast(chain, self._reload(row))
            self._set_tx(row.id, sent_at=time.time())

    def _fail(self, op: Operation, tx: OperationTx, revert: ContractRevert) -> None:
        problem = problem_from_revert(
            revert,
            describe_key=lambda key: describe_key_from_db(self.engine, key, json.loads(op.request)),
            transaction=tx.position,
            tx_hash=revert.tx_hash,
        )
        body = problem.body()
        assert op.seq is not None
        now = time.time()
        with Session(self.engine) as session:
            session.execute(
                update(OperationTx)
                .where(col(OperationTx.id) == tx.id)
                .values(status=TxStatus.FAILED, error=json.dumps(body))
            )
            session.execute(
                update(OperationTx)
                .where(OperationTx.operation_seq == op.seq, OperationTx.status == TxStatus.PENDING)  # type: ignore[arg-type]
                .values(status=TxStatus.CANCELLED)
            )
            session.execute(
                update(Operation)
                .where(Operation.seq == op.seq)  # type: ignore[arg-type]
                .values(
                    status=OperationStatus.FAILED, error=json.dumps(body), updated_at=now, finished_at=now
                )
            )
            session.commit()
        self._audit(op, "failed", detail=f"{revert.name}: {body.get('detail', '')}")

    def _indexed_block(self) -> tuple[int, float] | None:
        with Session(self.engine) as session:
            row = session.execute(
                select(table(Checkpoint).c.block_number, table(Checkpoint).c.updated_at)
            ).first()
        return (int(row[0]), float(row[1])) if row else None

    def _finish_all(self, done: list[Work]) -> bool:
        """Operations whose transactions are all mined succeed once the indexer has applied their
        last block (so reads right after show the change), or after `submitter_index_timeout`
        without it: one look at the checkpoint, and one database transaction for all of them with
        their audit entries."""
        if not done:
            return False
        indexed = self._indexed_block()
        now = time.time()
        ready: list[tuple[Work, bool]] = []
        for w in done:
            caught_up = w.op.last_block is None or (indexed is not None and indexed[0] >= w.op.last_block)
            if caught_up or now - w.op.updated_at >= self.settings.submitter_index_timeout:
                ready.append((w, caught_up))
        if not ready:
            return False

        def succeed(session: Session) -> None:
            for w, caught_up in ready:
                result = json.loads(w.op.result) if w.op.result else {}
                result["indexed"] = caught_up
                session.execute(
                    update(Operation)
                    .where(col(Operation.seq) == w.op.seq)
                    .values(
                        status=OperationStatus.SUCCEEDED,
                        result=json.dumps(result),
                        finished_at=now,
                        updated_at=now,
                    )
                )

        audit.append_many(
            self.engine,
            [
                self._audit_fields(w.op, "succeeded", [t.tx_hash for t in w.txs if t.tx_hash])
                for w, _ in ready
            ],
            also=succeed,
        )
        return True

    def _audit_fields(
        self, op: Operation, outcome: str, hashes: Sequence[str], detail: str | None = None
    ) -> dict[str, Any]:
        return {
            "request_id": op.request_id,
            "user_id": op.user_id,
            "org_id": op.org_id,
            "method": "SUBMIT",
            "path": f"/v1/operations/{op.id}",
            "action": op.kind,
            "status": 200 if outcome == "succeeded" else 409,
            "outcome": outcome,
            "operation_id": op.id,
            "tx_hashes": ",".join(hashes),
            "detail": detail,
        }

    def _audit(self, op: Operation, outcome: str, detail: str | None = None) -> None:
        with Session(self.engine) as session:
            hashes = [
                h
                for h in session.execute(
                    select(col(OperationTx.tx_hash))
                    .where(col(OperationTx.operation_seq) == op.seq, col(OperationTx.tx_hash).is_not(None))
                    .order_by(col(OperationTx.position))
                ).scalars()
                if h
            ]
        audit.append(self.engine, **self._audit_fields(op, outcome, hashes, detail))


def _coalescible(tx: OperationTx) -> bool:
    """Whether the action may share a transaction: a custody action, sent by its own signer
    (batchActions) or relayed with an external signature (relayBatch)."""
    return (
        tx.contract == COALESCED_CONTRACT
        and tx.function in COALESCED_FUNCTIONS
        and (tx.relay_signature is not None or tx.sender == tx.signer)
    )


def _signature(tx: OperationTx) -> bytes:
    assert tx.relay_signature is not None
    return bytes.fromhex(tx.relay_signature.removeprefix("0x"))


def _row_values(tx: OperationTx, signed: dict[str, Any], batch_index: int | None) -> dict[str, Any]:
    """What records that `tx` is carried by the signed transaction: its values, this row's place
    in the batch, and the new hash added to the row's hashes of this nonce (replacements)."""
    return {
        **signed,
        "batch_index": batch_index,
        "hashes": json.dumps([*json.loads(tx.hashes), signed["tx_hash"]]),
    }


def _refusals(receipt: dict[str, Any]) -> dict[int, bytes]:
    """The custom error of each action a mined batch refused, by its place in the batch."""
    refused: dict[int, bytes] = {}
    for entry in receipt.get("logs") or []:
        topics = entry.get("topics") or []
        if len(topics) == 3 and str(topics[0]).lower() == ACTION_REFUSED:
            (reason,) = abi_decode(["bytes"], bytes.fromhex(str(entry["data"])[2:]))
            refused[int(topics[1], 16)] = reason
    return refused


def start_submitter(runtime: Runtime) -> tuple[Submitter, threading.Thread, threading.Event]:
    submitter = Submitter(runtime)
    stop = threading.Event()
    thread = threading.Thread(target=submitter.run, args=(stop,), name="rxledger-submitter", daemon=True)
    thread.start()
    return submitter, thread, stop
