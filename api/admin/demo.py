"""Seed the demo consortium for `rxledger up` through the partner API itself, the way partners
would: the admin onboards six organisations (custodial keys), creates their users, and the users
register a product, authorise the CMO, create a batch, anchor its CoA, commission 40 packs into 4
cases, release the batch (e-signed, with a QP certificate) and ship some of it down the chain.

Tokens are printed once. Idempotent: on a resumed network the organisations exist and nothing is
seeded again (issue new tokens with `rxledger users token <username>`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from api.client import RxClient
from node.ledger.consortium import DEMO_ORGS
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc

DEMO_LOT = "DEMO-001"
DEMO_CREDENTIAL = "demo-signing-credential"  # devnet only: the QPs' re-entered signing credential
KINDS = {"SPONSOR": "sponsor", "CMO": "cmo", "LOGISTICS": "logistics", "DISTRIBUTOR": "distributor",
         "DISPENSER": "dispenser", "REGULATOR": "regulator"}  # fmt: skip
USERNAMES = ("sponsor", "cmo", "3pl", "distributor", "pharmacy", "regulator")


@dataclass
class DemoUser:
    username: str
    org: str
    role: str
    token: str


def seed_demo_via_api(base_url: str, admin_token: str, console: Console) -> list[DemoUser] | None:
    admin = RxClient(base_url, admin_token)
    try:
        existing = {o["gln"] for o in admin.get("/v1/organizations")}
        if DEMO_ORGS[0].gln in existing:
            console.print("demo consortium: already seeded (resumed chain)")
            return None
        return _seed(admin, console)
    finally:
        admin.close()


def _seed(admin: RxClient, console: Console) -> list[DemoUser]:
    from node.ledger.constants import Role

    ids: dict[str, int] = {}
    for spec in DEMO_ORGS:
        roles = [KINDS[Role.NAMES[r]] for r in spec.roles]
        admin.post("/v1/organizations", {"gln": spec.gln, "name": spec.name, "roles": roles})
    for org in admin.get("/v1/organizations"):
        ids[org["gln"]] = org["id"]
    users: list[DemoUser] = []
    tokens: dict[str, str] = {}
    for spec, short in zip(DEMO_ORGS, USERNAMES, strict=True):
        org_id = ids[spec.gln]
        plan = [(f"{short}.operator", "operator")]
        if short in ("sponsor", "cmo", "regulator"):
            plan.append((f"{short}.qp", "qp"))
        plan.append((f"{short}.keys", "key_admin"))
        for username, role in plan:
            body = {
                "username": username,
                "printed_name": f"{username.split('.')[0].title()} {role.upper()}",
                "role": role,
                "credential": DEMO_CREDENTIAL if role == "qp" else None,
            }
            created = admin.post(f"/v1/organizations/{org_id}/users", body, wait=False)
            tokens[username] = created["token"]["token"]
            users.append(DemoUser(username, spec.name, role, created["token"]["token"]))
    client = RxClient(admin.http.base_url.__str__())
    sponsor, cmo = client.with_token(tokens["sponsor.operator"]), client.with_token(tokens["cmo.operator"])
    sponsor_qp, cmo_qp = client.with_token(tokens["sponsor.qp"]), client.with_token(tokens["cmo.qp"])
    cmo_id = ids[DEMO_ORGS[1].gln]
    sponsor.post("/v1/products", {"gtin": JOURNEY_GTIN})
    sponsor.post(f"/v1/products/{JOURNEY_GTIN}/manufacturers", {"org_id": cmo_id})
    batch = cmo.post(
        "/v1/batches", {"gtin": JOURNEY_GTIN, "lot": DEMO_LOT, "expiry": "2028-12-31", "site_gln": SITE_GLN}
    )
    bid = batch["result"]["batch_id"]
    coa = f"Certificate of analysis, lot {DEMO_LOT}: all specifications met.\n".encode()
    cmo_qp.post(
        f"/v1/batches/{bid}/certificates",
        files={"file": ("coa.txt", coa, "text/plain")},
        data={"kind": "analysis", "meaning": "approved"},
    )
    cases = [sscc("4098765", 700_000 + i) for i in range(4)]
    serials = [f"DEMO{i:05d}" for i in range(40)]
    cmo.post("/v1/commission", {"batch_id": bid, "serials": serials, "containers": cases})
    qp_doc = sponsor_qp.post(
        "/v1/documents", wait=False, files={"file": ("qp.txt", b"QP certification\n", "text/plain")}
    )
    sponsor_qp.post(f"/v1/batches/{bid}/release", {
        "meaning": "released for sale", "reason": "batch record reviewed",
        "signature": {"username": "sponsor.qp", "credential": DEMO_CREDENTIAL},
        "qp_certificate_sha256": qp_doc["document_sha256"],
    })  # fmt: skip
    tpl, pharmacy = client.with_token(tokens["3pl.operator"]), client.with_token(tokens["pharmacy.operator"])
    cmo.post(
        "/v1/shipments", {"shipment_id": "DEMO-SHIP-1", "to_gln": DEMO_ORGS[2].gln, "containers": cases[:2]}
    )
    tpl.post("/v1/shipments/DEMO-SHIP-1/receive")
    tpl.post(
        "/v1/shipments", {"shipment_id": "DEMO-SHIP-2", "to_gln": DEMO_ORGS[4].gln, "containers": cases[:1]}
    )
    pharmacy.post("/v1/shipments/DEMO-SHIP-2/receive")
    _print_users(console, users)
    return users


def _print_users(console: Console, users: list[DemoUser]) -> None:
    # One plain line per user, so that a token copies in one piece at any terminal width.
    console.print("[bold]demo users[/bold] (API tokens, shown once; send `Authorization: Bearer <token>`):")
    for u in users:
        console.print(f"  {u.username:<22} {u.role:<9} {u.token}  ({u.org})", highlight=False, soft_wrap=True)
    console.print(f"QP users sign with the credential {DEMO_CREDENTIAL!r} (devnet only).")
