"""Alerts: counterfeit signals (unknown serials, second dispenses, lot or expiry mismatches), suspect
flags and discrepancies at receipt, for the product's sponsor and regulators to investigate."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, Index, Text
from sqlmodel import Field

from api.models.base import ApiModel, now


class AlertStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    CLOSED = "closed"


class Alert(ApiModel, table=True):
    """One signal about one item; repeats of the same signal while it is open count on the same row."""

    __tablename__ = "api_alerts"
    __table_args__ = (Index("ix_alerts_subject", "code", "subject", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    code: str  # UNKNOWN_SERIAL, ALREADY_DISPENSED, LOT_MISMATCH, EXPIRY_MISMATCH, SUSPECT, RECALLED...
    subject: str  # the item's on-chain key, or a shipment / batch id
    gtin: str | None = Field(default=None, index=True)
    serial: str | None = None
    batch_id: str | None = None
    sponsor_org: int | None = Field(default=None, index=True)  # who must investigate
    raised_by_org: int | None = None
    raised_by_user: int | None = None
    status: str = AlertStatus.OPEN
    count: int = 1
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON
    first_at: float = Field(default_factory=now)
    last_at: float = Field(default_factory=now)
    handled_by_user: int | None = None
    handled_by_org: int | None = None
    handled_at: float | None = None
    note: str = ""
