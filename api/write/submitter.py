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
from dataclasses import dataclass
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
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
from node.errors import ContractRevert, translate_reverts
from node.indexer.schema import Checkpoint, table

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
# How far back, in blocks, transactions seen mined are checked again after the node was away: a node
# restarted from an older state (Anvil's --state dump after a SIGKILL) or a reorg can drop them.
RECHECK_BLOCKS = 128
NODE_ERRORS = (requests.exceptions.RequestException, ConnectionError, OSError, ChainUnavailable, TimeoutError)


class NodeDown(Exception):
    pass


@dataclass
class StepResult:
    busy: bool  # something happened: look again at once
    idle_wait: float = 0.05  # otherwise, how long to wait for new work before looking again


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

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        log.info("submitter %s started", self.owner)
        while not stop.is_set():
            try:
                result = self.step()
            except Exception:  # the database is down, or a bug: neither may kill the loop
                log.exception("submitter step failed; retrying in 1 s")
                stop.wait(1.0)
                result = StepResult(False)
            if not result.busy:
                self.runtime.wake.wait(result.idle_wait)
                self.runtime.wake.clear()
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

    def step(self) -> StepResult:
        if not self.acquire_lease():  # held while idle too: /health tells a live submitter by it
            return StepResult(False, idle_wait=1.0)
        op = self._next_operation()
        if op is None:
            return StepResult(False)
        assert op.seq is not None
        with Session(self.engine) as session:
            txs = list(
                session.execute(
                    select(OperationTx)
                    .where(OperationTx.operation_seq == op.seq)  # type: ignore[arg-type]
                    .order_by(OperationTx.position)  # type: ignore[arg-type]
                ).scalars()
            )
        if op.status == OperationStatus.QUEUED:
            self._set_op(op.seq, status=OperationStatus.RUNNING)
        tx = next((t for t in txs if t.status != TxStatus.MINED), None)
        if tx is None:
            # waiting for the indexer is short (it is woken by `mined`): look again soon
            return StepResult(self._finish(op), idle_wait=0.005)
        if tx.next_attempt_at > time.time():
            return StepResult(False)
        try:
            chain = self.runtime.chain()
            if self._recheck:
                self._recover_lost(chain)  # reopened operations come first from the next step on
            if tx.status == TxStatus.PENDING:
                return StepResult(self._sign_and_send(chain, op, tx))
            if tx.status == TxStatus.SIGNED:
                return StepResult(self._broadcast(chain, tx))
            if tx.status == TxStatus.SENT:
                return StepResult(self._check(chain, op, tx))
            return StepResult(False)
        except NODE_ERRORS as exc:
            self._back_off(tx, exc)
            return StepResult(False)

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

    def _back_off(self, tx: OperationTx, exc: BaseException) -> None:
        attempts = tx.attempts + 1
        delay = min(self.settings.submitter_max_backoff, 0.25 * 2 ** min(attempts, 10))
        log.warning("node unavailable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
        self._set_tx(tx.id, attempts=attempts, next_attempt_at=time.time() + delay)
        self.runtime.reset_chain()
        self._recheck = True

    def _account(self, address: str) -> LocalAccount:
        return self.runtime.keystore.account(address)

    def _call_data(self, chain: Chain, tx: OperationTx) -> dict[str, Any]:
        contract = chain.contracts[tx.contract]
        args = decode_args(contract, tx.function, tx.args)
        args = resolve_deferred(args, chain.contracts["ConsortiumRegistry"])
        data = encode_call(contract, tx.function, args)
        if tx.relay_signature is not None:
            signature = bytes.fromhex(tx.relay_signature.removeprefix("0x"))
            data = encode_call(contract, "relay", [data, tx.signer, tx.relay_deadline, signature])
        return {"to": contract.address, "data": "0x" + data.hex(), "value": 0}

    def _sign_and_send(self, chain: Chain, op: Operation, tx: OperationTx) -> bool:
        call = self._call_data(chain, tx)
        w3 = chain.w3
        try:
            with translate_reverts(self.runtime.registry):
                estimate = w3.eth.estimate_gas({"from": tx.sender, **call})  # type: ignore[typeddict-item]
        except ContractRevert as revert:
            self._fail(op, tx, revert)
            return True
        block = w3.eth.get_block("latest")
        gas = min(int(estimate * 1.2), int(block["gasLimit"]))
        base_fee = int(block.get("baseFeePerGas", 0))
        priority = DEFAULT_PRIORITY_FEE
        max_fee = max(2 * base_fee + priority, MIN_MAX_FEE)
        onchain = w3.eth.get_transaction_count(tx.sender, "pending")  # type: ignore[arg-type]
        if onchain < self.nonces.get(tx.sender, 0):
            # The node forgot transactions we sent (restarted from an older state, or its pool was
            # emptied): signing above its count would leave a gap that is never mined.
            self._recheck = True
            return True
        nonce = max(onchain, self.nonces.get(tx.sender, 0))
        self._record_signed(chain, tx, call, nonce=nonce, gas=gas, max_fee=max_fee, priority=priority)
        self.nonces[tx.sender] = nonce + 1
        if self.crash_after_signing:
            raise SystemExit("crash injected after signing")
        return self._broadcast(chain, self._reload(tx))

    def _record_signed(
        self,
        chain: Chain,
        tx: OperationTx,
        call: dict[str, Any],
        *,
        nonce: int,
        gas: int,
        max_fee: int,
        priority: int,
    ) -> None:
        account = self._account(tx.sender)
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
        tx_hash = "0x" + bytes(signed.hash).hex()
        hashes = [*json.loads(tx.hashes), tx_hash]
        self._set_tx(
            tx.id,
            status=TxStatus.SIGNED,
            nonce=nonce,
            gas=gas,
            max_fee=max_fee,
            priority_fee=priority,
            tx_hash=tx_hash,
            raw_tx="0x" + bytes(signed.raw_transaction).hex(),
            hashes=json.dumps(hashes),
        )

    def _recover_lost(self, chain: Chain) -> None:
        """Make the chain hold again what we recorded as sent or mined. The node may have come back
        from an older state: blocks we saw are gone with their transactions, and its pool is empty.
        Every recent transaction whose receipt the node no longer has is broadcast again from its
        recorded bytes, in nonce order per sender (same bytes, same hash: it can only execute once);
        the operations of lost mined ones run again until their receipt shows. Cached nonces are
        dropped, so that the next nonce is the node's own count again."""
        self.nonces.clear()
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

    def _check(self, chain: Chain, op: Operation, tx: OperationTx) -> bool:
        receipt = self._receipt(chain, tx)
        if receipt is None:
            assert tx.sent_at is not None
            if time.time() - tx.sent_at > self.settings.submitter_stuck_after:
                self._replace(chain, tx)
                return True
            return False
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        if receipt["status"] != 1:
            data, reason = revert_data_of_failed_tx(chain.w3, HexBytes(tx_hash))
            revert = ContractRevert.from_data(data, self.runtime.registry, tx_hash=tx_hash, reason=reason)  # type: ignore[arg-type]
            self._set_tx(
                tx.id,
                tx_hash=tx_hash,
                block_number=int(receipt["blockNumber"]),
                gas_used=int(receipt["gasUsed"]),
            )
            self._fail(op, tx, revert)
            return True
        block = int(receipt["blockNumber"])
        self.runtime.mined.set()
        assert op.seq is not None
        # The transaction's MINED and its operation's counters in one database transaction: the
        # database going down between two commits left a mined transaction whose operation never
        # counted it (txs_done short, no last_block, so `_finish` did not wait for the indexer).
        with Session(self.engine) as session:
            session.execute(
                update(OperationTx)
                .where(col(OperationTx.id) == tx.id)
                .values(
                    status=TxStatus.MINED,
                    tx_hash=tx_hash,
                    block_number=block,
                    gas_used=int(receipt["gasUsed"]),
                )
            )
            session.execute(
                update(Operation)
                .where(Operation.seq == op.seq)  # type: ignore[arg-type]
                .values(
                    txs_done=Operation.txs_done + 1,
                    items_done=Operation.items_done + tx.items,
                    last_block=block,
                    updated_at=time.time(),
                )
            )
            session.commit()
        return True

    def _replace(self, chain: Chain, tx: OperationTx) -> None:
        """Same nonce, fees up 25% (nodes want at least +10%): whichever hash is mined counts."""
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
        self._record_signed(
            chain,
            tx,
            self._call_data(chain, tx),
            nonce=tx.nonce,
            gas=tx.gas,
            max_fee=max_fee,
            priority=priority,
        )
        fresh = self._reload(tx)
        self._broadcast(chain, fresh)
        self._set_tx(tx.id, sent_at=time.time())

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

    def _finish(self, op: Operation) -> bool:
        """All transactions mined: succeed once the indexer has applied the last block (so reads
        right after show the change), or after `submitter_index_timeout` without it."""
        assert op.seq is not None
        indexed = self._indexed_block()
        caught_up = op.last_block is None or (indexed is not None and indexed[0] >= op.last_block)
        waited = time.time() - op.updated_at
        if not caught_up and waited < self.settings.submitter_index_timeout:
            return False
        result = json.loads(op.result) if op.result else {}
        result["indexed"] = caught_up
        now = time.time()
        self._set_op(op.seq, status=OperationStatus.SUCCEEDED, result=json.dumps(result), finished_at=now)
        self._audit(op, "succeeded")
        return True

    def _audit(self, op: Operation, outcome: str, detail: str | None = None) -> None:
        with Session(self.engine) as session:
            hashes = [
                h
                for h in session.execute(
                    select(col(OperationTx.tx_hash))
                    .where(col(OperationTx.operation_seq) == op.seq, col(OperationTx.tx_hash).is_not(None))
                    .order_by(OperationTx.position)  # type: ignore[arg-type]
                ).scalars()
                if h
            ]
        audit.append(
            self.engine,
            request_id=op.request_id,
            user_id=op.user_id,
            org_id=op.org_id,
            method="SUBMIT",
            path=f"/v1/operations/{op.id}",
            action=op.kind,
            status=200 if outcome == "succeeded" else 409,
            outcome=outcome,
            operation_id=op.id,
            tx_hashes=",".join(hashes),
            detail=detail,
        )


def start_submitter(runtime: Runtime) -> tuple[Submitter, threading.Thread, threading.Event]:
    submitter = Submitter(runtime)
    stop = threading.Event()
    thread = threading.Thread(target=submitter.run, args=(stop,), name="rxledger-submitter", daemon=True)
    thread.start()
    return submitter, thread, stop
