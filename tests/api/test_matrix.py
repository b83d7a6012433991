"""The authorisation matrix: every endpoint of the partner API, called by every user role of every kind
of organisation, by the consortium admin and without a token, must be allowed or denied as a
pharmaceutical supply chain demands.

The expectation is written here on its own, from the supply chain's point of view; it deliberately
does not import `api.edge.auth.PERMISSIONS` (that would test the table against itself).

- Denied: 403, `application/problem+json`, type `forbidden`, and no operation created.
- Allowed: authorisation passed, so neither 401 nor 403 - except answers from checks made *after*
  authorisation, told apart by their problem type: the 401 of a wrong e-signature credential, and the
  403s of rules judged later (the contracts' pre-check, "not your operation").
- No token: 401 `unauthenticated` with a `WWW-Authenticate` challenge, everywhere.

Allowed writes are kept harmless: identifiers from ranges no other test uses, items that do not exist,
a wrong credential for the QP's signed decisions, and for the consortium-wide actions a throwaway
organisation with a throwaway user.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from api.models import Operation
from node.ledger.identifiers import with_check_digit
from node.ledger.journey import SITE_GLN, sscc
from tests.api.conftest import ApiNet, Consortium

P = "urn:rxledger:problem:"
PROBLEM_JSON = "application/problem+json"

# ---------------------------------------------------------------------- who may do what (the expectation)

SPONSOR, CMO, LOGISTICS = "SPONSOR", "CMO", "LOGISTICS"
DISTRIBUTOR, DISPENSER, REGULATOR = "DISTRIBUTOR", "DISPENSER", "REGULATOR"
CUSTODIANS = frozenset({SPONSOR, CMO, LOGISTICS, DISTRIBUTOR, DISPENSER})  # hold goods; not the regulator
EVERY_KIND = CUSTODIANS | {REGULATOR}
OPERATOR, QP, KEY_ADMIN, VIEWER = "operator", "qp", "key_admin", "viewer"
EVERY_ROLE = frozenset({OPERATOR, QP, KEY_ADMIN, VIEWER})

# the consortium's demo organisations (short names of tests/api/conftest.py) and their on-chain kind
ORG_KIND = {
    "sponsor": SPONSOR,
    "cmo": CMO,
    "3pl": LOGISTICS,
    "distributor": DISTRIBUTOR,
    "pharmacy": DISPENSER,
    "regulator": REGULATOR,
}


@dataclass(frozen=True)
class Access:
    """Who passes authorisation: (organisation kind, user role) pairs, and the consortium admin."""

    members: frozenset[tuple[str, str]]
    admin: bool = False


def grant(
    roles: frozenset[str] | set[str], kinds: frozenset[str] | set[str], *, admin: bool = False
) -> Access:
    return Access(frozenset(itertools.product(kinds, roles)), admin)


ADMIN_ONLY = Access(frozenset(), admin=True)
EVERYONE = grant(EVERY_ROLE, EVERY_KIND, admin=True)  # reading the network
OWN_ORGANISATION = grant(EVERY_ROLE, EVERY_KIND)  # reading what one's organisation holds: needs one
KEY_ADMINS = grant({KEY_ADMIN}, EVERY_KIND, admin=True)  # own people and keys; the admin for anyone
SPONSOR_MAKERS = grant({OPERATOR, QP}, {SPONSOR})  # products and which CMOs may make them
CMO_MAKERS = grant({OPERATOR, QP}, {CMO})  # batches
CERTIFIERS = grant({QP}, {CMO, SPONSOR})  # certificates and the documents behind them
SPONSOR_QP = grant({QP}, {SPONSOR})  # release, reject, suspend, unsuspend, recall
COMMISSIONERS = grant({OPERATOR}, {CMO})
EPCIS_CAPTURERS = grant({OPERATOR}, EVERY_KIND)
ALERT_HANDLERS = grant({OPERATOR, QP}, {SPONSOR, REGULATOR})
WEBHOOK_MANAGERS = grant({OPERATOR, KEY_ADMIN}, EVERY_KIND)
CUSTODY = grant({OPERATOR}, CUSTODIANS)  # pack, ship, receive, decommission...
FLAGGERS = grant({OPERATOR, QP}, EVERY_KIND)  # anyone who finds a suspect pack says so
CLEARERS = grant({QP}, {SPONSOR, REGULATOR})  # only the sponsor or the regulator clears it
# certificates and QP documents: the makers and the regulator (who inspects), not the trade downstream
DOCUMENT_READERS = grant(EVERY_ROLE, {SPONSOR, CMO, REGULATOR}, admin=True)
AUDITORS = grant({KEY_ADMIN, QP}, EVERY_KIND, admin=True)


# ---------------------------------------------------------------------- callers and requests


@dataclass(frozen=True)
class Caller:
    label: str
    org: str | None  # short name of the organisation; None for the admin and the anonymous
    role: str | None
    token: str | None
    username: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.label == "admin"


@dataclass(frozen=True)
class World:
    """Ids the requests aim at, made by the `world` fixture."""

    org_ids: Mapping[str, int]
    spare_org: int  # a throwaway organisation: the target of consortium-wide admin actions
    spare_gln: str
    victim_user: int  # a throwaway user of the throwaway organisation
    victim_token: int
    batch_id: str
    document: str  # sha256 of a certificate anchored on `batch_id` by the CMO
    operation: str  # a finished operation of the CMO

    def org_of(self, caller: Caller) -> int:
        """The caller's own organisation; the throwaway one for the admin and the anonymous."""
        return self.org_ids[caller.org] if caller.org is not None else self.spare_org


@dataclass(frozen=True)
class Call:
    path: str
    json: Any = None
    params: Mapping[str, str | int] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None


Build = Callable[[World, Caller, int], Call]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the route's template, as in openapi.json
    access: Access
    build: Build  # the request for one caller; the int is unique per request
    # allowed callers are refused by request validation on purpose (an action that must not happen)
    validation_ok: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


GTIN = with_check_digit("0950600013900")  # the matrix's own product
SPARE_GLN = with_check_digit("400000900000")
NO_SHIPMENT = "MX-NO-SUCH-SHIPMENT"
UNKNOWN_KEY = "0x000000000000000000000000000000000000dEaD"
WRONG_CREDENTIAL = "not the signing credential"


def fresh_gtin(n: int) -> str:
    return with_check_digit(f"0950600{139_100 + n:06d}")


def fresh_sscc(n: int) -> str:
    return sscc("4098765", 870_000 + n)


def ghost(n: int) -> dict[str, str]:
    """A pack that was never commissioned."""
    return {"gtin": GTIN, "serial": f"MXG{n:05d}"}


def pdf(n: int) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (f"matrix-{n}.pdf", f"%PDF-1.7 authorisation matrix {n}".encode(), "application/pdf")}


def decision(caller: Caller) -> dict[str, Any]:
    """A QP decision signed with the caller's username but a wrong credential: checked only after
    authorisation, so an allowed caller gets 401 signature-credential-invalid and nothing happens."""
    signature = {"username": caller.username or "nobody", "credential": WRONG_CREDENTIAL}
    return {"meaning": "authorisation matrix", "reason": "must not happen", "signature": signature}


def decide(action: str) -> Build:
    return lambda w, c, n: Call(f"/v1/batches/{w.batch_id}/{action}", decision(c))


def settle(n: int) -> dict[str, Any]:
    return {"units": [ghost(n)], "reason": "authorisation matrix"}


ENDPOINTS: list[Endpoint] = [
    # consortium administration
    Endpoint(
        "POST",
        "/v1/organizations",
        ADMIN_ONLY,  # the GLN is taken (the throwaway organisation): 409 after authorisation
        lambda w, c, n: Call(
            "/v1/organizations", {"gln": w.spare_gln, "name": "Matrix duplicate", "roles": ["distributor"]}
        ),
    ),
    Endpoint("GET", "/v1/organizations", EVERYONE, lambda w, c, n: Call("/v1/organizations")),
    Endpoint(
        "GET",
        "/v1/organizations/{org_id}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/organizations/{w.org_of(c)}"),
    ),
    Endpoint(
        "POST",
        "/v1/organizations/{org_id}/status",
        ADMIN_ONLY,  # only ever the throwaway organisation, and only "active" (it is)
        lambda w, c, n: Call(
            f"/v1/organizations/{w.spare_org}/status", {"status": "active", "reason": "authorisation matrix"}
        ),
    ),
    Endpoint(
        "POST",
        "/v1/relayer",
        ADMIN_ONLY,  # a new relayer would change other tests' world: timeout=0 fails validation, after
        lambda w, c, n: Call("/v1/relayer", params={"timeout": 0}),  # authorisation, before any action
        validation_ok=True,
    ),
    Endpoint("GET", "/v1/audit/verify", ADMIN_ONLY, lambda w, c, n: Call("/v1/audit/verify")),
    # an organisation's own keys and people (key admins act on their own organisation)
    Endpoint(
        "POST",
        "/v1/organizations/{org_id}/keys",
        KEY_ADMINS,  # an external key without its address: 422 address-required, no key made
        lambda w, c, n: Call(f"/v1/organizations/{w.org_of(c)}/keys", {"mode": "external"}),
    ),
    Endpoint(
        "POST",
        "/v1/organizations/{org_id}/keys/{address}/revoke",
        KEY_ADMINS,  # no such key: 404
        lambda w, c, n: Call(f"/v1/organizations/{w.org_of(c)}/keys/{UNKNOWN_KEY}/revoke"),
    ),
    Endpoint(
        "POST",
        "/v1/organizations/{org_id}/keys/{address}/rotate",
        KEY_ADMINS,  # no such key: 404 (and an external key without its address, were it found)
        lambda w, c, n: Call(
            f"/v1/organizations/{w.org_of(c)}/keys/{UNKNOWN_KEY}/rotate", {"mode": "external"}
        ),
    ),
    Endpoint(
        "POST",
        "/v1/organizations/{org_id}/users",
        KEY_ADMINS,
        lambda w, c, n: Call(
            f"/v1/organizations/{w.org_of(c)}/users",
            {"username": f"matrix.user{n}", "printed_name": f"Matrix user {n}", "role": "viewer"},
        ),
    ),
    Endpoint(
        "GET",
        "/v1/organizations/{org_id}/users",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/organizations/{w.org_of(c)}/users"),
    ),
    # the throwaway user: the admin acts on it; other organisations' key admins are told 404
    Endpoint(
        "POST",
        "/v1/users/{user_id}/tokens",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/users/{w.victim_user}/tokens", {"label": "matrix", "ttl_days": 1}),
    ),
    Endpoint(
        "GET",
        "/v1/users/{user_id}/tokens",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/users/{w.victim_user}/tokens"),
    ),
    Endpoint(
        "POST",
        "/v1/tokens/{token_id}/revoke",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/tokens/{w.victim_token}/revoke"),
    ),
    Endpoint(
        "POST",
        "/v1/users/{user_id}/disable",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/users/{w.victim_user}/disable"),
    ),
    Endpoint(
        "POST",
        "/v1/users/{user_id}/unlock-signature",
        KEY_ADMINS,
        lambda w, c, n: Call(f"/v1/users/{w.victim_user}/unlock-signature"),
    ),
    Endpoint("GET", "/v1/me", EVERYONE, lambda w, c, n: Call("/v1/me")),
    # products
    Endpoint(
        "POST", "/v1/products", SPONSOR_MAKERS, lambda w, c, n: Call("/v1/products", {"gtin": fresh_gtin(n)})
    ),
    Endpoint("GET", "/v1/products", EVERYONE, lambda w, c, n: Call("/v1/products")),
    Endpoint(
        "PUT",
        "/v1/products/{gtin}/master-data",
        SPONSOR_MAKERS,  # the matrix's product: its sponsor may
        lambda w, c, n: Call(f"/v1/products/{GTIN}/master-data", {"company_prefix_length": 7}),
    ),
    Endpoint(
        "GET",
        "/v1/products/{gtin}/master-data",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/products/{GTIN}/master-data"),
    ),
    Endpoint(
        "POST",
        "/v1/identifiers/parse",
        EVERYONE,
        lambda w, c, n: Call("/v1/identifiers/parse", {"input": f"(01){GTIN}(21)MX{n:05d}"}),
    ),
    Endpoint(
        "POST",
        "/v1/products/{gtin}/manufacturers",
        SPONSOR_MAKERS,  # the CMO again (it is already authorised)
        lambda w, c, n: Call(f"/v1/products/{GTIN}/manufacturers", {"org_id": w.org_ids["cmo"]}),
    ),
    Endpoint(
        "DELETE",
        "/v1/products/{gtin}/manufacturers/{org_id}",
        SPONSOR_MAKERS,  # the 3PL, which never was authorised
        lambda w, c, n: Call(f"/v1/products/{GTIN}/manufacturers/{w.org_ids['3pl']}"),
    ),
    # batches, documents, certificates
    Endpoint(
        "POST",
        "/v1/batches",
        CMO_MAKERS,
        lambda w, c, n: Call(
            "/v1/batches", {"gtin": GTIN, "lot": f"MX-{n:05d}", "expiry": "2029-12-31", "site_gln": SITE_GLN}
        ),
    ),
    Endpoint("GET", "/v1/batches", EVERYONE, lambda w, c, n: Call("/v1/batches", params={"gtin": GTIN})),
    Endpoint("GET", "/v1/batches/{batch_id}", EVERYONE, lambda w, c, n: Call(f"/v1/batches/{w.batch_id}")),
    Endpoint("POST", "/v1/documents", CERTIFIERS, lambda w, c, n: Call("/v1/documents", files=pdf(n))),
    Endpoint(
        "POST",
        "/v1/batches/{batch_id}/certificates",
        CERTIFIERS,
        lambda w, c, n: Call(
            f"/v1/batches/{w.batch_id}/certificates",
            files=pdf(n),
            data={"kind": "other", "meaning": "matrix"},
        ),
    ),
    Endpoint(
        "POST",
        "/v1/batches/{batch_id}/certificates/verify",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/batches/{w.batch_id}/certificates/verify", files=pdf(n)),
    ),
    Endpoint(
        "GET", "/v1/documents/{sha256}", DOCUMENT_READERS, lambda w, c, n: Call(f"/v1/documents/{w.document}")
    ),
    *(
        Endpoint(
            "POST",
            f"/v1/batches/{{batch_id}}/{action}",
            SPONSOR_QP,
            decide(action),
        )
        for action in ("release", "reject", "suspend", "unsuspend", "recall")
    ),
    # custody
    Endpoint(
        "POST",
        "/v1/commission",
        COMMISSIONERS,
        lambda w, c, n: Call("/v1/commission", {"batch_id": w.batch_id, "serials": [f"MX{n:05d}"]}),
    ),
    Endpoint(
        "POST",
        "/v1/pack",
        CUSTODY,
        lambda w, c, n: Call("/v1/pack", {"container": fresh_sscc(n), "units": [ghost(n)]}),
    ),
    Endpoint("POST", "/v1/unpack", CUSTODY, lambda w, c, n: Call("/v1/unpack", {"container": fresh_sscc(n)})),
    Endpoint(
        "POST",
        "/v1/shipments",
        CUSTODY,
        lambda w, c, n: Call(
            "/v1/shipments",
            {
                "to_org": w.org_ids["distributor" if c.org == "pharmacy" else "pharmacy"],  # not to itself
                "shipment_id": f"MX-S{n}",
                "units": [ghost(n)],
            },
        ),
    ),
    Endpoint(
        "POST",
        "/v1/shipments/{shipment_id}/receive",
        CUSTODY,  # no such shipment: 404 (and likewise below)
        lambda w, c, n: Call(f"/v1/shipments/{NO_SHIPMENT}/receive", {}),
    ),
    Endpoint(
        "POST",
        "/v1/shipments/{shipment_id}/reject",
        CUSTODY,
        lambda w, c, n: Call(f"/v1/shipments/{NO_SHIPMENT}/reject", settle(n)),
    ),
    Endpoint(
        "POST",
        "/v1/shipments/{shipment_id}/missing",
        CUSTODY,
        lambda w, c, n: Call(f"/v1/shipments/{NO_SHIPMENT}/missing", settle(n)),
    ),
    Endpoint(
        "POST",
        "/v1/shipments/{shipment_id}/reclaim",
        CUSTODY,
        lambda w, c, n: Call(f"/v1/shipments/{NO_SHIPMENT}/reclaim", settle(n)),
    ),
    Endpoint(
        "POST",
        "/v1/decommission",
        CUSTODY,
        lambda w, c, n: Call("/v1/decommission", {"units": [ghost(n)], "reason": "destroyed"}),
    ),
    Endpoint(
        "POST", "/v1/decommission/undo", CUSTODY, lambda w, c, n: Call("/v1/decommission/undo", settle(n))
    ),
    Endpoint("POST", "/v1/suspect", FLAGGERS, lambda w, c, n: Call("/v1/suspect", settle(n))),
    Endpoint("POST", "/v1/suspect/clear", CLEARERS, lambda w, c, n: Call("/v1/suspect/clear", settle(n))),
    Endpoint(
        "POST",
        "/v1/batches/{batch_id}/suspect",
        FLAGGERS,  # downstream, not holding the unit: the contract's own 403 not-authorized-for-suspect
        lambda w, c, n: Call(
            f"/v1/batches/{w.batch_id}/suspect", {"reason": "authorisation matrix", "held_unit": ghost(n)}
        ),
    ),
    Endpoint(
        "POST",
        "/v1/batches/{batch_id}/suspect/clear",
        CLEARERS,
        lambda w, c, n: Call(f"/v1/batches/{w.batch_id}/suspect/clear", {"reason": "authorisation matrix"}),
    ),
    # reading custody
    Endpoint("GET", "/v1/inventory", OWN_ORGANISATION, lambda w, c, n: Call("/v1/inventory")),
    Endpoint("GET", "/v1/shipments", OWN_ORGANISATION, lambda w, c, n: Call("/v1/shipments")),
    Endpoint(
        "GET", "/v1/shipments/{shipment_id}", EVERYONE, lambda w, c, n: Call(f"/v1/shipments/{NO_SHIPMENT}")
    ),
    # operations (another organisation's operation is a 404, not a 403)
    Endpoint("GET", "/v1/operations", EVERYONE, lambda w, c, n: Call("/v1/operations")),
    Endpoint(
        "GET",
        "/v1/operations/{operation_id}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/operations/{w.operation}"),
    ),
    Endpoint(
        "GET",
        "/v1/operations/{operation_id}/events",
        EVERYONE,  # the operation has finished: the stream sends one event and ends
        lambda w, c, n: Call(f"/v1/operations/{w.operation}/events"),
    ),
    Endpoint(
        "POST",
        "/v1/operations/{operation_id}/signatures",
        EVERYONE,  # only the requester's own operation awaiting signatures is signed: 404 or 409 here
        lambda w, c, n: Call(f"/v1/operations/{w.operation}/signatures", {"signatures": ["0x" + "11" * 65]}),
    ),
    # the audit log
    Endpoint("GET", "/v1/audit", AUDITORS, lambda w, c, n: Call("/v1/audit", params={"limit": 5})),
    # at the counter: anyone may verify (the answer depends on who asks); dispensing is custody
    Endpoint(
        "POST",
        "/v1/verify",
        EVERYONE,
        lambda w, c, n: Call("/v1/verify", {"gtin": GTIN, "serial": f"MX{n:05d}"}),
    ),
    Endpoint(
        "POST",
        "/v1/verify/bulk",
        EVERYONE,
        lambda w, c, n: Call("/v1/verify/bulk", {"packs": [{"gtin": GTIN, "serial": f"MX{n:05d}"}]}),
    ),
    Endpoint(
        "GET",
        "/vrs/01/{gtin}/10/{lot}/21/{serial}",
        EVERYONE,
        lambda w, c, n: Call(f"/vrs/01/{GTIN}/10/MX-LOT/21/MX{n:05d}", params={"exp": "291231"}),
    ),
    Endpoint(
        "POST",
        "/v1/dispense",
        CUSTODY,  # a pack nobody holds: allowed callers reach the contract's pre-check (404)
        lambda w, c, n: Call("/v1/dispense", {"units": [{"gtin": GTIN, "serial": f"MX{n:05d}"}]}),
    ),
    Endpoint(
        "POST",
        "/v1/undo",
        CUSTODY,
        lambda w, c, n: Call("/v1/undo", {"units": [{"gtin": GTIN, "serial": f"MX{n:05d}"}]}),
    ),
    Endpoint("GET", "/v1/alerts", OWN_ORGANISATION, lambda w, c, n: Call("/v1/alerts")),
    Endpoint(
        "PATCH",
        "/v1/alerts/{alert_id}",
        ALERT_HANDLERS,  # no such alert: 404 for whoever may handle alerts
        lambda w, c, n: Call("/v1/alerts/999999", {"status": "investigating"}),
    ),
    # provenance: anyone may ask; the answer depends on who asks (an unknown item is a 404 for all)
    Endpoint(
        "GET",
        "/v1/provenance/batches/{batch_id}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/provenance/batches/{w.batch_id}"),
    ),
    Endpoint(
        "GET",
        "/v1/provenance/{identifier}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/provenance/(01){GTIN}(21)MX-NONE{n}"),
    ),
    Endpoint(
        "GET",
        "/v1/provenance/{identifier}/bundle",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/provenance/(01){GTIN}(21)MX-NONE{n}/bundle"),
    ),
    # notifications: an organisation's own webhooks and notifications; the recall view for those
    # who follow the batch (404 or 409 for a batch that is not recalled)
    Endpoint(
        "POST",
        "/v1/webhooks",
        WEBHOOK_MANAGERS,
        lambda w, c, n: Call("/v1/webhooks", {"url": f"http://127.0.0.1:9/mx{n}"}),
    ),
    Endpoint("GET", "/v1/webhooks", WEBHOOK_MANAGERS, lambda w, c, n: Call("/v1/webhooks")),
    Endpoint(
        "DELETE", "/v1/webhooks/{webhook_id}", WEBHOOK_MANAGERS, lambda w, c, n: Call("/v1/webhooks/999999")
    ),
    Endpoint("GET", "/v1/notifications", OWN_ORGANISATION, lambda w, c, n: Call("/v1/notifications")),
    Endpoint(
        "GET",
        "/v1/notifications/stream",
        OWN_ORGANISATION,
        lambda w, c, n: Call("/v1/notifications/stream", params={"follow": "false"}),
    ),
    Endpoint("GET", "/v1/recalls/{batch_id}", EVERYONE, lambda w, c, n: Call(f"/v1/recalls/{w.batch_id}")),
    Endpoint(
        "GET",
        "/v1/provenance/batches/{batch_id}/report.{form}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/provenance/batches/{w.batch_id}/report.csv"),
    ),
    Endpoint(
        "GET",
        "/v1/provenance/{identifier}/report.{form}",
        EVERYONE,
        lambda w, c, n: Call(f"/v1/provenance/(01){GTIN}(21)MX-NONE{n}/report.pdf"),
    ),
    # EPCIS 2.0: capture needs an operator (each mapped action then its own right: not tested here,
    # an inspection changes no custody); reading needs an organisation, whose visibility applies
    Endpoint(
        "POST", "/epcis/capture", EPCIS_CAPTURERS, lambda w, c, n: Call("/epcis/capture", inspection(n))
    ),
    Endpoint("GET", "/epcis/capture", EPCIS_CAPTURERS, lambda w, c, n: Call("/epcis/capture")),
    Endpoint(
        "GET", "/epcis/capture/{capture_id}", EPCIS_CAPTURERS, lambda w, c, n: Call("/epcis/capture/unknown")
    ),
    Endpoint("GET", "/epcis/events", OWN_ORGANISATION, lambda w, c, n: Call("/epcis/events")),
    Endpoint(
        "GET",
        "/epcis/events/{event_id}",
        OWN_ORGANISATION,
        lambda w, c, n: Call("/epcis/events/ni%3A%2F%2F%2Fsha-256%3Bunknown"),
    ),
    Endpoint(
        "GET",
        "/epcis/epcs/{epc}/events",
        OWN_ORGANISATION,
        lambda w, c, n: Call(f"/epcis/epcs/https%3A%2F%2Fid.gs1.org%2F01%2F{GTIN}%2F21%2FMX1/events"),
    ),
    Endpoint("GET", "/epcis/export", OWN_ORGANISATION, lambda w, c, n: Call("/epcis/export")),
]


def inspection(n: int) -> dict[str, Any]:
    """An EPCIS document with one inspection of a matrix pack, unique per request."""
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T08:00:00Z",
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventTime": f"2026-11-25T08:00:00.{n % 1000:03d}Z",
                    "eventTimeZoneOffset": "+00:00",
                    "epcList": [f"https://id.gs1.org/01/{GTIN}/21/MX{n:05d}"],
                    "action": "OBSERVE",
                    "bizStep": "inspecting",
                }
            ]
        },
    }


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def http(net: ApiNet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=net.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def world(consortium: Consortium) -> World:
    admin = consortium.net.admin
    onboarded = admin.post(
        "/v1/organizations",
        {"gln": SPARE_GLN, "name": "Matrix Throwaway Wholesale", "roles": ["distributor"]},
    )
    assert onboarded["status"] == "succeeded", onboarded
    spare = next(int(o["id"]) for o in admin.get("/v1/organizations") if o["gln"] == SPARE_GLN)
    victim = admin.post(
        f"/v1/organizations/{spare}/users",
        {"username": "matrix.victim", "printed_name": "Matrix Victim", "role": "viewer"},
        wait=False,
    )
    sponsor = consortium.as_("sponsor")
    assert sponsor.post("/v1/products", {"gtin": GTIN})["status"] == "succeeded"
    sponsor.post(f"/v1/products/{GTIN}/manufacturers", {"org_id": consortium.org_ids["cmo"]})
    batch = consortium.as_("cmo").post(
        "/v1/batches", {"gtin": GTIN, "lot": "MX-BATCH", "expiry": "2029-12-31", "site_gln": SITE_GLN}
    )
    assert batch["status"] == "succeeded", batch
    batch_id = str(batch["result"]["batch_id"])
    anchored = consortium.as_("cmo", "qp").post(
        f"/v1/batches/{batch_id}/certificates",
        files={"file": ("coa.pdf", b"%PDF-1.7 matrix certificate of analysis", "application/pdf")},
        data={"kind": "analysis", "meaning": "approved"},
    )
    assert anchored["status"] == "succeeded", anchored
    return World(
        org_ids=dict(consortium.org_ids),
        spare_org=spare,
        spare_gln=SPARE_GLN,
        victim_user=int(victim["user"]["id"]),
        victim_token=int(victim["token"]["id"]),
        batch_id=batch_id,
        document=str(anchored["result"]["document_sha256"]),
        operation=str(batch["id"]),
    )


@pytest.fixture(scope="module", autouse=True)
def unlock_the_sponsors_qp(consortium: Consortium) -> Iterator[None]:
    """The matrix signs each of the five decisions with a wrong credential: as many in a row as lock
    the sponsor's QP's e-signature (RXLEDGER_SIGNATURE_FAILURE_LIMIT). Unlocked afterwards, for the
    package's other tests that sign as that QP."""
    yield
    admin = consortium.net.admin
    username = consortium.usernames[("sponsor", QP)]
    users = admin.get(f"/v1/organizations/{consortium.org_ids['sponsor']}/users")
    qp = next(u for u in users if u["username"] == username)
    admin.post(f"/v1/users/{qp['id']}/unlock-signature", wait=False)


@pytest.fixture(scope="module")
def callers(consortium: Consortium) -> list[Caller]:
    people = [
        Caller(f"{org}.{role}", org, role, consortium.tokens[(org, role)], consortium.usernames[(org, role)])
        for org in ORG_KIND
        for role in sorted(EVERY_ROLE)
    ]
    return [
        *people,
        Caller("admin", None, None, consortium.net.admin_token),
        Caller("anonymous", None, None, None),
    ]


# ---------------------------------------------------------------------- judging answers


def expectation(access: Access, caller: Caller) -> str:
    if caller.token is None:
        return "unauthenticated"
    if caller.is_admin:
        return "allowed" if access.admin else "denied"
    assert caller.org is not None and caller.role is not None
    return "allowed" if (ORG_KIND[caller.org], caller.role) in access.members else "denied"


def problem_type(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return None
    body = response.json()
    return str(body.get("type")) if isinstance(body, dict) else None


def verdict(response: httpx.Response) -> str:
    """What the answer says about authorisation: allowed, denied, unauthenticated, or something wrong."""
    status, kind = response.status_code, problem_type(response)
    if status == 401:
        if kind == P + "unauthenticated" and response.headers.get("www-authenticate", "").startswith(
            "Bearer"
        ):
            return "unauthenticated"
        if kind == P + "signature-credential-invalid":
            return "allowed"  # the e-signature's credential is checked after authorisation
        return f"401 of type {kind}, challenge {response.headers.get('www-authenticate')!r}"
    if status == 403:
        if kind == P + "forbidden":
            return "denied"
        if kind is not None:
            return "allowed"  # a rule judged after authorisation (contract pre-check, not your operation)
        return "403 that is not a problem document"
    if status >= 500:
        return f"server error {status} ({kind})"
    return "allowed"


def operation_count(net: ApiNet) -> int:
    with Session(net.engine) as session:
        return int(session.execute(select(func.count()).select_from(Operation)).scalar_one())


def send(http: httpx.Client, endpoint: Endpoint, call: Call, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    for attempt in (1, 2):
        try:
            return http.request(
                endpoint.method,
                call.path,
                json=call.json,
                params=call.params,
                files=call.files,
                data=call.data,
                headers=headers,
            )
        except httpx.TransportError:
            # uvicorn drops a kept-alive connection after an unhandled error (a 500 that is reported
            # as a mismatch anyway); the next request on it never reached the server: send it again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def describe(response: httpx.Response) -> str:
    kind = problem_type(response)
    if kind is None:
        return str(response.status_code)
    return f"{response.status_code} {kind.removeprefix(P)}: {response.json().get('detail', '')}"


# ---------------------------------------------------------------------- the tests

UNIQUE = itertools.count()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.id for e in ENDPOINTS])
def test_authorisation_matrix(
    endpoint: Endpoint, world: World, callers: list[Caller], http: httpx.Client, net: ApiNet
) -> None:
    mismatches: list[str] = []
    answers: Counter[str] = Counter()
    before = operation_count(net)
    for caller in callers:
        call = endpoint.build(world, caller, next(UNIQUE))
        response = send(http, endpoint, call, caller.token)
        after = operation_count(net)
        expected, got = expectation(endpoint.access, caller), verdict(response)
        answers[f"{expected}:{response.status_code}"] += 1
        if got != expected:
            mismatches.append(f"{caller.label}: expected {expected}, got {got} ({describe(response)})")
        elif expected != "allowed" and after != before:
            mismatches.append(f"{caller.label}: {expected}, yet {after - before} operation(s) were created")
        elif (
            expected == "allowed"
            and not endpoint.validation_ok
            and problem_type(response) == P + "validation"
        ):
            mismatches.append(f"{caller.label}: the matrix's own request is invalid ({describe(response)})")
        before = after
    print(f"{endpoint.id}: {dict(sorted(answers.items()))}")
    assert not mismatches, f"{endpoint.id}: {len(mismatches)} of {len(callers)} callers\n  " + "\n  ".join(
        mismatches
    )


def test_every_route_has_a_row_in_the_matrix(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    routes = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        if path.startswith(("/v1/", "/epcis/", "/vrs/"))
        for method in item
        if method in methods
    }
    table = [e.id for e in ENDPOINTS]
    assert len(table) == len(set(table)), "an endpoint is listed twice"
    assert routes - set(table) == set(), "routes without a row in the authorisation matrix"
    assert set(table) - routes == set(), "matrix rows for routes that do not exist"


def test_key_admins_act_only_on_their_own_organisation(
    consortium: Consortium, world: World, http: httpx.Client
) -> None:
    """Passing the matrix is not enough for an organisation's people and keys: a key admin of one
    organisation is refused on another's (403), and another organisation's users are not found (404)."""
    orgs = list(ORG_KIND)
    wrong: list[str] = []
    for i, org in enumerate(orgs):
        token = consortium.tokens[(org, KEY_ADMIN)]
        headers = {"Authorization": f"Bearer {token}"}
        other = world.org_ids[orgs[(i + 1) % len(orgs)]]
        refused = [
            http.get(f"/v1/organizations/{other}/users", headers=headers),
            http.post(
                f"/v1/organizations/{other}/users",
                json={"username": f"matrix.intruder.{org}", "printed_name": "Intruder", "role": "operator"},
                headers=headers,
            ),
            http.post(f"/v1/organizations/{other}/keys", json={"mode": "external"}, headers=headers),
            http.post(f"/v1/organizations/{other}/keys/{UNKNOWN_KEY}/revoke", headers=headers),
            http.post(
                f"/v1/organizations/{other}/keys/{UNKNOWN_KEY}/rotate",
                json={"mode": "external"},
                headers=headers,
            ),
        ]
        for response in refused:
            if verdict(response) != "denied":
                wrong.append(f"{org}.key_admin {response.request.url.path}: {describe(response)}, not 403")
        hidden = [
            http.get(f"/v1/users/{world.victim_user}/tokens", headers=headers),
            http.post(f"/v1/users/{world.victim_user}/tokens", json={"label": "intruder"}, headers=headers),
            http.post(f"/v1/users/{world.victim_user}/disable", headers=headers),
            http.post(f"/v1/users/{world.victim_user}/unlock-signature", headers=headers),
        ]
        for response in hidden:
            if problem_type(response) != P + "unknown-user":
                wrong.append(f"{org}.key_admin {response.request.url.path}: {describe(response)}, not 404")
        # another organisation's token is not found either, without naming its user
        response = http.post(f"/v1/tokens/{world.victim_token}/revoke", headers=headers)
        if problem_type(response) != P + "unknown-token":
            wrong.append(f"{org}.key_admin {response.request.url.path}: {describe(response)}, not 404")
    assert not wrong, "\n".join(wrong)
