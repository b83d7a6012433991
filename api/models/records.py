"""Documents (certificates), electronic signature records and the identifiers behind on-chain keys."""

from __future__ import annotations

from sqlalchemy import Column, Text
from sqlmodel import Field

from api.models.base import ApiModel, now


class Document(ApiModel, table=True):
    """A stored file, addressed by its SHA-256 (the digest anchored on chain)."""

    __tablename__ = "api_documents"
    sha256: str = Field(primary_key=True)  # 0x-hex
    size: int
    media_type: str
    filename: str
    uploaded_by_org: int | None = None
    uploaded_by_user: int | None = None
    uploaded_at: float = Field(default_factory=now)


class SignatureRecord(ApiModel, table=True):
    """An electronic signature in the manner of 21 CFR 11.50/11.200: who (printed name), when, what it
    means, on which record. Its canonical JSON's keccak is the `reasonHash` anchored on chain."""

    __tablename__ = "api_signature_records"
    id: int | None = Field(default=None, primary_key=True)
    record_hash: str = Field(index=True)  # 0x keccak of `manifest`
    manifest: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    user_id: int
    org_id: int | None = None
    printed_name: str
    meaning: str
    signed_at: float = Field(default_factory=now)
    subject: str  # batch id
    action: str  # release | reject | suspend | unsuspend | recall | certify
    operation_id: str | None = None


class KnownItem(ApiModel, table=True):
    """The identifier behind an on-chain key, learnt from a request. The chain holds digests only
    (privacy model); this lets the API answer in serials and SSCCs to the partners who know them."""

    __tablename__ = "api_known_items"
    key: str = Field(primary_key=True)  # 0x-hex bytes32
    kind: str  # unit | container
    gtin: str | None = None
    serial: str | None = None
    sscc: str | None = None
    learnt_at: float = Field(default_factory=now)


class ProductMaster(ApiModel, table=True):
    """What the chain does not hold about a product: its GS1 company prefix length (needed to write
    EPC URIs) and a name for people."""

    __tablename__ = "api_product_master"
    gtin: str = Field(primary_key=True)
    company_prefix_length: int | None = None
    name: str = ""
    updated_by_org: int | None = None
    updated_at: float = Field(default_factory=now)
