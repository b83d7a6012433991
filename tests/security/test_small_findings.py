"""The small findings of issue 18, each as the regression test that failed before its fix: a shipment
that a non-party may not read does not exist for its writes either; a syntax error in JSON is 400;
revoking another organisation's token tells nothing about its owner; EPCIS queries refuse what they
do not implement (QueryParameterException) and an Accept header they cannot serve (406); every 401
says how to authenticate."""

from __future__ import annotations

import httpx
import pytest

from node.ledger.journey import sscc
from tests.api.conftest import Consortium
from tests.api.test_custody import released_batch

P = "urn:rxledger:problem:"


def raw(consortium: Consortium, org: str, role: str = "operator") -> httpx.Client:
    token = consortium.tokens[(org, role)]
    return httpx.Client(base_url=consortium.net.base_url, headers={"Authorization": f"Bearer {token}"})


def test_a_non_party_gets_the_same_404_writing_a_shipment_as_reading_it(consortium: Consortium) -> None:
    cases = [sscc("4098765", 870_000 + i) for i in range(2)]
    released_batch(consortium, "SM-1", [f"SM1{i:03d}" for i in range(4)], cases)
    consortium.as_("cmo").post(
        "/v1/shipments", {"shipment_id": "SM-S1", "to_gln": consortium.glns["3pl"], "containers": cases}
    )
    outsider = raw(consortium, "pharmacy")
    read = outsider.get("/v1/shipments/SM-S1")
    assert read.status_code == 404 and read.json()["type"] == P + "unknown-shipment"
    for action, body in (
        ("receive", None),
        ("receive", {"containers": cases[:1]}),
        ("reject", {"containers": cases[:1], "reason": "x"}),
        ("missing", {"containers": cases[:1], "reason": "x"}),
        ("reclaim", {"containers": cases[:1]}),
    ):
        answer = outsider.post(f"/v1/shipments/SM-S1/{action}", json=body)
        assert (answer.status_code, answer.json()["type"]) == (404, P + "unknown-shipment"), (
            action,
            answer.text,
        )
        assert answer.json()["detail"] == read.json()["detail"]  # word for word: no oracle in the text
    nowhere = outsider.post("/v1/shipments/SM-NO-SUCH/receive")
    assert nowhere.status_code == 404 and nowhere.json()["type"] == P + "unknown-shipment"
    # the parties themselves still act on it
    assert consortium.as_("3pl").post("/v1/shipments/SM-S1/receive")["status"] == "succeeded"


def test_malformed_json_is_400_naming_the_rule(consortium: Consortium) -> None:
    for path in ("/v1/batches", "/v1/verify", "/v1/shipments"):
        answer = raw(consortium, "cmo").post(
            path, content=b'{"gtin": ', headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, (path, answer.text)
        problem = answer.json()
        assert problem["type"] == P + "malformed-json" and problem["errors"][0]["rule"] == "json_invalid"
    # well-formed JSON that breaks a rule stays 422
    invalid = raw(consortium, "cmo").post("/v1/batches", json={"gtin": "1"})
    assert invalid.status_code == 422 and invalid.json()["type"] == P + "validation"


def test_revoking_another_organisations_token_reveals_nothing(consortium: Consortium) -> None:
    admin = consortium.net.admin
    cmo_user = next(
        u for u in admin.get(f"/v1/organizations/{consortium.org_ids['cmo']}/users") if u["role"] == "viewer"
    )
    token_id = admin.get(f"/v1/users/{cmo_user['id']}/tokens")[0]["id"]
    stranger = raw(consortium, "pharmacy", "key_admin")
    answer = stranger.post(f"/v1/tokens/{token_id}/revoke")
    missing = stranger.post("/v1/tokens/999999/revoke")
    assert (answer.status_code, answer.json()["type"]) == (404, P + "unknown-token")
    assert answer.json()["field"] == "token_id" and "user" not in answer.json()["detail"]
    assert answer.json()["detail"].replace(str(token_id), "N") == missing.json()["detail"].replace(
        "999999", "N"
    )
    assert admin.get(f"/v1/users/{cmo_user['id']}/tokens")[0]["revoked_at"] is None


@pytest.mark.parametrize(
    "parameter", ["EQ_readPoint", "WD_bizLocation", "EQ_action", "orderBy", "limit", "x"]
)
def test_an_epcis_query_parameter_it_does_not_implement_is_a_query_parameter_exception(
    consortium: Consortium, parameter: str
) -> None:
    client = raw(consortium, "cmo")
    for path in ("/epcis/events", "/epcis/export"):
        answer = client.get(path, params={parameter: "urn:epc:id:sgln:4098765.00000.0"})
        assert answer.status_code == 400, (path, answer.text)
        problem = answer.json()
        assert (
            problem["type"] == "epcisException:QueryParameterException" and problem["parameter"] == parameter
        )
        assert parameter in problem["detail"]
    assert client.get("/epcis/events", params={"EQ_bizStep": "shipping", "perPage": 5}).status_code == 200


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/xml", 406),
        ("text/html", 406),
        ("application/json;q=0, application/xml", 406),
        ("application/json", 200),
        ("application/ld+json", 200),
        ("application/xml, application/json;q=0.5", 200),
        ("*/*", 200),
        ("", 200),
    ],
)
def test_epcis_answers_406_to_an_accept_it_cannot_serve(
    consortium: Consortium, accept: str, status: int
) -> None:
    answer = raw(consortium, "cmo").get("/epcis/events", headers={"Accept": accept})
    assert answer.status_code == status, answer.text
    if status == 406:
        assert answer.json()["type"] == P + "not-acceptable"


def test_every_401_says_how_to_authenticate(consortium: Consortium) -> None:
    base = consortium.net.base_url
    for headers in ({}, {"Authorization": "Bearer rxl_not-a-token"}, {"Authorization": "Basic eDp5"}):
        for method, path in (("GET", "/v1/inventory"), ("POST", "/v1/verify"), ("GET", "/epcis/events")):
            answer = httpx.request(
                method, base + path, headers=headers, json={} if method == "POST" else None
            )
            assert answer.status_code == 401, (headers, path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer"), (headers, path)
