"""Consortium administration and each organisation's people and keys.

On-chain changes (onboarding, keys, relayer) go through the outbox like every other write; users and
tokens are the API's own records and change at once (and are audited all the same)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session, col
from web3.exceptions import Web3RPCError

from api.edge import signature_lock
from api.edge.auth import Permit, Principal, RuntimeDep, require_org
from api.edge.identifiers import Gln
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE, rule_problem
from api.edge.security import hash_credential, new_token
from api.models import ApiToken, OrgSigner, SignerMode, User
from api.read.alerts import SIGNATURE_LOCKED, close_alert
from api.routes.common import RowId, WriteDep, org_row
from api.routes.openapi import ACCEPTED
from api.runtime import ChainUnavailable, Runtime
from api.write.outbox import claim_pending_signers as outbox_claim
from api.write.plan import OrgByGln, Plan, TxStep
from node.indexer.schema import Organization, OrgKey, table
from node.ledger.constants import Role

router = APIRouter(prefix="/v1", tags=["organisations, users and keys"])

ROLE_BY_NAME = {name.lower(): role for role, name in Role.NAMES.items()}
MAX_UINT40 = 2**40 - 1  # key validity times are uint40 on chain (ConsortiumRegistry.addKey, rotateKey)
FUND_ATTEMPTS = 5  # funding a new key races the submitter for the admin key's nonce
NONCE_CONFLICTS = ("nonce too low", "already known", "replacement transaction underpriced")
OrgKind = Literal["sponsor", "cmo", "logistics", "distributor", "dispenser", "regulator"]


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: SignerMode = SignerMode.CUSTODIAL
    address: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="external keys only"
    )
    key_admin: bool = True
    valid_from: int = Field(default=0, ge=0, le=MAX_UINT40, description="unix time; 0 = now")
    valid_until: int = Field(default=0, ge=0, le=MAX_UINT40, description="unix time; 0 = no end")


class OnboardOrganization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gln: Gln
    name: str = Field(min_length=1, max_length=200)
    roles: list[OrgKind] = Field(min_length=1)
    key: KeySpec = Field(default_factory=KeySpec)


class OrganizationOut(BaseModel):
    id: int
    gln: str
    name: str
    status: int
    roles: list[str]
    keys: list[str] = []


class OrgStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["suspended", "active", "offboarded"]
    reason: str = Field(min_length=1, max_length=2000)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-zA-Z0-9._@-]+$")
    printed_name: str = Field(min_length=1, max_length=200, description="as printed on e-signature records")
    role: Literal["operator", "qp", "key_admin", "viewer"]
    credential: str | None = Field(
        default=None,
        min_length=12,
        max_length=200,
        description="signing credential, re-entered at each e-signature",
    )
    token_ttl_days: int | None = Field(default=None, gt=0, le=3650)


class UserOut(BaseModel):
    id: int
    username: str
    printed_name: str
    org_id: int | None
    role: str
    disabled: bool
    signature_locked: bool = Field(
        default=False, description="the e-signature is locked after repeated wrong credentials"
    )
    signature_locked_at: float | None = None
    signature_failures: int = Field(default=0, description="refused e-signature attempts in a row")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=100)
    ttl_days: int | None = Field(default=None, gt=0, le=3650)


class TokenOut(BaseModel):
    id: int
    user_id: int
    prefix: str
    label: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    token: str | None = Field(default=None, description="the secret itself: shown once, never again")


def _key_signer(runtime: Runtime, spec: KeySpec, org_id: int | None) -> OrgSigner:
    """Create (custodial) or register (external) the key's API record; not yet active on chain.
    The chain must be reachable first: no key is made for a write that would be refused."""
    runtime.chain()
    if not runtime.chain_reachable():
        raise ChainUnavailable("the chain node does not answer")
    if spec.mode == SignerMode.EXTERNAL:
        if spec.address is None:
            raise rule_problem(
                422, "address-required", "an external key needs its address", field="key.address"
            )
        from eth_utils.address import to_checksum_address

        address = to_checksum_address(spec.address)
    else:
        if spec.address is not None:
            raise rule_problem(
                422, "address-not-allowed", "custodial keys are generated by the API", field="key.address"
            )
        if not runtime.keystore.usable:
            raise Problem(503, "Custodial keys unavailable", detail="RXLEDGER_KEYSTORE_PASSWORD is not set")
        address = runtime.keystore.create().address
        _fund(runtime, address)
    return OrgSigner(address=address, org_id=org_id, mode=spec.mode, key_admin=spec.key_admin)


def _fund(runtime: Runtime, address: str) -> None:
    """Gas money for a new key from the admin key: the submitter offers a nominal fee even where the
    chain accepts zero-priced transactions (RXLEDGER_FUND_NEW_KEYS_WEI; 0 = none)."""
    wei = runtime.settings.fund_new_keys_wei
    if wei <= 0:
        return
    from api.write.outbox import signer_for
    from node.chain import Sender

    with Session(runtime.engine) as session:
        admin = signer_for(session, None)
    if admin is None or admin.mode != SignerMode.CUSTODIAL:
        return
    chain = runtime.chain()
    sender = Sender(chain.w3, runtime.keystore.account(admin.address))
    for attempt in range(FUND_ATTEMPTS):
        try:
            sender.send({"to": address, "value": wei}, gas=21_000)
            return
        except Web3RPCError as exc:
            # The submitter signs with the admin key too, from its own nonce count: when both take
            # the same nonce, the second is refused (a 500 before; found by schemathesis). Take the
            # node's next nonce and try again; the submitter re-signs its own in the same way.
            if not any(s in str(exc).lower() for s in NONCE_CONFLICTS):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise Problem(
        503,
        "Chain busy",
        type=PROBLEM_BASE + "chain-busy",
        detail="the admin key's transactions kept taking the nonce needed to fund the new key; retry",
        headers={"Retry-After": "1"},
    )


def _save_signer(runtime: Runtime, signer: OrgSigner) -> None:
    with Session(runtime.engine) as session:
        if session.get(OrgSigner, signer.address) is not None:
            raise rule_problem(
                409, "key-exists", f"the key {signer.address} is already registered", field="key.address"
            )
        session.add(signer)
        session.commit()


@router.post(
    "/organizations",
    status_code=202,
    responses=ACCEPTED,
    summary="Onboard an organisation (consortium admin)",
)
async def onboard_organization(
    body: OnboardOrganization,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("organizations.onboard"))],
    write: WriteDep,
) -> JSONResponse:
    roles = [ROLE_BY_NAME[r] for r in dict.fromkeys(body.roles)]
    # an Idempotency-Key replay never gets here: WriteDep answers it with the first operation
    with Session(runtime.engine) as session:
        taken = session.execute(
            select(table(Organization).c.id).where(table(Organization).c.gln == body.gln)
        ).first()
    if taken is not None:
        raise rule_problem(409, "gln-taken", f"GLN {body.gln} is organisation {taken[0]}", field="gln")
    signer = _key_signer(runtime, body.key, None)
    org_ref = OrgByGln(body.gln)
    plan = Plan(
        kind="organizations.onboard",
        subject=body.gln,
        steps=[
            TxStep("ConsortiumRegistry", "onboardOrganization", [int(body.gln), body.name, roles]),
            TxStep(
                "ConsortiumRegistry",
                "addKey",
                [org_ref, signer.address, body.key.valid_from, body.key.valid_until, body.key.key_admin],
            ),
        ],
        result={"gln": body.gln, "key": signer.address},
    )

    def record_key() -> None:
        signer.org_id = None  # filled in by `claim_pending_signers` once the organisation is indexed
        signer.purpose = f"pending-org:{body.gln}"
        _save_signer(runtime, signer)

    return await write.submit(
        principal,
        plan,
        body,
        on_accepted=record_key,
    )


def claim_pending_signers(runtime: Runtime) -> None:
    with Session(runtime.engine) as session:
        outbox_claim(session)


def _org_out(runtime: Runtime, row: object) -> OrganizationOut:
    with Session(runtime.engine) as session:
        keys = session.execute(
            select(table(OrgKey).c.address).where(
                table(OrgKey).c.org_id == row.id,  # type: ignore[attr-defined]
                table(OrgKey).c.revoked_at == 0,
            )
        ).scalars()
        return OrganizationOut(
            id=row.id,  # type: ignore[attr-defined]
            gln=row.gln,  # type: ignore[attr-defined]
            name=row.name,  # type: ignore[attr-defined]
            status=row.status,  # type: ignore[attr-defined]
            roles=[r for r in row.roles.split(",") if r],  # type: ignore[attr-defined]
            keys=list(keys),
        )


@router.get("/organizations", summary="Organisations on the network")
def list_organizations(
    runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]
) -> list[OrganizationOut]:
    claim_pending_signers(runtime)
    with Session(runtime.engine) as session:
        rows = session.execute(select(table(Organization)).order_by(table(Organization).c.id)).all()
    return [_org_out(runtime, r) for r in rows]


@router.get("/organizations/{org_id}", summary="One organisation")
def get_organization(
    org_id: RowId, runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]
) -> OrganizationOut:
    claim_pending_signers(runtime)
    return _org_out(runtime, org_row(runtime, org_id, "org_id"))


@router.post(
    "/organizations/{org_id}/status",
    status_code=202,
    responses=ACCEPTED,
    summary="Suspend, reactivate or offboard",
)
async def change_org_status(
    org_id: RowId,
    body: OrgStatusChange,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("organizations.status"))],
    write: WriteDep,
) -> JSONResponse:
    org_row(runtime, org_id)
    from eth_utils.crypto import keccak

    fn = {
        "suspended": "suspendOrganization",
        "active": "reactivateOrganization",
        "offboarded": "offboardOrganization",
    }
    plan = Plan(
        kind="organizations.status",
        subject=str(org_id),
        steps=[TxStep("ConsortiumRegistry", fn[body.status], [org_id, bytes(keccak(text=body.reason))])],
    )
    return await write.submit(principal, plan, body)


# ---------------------------------------------------------------------- keys


@router.post(
    "/organizations/{org_id}/keys",
    status_code=202,
    responses=ACCEPTED,
    summary="Add a signing key to an organisation",
)
async def add_key(
    org_id: RowId,
    body: KeySpec,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("keys.manage"))],
    write: WriteDep,
) -> JSONResponse:
    require_org(principal, org_id, "keys.manage")
    org_row(runtime, org_id)
    signer = _key_signer(runtime, body, org_id)
    plan = Plan(
        kind="keys.add",
        subject=signer.address,
        steps=[
            TxStep(
                "ConsortiumRegistry",
                "addKey",
                [org_id, signer.address, body.valid_from, body.valid_until, body.key_admin],
            )
        ],
        result={"key": signer.address},
    )
    return await write.submit(
        principal,
        plan,
        body,
        on_accepted=lambda: _save_signer(runtime, signer),
    )


def _org_key(runtime: Runtime, org_id: int, address: str) -> str:
    """The checksummed address of a key of `org_id` (as indexed), else 404."""
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(address):
        raise rule_problem(422, "invalid-address", f"{address!r} is not an address", field="address")
    with Session(runtime.engine) as session:
        key = session.execute(select(table(OrgKey)).where(table(OrgKey).c.address == address.lower())).first()
    if key is None or key.org_id != org_id:
        raise rule_problem(
            404, "unknown-key", f"{address} is not a key of organisation {org_id}", field="address"
        )
    return str(to_checksum_address(address))


@router.post(
    "/organizations/{org_id}/keys/{address}/revoke",
    status_code=202,
    responses=ACCEPTED,
    summary="Revoke a signing key",
)
async def revoke_key(
    org_id: RowId,
    address: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("keys.manage"))],
    write: WriteDep,
) -> JSONResponse:
    require_org(principal, org_id, "keys.manage")
    address = _org_key(runtime, org_id, address)
    plan = Plan(
        kind="keys.revoke", subject=address, steps=[TxStep("ConsortiumRegistry", "revokeKey", [address])]
    )
    return await write.submit(
        principal,
        plan,
        {"address": address},
    )


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: SignerMode = SignerMode.CUSTODIAL
    address: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="external keys only"
    )
    valid_until: int = Field(default=0, ge=0, le=MAX_UINT40, description="unix time; 0 = no end")


@router.post(
    "/organizations/{org_id}/keys/{address}/rotate",
    status_code=202,
    responses=ACCEPTED,
    summary="Replace a signing key by a new one in one transaction (the old one is revoked)",
)
async def rotate_key(
    org_id: RowId,
    address: str,
    body: Rotation,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("keys.manage"))],
    write: WriteDep,
) -> JSONResponse:
    require_org(principal, org_id, "keys.manage")
    old = _org_key(runtime, org_id, address)
    signer = _key_signer(
        runtime, KeySpec(mode=body.mode, address=body.address, valid_until=body.valid_until), org_id
    )
    plan = Plan(
        kind="keys.rotate",
        subject=old,
        result={"old_key": old, "key": signer.address},
        steps=[TxStep("ConsortiumRegistry", "rotateKey", [old, signer.address, body.valid_until])],
    )
    return await write.submit(
        principal,
        plan,
        body,
        on_accepted=lambda: _save_signer(runtime, signer),
    )


@router.post(
    "/relayer",
    status_code=202,
    responses=ACCEPTED,
    summary="Create the API's relayer key and register it on chain",
)
async def create_relayer(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("relayer.manage"))],
    write: WriteDep,
) -> JSONResponse:
    signer = _key_signer(runtime, KeySpec(key_admin=False), None)
    signer.purpose = "relayer"
    plan = Plan(
        kind="relayer.set",
        subject=signer.address,
        steps=[TxStep("ConsortiumRegistry", "setRelayer", [signer.address, True])],
        result={"relayer": signer.address},
    )
    return await write.submit(
        principal,
        plan,
        {"relayer": "new"},
        on_accepted=lambda: _save_signer(runtime, signer),
    )


# ---------------------------------------------------------------------- users and tokens


def _user_out(user: User) -> UserOut:
    assert user.id is not None
    return UserOut(
        id=user.id,
        username=user.username,
        printed_name=user.printed_name,
        org_id=user.org_id,
        role=user.role,
        disabled=user.disabled_at is not None,
        signature_locked=user.signature_locked_at is not None,
        signature_locked_at=user.signature_locked_at,
        signature_failures=user.signature_failures,
    )


def issue_token(runtime: Runtime, user_id: int, *, label: str = "", ttl_days: int | None = None) -> TokenOut:
    token, digest, prefix = new_token()
    ttl = ttl_days if ttl_days is not None else runtime.settings.token_ttl_days
    row = ApiToken(
        user_id=user_id, token_hash=digest, prefix=prefix, label=label, expires_at=time.time() + ttl * 86400
    )
    with Session(runtime.engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    assert row.id is not None
    return TokenOut(
        id=row.id,
        user_id=user_id,
        prefix=prefix,
        label=label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=None,
        token=token,
    )


def create_user(
    runtime: Runtime,
    *,
    username: str,
    printed_name: str,
    org_id: int | None,
    role: str,
    credential: str | None,
    created_by: int | None,
) -> User:
    with Session(runtime.engine) as session:
        if session.execute(select(User).where(User.username == username)).first() is not None:  # type: ignore[arg-type]
            raise rule_problem(409, "username-taken", f"the username {username!r} is taken", field="username")
        user = User(
            username=username,
            printed_name=printed_name,
            org_id=org_id,
            role=role,
            credential_hash=hash_credential(credential) if credential else None,
            created_by=created_by,
        )
        session.add(user)
        session.commit()
        session.refresh(user)
        return user


class UserCreated(BaseModel):
    user: UserOut
    token: TokenOut


@router.post("/organizations/{org_id}/users", status_code=201, summary="Create a user (and its first token)")
def add_user(
    org_id: RowId,
    body: NewUser,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("users.manage"))],
) -> UserCreated:
    require_org(principal, org_id, "users.manage")
    org_row(runtime, org_id)
    if body.role == "qp" and not body.credential:
        raise rule_problem(
            422, "credential-required", "a QP signs electronically and needs a credential", field="credential"
        )
    user = create_user(
        runtime,
        username=body.username,
        printed_name=body.printed_name,
        org_id=org_id,
        role=body.role,
        credential=body.credential,
        created_by=principal.user_id,
    )
    assert user.id is not None
    return UserCreated(
        user=_user_out(user), token=issue_token(runtime, user.id, label="first", ttl_days=body.token_ttl_days)
    )


@router.get("/organizations/{org_id}/users", summary="Users of an organisation")
def list_users(
    org_id: RowId, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("users.manage"))]
) -> list[UserOut]:
    require_org(principal, org_id, "users.manage")
    org_row(runtime, org_id)
    with Session(runtime.engine) as session:
        users = session.execute(select(User).where(User.org_id == org_id).order_by(User.id)).scalars()  # type: ignore[arg-type]
        return [_user_out(u) for u in users]


def _user_in_scope(runtime: Runtime, principal: Principal, user_id: int) -> User:
    with Session(runtime.engine) as session:
        user = session.get(User, user_id)
    if user is None:
        raise rule_problem(404, "unknown-user", f"no user {user_id}", field="user_id")
    if not principal.is_admin and user.org_id != principal.org_id:
        raise rule_problem(404, "unknown-user", f"no user {user_id} in your organisation", field="user_id")
    return user


@router.post("/users/{user_id}/tokens", status_code=201, summary="Issue a token (shown once)")
def add_token(
    user_id: RowId,
    body: NewToken,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("users.manage"))],
) -> TokenOut:
    _user_in_scope(runtime, principal, user_id)
    return issue_token(runtime, user_id, label=body.label, ttl_days=body.ttl_days)


@router.get("/users/{user_id}/tokens", summary="A user's tokens (never the secrets)")
def list_tokens(
    user_id: RowId, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("users.manage"))]
) -> list[TokenOut]:
    _user_in_scope(runtime, principal, user_id)
    with Session(runtime.engine) as session:
        rows = session.execute(
            select(ApiToken).where(col(ApiToken.user_id) == user_id).order_by(col(ApiToken.id))
        ).scalars()
        return [
            TokenOut(
                id=t.id or 0,
                user_id=t.user_id,
                prefix=t.prefix,
                label=t.label,
                created_at=t.created_at,
                expires_at=t.expires_at,
                revoked_at=t.revoked_at,
            )
            for t in rows
        ]


@router.post("/tokens/{token_id}/revoke", summary="Revoke a token")
def revoke_token(
    token_id: RowId, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("users.manage"))]
) -> TokenOut:
    with Session(runtime.engine) as session:
        token = session.get(ApiToken, token_id)
        user = session.get(User, token.user_id) if token is not None else None
        if token is None or user is None or not (principal.is_admin or user.org_id == principal.org_id):
            # the same answer for another organisation's token: its owner is not for the caller to learn
            raise rule_problem(
                404, "unknown-token", f"no token {token_id} in your organisation", field="token_id"
            )
        if token.revoked_at is None:
            token.revoked_at = time.time()
            session.add(token)
            session.commit()
            session.refresh(token)
        return TokenOut(
            id=token_id,
            user_id=token.user_id,
            prefix=token.prefix,
            label=token.label,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


@router.post("/users/{user_id}/disable", summary="Disable a user (their tokens stop working)")
def disable_user(
    user_id: RowId, runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("users.manage"))]
) -> UserOut:
    user = _user_in_scope(runtime, principal, user_id)
    with Session(runtime.engine) as session:
        fresh = session.get(User, user.id)
        assert fresh is not None
        if fresh.disabled_at is None:
            fresh.disabled_at = time.time()
            session.add(fresh)
            session.commit()
            session.refresh(fresh)
        return _user_out(fresh)


@router.post(
    "/users/{user_id}/unlock-signature",
    summary="Unlock a user's e-signature locked after repeated wrong credentials (21 CFR 11.300(d))",
)
def unlock_signature(
    user_id: RowId,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("users.manage"))],
) -> UserOut:
    """A key admin of the user's organisation, or the consortium admin: resets the count of wrong
    credentials and closes the SIGNATURE_LOCKED alert. Audited, with the count it cleared."""
    user = _user_in_scope(runtime, principal, user_id)
    signature_lock.unlock(runtime.engine, user_id)
    alert_id = close_alert(
        runtime.engine,
        SIGNATURE_LOCKED,
        signature_lock.subject(user_id),
        principal,
        f"e-signature unlocked by {principal.username}",
    )
    request.state.audit_detail = json.dumps(
        {
            "unlock_signature": {
                "user_id": user_id,
                "username": user.username,
                "was_locked": user.signature_locked_at is not None,
                "locked_at": user.signature_locked_at,
                "failures": user.signature_failures,
                "alert_closed": alert_id,
            }
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    with Session(runtime.engine) as session:
        fresh = session.get(User, user_id)
        assert fresh is not None
        return _user_out(fresh)


class Me(BaseModel):
    user: UserOut
    organization: OrganizationOut | None = None  # None for the consortium admin
    org_roles: list[str]
    permissions: list[str]


@router.get("/me", summary="Who am I, and what may I do")
def me(runtime: RuntimeDep, principal: Annotated[Principal, Depends(Permit("read"))]) -> Me:
    from api.edge.auth import PERMISSIONS

    user = _user_in_scope(runtime, principal, principal.user_id) if not principal.is_admin else None
    if user is None:
        with Session(runtime.engine) as session:
            user = session.get(User, principal.user_id)
    assert user is not None
    org = None
    if principal.org_id is not None:
        with Session(runtime.engine) as session:
            row = session.execute(
                select(table(Organization)).where(table(Organization).c.id == principal.org_id)
            ).first()
        org = _org_out(runtime, row) if row is not None else None
    return Me(
        user=_user_out(user),
        organization=org,
        org_roles=sorted(principal.org_roles),
        permissions=sorted(a for a in PERMISSIONS if principal.may(a)),
    )
