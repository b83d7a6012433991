"""The append-only audit log. Rows are only ever inserted: the API has no route that edits them,
database triggers refuse UPDATE and DELETE, and each row carries the hash of the one before so a
removed or altered row shows."""

from __future__ import annotations

from sqlalchemy import Column, Text
from sqlmodel import Field

from api.models.base import ApiModel, now


class AuditEntry(ApiModel, table=True):
    __tablename__ = "api_audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(default_factory=now)
    request_id: str
    user_id: int | None = None
    username: str | None = None
    org_id: int | None = Field(default=None, index=True)
    method: str
    path: str
    action: str  # the route's name, e.g. "commission"
    status: int  # HTTP status of the answer
    outcome: str  # accepted | succeeded | failed | denied | rejected
    operation_id: str | None = Field(default=None, index=True)
    tx_hashes: str = ""  # comma-separated, filled by follow-up entries of the submitter
    detail: str | None = Field(default=None, sa_column=Column(Text))
    prev_hash: str = ""
    entry_hash: str = ""
