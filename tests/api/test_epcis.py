"""EPCIS 2.0 through the API on a real devnet: capture mapped to ledger actions, all-or-nothing and
proceed modes, duplicates, queries with visibility and paging, and export of everything anchored
(plain-JSON actions included) as documents GS1's schema accepts, whose event ids are the hashes
anchored on chain."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest

from api.client import RxClient
from node.deploy import Deployment
from node.epcis.events import CONTEXT, RXL_NS
from node.epcis.hashid import event_hash_id
from node.ledger.constants import UnitState
from node.ledger.identifiers import container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import Consortium
from tests.api.test_custody import released_batch, units

P = "urn:rxledger:problem:"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "gs1"
SCHEMA = json.loads((SHARED / "EPCIS-JSON-Schema.json").read_text())
EXPIRY = "2029-09-30"


def dl(serial: str, gtin: str = JOURNEY_GTIN) -> str:
    return f"https://id.gs1.org/01/{gtin}/21/{serial}"


def sscc_dl(code: str) -> str:
    return f"https://id.gs1.org/00/{code}"


def doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T08:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }


def event(kind: str, when: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "eventTime": f"2026-11-25T{when}.000+01:00",
        "eventTimeZoneOffset": "+01:00",
        **fields,
    }


def capture(client: RxClient, document: dict[str, Any], behaviour: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": "application/ld+json"}
    if behaviour:
        headers["GS1-Capture-Error-Behaviour"] = behaviour
    return client.http.post("/epcis/capture?wait=true", content=json.dumps(document), headers=headers)


def unit_view(consortium: Consortium, serial: str) -> Any:
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    return ledger.functions.unit(unit_key(JOURNEY_GTIN, serial)).call()


def anchored(consortium: Consortium, hash_id: str) -> list[str]:
    """Which of the suite's events on chain carry the digest of `hash_id` (anchoring checked on the
    chain itself, not in our database)."""
    digest = bytes.fromhex(hash_id.split(";")[1].split("?")[0])
    suite = Deployment.load(consortium.net.w3, consortium.net.manifest)
    ledger = suite["CustodyLedger"]
    found = []
    for name in (
        "UnitsCommissioned",
        "ItemsPacked",
        "ItemsUnpacked",
        "ContainersEmptied",
        "ShipmentDispatched",
        "ShipmentReceived",
        "ShipmentRejected",
        "UnitsDecommissioned",
        "DecommissionsUndone",
        "EventsAnchored",
    ):
        for log in getattr(ledger.events, name)().get_logs(from_block=0):
            args = log["args"]
            if args.get("eventHash") == digest or digest in args.get("eventHashes", []):
                found.append(name)
    return found


def test_a_document_commissions_packs_and_anchors(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    body = {"gtin": JOURNEY_GTIN, "lot": "EP-1", "expiry": EXPIRY, "site_gln": SITE_GLN}
    cmo.post("/v1/batches", body)
    serials = ["EP1A", "EP1B", "EP1C", "EP1D"]
    case_a, case_b, pallet = sscc("4098765", 880_001), sscc("4098765", 880_002), sscc("4098765", 880_003)
    ilmd = {"cbvmda:lotNumber": "EP-1", "cbvmda:itemExpirationDate": EXPIRY}
    document = doc(
        event(
            "ObjectEvent",
            "09:00:00",
            epcList=[dl(s) for s in serials],
            action="ADD",
            bizStep="commissioning",
            disposition="active",
            ilmd=ilmd,
        ),
        event(
            "AggregationEvent",
            "09:01:00",
            parentID=sscc_dl(case_a),
            childEPCs=[dl(s) for s in serials[:2]],
            action="ADD",
            bizStep="packing",
        ),
        event(
            "AggregationEvent",
            "09:01:01",
            parentID=f"urn:epc:id:sscc:4098765.0{880_002:09d}",
            childEPCs=[dl(s) for s in serials[2:]],
            action="ADD",
            bizStep="packing",
        ),
        event(
            "AggregationEvent",
            "09:02:00",
            parentID=sscc_dl(pallet),
            childEPCs=[sscc_dl(case_a), sscc_dl(case_b)],
            action="ADD",
            bizStep="packing",
        ),
        event("ObjectEvent", "09:03:00", epcList=[sscc_dl(pallet)], action="OBSERVE", bizStep="inspecting"),
    )
    response = capture(cmo, document)
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["success"], job["running"], job["eventsAccepted"], job["errors"]) == (True, False, 5, [])
    assert response.headers["Location"] == f"/epcis/capture/{job['captureID']}"
    assert cmo.get(f"/epcis/capture/{job['captureID']}")["success"] is True

    for serial in serials:
        view = unit_view(consortium, serial)
        assert (view[1], view[5], view[6]) == (UnitState.ACTIVE, consortium.org_ids["cmo"], True)
    assert unit_view(consortium, "EP1C")[7] == container_key(case_b)

    # every event anchored on chain by the digest of its Event Hash ID, custody events in their action
    ids = [event_hash_id(e, CONTEXT) for e in document["epcisBody"]["eventList"]]
    assert [anchored(consortium, i) for i in ids] == [
        ["UnitsCommissioned"],
        ["ItemsPacked"],
        ["ItemsPacked"],
        ["ItemsPacked"],
        ["EventsAnchored"],
    ]
    # exported, the captured events keep their ids: recomputed from the export, they are the same
    exported = cmo.get("/epcis/export", MATCH_anyEPC=[sscc_dl(pallet), *[dl(s) for s in serials]])
    round_trip = [e for e in exported["epcisBody"]["eventList"] if e["eventID"] in ids]
    assert [e["eventID"] for e in round_trip] == ids
    assert [
        event_hash_id(
            {k: v for k, v in e.items() if k not in ("eventID", "recordTime")}, exported["@context"]
        )
        for e in round_trip
    ] == ids
    # the same document again: every event a duplicate, nothing applied
    again = capture(cmo, document)
    assert again.status_code == 409
    problem = again.json()
    assert problem["type"] == P + "capture-refused"
    assert [e["type"] for e in problem["errors"]] == [P + "duplicate-event"] * 5
    assert [e["eventID"] for e in problem["errors"]] == ids


def dispensing(when: str, serials: list[str]) -> dict[str, Any]:
    return event(
        "ObjectEvent",
        when,
        epcList=[dl(s) for s in serials],
        action="OBSERVE",
        bizStep="dispensing",
        disposition="dispensed",
    )


def test_rollback_applies_nothing_and_proceed_applies_the_rest(consortium: Consortium) -> None:
    serials = ["EP2A", "EP2B"]
    released_batch(consortium, "EP-2", serials, [])
    cmo = consortium.as_("cmo")
    document = doc(
        dispensing("10:00:00", serials[:1]),
        dispensing("10:00:01", ["EP2-NEVER-MADE"]),
        event("TransformationEvent", "10:00:02", inputEPCList=[dl("EP2B")], outputEPCList=[dl("EP2Z")]),
        event(
            "ObjectEvent",
            "10:00:03",
            epcList=[dl("EP2B")],
            action="DELETE",
            bizStep="decommissioning",
            disposition="inactive",
        ),
    )
    refused = capture(cmo, document)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    errors = problem["errors"]
    assert [(e["event"], e["type"], e.get("field")) for e in errors] == [
        (1, P + "unknown-item", "epcisBody.eventList[1].epcList[0]"),
        (2, P + "unmappable-event", "epcisBody.eventList[2]"),
        (3, P + "missing-reason", "epcisBody.eventList[3].disposition"),
    ]
    assert unit_view(consortium, "EP2A")[1] == UnitState.ACTIVE  # the good event was not applied either
    job = cmo.get(f"/epcis/capture/{problem['captureID']}")
    assert (job["success"], job["running"], job["eventsAccepted"], len(job["errors"])) == (False, False, 0, 3)
    assert job["captureErrorBehaviour"] == "rollback"

    applied = capture(cmo, document, "proceed")
    assert applied.status_code == 200, applied.text
    job = applied.json()
    assert (job["success"], job["eventsAccepted"], [e["event"] for e in job["errors"]]) == (
        False,
        1,
        [1, 2, 3],
    )
    assert unit_view(consortium, "EP2A")[1] == UnitState.DISPENSED
    assert unit_view(consortium, "EP2B")[1] == UnitState.ACTIVE
    # a reason given in rxledger's namespace, under whatever prefix the document chose
    with_reason = doc(
        event(
            "ObjectEvent",
            "10:00:04",
            epcList=[dl("EP2B")],
            action="DELETE",
            bizStep="decommissioning",
            disposition="inactive",
            **{"rx:decommissionReason": "exported"},
        )
    )
    with_reason["@context"] = [CONTEXT[0], {"rx": RXL_NS}]
    assert capture(cmo, with_reason).status_code == 200
    assert unit_view(consortium, "EP2B")[1] == UnitState.EXPORTED


def test_refusals_name_the_field_and_the_rule(consortium: Consortium) -> None:
    cmo = consortium.as_("cmo")
    commissioning = event(
        "ObjectEvent",
        "11:00:00",
        epcList=[dl("EP3A")],
        action="ADD",
        bizStep="commissioning",
        ilmd={"cbvmda:lotNumber": "EP-NO-SUCH-LOT"},
    )
    cases: list[tuple[dict[str, Any], int, str, str]] = []
    no_lot = copy.deepcopy(commissioning)
    del no_lot["ilmd"]
    cases.append((no_lot, 422, "missing-lot", "epcisBody.eventList[0].ilmd"))
    cases.append((commissioning, 404, "unknown-batch", "epcisBody.eventList[0].ilmd"))
    bad_epc = copy.deepcopy(commissioning)
    bad_epc["epcList"] = [dl("EP3A"), "https://id.gs1.org/01/09506000134353/21/X"]
    cases.append((bad_epc, 422, "invalid-identifier", "epcisBody.eventList[0].epcList[1]"))
    nowhere = event("ObjectEvent", "11:00:01", epcList=[dl("EP3A")], action="OBSERVE", bizStep="shipping")
    cases.append((nowhere, 422, "missing-destination", "epcisBody.eventList[0].destinationList"))
    for bad, status, rule, field in cases:
        response = capture(cmo, doc(bad))
        assert response.status_code == status, (rule, response.text)
        (error,) = response.json()["errors"]
        assert (error["type"], error["field"]) == (P + rule, field)
        assert field in error["detail"]

    invalid = doc(event("ObjectEvent", "11:00:02", epcList=[dl("EP3A")], bizStep="inspecting"))  # no action
    response = capture(cmo, invalid)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == P + "invalid-epcis-document"
    assert "epcisBody.eventList[0].action" in [e["field"] for e in problem["errors"]]

    headers = {"Authorization": f"Bearer {cmo.token}"}
    assert (
        cmo.http.post(
            "/epcis/capture", content=b"{", headers={**headers, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        cmo.http.post(
            "/epcis/capture", content=b"<x/>", headers={**headers, "Content-Type": "application/xml"}
        ).status_code
        == 415
    )
    viewer = consortium.as_("cmo", "viewer")
    assert capture(viewer, doc(nowhere)).status_code == 403
    # a distributor may capture, but not commission
    response = capture(consortium.as_("distributor"), doc(commissioning))
    assert response.status_code == 403
    assert response.json()["errors"][0]["type"] == P + "forbidden"


def shipping(when: str, epcs: list[str], sender_gln: str, to_gln: str, sid: str) -> dict[str, Any]:
    return event(
        "ObjectEvent",
        when,
        epcList=epcs,
        action="OBSERVE",
        bizStep="shipping",
        disposition="in_transit",
        bizTransactionList=[{"type": "desadv", "bizTransaction": f"urn:epcglobal:cbv:bt:{sender_gln}:{sid}"}],
        sourceList=[{"type": "owning_party", "source": f"https://id.gs1.org/417/{sender_gln}"}],
        destinationList=[{"type": "owning_party", "destination": f"https://id.gs1.org/417/{to_gln}"}],
    )


def receiving(when: str, epcs: list[str], disposition: str = "in_progress") -> dict[str, Any]:
    return event(
        "ObjectEvent", when, epcList=epcs, action="OBSERVE", bizStep="receiving", disposition=disposition
    )


def query(client: RxClient, path: str = "/epcis/events", **params: Any) -> list[dict[str, Any]]:
    """Every page of a query, following the Link rel="next" headers (EPCIS 2.0 REST paging)."""
    found: list[dict[str, Any]] = []
    url: str | None = path
    while url is not None:
        response = client.http.get(url, params=params if url == path else None, headers=client._headers())
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["type"] in ("EPCISQueryDocument", "EPCISDocument")
        body = page["epcisBody"]
        found.extend(
            body["queryResults"]["resultsBody"]["eventList"] if "queryResults" in body else body["eventList"]
        )
        link = response.links.get("next")
        url = link["url"] if link else None
        if url:
            assert "nextPageToken=" in url and schema_errors(page) == []
    return found


def test_shipping_and_receiving_between_partners_and_who_sees_what(consortium: Consortium) -> None:
    serials = [f"EP4{c}" for c in "ABCD"]
    case_a, case_b = sscc("4098765", 880_101), sscc("4098765", 880_102)
    released_batch(consortium, "EP-4", serials, [case_a, case_b])
    cmo, tpl = consortium.as_("cmo"), consortium.as_("3pl")
    glns = consortium.glns
    sent = capture(
        cmo, doc(shipping("12:00:00", [sscc_dl(case_a), sscc_dl(case_b)], glns["cmo"], glns["3pl"], "EPS-4"))
    )
    assert sent.status_code == 200, sent.text
    shipment = cmo.get("/v1/shipments/EPS-4")
    assert (shipment["to_org"], shipment["pending"]) == (consortium.org_ids["3pl"], 2)
    # the 3PL receives one case and refuses the other
    got = capture(
        tpl,
        doc(
            receiving("13:00:00", [sscc_dl(case_a)]),
            receiving("13:00:01", [sscc_dl(case_b)], "non_conformant"),
        ),
    )
    assert got.status_code == 200, got.text
    shipment = tpl.get("/v1/shipments/EPS-4")
    assert (shipment["received"], shipment["rejected"], shipment["pending"]) == (1, 1, 0)
    assert unit_view(consortium, "EP4A")[5] == consortium.org_ids["3pl"]
    assert unit_view(consortium, "EP4C")[5] == consortium.org_ids["cmo"]

    def steps(client: RxClient, **params: Any) -> list[str]:
        # events name what they handled: the pack, or its case (EPCIS matches no containment)
        found = query(client, perPage=2, MATCH_anyEPC=f"{dl('EP4A')}|{sscc_dl(case_a)}", **params)
        return [e["bizStep"] for e in found]

    # the units' commissioning and packing (plain JSON) are visible to whoever held their case
    everything = ["commissioning", "packing", "shipping", "receiving"]
    assert steps(cmo) == everything
    assert steps(tpl) == everything
    assert steps(consortium.as_("regulator", "viewer")) == everything
    assert steps(consortium.as_("distributor")) == []  # never held them
    assert steps(cmo, EQ_bizStep="shipping|receiving") == ["shipping", "receiving"]
    assert steps(cmo, EQ_disposition="https://ref.gs1.org/cbv/Disp-in_transit") == ["shipping"]
    received = query(tpl, f"/epcis/epcs/{sscc_dl(case_a)}/events", EQ_bizStep="receiving")
    assert len(received) == 1 and received[0]["epcList"] == [sscc_dl(case_a)]
    window = query(
        tpl,
        MATCH_epc=f"urn:epc:id:sscc:4098765.0{880_101:09d}",
        GE_eventTime="2026-11-25T12:00:00Z",
        LT_eventTime="2026-11-25T12:00:01+00:00",
    )
    # received at 13:00+01:00 = 12:00Z (inside); shipped at 12:00+01:00 = 11:00Z (outside)
    assert [e["bizStep"] for e in window] == ["receiving"]
    one = tpl.get(f"/epcis/events/{quote(received[0]['eventID'], safe='')}")
    assert one["eventID"] == received[0]["eventID"]
    with pytest.raises(Exception) as hidden:
        consortium.as_("distributor").get(f"/epcis/events/{quote(received[0]['eventID'], safe='')}")
    assert getattr(hidden.value, "status", None) == 404


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_plain_json_actions_export_as_epcis_with_their_anchored_hashes(consortium: Consortium) -> None:
    serials = [f"EP5{c}" for c in "ABC"]
    case = sscc("4098765", 880_201)
    released_batch(consortium, "EP-5", serials, [case])
    cmo, pharmacy = consortium.as_("cmo"), consortium.as_("pharmacy")
    cmo.post(
        "/v1/shipments", {"shipment_id": "EPS-5", "to_gln": consortium.glns["pharmacy"], "containers": [case]}
    )
    pharmacy.post("/v1/shipments/EPS-5/receive")
    pharmacy.post("/v1/unpack", {"container": case})
    pharmacy.post("/v1/decommission", {"units": units(serials[:2]), "reason": "dispensed"})
    pharmacy.post("/v1/decommission/undo", {"units": units(serials[1:2])})
    pharmacy.post("/v1/decommission", {"units": units(serials[2:]), "reason": "destroyed"})

    regulator = consortium.as_("regulator", "viewer")
    exported = regulator.get("/epcis/export", MATCH_anyEPC=[*[dl(s) for s in serials], sscc_dl(case)])
    assert exported["type"] == "EPCISDocument"
    assert schema_errors(exported) == []
    events = exported["epcisBody"]["eventList"]
    assert [(e["type"], e.get("action"), e["bizStep"]) for e in events] == [
        ("ObjectEvent", "ADD", "commissioning"),
        ("AggregationEvent", "ADD", "packing"),
        ("ObjectEvent", "OBSERVE", "shipping"),
        ("ObjectEvent", "OBSERVE", "receiving"),
        ("AggregationEvent", "DELETE", "unpacking"),
        ("ObjectEvent", "OBSERVE", "dispensing"),
        ("ObjectEvent", "OBSERVE", RXL_NS + "BizStep-reactivating"),
        ("ObjectEvent", "DELETE", "destroying"),
    ]
    assert events[0]["ilmd"] == {"cbvmda:lotNumber": "EP-5", "cbvmda:itemExpirationDate": EXPIRY}
    (batch,) = cmo.get("/v1/batches", lot="EP-5")
    certified = [e.get("certificationInfo") for e in events]
    assert certified[0] == f"{consortium.net.base_url}/v1/batches/{batch['batch_id']}"
    assert certified[2] is None  # shipping names the case, not the packs
    assert events[2]["destinationList"] == [
        {"type": "owning_party", "destination": f"https://id.gs1.org/417/{consortium.glns['pharmacy']}"}
    ]
    for e in events:
        # anyone can recompute the id from the exported event alone, and find its digest on chain
        bare = {k: v for k, v in e.items() if k not in ("eventID", "recordTime")}
        assert event_hash_id(bare, exported["@context"]) == e["eventID"]
        assert anchored(consortium, e["eventID"]), e["bizStep"]
    # captured elsewhere, the export gives the same Event Hash IDs: here, they are duplicates
    again = capture(cmo, exported)
    assert again.status_code == 409
    assert [err["eventID"] for err in again.json()["errors"]] == [e["eventID"] for e in events]

    # paging through the export gives the same events
    assert (
        query(regulator, "/epcis/export", perPage=3, MATCH_anyEPC=[*[dl(s) for s in serials], sscc_dl(case)])
        == events
    )
