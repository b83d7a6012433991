"""GS1 identifiers through the API: the parse endpoint, product master data for EPC URIs, and scans
accepted wherever a pack or a case is named."""

from __future__ import annotations

import pytest

from api.client import ApiProblem
from node.deploy import Deployment
from node.gs1.scan import GS
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import Consortium

P = "urn:rxledger:problem:"


def test_parse_gives_every_form_and_the_key(consortium: Consortium) -> None:
    viewer = consortium.as_("pharmacy", "viewer")
    scan = f"]d201{JOURNEY_GTIN}17281200{GS}10L7{GS}21PK1"
    got = viewer.post("/v1/identifiers/parse", {"input": scan}, wait=False)
    assert (got["kind"], got["gtin"], got["serial"], got["lot"]) == ("sgtin", JOURNEY_GTIN, "PK1", "L7")
    assert got["expiry"] == "2028-12-31" and got["attributes"] == {"17": "281200"}
    assert got["key"] == "0x" + unit_key(JOURNEY_GTIN, "PK1").hex()
    assert got["digital_link"] == f"https://id.gs1.org/01/{JOURNEY_GTIN}/10/L7/21/PK1?17=281200"
    for form in (got["digital_link"], got["hri"], got["element_string"]):
        again = viewer.post("/v1/identifiers/parse", {"input": form}, wait=False)
        assert again["key"] == got["key"]
    with pytest.raises(ApiProblem) as caught:
        viewer.post("/v1/identifiers/parse", {"input": f"(01){JOURNEY_GTIN[:-1]}9(21)PK1"}, wait=False)
    assert caught.value.status == 422 and caught.value.type == P + "invalid-identifier"
    assert caught.value.body["part"] == "GTIN check digit" and caught.value.body["field"] == "input"


def test_master_data_gives_epc_uris(consortium: Consortium) -> None:
    sponsor, cmo = consortium.as_("sponsor"), consortium.as_("cmo")
    denied = cmo.http.put(  # only the product's sponsor keeps its master data
        f"/v1/products/{JOURNEY_GTIN}/master-data",
        json={"company_prefix_length": 7},
        headers={"Authorization": f"Bearer {cmo.token}"},
    )
    assert denied.status_code == 403
    response = sponsor.http.put(
        f"/v1/products/{JOURNEY_GTIN}/master-data",
        json={"company_prefix_length": 7, "name": "Demo tablets 20 mg"},
        headers={"Authorization": f"Bearer {sponsor.token}"},
    )
    assert response.status_code == 200, response.text
    got = sponsor.post("/v1/identifiers/parse", {"input": f"(01){JOURNEY_GTIN}(21)A/B"}, wait=False)
    assert got["epc_uri"] == "urn:epc:id:sgtin:9506000.013435.A%2FB" and got["company_prefix_length"] == 7
    back = sponsor.post("/v1/identifiers/parse", {"input": got["epc_uri"]}, wait=False)
    assert back["key"] == got["key"]


def test_scans_are_accepted_for_packs_and_cases(consortium: Consortium) -> None:
    cmo, cmo_qp, sponsor_qp = (
        consortium.as_("cmo"),
        consortium.as_("cmo", "qp"),
        consortium.as_("sponsor", "qp"),
    )
    body = {"gtin": JOURNEY_GTIN, "lot": "SCAN-1", "expiry": "2029-06-30", "site_gln": SITE_GLN}
    bid = cmo.post("/v1/batches", body)["result"]["batch_id"]
    case = sscc("4098765", 860_000)
    cmo.post("/v1/commission", {"batch_id": bid, "serials": ["SC1", "SC2"], "containers": [f"(00){case}"]})
    cmo_qp.post(f"/v1/batches/{bid}/certificates", files={"file": ("coa", b"CoA SCAN-1")})
    doc = sponsor_qp.post("/v1/documents", wait=False, files={"file": ("qp", b"QP SCAN-1")})
    sponsor_qp.post(
        f"/v1/batches/{bid}/release",
        {
            "meaning": "released",
            "signature": consortium.signature("sponsor"),
            "qp_certificate_sha256": doc["document_sha256"],
        },
    )
    cmo.post("/v1/unpack", {"container": f"urn:epc:id:sscc:4098765.0000{860_000:06d}"})
    scanned = f"]d201{JOURNEY_GTIN}17290600{GS}10SCAN-1{GS}21SC1"
    done = cmo.post("/v1/decommission", {"units": [{"scan": scanned}], "reason": "sample"})
    assert done["status"] == "succeeded"
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, "SC1")).call()[1] == UnitState.SAMPLE
    for bad, message in (
        ({"scan": f"(00){case}"}, "not a pack"),
        ({"scan": f"(01){JOURNEY_GTIN}(21)SC2(21)SC3"}, "AI 21: appears twice"),
        ({"scan": "x", "gtin": JOURNEY_GTIN}, "either scan"),
    ):
        with pytest.raises(ApiProblem) as caught:
            cmo.post("/v1/decommission", {"units": [bad], "reason": "sample"})
        assert caught.value.status == 422 and caught.value.body["errors"][0]["field"] == "body.units.0"
        assert message in caught.value.body["errors"][0]["message"]
