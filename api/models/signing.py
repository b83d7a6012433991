"""The keys an organisation signs with, as far as this API is concerned."""

from __future__ import annotations

from enum import StrEnum

from sqlmodel import Field

from api.models.base import ApiModel, now


class SignerMode(StrEnum):
    CUSTODIAL = "custodial"  # the API holds the key in an encrypted keystore file
    EXTERNAL = "external"  # the organisation holds the key; it sends EIP-712 signatures to relay


class OrgSigner(ApiModel, table=True):
    """A signing key of an organisation (org_id None: the consortium admin's or the relayer's key).
    The private key of a custodial signer is in `keystore_dir/<address>.json`, never here."""

    __tablename__ = "api_org_signers"
    address: str = Field(primary_key=True)  # checksummed
    org_id: int | None = Field(default=None, index=True)
    mode: str
    purpose: str = "org"  # org | admin | relayer
    key_admin: bool = False
    active: bool = True
    created_at: float = Field(default_factory=now)
