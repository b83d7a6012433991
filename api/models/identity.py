"""Users of the API and their bearer tokens."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, Index, Integer, String
from sqlmodel import Field

from api.models.base import ApiModel, now


class UserRole(StrEnum):
    """What a person may do inside their organisation. `admin` is the consortium administrator,
    who belongs to no partner organisation."""

    ADMIN = "admin"
    OPERATOR = "operator"  # warehouse and counter work: commission, pack, ship, receive, dispense
    QP = "qp"  # QA / Qualified Person: certificates, release, rejection, suspension, recall
    KEY_ADMIN = "key_admin"  # the organisation's signing keys and users
    VIEWER = "viewer"  # read-only


class User(ApiModel, table=True):
    __tablename__ = "api_users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=Column(String, unique=True, nullable=False))
    printed_name: str  # as it appears on an electronic signature record (21 CFR 11.50)
    org_id: int | None = Field(default=None, index=True)  # None only for the consortium admin
    role: str
    # scrypt hash of the signing credential re-entered at each electronic signature
    credential_hash: str | None = None
    created_at: float = Field(default_factory=now)
    created_by: int | None = None
    disabled_at: float | None = None
    # e-signature attempts (21 CFR 11.300(d)): refused attempts since the last good signature, counted
    # with an atomic UPDATE; at RXLEDGER_SIGNATURE_FAILURE_LIMIT the signature locks until a key admin
    # of the organisation (or the consortium admin) unlocks it
    signature_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    signature_locked_at: float | None = None


class ApiToken(ApiModel, table=True):
    """A bearer token. Only its SHA-256 is stored (tokens carry 256 bits of entropy, so a fast hash
    is enough); the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_hash", "token_hash", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    token_hash: str
    prefix: str  # the first characters, to recognise a token in lists and logs
    label: str = ""
    created_at: float = Field(default_factory=now)
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
