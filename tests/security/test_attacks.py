"""Attacks through the API, each refused with the right status and nothing changed (checked on chain
or in the operations, not only in the answer): another organisation's goods, a replayed signature,
a suspended organisation, a revoked key, and hostile input (deep nesting, injection and traversal
strings, absurd sizes, malformed EPCIS)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from eth_account import Account
from sqlalchemy import func, select
from sqlmodel import Session
from web3 import Web3

from api.client import ApiProblem
from api.models import Operation
from node.deploy import Deployment
from node.ledger.identifiers import container_key, unit_key, with_check_digit
from node.ledger.journey import JOURNEY_GTIN, sscc
from tests.api.conftest import Consortium
from tests.api.test_custody import released_batch
from tests.api.test_external_signer import sign

P = "urn:rxledger:problem:"


def operations(consortium: Consortium) -> int:
    with Session(consortium.net.engine) as session:
        return int(session.execute(select(func.count()).select_from(Operation)).scalar_one())


def holder_of_case(consortium: Consortium, case: str) -> int:
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    return int(ledger.functions.container(container_key(case)).call()[3])  # ContainerView.holder


def refused(call: Any) -> ApiProblem:
    with pytest.raises(ApiProblem) as caught:
        call()
    return caught.value


def test_another_organisations_goods_are_not_theirs_to_move(consortium: Consortium) -> None:
    case = sscc("4098765", 970_000)
    released_batch(consortium, "AT-1", ["AT1A", "AT1B"], [case])
    cmo_org = consortium.org_ids["cmo"]
    assert holder_of_case(consortium, case) == cmo_org
    before = operations(consortium)
    tpl, pharmacy = consortium.as_("3pl"), consortium.as_("pharmacy")
    attempts = {
        "ship another's case": lambda: tpl.post(
            "/v1/shipments", {"to_gln": consortium.glns["distributor"], "containers": [case]}
        ),
        "unpack another's case": lambda: tpl.post("/v1/unpack", {"container": case}),
        "dispense another's pack": lambda: pharmacy.post(
            "/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "AT1A"}]}
        ),
        "flag nothing of one's own as destroyed": lambda: pharmacy.post(
            "/v1/decommission", {"units": [{"gtin": JOURNEY_GTIN, "serial": "AT1B"}], "reason": "destroyed"}
        ),
    }
    for name, attempt in attempts.items():
        problem = refused(attempt)
        # "not yours" first: before the holder, the contract checks packed and in transit, which
        # would tell a stranger about someone else's goods (the packs are in the CMO's case)
        assert problem.status == 409, (name, problem.body)
        assert problem.body["type"] == P + "not-holder", (name, problem.body)
    assert operations(consortium) == before  # refused by the pre-check: nothing accepted
    assert holder_of_case(consortium, case) == cmo_org
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, "AT1A")).call()[1] == 1  # still active

    # a shipment between others is not found by a third party, and its inventory is its own
    consortium.as_("cmo").post(
        "/v1/shipments", {"shipment_id": "AT-S1", "to_gln": consortium.glns["3pl"], "containers": [case]}
    )
    assert refused(lambda: consortium.as_("distributor").get("/v1/shipments/AT-S1")).status == 404
    in_transit = refused(
        lambda: pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "AT1A"}]})
    )
    assert (in_transit.status, in_transit.body["type"]) == (409, P + "not-holder"), in_transit.body
    assert case not in {c["sscc"] for c in consortium.as_("distributor").get("/v1/inventory")["containers"]}
    # receiving a shipment addressed to someone else
    before = operations(consortium)
    problem = refused(lambda: consortium.as_("distributor").post("/v1/shipments/AT-S1/receive"))
    assert problem.status in (403, 404, 409)
    assert operations(consortium) == before
    # the addressee refuses it, so no shipment is left pending for the other tests
    consortium.as_("3pl").post("/v1/shipments/AT-S1/reject", {"containers": [case], "reason": "test over"})
    assert holder_of_case(consortium, case) == cmo_org


def test_a_used_signature_cannot_be_replayed(consortium: Consortium) -> None:
    """An external signer's signature for one operation, posted again for a second identical one:
    the nonce inside the signed data differs, so it is refused and nothing is relayed."""
    net, admin = consortium.net, consortium.net.admin
    admin.post("/v1/relayer", {})
    key = Account.create()
    gln = with_check_digit("400000970000")
    admin.post(
        "/v1/organizations",
        {
            "gln": gln,
            "name": "Replay Target SA",
            "roles": ["sponsor"],
            "key": {"mode": "external", "address": key.address},
        },
    )
    org_id = next(o["id"] for o in admin.get("/v1/organizations") if o["gln"] == gln)
    user = admin.post(
        f"/v1/organizations/{org_id}/users",
        {"username": "replay.op", "printed_name": "Op", "role": "operator"},
        wait=False,
    )
    client = net.client(user["token"]["token"])
    first = client.post("/v1/products", {"gtin": with_check_digit("0950600097000")}, wait=False)
    (typed,) = first["to_sign"]
    signature = sign(key.key, typed)
    done = client.post(f"/v1/operations/{first['id']}/signatures", {"signatures": [signature]})
    assert done["status"] == "succeeded"

    second = client.post("/v1/products", {"gtin": with_check_digit("0950600097001")}, wait=False)
    problem = refused(
        lambda: client.post(
            f"/v1/operations/{second['id']}/signatures", {"signatures": [signature]}, wait=False
        )
    )
    assert problem.status == 422 and problem.body["type"] == P + "invalid-signature"
    assert client.get(f"/v1/operations/{second['id']}")["status"] == "awaiting_signatures"
    # and the same operation's signature posted twice is not relayed twice
    twice = refused(
        lambda: client.post(
            f"/v1/operations/{first['id']}/signatures", {"signatures": [signature]}, wait=False
        )
    )
    assert twice.status == 409 and twice.body["type"] == P + "not-awaiting-signatures"
    assert client.get(f"/v1/operations/{first['id']}")["transactions"] == done["transactions"]


def test_a_suspended_organisation_is_refused_until_reactivated(consortium: Consortium) -> None:
    admin = consortium.net.admin
    gln = with_check_digit("400000970001")
    admin.post("/v1/organizations", {"gln": gln, "name": "Suspended Wholesale", "roles": ["distributor"]})
    org_id = next(o["id"] for o in admin.get("/v1/organizations") if o["gln"] == gln)
    user = admin.post(
        f"/v1/organizations/{org_id}/users",
        {"username": "suspended.op", "printed_name": "Op", "role": "operator"},
        wait=False,
    )
    client = consortium.net.client(user["token"]["token"])
    assert client.get("/v1/inventory")["org_id"] == org_id
    admin.post(f"/v1/organizations/{org_id}/status", {"status": "suspended", "reason": "licence lapsed"})
    before = operations(consortium)
    problem = refused(lambda: client.post("/v1/pack", {"container": sscc("4098765", 970_100), "units": []}))
    assert problem.status == 403 and problem.body["type"] == P + "forbidden"
    assert "not active" in problem.body["detail"]
    assert refused(lambda: client.get("/v1/inventory")).status == 403
    assert operations(consortium) == before
    admin.post(f"/v1/organizations/{org_id}/status", {"status": "active", "reason": "licence renewed"})
    assert client.get("/v1/inventory")["org_id"] == org_id


def test_a_revoked_key_signs_nothing(consortium: Consortium) -> None:
    """An organisation whose only key was revoked: its writes are refused before anything is sent."""
    admin = consortium.net.admin
    gln = with_check_digit("400000970002")
    admin.post("/v1/organizations", {"gln": gln, "name": "Revoked Key Pharmacy", "roles": ["dispenser"]})
    org = next(o for o in admin.get("/v1/organizations") if o["gln"] == gln)
    (key,) = (Web3.to_checksum_address(k) for k in org["keys"])
    admin.post(f"/v1/organizations/{org['id']}/keys/{key}/revoke", {"reason": "laptop stolen"})
    user = admin.post(
        f"/v1/organizations/{org['id']}/users",
        {"username": "revoked.op", "printed_name": "Op", "role": "operator"},
        wait=False,
    )
    client = consortium.net.client(user["token"]["token"])
    nonce = consortium.net.w3.eth.get_transaction_count(key)
    problem = refused(lambda: client.post("/v1/pack", {"container": sscc("4098765", 970_101), "units": []}))
    assert 400 <= problem.status < 500
    assert consortium.net.w3.eth.get_transaction_count(key) == nonce


@pytest.mark.parametrize(
    "hostile",
    [
        "' OR 1=1 --",
        "'; DROP TABLE api_operations; --",
        "../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "\u202e\u0000",
        "<script>alert(1)</script>",
    ],
)
def test_injection_and_traversal_strings_are_refused_cleanly(consortium: Consortium, hostile: str) -> None:
    http = httpx.Client(
        base_url=consortium.net.base_url,
        headers={"Authorization": f"Bearer {consortium.tokens[('regulator', 'viewer')]}"},
    )
    before = operations(consortium)
    quoted = quote(hostile, safe="")
    answers = [
        http.get(f"/v1/provenance/{quoted}"),
        http.get(f"/v1/documents/{quoted}"),
        http.get(f"/v1/shipments/{quoted}"),
        http.get(f"/v1/batches/{quoted}"),
        http.get("/v1/batches", params={"lot": hostile}),
        http.get("/epcis/events", params={"MATCH_anyEPC": hostile}),
        http.post("/v1/verify", json={"code": hostile}),
        http.post("/v1/identifiers/parse", json={"code": hostile}),
    ]
    for answer in answers:
        assert answer.status_code < 500, (answer.request.url, answer.text)
        if answer.status_code >= 400:
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert "Traceback" not in answer.text and "root:" not in answer.text
    with Session(consortium.net.engine) as session:  # the tables are all still there
        assert session.execute(select(func.count()).select_from(Operation)).scalar_one() == before


def test_deep_nesting_absurd_sizes_and_malformed_epcis_are_refused(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    http = httpx.Client(
        base_url=consortium.net.base_url,
        headers={"Authorization": f"Bearer {consortium.tokens[('cmo', 'operator')]}"},
    )
    before = operations(consortium)
    nested = "[" * 100_000 + "]" * 100_000
    deep = http.post("/v1/commission", content=nested, headers={"Content-Type": "application/json"})
    assert deep.status_code in (400, 413, 422), deep.text[:200]
    deep_epcis = http.post(
        "/epcis/capture",
        content='{"a":' * 50_000 + "1" + "}" * 50_000,
        headers={"Content-Type": "application/json"},
    )
    assert deep_epcis.status_code in (400, 413, 422), deep_epcis.text[:200]
    bid = cmo.get("/v1/batches", limit=1)[0]["batch_id"]
    absurd = http.post("/v1/commission", json={"batch_id": bid, "serials": ["X"] * 100_001, "containers": []})
    assert absurd.status_code in (413, 422)
    for document in (
        {"@context": "nonsense", "type": "EPCISDocument"},
        {
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "yesterday",
            "epcisBody": {"eventList": [{}]},
        },
        [1, 2, 3],
        "just a string",
    ):
        answer = http.post(
            "/epcis/capture", content=json.dumps(document), headers={"Content-Type": "application/json"}
        )
        assert answer.status_code in (400, 415, 422), answer.text[:200]
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert operations(consortium) == before
