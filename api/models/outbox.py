"""The durable outbox: an accepted request is an Operation with the transactions it takes; the
submitter works through them, recording each signed transaction before broadcasting it."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field

from api.models.base import ApiModel, now


class OperationStatus(StrEnum):
    AWAITING_SIGNATURES = "awaiting_signatures"  # external signer: EIP-712 signatures not yet posted
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({OperationStatus.SUCCEEDED, OperationStatus.FAILED})


class TxStatus(StrEnum):
    PENDING = "pending"  # not signed yet
    SIGNED = "signed"  # signed and recorded; broadcast may or may not have happened
    SENT = "sent"  # broadcast; waiting for a receipt
    MINED = "mined"
    FAILED = "failed"  # reverted, or refused before sending
    CANCELLED = "cancelled"  # an earlier transaction of the operation failed


class Operation(ApiModel, table=True):
    __tablename__ = "api_operations"
    __table_args__ = (
        UniqueConstraint("org_scope", "idempotency_key", name="uq_operations_idempotency"),
        Index("ix_operations_status_seq", "status", "seq"),
    )
    seq: int | None = Field(default=None, primary_key=True)  # global submission order
    id: str = Field(unique=True)  # public id (uuid4 hex)
    kind: str
    org_id: int | None = Field(default=None, index=True)
    org_scope: int = -1  # org_id, or -1 for the consortium admin (a NULL would defeat the unique key)
    user_id: int
    signing: str  # custodial | external
    idempotency_key: str | None = None
    request_fingerprint: str  # SHA-256 of method, path and canonical body: a reused key must match
    request: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of the request
    subject: str | None = None  # what the operation is about (batch id, shipment id...), for listing
    status: str = OperationStatus.QUEUED
    items_total: int = 0
    items_done: int = 0
    txs_total: int = 0
    txs_done: int = 0
    result: str | None = Field(default=None, sa_column=Column(Text))  # JSON
    error: str | None = Field(default=None, sa_column=Column(Text))  # JSON problem document
    last_block: int | None = Field(default=None, sa_column=Column(BigInteger))
    request_id: str = ""
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    finished_at: float | None = None


class OperationTx(ApiModel, table=True):
    __tablename__ = "api_operation_txs"
    __table_args__ = (UniqueConstraint("operation_seq", "position", name="uq_operation_txs_position"),)
    id: int | None = Field(default=None, primary_key=True)
    operation_seq: int = Field(index=True)
    position: int
    contract: str
    function: str
    args: str = Field(sa_column=Column(Text, nullable=False))  # JSON, bytes as 0x-hex
    items: int = 0  # how many request items this transaction carries (progress)
    signer: str  # the organisation key the action is attributed to
    sender: str  # who sends the transaction: the signer itself, or the relayer
    # Relayed (external signer): the EIP-712 signature over the action and its nonce and deadline
    relay_nonce: int | None = Field(default=None, sa_column=Column(BigInteger))
    relay_deadline: int | None = Field(default=None, sa_column=Column(BigInteger))
    relay_signature: str | None = None
    status: str = TxStatus.PENDING
    nonce: int | None = Field(default=None, sa_column=Column(BigInteger))
    # Coalesced with other actions into one transaction (same sender, nonce and hash): this row's
    # place in the batch; None when the transaction carries this action alone.
    batch_index: int | None = None
    gas: int | None = Field(default=None, sa_column=Column(BigInteger))
    max_fee: int | None = Field(default=None, sa_column=Column(BigInteger))
    priority_fee: int | None = Field(default=None, sa_column=Column(BigInteger))
    tx_hash: str | None = None  # the latest broadcast
    raw_tx: str | None = Field(default=None, sa_column=Column(Text))  # the latest signed bytes
    hashes: str = "[]"  # JSON list of every hash broadcast for this nonce (replacements)
    attempts: int = 0
    next_attempt_at: float = 0.0
    sent_at: float | None = None
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger))
    gas_used: int | None = Field(default=None, sa_column=Column(BigInteger))
    error: str | None = Field(default=None, sa_column=Column(Text))


class SubmitterLease(ApiModel, table=True):
    """At most one submitter may sign and send at a time: two would race for the same nonces."""

    __tablename__ = "api_submitter_lease"
    id: int = Field(default=1, primary_key=True)
    owner: str
    expires_at: float
