"""First start of an API node: the consortium admin's user, token and signing key.

The admin key is the one that deployed the contracts (ConsortiumRegistry's admin); it goes into the
encrypted keystore like every custodial key. The admin token is printed once and stored as a hash.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlmodel import Session, col

from api.models import OrgSigner, SignerMode, User, UserRole
from api.routes.admin import TokenOut, create_user, issue_token
from api.runtime import Runtime


def admin_user(runtime: Runtime) -> User | None:
    with Session(runtime.engine) as session:
        user: User | None = session.execute(
            select(User).where(col(User.role) == UserRole.ADMIN).order_by(col(User.id))
        ).scalar()
        return user


def ensure_admin(
    runtime: Runtime,
    admin_key: LocalAccount,
    *,
    username: str = "admin",
    printed_name: str = "Consortium Administrator",
) -> TokenOut | None:
    """Create the admin user (and its first token, returned) and register the admin key; on a node
    that already has an admin, only make sure the key is registered and return None."""
    runtime.keystore.store(admin_key)
    with Session(runtime.engine) as session:
        if session.get(OrgSigner, admin_key.address) is None:
            session.add(
                OrgSigner(address=admin_key.address, org_id=None, mode=SignerMode.CUSTODIAL, purpose="admin")
            )
            session.commit()
    if admin_user(runtime) is not None:
        return None
    user = create_user(
        runtime,
        username=username,
        printed_name=printed_name,
        org_id=None,
        role=UserRole.ADMIN,
        credential=None,
        created_by=None,
    )
    assert user.id is not None
    return issue_token(runtime, user.id, label="bootstrap")
