"""Bad requests get an RFC 9457 problem naming the field and the rule, and change nothing: no
operation, no transaction. Rules the contracts enforce are refused before sending (pre-check by
simulation) with the same problem type the contract's custom error maps to."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from api.client import ApiProblem, RxClient
from api.models import Operation
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import ApiNet, Consortium, api_settings, serve, stop_server

P = "urn:rxledger:problem:"


def operations(net: ApiNet) -> int:
    with Session(net.engine) as session:
        return int(session.execute(select(func.count()).select_from(Operation)).scalar_one())


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["type"].startswith(("urn:rxledger:problem:", "about:blank"))
    return body


@dataclass
class Stock:
    quarantined: str  # batch id, not released
    released: str
    q_cases: list[str]
    r_cases: list[str]
    r_serials: list[str]


@pytest.fixture(scope="module")
def stock(consortium: Consortium) -> Stock:
    cmo, sponsor_qp = consortium.as_("cmo"), consortium.as_("sponsor", "qp")
    ids = []
    for lot in ("ERR-Q", "ERR-R"):
        body = {"gtin": JOURNEY_GTIN, "lot": lot, "expiry": "2029-03-31", "site_gln": SITE_GLN}
        ids.append(cmo.post("/v1/batches", body)["result"]["batch_id"])
    q_cases = [sscc("4098765", 830_000 + i) for i in range(2)]
    r_cases = [sscc("4098765", 831_000 + i) for i in range(2)]
    r_serials = [f"ER{i:04d}" for i in range(10)]
    cmo.post(
        "/v1/commission",
        {"batch_id": ids[0], "serials": [f"EQ{i:04d}" for i in range(10)], "containers": q_cases},
    )
    cmo.post("/v1/commission", {"batch_id": ids[1], "serials": r_serials, "containers": r_cases})
    consortium.as_("cmo", "qp").post(
        f"/v1/batches/{ids[1]}/certificates", files={"file": ("coa.txt", b"CoA ERR-R", "text/plain")}
    )
    doc = sponsor_qp.post("/v1/documents", wait=False, files={"file": ("qp.txt", b"QP ERR-R", "text/plain")})
    decision = {
        "meaning": "released",
        "signature": consortium.signature("sponsor"),
        "qp_certificate_sha256": doc["document_sha256"],
    }
    sponsor_qp.post(f"/v1/batches/{ids[1]}/release", decision)
    return Stock(ids[0], ids[1], q_cases, r_cases, r_serials)


def refused(net: ApiNet, client: RxClient, path: str, body: Any, status: int, rule: str) -> dict[str, Any]:
    """POST `body`, expect a problem of `rule` with `status`, and no operation created."""
    before = operations(net)
    response = client.http.post(path, json=body, headers={"Authorization": f"Bearer {client.token}"})
    got = problem(response)
    assert (response.status_code, got["type"]) == (status, P + rule), got
    assert operations(net) == before
    return got


def test_malformed_json_names_the_rule(consortium: Consortium) -> None:
    client = consortium.as_("cmo")
    response = client.http.post(
        "/v1/batches",
        content=b"{not json",
        headers={"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
    )
    got = problem(response)
    # a syntax error is 400 (issue 18: it was 422, which means "understood but invalid")
    assert response.status_code == 400 and got["type"] == P + "malformed-json"
    assert got["errors"][0]["rule"] == "json_invalid"


def test_wrong_check_digit_is_422_naming_the_field(consortium: Consortium) -> None:
    body = {"gtin": "09506000134353", "lot": "X", "expiry": "2029-01-31", "site_gln": SITE_GLN}
    got = refused(consortium.net, consortium.as_("cmo"), "/v1/batches", body, 422, "validation")
    assert got["errors"][0]["field"] == "body.gtin"
    assert "check digit" in got["errors"][0]["message"]


def test_unknown_ids_are_404(consortium: Consortium) -> None:
    net = consortium.net
    unknown = "0x" + "ab" * 32
    got = refused(
        net,
        consortium.as_("cmo"),
        "/v1/commission",
        {"batch_id": unknown, "serials": ["A"]},
        404,
        "unknown-batch",
    )
    assert got["field"] == "batch_id"
    response = consortium.as_("cmo").http.get(
        f"/v1/batches/{unknown}", headers={"Authorization": f"Bearer {consortium.tokens[('cmo', 'viewer')]}"}
    )
    assert problem(response)["type"] == P + "unknown-batch"
    ship = {"to_gln": "4000001000005", "shipment_id": "NOPE", "containers": []}
    refused(
        net, consortium.as_("3pl"), "/v1/shipments/NOPE/receive", ship | {"containers": []}, 422, "validation"
    )


def test_duplicate_serial_in_the_request(consortium: Consortium, stock: Stock) -> None:
    body = {"batch_id": stock.quarantined, "serials": ["D1", "D2", "D1"]}
    got = refused(consortium.net, consortium.as_("cmo"), "/v1/commission", body, 422, "duplicate-serial")
    assert got["field"] == "serials[2]"


def test_duplicate_serial_on_chain_is_refused_before_sending(consortium: Consortium, stock: Stock) -> None:
    body = {"batch_id": stock.released, "serials": ["NEW-1", stock.r_serials[3]]}
    got = refused(consortium.net, consortium.as_("cmo"), "/v1/commission", body, 409, "duplicate-serial")
    assert got["field"] == "serials[1]" and got["item"]["serial"] == stock.r_serials[3]
    assert got["error"] == "DuplicateSerial"


def test_not_holder(consortium: Consortium, stock: Stock) -> None:
    body = {"to_gln": consortium.glns["distributor"], "containers": [stock.r_cases[0]]}
    got = refused(consortium.net, consortium.as_("pharmacy"), "/v1/shipments", body, 409, "not-holder")
    assert got["field"] == "containers[0]" and got["item"]["sscc"] == stock.r_cases[0]
    assert f"organisation {consortium.org_ids['cmo']}" in got["detail"]


def test_batch_not_released(consortium: Consortium, stock: Stock) -> None:
    body = {"to_gln": consortium.glns["3pl"], "containers": [stock.q_cases[0]]}
    got = refused(consortium.net, consortium.as_("cmo"), "/v1/shipments", body, 409, "batch-not-released")
    assert "not been released" in got["detail"]


def test_already_dispensed(consortium: Consortium, stock: Stock) -> None:
    cmo = consortium.as_("cmo")
    unit = {"gtin": JOURNEY_GTIN, "serial": stock.r_serials[0]}
    cmo.post("/v1/unpack", {"container": stock.r_cases[0], "units": [unit]})
    cmo.post("/v1/decommission", {"units": [unit], "reason": "sample"})
    got = refused(
        consortium.net,
        cmo,
        "/v1/decommission",
        {"units": [unit], "reason": "sample"},
        409,
        "already-decommissioned",
    )
    assert got["field"] == "units[0]"


def test_wrong_signature_credential_changes_nothing(consortium: Consortium, stock: Stock) -> None:
    body = {"meaning": "recalled", "signature": {"username": "sponsor.qp", "credential": "wrong"}}
    path = f"/v1/batches/{stock.released}/recall"
    got = refused(
        consortium.net, consortium.as_("sponsor", "qp"), path, body, 401, "signature-credential-invalid"
    )
    assert got["field"] == "signature"
    assert consortium.as_("sponsor").get(f"/v1/batches/{stock.released}")["status"] == "released"


def test_registering_a_registered_product_is_refused_before_sending(consortium: Consortium) -> None:
    # (a rule broken only at send time answers a waiting client the same way: see tests/api/test_outbox.py)
    with pytest.raises(ApiProblem) as caught:
        consortium.as_("sponsor").post("/v1/products", {"gtin": JOURNEY_GTIN})
    assert caught.value.status == 409 and caught.value.type == P + "product-exists"


@pytest.fixture
def small_api(net: ApiNet) -> Iterator[str]:
    """A second API process on the same database and chain that takes at most 2 KB per request."""
    settings = api_settings(net.tmp, net.settings.rpc_url, max_request_bytes=2048)
    server, thread, base = serve(settings, run_submitter=False)
    yield base
    stop_server(server, thread)


def test_oversize_payload_is_413(consortium: Consortium, stock: Stock, small_api: str) -> None:
    before = operations(consortium.net)
    token = consortium.tokens[("cmo", "operator")]
    body = json.dumps({"batch_id": stock.released, "serials": [f"BIG{i:05d}" for i in range(1000)]})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    response = httpx.post(f"{small_api}/v1/commission", content=body, headers=headers)
    assert response.status_code == 413 and problem(response)["type"] == P + "payload-too-large"
    # without a Content-Length (chunked), the limit is enforced while the body streams in
    parts = iter([body[:1500].encode(), body[1500:].encode()])
    chunked = httpx.post(f"{small_api}/v1/commission", content=parts, headers=headers)
    assert chunked.status_code == 413 and problem(chunked)["type"] == P + "payload-too-large"
    assert operations(consortium.net) == before


def test_unauthenticated_and_revoked_tokens(consortium: Consortium) -> None:
    net = consortium.net
    anonymous = httpx.get(f"{net.base_url}/v1/batches")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    assert problem(anonymous)["type"] == P + "unauthenticated"
    bogus = httpx.get(f"{net.base_url}/v1/batches", headers={"Authorization": "Bearer rxl_nope"})
    assert problem(bogus)["type"] == P + "invalid-token"
    org = consortium.org_ids["pharmacy"]
    keys = consortium.as_("pharmacy", "key_admin")
    user = keys.post(
        f"/v1/organizations/{org}/users",
        {"username": "pharmacy.temp", "printed_name": "Temp", "role": "viewer"},
        wait=False,
    )
    token = user["token"]
    assert RxClient(net.base_url, token["token"]).get("/v1/me")["user"]["username"] == "pharmacy.temp"
    keys.post(f"/v1/tokens/{token['id']}/revoke", wait=False)
    revoked = httpx.get(f"{net.base_url}/v1/me", headers={"Authorization": f"Bearer {token['token']}"})
    assert problem(revoked)["type"] == P + "token-revoked"
    short = keys.post(f"/v1/users/{user['user']['id']}/tokens", {"label": "x", "ttl_days": 1}, wait=False)
    assert short["token"] and short["expires_at"] > short["created_at"]
    listed = keys.get(f"/v1/users/{user['user']['id']}/tokens")
    assert all(t["token"] is None for t in listed)  # never shown again


def test_repeated_bad_tokens_are_rate_limited_per_client(consortium: Consortium) -> None:
    """Past the limit of failed authentications in the window: 429 with Retry-After, for a bad token
    from that address, until the window has passed. Requests without a token do not count."""
    net = consortium.net
    settings = api_settings(
        net.tmp, net.settings.rpc_url, auth_failure_limit=5, auth_failure_window_seconds=3
    )
    server, thread, base = serve(settings, run_submitter=False)
    try:
        good = {"Authorization": f"Bearer {consortium.tokens[('pharmacy', 'viewer')]}"}
        for _ in range(8):
            assert httpx.get(f"{base}/v1/me").status_code == 401  # no token: not a guess
        started = time.monotonic()
        for i in range(5):
            bad = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer rxl_guess{i}"})
            assert problem(bad)["type"] == P + "invalid-token"
        limited = httpx.get(f"{base}/v1/me", headers={"Authorization": "Bearer rxl_guess6"})
        assert limited.status_code == 429
        assert problem(limited)["type"] == P + "too-many-failed-authentications"
        assert 1 <= int(limited.headers["retry-after"]) <= 3
        assert httpx.get(f"{base}/v1/me", headers=good).status_code == 200  # a valid token is served
        braked = httpx.get(f"{base}/v1/me", headers={"Authorization": "Bearer rxl_guess7"})
        assert braked.status_code == 429  # ... while a bad one from the same address stays braked
        time.sleep(max(0.0, started + 3.5 - time.monotonic()))
        assert httpx.get(f"{base}/v1/me", headers=good).status_code == 200
    finally:
        stop_server(server, thread)
