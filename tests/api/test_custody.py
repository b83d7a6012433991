"""Custody and quality flows beyond the standard journey, through the API: partial receipt with
missing and refused items, undo of a decommissioning, suspect flags, e-signed suspension and recall,
certificate verification and download rights, key rotation, and a large split commissioning."""

from __future__ import annotations

import hashlib

import pytest

from api.client import ApiProblem
from node.deploy import Deployment
from node.ledger.constants import SuspectStatus
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import Consortium

P = "urn:rxledger:problem:"


def released_batch(consortium: Consortium, lot: str, serials: list[str], cases: list[str]) -> str:
    cmo, cmo_qp, sponsor_qp = (
        consortium.as_("cmo"),
        consortium.as_("cmo", "qp"),
        consortium.as_("sponsor", "qp"),
    )
    body = {"gtin": JOURNEY_GTIN, "lot": lot, "expiry": "2029-09-30", "site_gln": SITE_GLN}
    bid: str = cmo.post("/v1/batches", body)["result"]["batch_id"]
    cmo_qp.post(
        f"/v1/batches/{bid}/certificates", files={"file": ("coa.txt", f"CoA {lot}".encode(), "text/plain")}
    )
    cmo.post("/v1/commission", {"batch_id": bid, "serials": serials, "containers": cases})
    doc = sponsor_qp.post(
        "/v1/documents", wait=False, files={"file": ("qp.txt", f"QP {lot}".encode(), "text/plain")}
    )
    decision = {
        "meaning": "released for sale",
        "signature": consortium.signature("sponsor"),
        "qp_certificate_sha256": doc["document_sha256"],
    }
    sponsor_qp.post(f"/v1/batches/{bid}/release", decision)
    return bid


def units(serials: list[str]) -> list[dict[str, str]]:
    return [{"gtin": JOURNEY_GTIN, "serial": s} for s in serials]


def test_partial_receipt_missing_and_refused_items(consortium: Consortium) -> None:
    cases = [sscc("4098765", 840_000 + i) for i in range(4)]
    released_batch(consortium, "CU-1", [f"CU1{i:03d}" for i in range(8)], cases)
    cmo, tpl = consortium.as_("cmo"), consortium.as_("3pl")
    cmo.post("/v1/shipments", {"shipment_id": "CU-S1", "to_gln": consortium.glns["3pl"], "containers": cases})
    tpl.post("/v1/shipments/CU-S1/receive", {"containers": cases[:2]})
    tpl.post("/v1/shipments/CU-S1/missing", {"containers": [cases[2]], "reason": "not on the truck"})
    tpl.post("/v1/shipments/CU-S1/reject", {"containers": [cases[3]], "reason": "damaged"})
    shipment = tpl.get("/v1/shipments/CU-S1")
    assert (shipment["received"], shipment["missing"], shipment["rejected"], shipment["pending"]) == (
        2,
        1,
        1,
        0,
    )
    assert shipment["closed"] is True
    outcomes = {i["sscc"]: i["outcome"] for i in shipment["item_list"]}
    assert outcomes == {cases[0]: "received", cases[1]: "received", cases[2]: "missing", cases[3]: "rejected"}
    held_by_3pl = {c["sscc"] for c in tpl.get("/v1/inventory")["containers"]}
    held_by_cmo = {c["sscc"] for c in cmo.get("/v1/inventory")["containers"]}
    assert set(cases[:2]) <= held_by_3pl and {cases[2], cases[3]} <= held_by_cmo
    assert not tpl.get("/v1/shipments")  # nothing pending inbound any more
    with pytest.raises(ApiProblem) as caught:
        tpl.post("/v1/shipments/CU-S1/receive")
    assert caught.value.type == P + "nothing-pending"


def test_undo_suspect_and_e_signed_recall(consortium: Consortium) -> None:
    serials = [f"CU2{i:03d}" for i in range(4)]
    case = sscc("4098765", 841_000)
    bid = released_batch(consortium, "CU-2", serials, [case])
    cmo, regulator = consortium.as_("cmo"), consortium.as_("regulator", "qp")
    cmo.post("/v1/unpack", {"container": case})
    cmo.post("/v1/decommission", {"units": units(serials[:1]), "reason": "sample"})
    cmo.post("/v1/decommission/undo", {"units": units(serials[:1])})
    suite = Deployment.load(consortium.net.w3, consortium.net.manifest)
    ledger = suite["CustodyLedger"]
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, serials[0])).call()[1] == 1  # active again
    with pytest.raises(ApiProblem) as caught:  # only the holder (or sponsor, maker, regulator) may flag
        consortium.as_("3pl").post("/v1/suspect", {"units": units(serials[1:2]), "reason": "seal broken"})
    assert (caught.value.status, caught.value.type) == (403, P + "not-authorized-for-suspect")
    assert caught.value.body["item"]["serial"] == serials[1]
    cmo.post("/v1/suspect", {"units": units(serials[1:2]), "reason": "seal broken"})
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, serials[1])).call()[2] == SuspectStatus.SUSPECT
    regulator.post("/v1/suspect/clear", {"units": units(serials[1:2]), "reason": "seal checked"})
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, serials[1])).call()[2] == SuspectStatus.NOT_SUSPECT
    sponsor_qp = consortium.as_("sponsor", "qp")
    for action, status in (("suspend", "suspended"), ("unsuspend", "released"), ("recall", "recalled")):
        body = {
            "meaning": f"{action} batch",
            "reason": "field alert",
            "signature": consortium.signature("sponsor"),
        }
        assert sponsor_qp.post(f"/v1/batches/{bid}/{action}", body)["status"] == "succeeded"
        assert sponsor_qp.get(f"/v1/batches/{bid}")["status"] == status
    history = sponsor_qp.get(f"/v1/batches/{bid}")["history"]
    recall = history[-1]
    assert recall["signature"]["action"] == "recall" and recall["signature"]["reason"] == "field alert"
    assert recall["signature"]["username"] == "sponsor.qp"
    # the on-chain reasonHash is the signature record's hash
    assert recall["reason_hash"].startswith("0x") and len(recall["reason_hash"]) == 66


def test_certificates_verify_and_download_rights(consortium: Consortium) -> None:
    bid = released_batch(consortium, "CU-3", ["CU3000", "CU3001"], [sscc("4098765", 842_000)])
    coa = b"CoA CU-3"
    sha = "0x" + hashlib.sha256(coa).hexdigest()
    pharmacy = consortium.as_("pharmacy", "viewer")
    verdict = pharmacy.post(f"/v1/batches/{bid}/certificates/verify", wait=False, files={"file": ("x", coa)})
    assert verdict["anchored"] is True and verdict["certificates"][0]["kind"] == "analysis"
    forged = pharmacy.post(
        f"/v1/batches/{bid}/certificates/verify", wait=False, files={"file": ("x", b"CoA CU-4")}
    )
    assert forged["anchored"] is False
    sponsor = consortium.as_("sponsor", "viewer")
    headers = {"Authorization": f"Bearer {sponsor.token}"}
    download = sponsor.http.get(f"/v1/documents/{sha}", headers=headers)
    assert download.status_code == 200 and download.content == coa
    denied = pharmacy.http.get(f"/v1/documents/{sha}", headers={"Authorization": f"Bearer {pharmacy.token}"})
    assert denied.status_code == 403
    regulator = consortium.as_("regulator", "viewer")
    got = regulator.http.get(f"/v1/documents/{sha}", headers={"Authorization": f"Bearer {regulator.token}"})
    assert got.status_code == 200


def test_key_rotation_then_writes_use_the_new_key(consortium: Consortium) -> None:
    org = consortium.org_ids["distributor"]
    keys = consortium.as_("distributor", "key_admin")
    (old,) = keys.get(f"/v1/organizations/{org}")["keys"]
    rotated = keys.post(f"/v1/organizations/{org}/keys/{old}/rotate", {})
    assert rotated["status"] == "succeeded"
    new = rotated["result"]["key"]
    listed = [k.lower() for k in keys.get(f"/v1/organizations/{org}")["keys"]]
    assert listed == [new.lower()]
    serials = [f"CU5{i:03d}" for i in range(2)]
    case = sscc("4098765", 843_000)
    released_batch(consortium, "CU-5", serials, [case])
    consortium.as_("cmo").post(
        "/v1/shipments",
        {"shipment_id": "CU-S5", "to_gln": consortium.glns["distributor"], "containers": [case]},
    )
    received = consortium.as_("distributor").post("/v1/shipments/CU-S5/receive")
    tx = consortium.net.w3.eth.get_transaction(received["transactions"][0]["tx_hash"])
    assert tx["from"].lower() == new.lower()


def test_tens_of_thousands_of_serials_split_with_progress(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    body = {"gtin": JOURNEY_GTIN, "lot": "CU-BIG", "expiry": "2029-12-31", "site_gln": SITE_GLN}
    bid = cmo.post("/v1/batches", body)["result"]["batch_id"]
    serials = [f"B{i:07d}" for i in range(12_000)]
    cases = [sscc("4098765", 850_000 + i) for i in range(120)]
    op = cmo.post("/v1/commission", {"batch_id": bid, "serials": serials, "containers": cases})
    assert op["status"] == "succeeded", op.get("error")
    # 24 commissioning transactions, then one anchoring the 120 cases' packing events (EPCIS)
    assert op["txs_total"] == 25 and op["txs_done"] == 25 and op["items_done"] == 12_000
    assert all(t["items"] == 500 and t["status"] == "mined" for t in op["transactions"][:24])
    assert op["transactions"][24]["items"] == 0
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    assert ledger.functions.unit(unit_key(JOURNEY_GTIN, serials[-1])).call()[1] == 1
