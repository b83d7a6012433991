"""Read models, one SQLModel family per entity. They mirror the contracts' state exactly (including
the lazy custody of items in a dissolved container) so that an audit can compare them field by field
with the contracts' own views; queries resolve custody through `parent_key` as the contracts do.

Keys and hashes are stored as 0x-prefixed lowercase hex strings: readable in any SQL shell and
identical on SQLite and Postgres.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, Table
from sqlmodel import Field, SQLModel


class Checkpoint(SQLModel, table=True):
    """The last block fully applied, written in the same transaction as its data."""

    __tablename__ = "indexer_checkpoint"
    id: int = Field(default=1, primary_key=True)
    chain_id: int
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str
    updated_at: float = 0.0  # unix time of the last write, to tell a live indexer from a stopped one


class IndexedBlock(SQLModel, table=True):
    """Recent blocks applied (number, hash, parent) to detect reorganisations."""

    __tablename__ = "indexed_blocks"
    number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str
    parent_hash: str
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))


class JournalEntry(SQLModel, table=True):
    """Before-image of a row changed while following the tip, to undo orphaned blocks on a reorg."""

    __tablename__ = "indexer_journal"
    id: int | None = Field(default=None, primary_key=True)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    table_name: str
    pk: str  # JSON of the primary key values
    before: str | None = None  # JSON of the row, or None when the row did not exist


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    gln: str = Field(index=True)
    name: str
    status: int
    roles: str = ""  # comma-separated role names
    onboarded_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class OrgKey(SQLModel, table=True):
    __tablename__ = "org_keys"
    address: str = Field(primary_key=True)
    org_id: int = Field(index=True)
    valid_from: int = Field(sa_column=Column(BigInteger, nullable=False))
    valid_until: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    key_admin: bool
    added_by: str


class Relayer(SQLModel, table=True):
    __tablename__ = "relayers"
    address: str = Field(primary_key=True)
    allowed: bool


class Product(SQLModel, table=True):
    __tablename__ = "products"
    gtin: str = Field(primary_key=True)
    sponsor_org: int = Field(index=True)


class ManufacturerAuthorization(SQLModel, table=True):
    __tablename__ = "manufacturer_authorizations"
    gtin: str = Field(primary_key=True)
    org_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    active: bool


class Batch(SQLModel, table=True):
    __tablename__ = "batches"
    batch_id: str = Field(primary_key=True)
    idx: int = Field(unique=True)
    gtin: str = Field(index=True)
    lot: str
    expiry: int
    site_gln: str
    manufacturer: int
    sponsor: int
    status: int
    suspect: int = 0
    created_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class BatchStatusChange(SQLModel, table=True):
    __tablename__ = "batch_status_history"
    block_number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    log_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    batch_id: str = Field(index=True)
    from_status: int
    to_status: int
    reason_hash: str
    org_id: int
    signer: str
    tx_hash: str
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))


class Certificate(SQLModel, table=True):
    __tablename__ = "certificates"
    batch_id: str = Field(primary_key=True)
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    document_hash: str = Field(index=True)
    kind: int
    meaning: str
    org_id: int
    signer: str
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    tx_hash: str
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))


class Unit(SQLModel, table=True):
    """A serialised pack. `holder` is authoritative only while `parent_key` is null or names a
    dissolved container (then custody comes from the container chain), exactly as on chain."""

    __tablename__ = "units"
    __table_args__ = (
        Index("ix_units_batch_state", "batch_id", "state"),
        Index("ix_units_parent", "parent_key"),
        Index("ix_units_holder_state", "holder", "state"),  # an organisation's inventory
    )
    key: str = Field(primary_key=True)
    batch_id: str
    state: int
    suspect: int = 0
    holder: int
    parent_key: str | None = None
    shipment_id: str | None = None
    decommissioned_at: int | None = Field(default=None, sa_column=Column(BigInteger))
    commissioned_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class Container(SQLModel, table=True):
    __tablename__ = "containers"
    __table_args__ = (Index("ix_containers_parent", "parent_key"), Index("ix_containers_holder", "holder"))
    key: str = Field(primary_key=True)
    state: int
    height: int = 0
    holder: int
    parent_key: str | None = None
    shipment_id: str | None = None
    created_block: int = Field(sa_column=Column(BigInteger, nullable=False))


class Shipment(SQLModel, table=True):
    __tablename__ = "shipments"
    __table_args__ = (Index("ix_shipments_to_pending", "to_org", "pending"),)
    shipment_id: str = Field(primary_key=True)
    from_org: int = Field(index=True)
    to_org: int
    items: int
    pending: int
    received: int = 0
    rejected: int = 0
    missing: int = 0
    reference_hash: str
    event_hash: str
    dispatched_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    dispatched_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    closed: bool = False


class ShipmentItem(SQLModel, table=True):
    __tablename__ = "shipment_items"
    shipment_id: str = Field(primary_key=True)
    item_key: str = Field(primary_key=True, index=True)
    outcome: str = "pending"  # pending | received | rejected | missing


class CustodyEvent(SQLModel, table=True):
    """One row per custody event (log) in chain order, with who signed it and the EPCIS event it
    anchors. Keyed by its place in the chain, so a rebuild reproduces every row exactly."""

    __tablename__ = "custody_events"
    block_number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    log_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    tx_index: int
    tx_hash: str
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    action: str = Field(index=True)
    org_id: int = Field(index=True)
    signer: str
    counterparty: int | None = None
    event_hash: str = Field(index=True)
    reason: int | None = None
    reason_hash: str | None = None
    subject: str | None = Field(default=None, index=True)  # batch id, container key or shipment id
    item_count: int


class CustodyEventItem(SQLModel, table=True):
    """The items an event lists, for custody history by item in chain order."""

    __tablename__ = "custody_event_items"
    __table_args__ = (Index("ix_event_items_item", "item_key", "block_number", "log_index"),)
    block_number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    log_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    item_key: str


class AnchoredEvent(SQLModel, table=True):
    """An EPCIS event that changed no custody, anchored by its digest (`anchorEvents`)."""

    __tablename__ = "anchored_events"
    block_number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    log_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    tx_hash: str
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    org_id: int = Field(index=True)
    signer: str
    event_hash: str = Field(index=True)


STATE_TABLES = (
    Organization,
    OrgKey,
    Relayer,
    Product,
    ManufacturerAuthorization,
    Batch,
    BatchStatusChange,
    Certificate,
    Unit,
    Container,
    Shipment,
    ShipmentItem,
    CustodyEvent,
    CustodyEventItem,
    AnchoredEvent,
)


def table(model: Any) -> Table:
    """The SQLAlchemy table of a read-model class (typed, unlike SQLModel's `__table__`)."""
    t: Table = model.__table__
    return t
