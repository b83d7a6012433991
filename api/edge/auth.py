"""Who is calling (bearer token -> user -> organisation) and whether they may (the API's half of the
double authorisation; the contracts check the organisation's key again on chain).

The permission table is the one place that says which user roles of which kinds of organisation may
perform each action; routes name their action with `Permit("...")`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text

from api.database import read_on_loop_or_thread
from api.edge.clientaddr import client_address
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE
from api.edge.security import hash_token
from api.edge.throttle import FailureThrottle
from api.models import UserRole
from api.runtime import Runtime
from node.ledger.constants import OrgStatus

SPONSOR, CMO, LOGISTICS = "SPONSOR", "CMO", "LOGISTICS"
DISTRIBUTOR, DISPENSER, REGULATOR = "DISTRIBUTOR", "DISPENSER", "REGULATOR"
CUSTODIANS = frozenset({SPONSOR, CMO, LOGISTICS, DISTRIBUTOR, DISPENSER})
ANY_ORG = frozenset({SPONSOR, CMO, LOGISTICS, DISTRIBUTOR, DISPENSER, REGULATOR})
ALL_ROLES = frozenset(UserRole) - {UserRole.ADMIN}
OP, QP, KEYS, VIEW = UserRole.OPERATOR, UserRole.QP, UserRole.KEY_ADMIN, UserRole.VIEWER


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]  # user roles inside the organisation
    orgs: frozenset[str]  # on-chain roles of the organisation (any one suffices)
    admin: bool = False  # the consortium admin may too

    @classmethod
    def of(cls, roles: set[str], orgs: frozenset[str] | set[str], *, admin: bool = False) -> Rule:
        return cls(frozenset(roles), frozenset(orgs), admin)


ADMIN_ONLY = Rule(frozenset(), frozenset(), admin=True)
READ = Rule.of(set(ALL_ROLES), ANY_ORG, admin=True)

PERMISSIONS: dict[str, Rule] = {
    # consortium administration
    "organizations.onboard": ADMIN_ONLY,
    "organizations.status": ADMIN_ONLY,
    "relayer.manage": ADMIN_ONLY,
    # an organisation's own people and keys (the admin may act for any organisation)
    "users.manage": Rule.of({KEYS}, ANY_ORG, admin=True),
    "keys.manage": Rule.of({KEYS}, ANY_ORG, admin=True),
    # products and who may make them
    "products.register": Rule.of({OP, QP}, {SPONSOR}),
    "products.authorize": Rule.of({OP, QP}, {SPONSOR}),
    # batches and quality decisions
    "batches.create": Rule.of({OP, QP}, {CMO}),
    "certificates.anchor": Rule.of({QP}, {CMO, SPONSOR}),
    "batches.decide": Rule.of({QP}, {SPONSOR}),  # release, reject, suspend, unsuspend, recall
    # custody
    "custody.commission": Rule.of({OP}, {CMO}),
    "custody.pack": Rule.of({OP}, CUSTODIANS),
    "custody.ship": Rule.of({OP}, CUSTODIANS),
    "custody.receive": Rule.of({OP}, CUSTODIANS),
    "custody.decommission": Rule.of({OP}, CUSTODIANS),
    "suspect.flag": Rule.of({OP, QP}, ANY_ORG),
    "suspect.clear": Rule.of({QP}, {SPONSOR, REGULATOR}),
    # EPCIS: capture maps each event to a custody action, which then needs its own permission
    "epcis.capture": Rule.of({OP}, ANY_ORG),
    # alerts about a product: its sponsor and regulators investigate and close them
    "alerts.handle": Rule.of({OP, QP}, {SPONSOR, REGULATOR}),
    # an organisation's webhooks (recall notifications): its key admins and operators
    "webhooks.manage": Rule.of({OP, KEYS}, ANY_ORG),
    "epcis.read": Rule.of(set(ALL_ROLES), ANY_ORG),  # visibility: own events and items held
    # reading
    "read": READ,
    "read.own": Rule.of(set(ALL_ROLES), ANY_ORG),  # inventory, inbound: needs an organisation
    "documents.download": Rule.of(set(ALL_ROLES), {SPONSOR, CMO, REGULATOR}, admin=True),
    "audit.read": Rule.of({KEYS, QP}, ANY_ORG, admin=True),
    "audit.verify": ADMIN_ONLY,
}


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    printed_name: str
    role: str
    org_id: int | None
    org_roles: frozenset[str]
    token_id: int

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN

    def may(self, action: str) -> bool:
        rule = PERMISSIONS[action]
        if self.is_admin:
            return rule.admin
        return self.role in rule.roles and bool(self.org_roles & rule.orgs)


async def get_runtime(request: Request) -> Runtime:  # async: no thread-pool hop for a lookup
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _unauthenticated(detail: str, rule: str = "unauthenticated") -> Problem:
    return Problem(
        401,
        "Authentication required",
        type=PROBLEM_BASE + rule,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="rxledger"'},
    )


async def authenticate(request: Request, runtime: RuntimeDep) -> Principal:
    """The dependency: on SQLite on the event loop, not in the thread pool (its one query is an
    indexed lookup, tens of microseconds; the pool's hop cost more, scripts/bench-verify --profile);
    on PostgreSQL in a worker thread (a round trip on the loop would hold the worker's other requests)."""
    return await read_on_loop_or_thread(runtime.engine, authenticate_request, request, runtime)


def authenticate_request(request: Request, runtime: Runtime) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("send `Authorization: Bearer <token>`")
    # Only failures are braked: a valid token is served even from a braked address (a colleague
    # behind the same NAT as a scanner keeps working). The token is therefore looked up before the
    # brake is consulted; a braked client learns no more than "valid or not" (the 429 hides why a
    # token failed), which at 256 bits a token is no oracle at any rate (docs/SECURITY.md, "Client
    # addresses and the throttle").
    try:
        return _authenticate(request, runtime, token.strip())
    except Problem as problem:
        if problem.status != 401:
            raise
        throttle: FailureThrottle = request.app.state.auth_throttle
        wait = throttle.fail(client_address(request))
        if wait is None:
            raise
        seconds = max(1, math.ceil(wait))
        raise Problem(
            429,
            "Too many failed authentications",
            type=PROBLEM_BASE + "too-many-failed-authentications",
            detail=f"too many requests with a bad token from this address; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        ) from None


# One statement, built once: every authenticated request runs it (the ORM's two queries and their
# statement building cost ~1 ms a request; see scripts/bench-verify --profile).
_PRINCIPAL = text(
    "SELECT t.id AS token_id, t.revoked_at, t.expires_at, t.last_used_at,"
    " u.id AS user_id, u.username, u.printed_name, u.role, u.org_id, u.disabled_at,"
    " o.status AS org_status, o.roles AS org_roles"
    " FROM api_tokens t JOIN api_users u ON u.id = t.user_id"
    " LEFT JOIN organizations o ON o.id = u.org_id"
    " WHERE t.token_hash = :token_hash"
)
_TOUCH = text("UPDATE api_tokens SET last_used_at = :now WHERE id = :id")


def _authenticate(request: Request, runtime: Runtime, token: str) -> Principal:
    now = time.time()
    with runtime.engine.connect() as conn:
        row = conn.execute(_PRINCIPAL, {"token_hash": hash_token(token)}).first()
        if row is None:
            raise _unauthenticated("unknown token", "invalid-token")
        if row.revoked_at is not None:
            raise _unauthenticated("the token was revoked", "token-revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise _unauthenticated("the token has expired", "token-expired")
        if row.disabled_at is not None:
            raise _unauthenticated("the user is disabled", "user-disabled")
        # last use, at most once a minute per token (every request writing would serialise reads)
        if row.last_used_at is None or now - row.last_used_at > 60:
            conn.execute(_TOUCH, {"now": now, "id": row.token_id})
            conn.commit()
    org_roles: frozenset[str] = frozenset()
    if row.org_id is not None and row.org_status == OrgStatus.ACTIVE:
        org_roles = frozenset(r for r in (row.org_roles or "").split(",") if r)
    principal = Principal(
        int(row.user_id), row.username, row.printed_name, row.role, row.org_id, org_roles, int(row.token_id)
    )
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


class Permit:
    """`Annotated[Principal, Depends(Permit("custody.ship"))]`: authenticated and allowed."""

    def __init__(self, action: str) -> None:
        if action not in PERMISSIONS:
            raise KeyError(f"no permission rule for {action!r}")
        self.action = action

    async def __call__(self, request: Request, principal: PrincipalDep) -> Principal:
        return self.check(request, principal)

    def check(self, request: Request, principal: Principal) -> Principal:
        request.state.action = self.action
        if not principal.may(self.action):
            raise forbidden(principal, self.action)
        return principal


def forbidden(principal: Principal, action: str, why: str | None = None) -> Problem:
    rule = PERMISSIONS[action]
    if why is None:
        if principal.is_admin:
            why = "the consortium admin does not perform this action"
        elif principal.org_id is not None and not principal.org_roles:
            why = "your organisation is not active on the network"
        elif principal.role not in rule.roles:
            allowed = ", ".join(sorted(rule.roles)) or "the consortium admin"
            why = f"your role {principal.role!r} may not; it takes: {allowed}"
        else:
            kinds = ", ".join(sorted(rule.orgs))
            why = f"your organisation ({', '.join(sorted(principal.org_roles))}) may not; it takes: {kinds}"
    return Problem(403, "Forbidden", type=PROBLEM_BASE + "forbidden", detail=why, action=action)


def require_org(principal: Principal, org_id: int, action: str) -> None:
    """For actions on a named organisation: only its own members (or the admin where allowed)."""
    if principal.is_admin and PERMISSIONS[action].admin:
        return
    if principal.org_id != org_id:
        raise forbidden(principal, action, "you may only act on your own organisation")
