"""Notifications to organisations (a recall reaching the current holders) and their delivery to the
organisations' webhooks, retried until acknowledged."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field

from api.models.base import ApiModel, now


class Webhook(ApiModel, table=True):
    """An organisation's endpoint for notifications; requests are signed with HMAC-SHA256 of `secret`
    (kept here in clear: the API must sign with it; shown to the organisation once)."""

    __tablename__ = "api_webhooks"
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(index=True)
    url: str
    secret: str
    active: bool = True
    created_at: float = Field(default_factory=now)


class Notification(ApiModel, table=True):
    __tablename__ = "api_notifications"
    __table_args__ = (Index("ix_notifications_org_id", "org_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int
    kind: str  # batch.recalled
    subject: str  # batch id
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    created_at: float = Field(default_factory=now)


class Delivery(ApiModel, table=True):
    __tablename__ = "api_deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_at"),)
    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(index=True)
    webhook_id: int
    status: str = "pending"  # pending | delivered
    attempts: int = 0
    next_at: float = Field(default_factory=now)
    last_error: str | None = None
    delivered_at: float | None = None


class NotifierState(ApiModel, table=True):
    """How far the notifier has read the batch status history (block, log index)."""

    __tablename__ = "api_notifier_state"
    id: int = Field(default=1, primary_key=True)
    block_number: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    log_index: int = -1
