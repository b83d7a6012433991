"""EPCIS events the API anchored (from plain-JSON requests and from captured documents), the
identifiers each one names, and EPCIS capture jobs."""

from __future__ import annotations

from sqlalchemy import Column, Index, Text
from sqlmodel import Field

from api.models.base import ApiModel, now


class EpcisEvent(ApiModel, table=True):
    """One EPCIS event as captured or written, with its CBV 2.0 Event Hash ID. Its digest is anchored
    on chain by the operation's transactions (custody actions carry it; other events are anchored
    by `anchorEvents`); an event counts once its operation has succeeded."""

    __tablename__ = "api_epcis_events"
    __table_args__ = (Index("ix_epcis_events_org_seq", "org_id", "seq"),)
    seq: int | None = Field(default=None, primary_key=True)  # capture order; pagination follows it
    hash_id: str = Field(unique=True)  # ni:///sha-256;...?ver=CBV2.0
    digest: str = Field(index=True)  # 0x SHA-256, the bytes32 anchored on chain
    org_id: int
    operation_id: str = Field(index=True)
    capture_id: str | None = Field(default=None, index=True)
    position: int = 0  # index in the captured document's eventList
    anchoring: str  # custody | hash
    event_type: str
    action: str | None = None
    biz_step: str | None = Field(default=None, index=True)  # full CBV URI
    disposition: str | None = None  # full CBV URI
    biz_location: str | None = None  # Digital Link form
    event_time: float = Field(index=True)
    record_time: float = Field(default_factory=now)
    body: str = Field(sa_column=Column(Text, nullable=False))  # the event's JSON as captured


class EpcisEventEpc(ApiModel, table=True):
    """An identifier an event names, by its on-chain key, for EPC queries and visibility."""

    __tablename__ = "api_epcis_event_epcs"
    __table_args__ = (Index("ix_epcis_event_epcs_key", "key", "event_seq"),)
    event_seq: int = Field(primary_key=True)
    position: int = Field(primary_key=True)
    key: str  # 0x bytes32 (unit_key / sscc_key), or "gtin:<GTIN-14>" for class-level quantities
    role: str  # epc | parent | child | input | output | quantity
    gtin: str | None = None


class CaptureJob(ApiModel, table=True):
    """An EPCIS 2.0 capture job: what became of each event of a captured document."""

    __tablename__ = "api_capture_jobs"
    id: str = Field(primary_key=True)  # uuid4 hex
    org_id: int = Field(index=True)
    user_id: int
    operation_id: str | None = None
    error_behaviour: str = "rollback"  # rollback | proceed (GS1-Capture-Error-Behaviour)
    events_total: int = 0
    events_accepted: int = 0
    errors: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list of problems
    created_at: float = Field(default_factory=now)
    finished_at: float | None = None  # set when refused outright; else the operation's end counts
