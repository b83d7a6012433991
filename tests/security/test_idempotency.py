"""Issue item 5: a retry with the same Idempotency-Key returns the first operation, on every write.

Found by a penetration test: 20 parallel whole-shipment receives with one key answered 3x200 and
17x409, and a retry after success answered `409 nothing-pending`: each handler checked the state
(pending items, simulations) before the key was looked up in `outbox.accept`. Now the Write
dependency looks the key up before the handler runs (after the route's permission check).

For every outbox write endpoint: the write with a key, its outcome, then the same request again
(without and with `wait=true`): 200, the same operation, and nothing new - no operation, no
transaction, no block, no EPCIS event, capture job, alert, signature record, document or key. A test
enumerates the app's routes so that a new keyed endpoint cannot be left out of this list.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlmodel import Session, col
from starlette.routing import BaseRoute

from api.app import create_app
from api.edge.auth import Permit
from api.models import Document, KnownItem, Operation, OperationTx, OrgSigner, SignatureRecord
from api.models.alerts import Alert
from api.models.epcis import CaptureJob, EpcisEvent
from api.routes.common import route_permits
from node.deploy import Deployment
from node.epcis.events import CONTEXT
from node.ledger.identifiers import with_check_digit
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import ApiNet, Consortium
from tests.api.test_custody import released_batch, units

P = "urn:rxledger:problem:"
EXPIRY = "2029-09-30"


@dataclass(frozen=True)
class Call:
    """One write request, as a client would repeat it byte for byte (bar a multipart boundary)."""

    token: str
    method: str
    path: str
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def send(net: ApiNet, call: Call, key: str | None, *, wait: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {call.token}", **call.headers}
    if key is not None:
        headers["Idempotency-Key"] = key
    with httpx.Client(base_url=net.base_url, timeout=120) as http:
        return http.request(
            call.method,
            call.path,
            params={"wait": "true"} if wait else None,
            json=call.json,
            files=call.files,
            data=call.data,
            content=call.content,
            headers=headers,
        )


def operation_id(answer: httpx.Response) -> str:
    body = answer.json()
    if "captureID" in body:  # an EPCIS capture answers its capture job, which links the operation
        return str(body["operation"]).rsplit("/", 1)[1]
    return str(body["id"])


def snapshot(net: ApiNet) -> dict[str, int]:
    """What a write leaves behind: rows of the API's tables and the chain's height."""
    counted = {
        "operations": Operation,
        "transactions": OperationTx,
        "epcis_events": EpcisEvent,
        "capture_jobs": CaptureJob,
        "signature_records": SignatureRecord,
        "documents": Document,
        "signers": OrgSigner,
        "known_items": KnownItem,
    }
    state: dict[str, int] = {}
    with Session(net.engine) as session:
        for name, model in counted.items():
            state[name] = int(session.execute(select(func.count()).select_from(model)).scalar_one())
        state["alerts"] = int(session.execute(select(func.coalesce(func.sum(Alert.count), 0))).scalar_one())
    state["block"] = int(net.w3.eth.block_number)
    return state


# ---------------------------------------------------------------------- the writes and what each needs


def tok(c: Consortium, org: str, role: str = "operator") -> str:
    return c.tokens[(org, role)]


def gtin(n: int) -> str:
    return with_check_digit(f"0950600019{n:03d}")


def gln(n: int) -> str:
    return with_check_digit(f"409988{n:06d}")


def case(n: int, i: int = 0) -> str:
    return sscc("4098765", 960_000 + 10 * n + i)


def serials(n: int, count: int = 2) -> list[str]:
    return [f"ID{n:02d}{i:02d}" for i in range(count)]


def batch(c: Consortium, n: int) -> str:
    body = {"gtin": JOURNEY_GTIN, "lot": f"ID-{n}", "expiry": EXPIRY, "site_gln": SITE_GLN}
    bid: str = c.as_("cmo").post("/v1/batches", body)["result"]["batch_id"]
    return bid


def released(c: Consortium, n: int, *, boxed: bool = True) -> str:
    return released_batch(c, f"ID-{n}", serials(n), [case(n)] if boxed else [])


def product(c: Consortium, n: int, *, authorized: bool = False) -> str:
    g = gtin(n)
    c.as_("sponsor").post("/v1/products", {"gtin": g})
    if authorized:
        c.as_("sponsor").post(f"/v1/products/{g}/manufacturers", {"org_id": c.org_ids["cmo"]})
    return g


def decision(c: Consortium, meaning: str, **extra: Any) -> dict[str, Any]:
    return {"meaning": meaning, "reason": "idempotency test", "signature": c.signature("sponsor"), **extra}


def shipped(c: Consortium, n: int, to: str = "3pl") -> str:
    released(c, n)
    sid = f"ID-S{n}"
    c.as_("cmo").post("/v1/shipments", {"shipment_id": sid, "to_gln": c.glns[to], "containers": [case(n)]})
    return sid


def at_pharmacy(c: Consortium, n: int) -> None:
    sid = shipped(c, n, "pharmacy")
    c.as_("pharmacy").post(f"/v1/shipments/{sid}/receive")
    c.as_("pharmacy").post("/v1/unpack", {"container": case(n)})


def onboarded(c: Consortium, n: int) -> int:
    body = {"gln": gln(n), "name": f"Idempotency Org {n}", "roles": ["distributor"]}
    c.net.admin.post("/v1/organizations", body)
    orgs = {o["gln"]: o["id"] for o in c.net.admin.get("/v1/organizations")}
    return int(orgs[gln(n)])


def s_products(c: Consortium, n: int) -> Call:
    return Call(tok(c, "sponsor"), "POST", "/v1/products", {"gtin": gtin(n)})


def s_authorize(c: Consortium, n: int) -> Call:
    g = product(c, n)
    return Call(tok(c, "sponsor"), "POST", f"/v1/products/{g}/manufacturers", {"org_id": c.org_ids["cmo"]})


def s_revoke_manufacturer(c: Consortium, n: int) -> Call:
    g = product(c, n, authorized=True)
    return Call(tok(c, "sponsor"), "DELETE", f"/v1/products/{g}/manufacturers/{c.org_ids['cmo']}")


def s_batches(c: Consortium, n: int) -> Call:
    body = {"gtin": JOURNEY_GTIN, "lot": f"ID-{n}", "expiry": EXPIRY, "site_gln": SITE_GLN}
    return Call(tok(c, "cmo"), "POST", "/v1/batches", body)


def s_certificates(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    files = {"file": ("coa.txt", f"CoA ID-{n}".encode(), "text/plain")}
    return Call(tok(c, "cmo", "qp"), "POST", f"/v1/batches/{bid}/certificates", files=files)


def s_release(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    c.as_("cmo", "qp").post(
        f"/v1/batches/{bid}/certificates", files={"file": ("coa.txt", f"CoA ID-{n}".encode(), "text/plain")}
    )
    doc = c.as_("sponsor", "qp").post(
        "/v1/documents", wait=False, files={"file": ("qp.txt", f"QP ID-{n}".encode(), "text/plain")}
    )
    body = decision(c, "released for sale", qp_certificate_sha256=doc["document_sha256"])
    return Call(tok(c, "sponsor", "qp"), "POST", f"/v1/batches/{bid}/release", body)


def s_reject(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    return Call(tok(c, "sponsor", "qp"), "POST", f"/v1/batches/{bid}/reject", decision(c, "rejected"))


def s_suspend(c: Consortium, n: int) -> Call:
    bid = released(c, n)
    return Call(tok(c, "sponsor", "qp"), "POST", f"/v1/batches/{bid}/suspend", decision(c, "suspended"))


def s_unsuspend(c: Consortium, n: int) -> Call:
    bid = released(c, n)
    c.as_("sponsor", "qp").post(f"/v1/batches/{bid}/suspend", decision(c, "suspended"))
    return Call(
        tok(c, "sponsor", "qp"), "POST", f"/v1/batches/{bid}/unsuspend", decision(c, "released again")
    )


def s_recall(c: Consortium, n: int) -> Call:
    bid = released(c, n)
    return Call(tok(c, "sponsor", "qp"), "POST", f"/v1/batches/{bid}/recall", decision(c, "recalled"))


def s_commission(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    body = {"batch_id": bid, "serials": serials(n), "containers": [case(n)]}
    return Call(tok(c, "cmo"), "POST", "/v1/commission", body)


def s_pack(c: Consortium, n: int) -> Call:
    released(c, n, boxed=False)
    return Call(tok(c, "cmo"), "POST", "/v1/pack", {"container": case(n, 1), "units": units(serials(n))})


def s_unpack(c: Consortium, n: int) -> Call:
    released(c, n)
    return Call(tok(c, "cmo"), "POST", "/v1/unpack", {"container": case(n)})


def s_ship(c: Consortium, n: int) -> Call:
    released(c, n)
    body = {"shipment_id": f"ID-S{n}", "to_gln": c.glns["3pl"], "containers": [case(n)]}
    return Call(tok(c, "cmo"), "POST", "/v1/shipments", body)


def s_receive(c: Consortium, n: int) -> Call:
    return Call(tok(c, "3pl"), "POST", f"/v1/shipments/{shipped(c, n)}/receive")


def s_reject_items(c: Consortium, n: int) -> Call:
    body = {"containers": [case(n)], "reason": "damaged"}
    return Call(tok(c, "3pl"), "POST", f"/v1/shipments/{shipped(c, n)}/reject", body)


def s_missing(c: Consortium, n: int) -> Call:
    body = {"containers": [case(n)], "reason": "not on the truck"}
    return Call(tok(c, "3pl"), "POST", f"/v1/shipments/{shipped(c, n)}/missing", body)


def s_reclaim(c: Consortium, n: int) -> Call:
    org = onboarded(c, n)
    released(c, n)
    sid = f"ID-S{n}"
    c.as_("cmo").post("/v1/shipments", {"shipment_id": sid, "to_org": org, "containers": [case(n)]})
    c.net.admin.post(f"/v1/organizations/{org}/status", {"status": "suspended", "reason": "audit"})
    return Call(tok(c, "cmo"), "POST", f"/v1/shipments/{sid}/reclaim", {"containers": [case(n)]})


def s_decommission(c: Consortium, n: int) -> Call:
    released(c, n, boxed=False)
    body = {"units": units(serials(n)[:1]), "reason": "sample"}
    return Call(tok(c, "cmo"), "POST", "/v1/decommission", body)


def s_undo_decommission(c: Consortium, n: int) -> Call:
    released(c, n, boxed=False)
    c.as_("cmo").post("/v1/decommission", {"units": units(serials(n)[:1]), "reason": "sample"})
    return Call(tok(c, "cmo"), "POST", "/v1/decommission/undo", {"units": units(serials(n)[:1])})


def s_suspect(c: Consortium, n: int) -> Call:
    released(c, n, boxed=False)
    body = {"units": units(serials(n)[:1]), "reason": "seal broken"}
    return Call(tok(c, "cmo"), "POST", "/v1/suspect", body)


def s_suspect_clear(c: Consortium, n: int) -> Call:
    released(c, n, boxed=False)
    c.as_("cmo").post("/v1/suspect", {"units": units(serials(n)[:1]), "reason": "seal broken"})
    body = {"units": units(serials(n)[:1]), "reason": "seal checked"}
    return Call(tok(c, "regulator", "qp"), "POST", "/v1/suspect/clear", body)


def s_batch_suspect(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    return Call(tok(c, "regulator"), "POST", f"/v1/batches/{bid}/suspect", {"reason": "field report"})


def s_batch_suspect_clear(c: Consortium, n: int) -> Call:
    bid = batch(c, n)
    c.as_("regulator").post(f"/v1/batches/{bid}/suspect", {"reason": "field report"})
    return Call(tok(c, "regulator", "qp"), "POST", f"/v1/batches/{bid}/suspect/clear", {"reason": "checked"})


def s_dispense(c: Consortium, n: int) -> Call:
    at_pharmacy(c, n)
    return Call(tok(c, "pharmacy"), "POST", "/v1/dispense", {"units": units(serials(n)[:1])})


def s_counter_undo(c: Consortium, n: int) -> Call:
    at_pharmacy(c, n)
    c.as_("pharmacy").post("/v1/dispense", {"units": units(serials(n)[:1])})
    return Call(tok(c, "pharmacy"), "POST", "/v1/undo", {"units": units(serials(n)[:1])})


def s_capture(c: Consortium, n: int) -> Call:
    batch(c, n)
    document = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T08:00:00.000Z",
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventTime": "2026-11-25T09:00:00.000+01:00",
                    "eventTimeZoneOffset": "+01:00",
                    "epcList": [f"https://id.gs1.org/01/{JOURNEY_GTIN}/21/{s}" for s in serials(n)],
                    "action": "ADD",
                    "bizStep": "commissioning",
                    "disposition": "active",
                    "ilmd": {"cbvmda:lotNumber": f"ID-{n}", "cbvmda:itemExpirationDate": EXPIRY},
                }
            ]
        },
    }
    content = json.dumps(document).encode()
    headers = {"Content-Type": "application/ld+json"}
    return Call(tok(c, "cmo"), "POST", "/epcis/capture", content=content, headers=headers)


def s_onboard(c: Consortium, n: int) -> Call:
    body = {"gln": gln(n), "name": f"Idempotency Org {n}", "roles": ["distributor"]}
    return Call(c.net.admin_token, "POST", "/v1/organizations", body)


def s_org_status(c: Consortium, n: int) -> Call:
    org = onboarded(c, n)
    body = {"status": "suspended", "reason": "audit"}
    return Call(c.net.admin_token, "POST", f"/v1/organizations/{org}/status", body)


def s_add_key(c: Consortium, n: int) -> Call:
    return Call(tok(c, "3pl", "key_admin"), "POST", f"/v1/organizations/{c.org_ids['3pl']}/keys", {})


def s_revoke_key(c: Consortium, n: int) -> Call:
    org = c.org_ids["3pl"]
    added = c.as_("3pl", "key_admin").post(f"/v1/organizations/{org}/keys", {})
    address = added["result"]["key"]
    return Call(tok(c, "3pl", "key_admin"), "POST", f"/v1/organizations/{org}/keys/{address}/revoke")


def s_rotate_key(c: Consortium, n: int) -> Call:
    org = c.org_ids["regulator"]
    (old,) = c.as_("regulator", "key_admin").get(f"/v1/organizations/{org}")["keys"]
    return Call(tok(c, "regulator", "key_admin"), "POST", f"/v1/organizations/{org}/keys/{old}/rotate", {})


def s_relayer(c: Consortium, n: int) -> Call:
    return Call(c.net.admin_token, "POST", "/v1/relayer")


Setup = Callable[[Consortium, int], Call]
# (method, route path) -> the setup that makes the preconditions and names the request
CASES: dict[tuple[str, str], Setup] = {
    ("POST", "/v1/products"): s_products,
    ("POST", "/v1/products/{gtin}/manufacturers"): s_authorize,
    ("DELETE", "/v1/products/{gtin}/manufacturers/{org_id}"): s_revoke_manufacturer,
    ("POST", "/v1/batches"): s_batches,
    ("POST", "/v1/batches/{batch_id}/certificates"): s_certificates,
    ("POST", "/v1/batches/{batch_id}/release"): s_release,
    ("POST", "/v1/batches/{batch_id}/reject"): s_reject,
    ("POST", "/v1/batches/{batch_id}/suspend"): s_suspend,
    ("POST", "/v1/batches/{batch_id}/unsuspend"): s_unsuspend,
    ("POST", "/v1/batches/{batch_id}/recall"): s_recall,
    ("POST", "/v1/commission"): s_commission,
    ("POST", "/v1/pack"): s_pack,
    ("POST", "/v1/unpack"): s_unpack,
    ("POST", "/v1/shipments"): s_ship,
    ("POST", "/v1/shipments/{shipment_id}/receive"): s_receive,
    ("POST", "/v1/shipments/{shipment_id}/reject"): s_reject_items,
    ("POST", "/v1/shipments/{shipment_id}/missing"): s_missing,
    ("POST", "/v1/shipments/{shipment_id}/reclaim"): s_reclaim,
    ("POST", "/v1/decommission"): s_decommission,
    ("POST", "/v1/decommission/undo"): s_undo_decommission,
    ("POST", "/v1/suspect"): s_suspect,
    ("POST", "/v1/suspect/clear"): s_suspect_clear,
    ("POST", "/v1/batches/{batch_id}/suspect"): s_batch_suspect,
    ("POST", "/v1/batches/{batch_id}/suspect/clear"): s_batch_suspect_clear,
    ("POST", "/v1/dispense"): s_dispense,
    ("POST", "/v1/undo"): s_counter_undo,
    ("POST", "/epcis/capture"): s_capture,
    ("POST", "/v1/organizations"): s_onboard,
    ("POST", "/v1/organizations/{org_id}/status"): s_org_status,
    ("POST", "/v1/organizations/{org_id}/keys"): s_add_key,
    ("POST", "/v1/organizations/{org_id}/keys/{address}/revoke"): s_revoke_key,
    ("POST", "/v1/organizations/{org_id}/keys/{address}/rotate"): s_rotate_key,
    ("POST", "/v1/relayer"): s_relayer,
}
NUMBER = {route: n for n, route in enumerate(CASES, start=1)}


def succeeded(c: Consortium, call: Call, op_id: str) -> None:
    outcome = c.net.client(call.token).outcome(op_id)
    assert outcome["status"] == "succeeded", outcome


@pytest.mark.parametrize("route", list(CASES), ids=[f"{m} {p}" for m, p in CASES])
def test_a_retry_with_the_same_key_returns_the_first_operation(
    consortium: Consortium, route: tuple[str, str]
) -> None:
    net = consortium.net
    call = CASES[route](consortium, NUMBER[route])
    key = uuid.uuid4().hex
    first = send(net, call, key, wait=True)
    assert first.status_code in (200, 202), first.text
    op_id = operation_id(first)
    succeeded(consortium, call, op_id)
    before = snapshot(net)
    for wait in (False, True):
        again = send(net, call, key, wait=wait)
        assert again.status_code == 200, (wait, again.text)
        assert operation_id(again) == op_id
        if "captureID" not in again.json():
            assert (
                again.json()["status"] == "succeeded"
                and again.headers["Location"] == f"/v1/operations/{op_id}"
            )
    assert snapshot(net) == before  # no operation, transaction, block, event, alert, document or key


def header_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.header_params}
    for sub in dependant.dependencies:
        names |= header_names(sub)
    return names


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of `app.routes`, also inside included routers (FastAPI now keeps an included
    router as one entry of `app.routes`, its routes under `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from api_routes(included.routes)


WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def keyed_write_routes(net: ApiNet) -> dict[tuple[str, str], APIRoute]:
    app = create_app(net.settings, run_submitter=False)
    found: dict[tuple[str, str], APIRoute] = {}
    for route in api_routes(app.routes):
        if "Idempotency-Key" not in header_names(route.dependant):
            continue
        for method in (route.methods or set()) & WRITE_METHODS:
            found[(method, route.path)] = route
    # the published schema agrees (a route the walk above could not see would show here)
    for path, operations in app.openapi()["paths"].items():
        for method, spec in operations.items():
            names = {p["name"] for p in spec.get("parameters", []) if p.get("in") == "header"}
            if method.upper() in WRITE_METHODS and "Idempotency-Key" in names:
                assert (method.upper(), path) in found, (method, path)
    return found


def test_every_keyed_write_route_is_covered_and_checks_a_permission(net: ApiNet) -> None:
    routes = keyed_write_routes(net)
    assert len(routes) >= 30
    missing = sorted(set(routes) - set(CASES))
    assert not missing, f"write routes taking an Idempotency-Key without a replay test: {missing}"
    stale = sorted(set(CASES) - set(routes))
    assert not stale, f"covered routes that no longer take an Idempotency-Key: {stale}"
    for name, route in routes.items():  # the replay is served only after the route's own Permit
        assert [p for p in route_permits(route.dependant) if isinstance(p, Permit)], name


# ---------------------------------------------------------------------- the penetration test's cases


def burst(net: ApiNet, call: Call, key: str, n: int) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        answer = send(net, call, key)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


def test_twenty_parallel_receives_with_one_key_make_one_operation(consortium: Consortium) -> None:
    net, n = consortium.net, 90
    sid = shipped(consortium, n)
    call = Call(tok(consortium, "3pl"), "POST", f"/v1/shipments/{sid}/receive")
    key = uuid.uuid4().hex
    start = net.w3.eth.block_number + 1
    answers = burst(net, call, key, 20)
    assert len(answers) == 20
    assert all(a.status_code in (200, 202) for a in answers), [
        a.text for a in answers if a.status_code >= 300
    ]
    assert [a.status_code for a in answers].count(202) <= 1
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    (op_id,) = ids
    with Session(net.engine) as session:
        keyed = list(
            session.execute(select(Operation).where(col(Operation.idempotency_key) == key)).scalars()
        )
    assert [op.id for op in keyed] == [op_id]
    succeeded(consortium, call, op_id)
    ledger = Deployment.load(net.w3, net.manifest)["CustodyLedger"]
    receipts = ledger.events.ShipmentReceived().get_logs(from_block=start)
    assert len(receipts) == 1  # one receipt on chain

    # the client retries after the success: the first operation, not 409 nothing-pending
    again = send(net, call, key)
    assert (again.status_code, again.json()["id"]) == (200, op_id), again.text
    # the same key with another body: refused, naming the first operation
    other = Call(call.token, "POST", call.path, {"containers": [case(n)]})
    reused = send(net, other, key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["type"] == P + "idempotency-key-reused"
    assert reused.json()["operation_id"] == op_id
    # wait/timeout choose how to answer, not what to do: the same request
    waited = send(net, call, key, wait=True)
    assert (waited.status_code, waited.json()["id"], waited.json()["status"]) == (200, op_id, "succeeded")


def test_the_same_key_in_another_organisation_is_its_own(consortium: Consortium) -> None:
    net, n = consortium.net, 91
    bid = batch(consortium, n)
    key = uuid.uuid4().hex
    body = {"reason": "field report"}
    mine = send(
        net, Call(tok(consortium, "sponsor"), "POST", f"/v1/batches/{bid}/suspect", body), key, wait=True
    )
    assert mine.status_code in (200, 202), mine.text
    theirs = send(
        net, Call(tok(consortium, "regulator"), "POST", f"/v1/batches/{bid}/suspect", body), key, wait=True
    )
    # the regulator's request is judged on its own: never the sponsor's operation
    assert theirs.json().get("id") != mine.json()["id"], theirs.text
    assert theirs.json().get("operation", {}).get("id") != mine.json()["id"]
    assert theirs.json().get("operation_id") != mine.json()["id"]


def test_a_principal_without_the_permission_gets_no_replay(consortium: Consortium) -> None:
    """A viewer of the same organisation (so the same key scope) sending the operator's request with
    the operator's key: 403 like any request of theirs, not the operator's operation."""
    net, n = consortium.net, 92
    call = s_products(consortium, n)
    key = uuid.uuid4().hex
    first = send(net, call, key, wait=True)
    assert first.status_code in (200, 202), first.text
    before = snapshot(net)
    viewer = Call(tok(consortium, "sponsor", "viewer"), call.method, call.path, call.json)
    for wait in (False, True):
        refused = send(net, viewer, key, wait=wait)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == P + "forbidden" and first.json()["id"] not in refused.text
    assert snapshot(net) == before
