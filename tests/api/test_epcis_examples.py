"""GS1's own EPCIS 2.0 example documents captured on a devnet whose master data matches them: the
example parties onboarded with the GLNs the documents use, their products registered and released,
their packs commissioned. Each document then produces the custody state it describes, events that
change no custody are anchored by hash, and what rxledger cannot apply is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import RxClient
from node.deploy import Deployment
from node.epcis.events import CONTEXT
from node.epcis.hashid import event_hash_id
from node.ledger.identifiers import unit_key
from tests.api.conftest import CREDENTIAL, Consortium

P = "urn:rxledger:problem:"
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "gs1" / "examples"
SENDER_GLN = "0614141073467"  # readPoint urn:epc:id:sgln:0614141.07346.1234 of the shipping event
RECEIVER_GLN = "0012345111112"  # bizLocation urn:epc:id:sgln:0012345.11111.0 of the receiving event
PD_GLN = "9520999999990"  # destination urn:epc:id:pgln:9520999.99999 of PersistentDisposition-example
GTIN_URN = "10614141073464"  # urn:epc:id:sgtin:0614141.107346.*
GTIN_DL = "70614141123451"  # https://id.gs1.org/01/70614141123451/21/*
GTIN_PD = "09520001123467"  # urn:epc:id:sgtin:9520001.012346.*


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def capture(client: RxClient, document: dict[str, Any], behaviour: str = "rollback") -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {client.token}",
        "Content-Type": "application/ld+json",
        "GS1-Capture-Error-Behaviour": behaviour,
    }
    return client.http.post("/epcis/capture?wait=true", content=json.dumps(document), headers=headers)


class Party:
    def __init__(self, consortium: Consortium, name: str, gln: str, kind: str) -> None:
        admin = consortium.net.admin
        admin.post("/v1/organizations", {"gln": gln, "name": name, "roles": [kind]})
        self.id = next(o["id"] for o in admin.get("/v1/organizations") if o["gln"] == gln)
        self.clients: dict[str, RxClient] = {}
        for role in ("operator", "qp"):
            body = {
                "username": f"{gln}.{role}",
                "printed_name": f"{name} {role}",
                "role": role,
                "credential": CREDENTIAL,
            }
            token = admin.post(f"/v1/organizations/{self.id}/users", body, wait=False)["token"]["token"]
            self.clients[role] = consortium.net.client(token)

    @property
    def op(self) -> RxClient:
        return self.clients["operator"]


def released_lot(consortium: Consortium, maker: Party, gtin: str, lot: str, serials: list[str]) -> None:
    """The example's product made by `maker`, a released batch of it, and its packs commissioned."""
    sponsor, sponsor_qp = consortium.as_("sponsor"), consortium.as_("sponsor", "qp")
    sponsor.post("/v1/products", {"gtin": gtin})
    sponsor.post(f"/v1/products/{gtin}/manufacturers", {"org_id": maker.id})
    batch = {"gtin": gtin, "lot": lot, "expiry": "2030-01-31", "site_gln": SENDER_GLN}
    bid = maker.op.post("/v1/batches", batch)["result"]["batch_id"]
    coa = ("coa.txt", f"CoA {lot}".encode(), "text/plain")
    maker.clients["qp"].post(f"/v1/batches/{bid}/certificates", files={"file": coa})
    maker.op.post("/v1/commission", {"batch_id": bid, "serials": serials})
    qp_doc = sponsor_qp.post(
        "/v1/documents", wait=False, files={"file": ("qp.txt", lot.encode(), "text/plain")}
    )
    decision = {
        "meaning": "released for sale",
        "signature": consortium.signature("sponsor"),
        "qp_certificate_sha256": qp_doc["document_sha256"],
    }
    sponsor_qp.post(f"/v1/batches/{bid}/release", decision)


@pytest.fixture(scope="module")
def parties(consortium: Consortium) -> dict[str, Party]:
    found = {
        "sender": Party(consortium, "Example Sender (GS1 9.6.1)", SENDER_GLN, "cmo"),
        "receiver": Party(consortium, "Example Receiver (GS1 9.6.1)", RECEIVER_GLN, "distributor"),
        "pd": Party(consortium, "Example PersistentDisposition receiver", PD_GLN, "distributor"),
    }
    released_lot(consortium, found["sender"], GTIN_URN, "EX-URN", ["2017", "2018"])
    released_lot(consortium, found["sender"], GTIN_DL, "EX-DL", ["2017", "2018"])
    released_lot(consortium, found["sender"], GTIN_PD, "EX-PD", [f"100000010{n:02d}" for n in range(1, 11)])
    return found


def unit(consortium: Consortium, gtin: str, serial: str) -> Any:
    ledger = Deployment.load(consortium.net.w3, consortium.net.manifest)["CustodyLedger"]
    return ledger.functions.unit(unit_key(gtin, serial)).call()


@pytest.mark.parametrize(
    ("name", "gtin"),
    [
        ("Example_9.6.1-ObjectEvent.jsonld", GTIN_URN),
        ("WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld", GTIN_DL),
    ],
)
def test_shipping_and_receiving_example_by_both_parties(
    consortium: Consortium, parties: dict[str, Party], name: str, gtin: str
) -> None:
    """Each party captures the same document: the sender's key applies the shipment (its destination
    is the organisation the document receives it at), the receiver's key the receipt."""
    document = example(name)
    ids = [event_hash_id(e, document["@context"]) for e in document["epcisBody"]["eventList"]]
    sender, receiver = parties["sender"], parties["receiver"]
    sent = capture(sender.op, document, "proceed").json()
    assert (sent["eventsAccepted"], [(e["event"], e["type"]) for e in sent["errors"]]) == (
        1,
        [(1, P + "not-in-shipment")],  # the receipt is not the sender's to make
    )
    got = capture(receiver.op, document, "proceed").json()
    assert (got["eventsAccepted"], [(e["event"], e["type"]) for e in got["errors"]]) == (
        1,
        [(0, P + "duplicate-event")],
    )
    assert [e["eventID"] for e in got["errors"]] == ids[:1]
    received, in_transit = unit(consortium, gtin, "2018"), unit(consortium, gtin, "2017")
    assert (received[5], received[8]) == (receiver.id, bytes(32))
    assert (in_transit[5], in_transit[8] != bytes(32)) == (sender.id, True)
    shipments = receiver.op.get("/v1/shipments")
    assert any(s["from_org"] == sender.id and s["received"] == 1 and s["pending"] == 1 for s in shipments)


def test_persistent_disposition_example_receives_and_anchors_the_inspection(
    consortium: Consortium, parties: dict[str, Party]
) -> None:
    document = example("PersistentDisposition-example.jsonld")
    serials = [f"100000010{n:02d}" for n in range(1, 11)]
    sender, pd = parties["sender"], parties["pd"]
    sender.op.post(
        "/v1/shipments",
        {
            "shipment_id": "EX-PD",
            "to_gln": PD_GLN,
            "units": [{"gtin": GTIN_PD, "serial": s} for s in serials],
        },
    )
    job = capture(pd.op, document).json()
    assert (job["success"], job["eventsAccepted"]) == (True, 2), job
    assert {unit(consortium, GTIN_PD, s)[5] for s in serials} == {pd.id}
    events = pd.op.get(
        "/epcis/events", EQ_bizStep="inspecting", MATCH_epc=f"urn:epc:id:sgtin:9520001.012346.{serials[0]}"
    )
    (inspection,) = events["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert (
        inspection["persistentDisposition"] == document["epcisBody"]["eventList"][1]["persistentDisposition"]
    )


OBSERVATIONS = [
    "Example_9.6.3-AggregationEvent.jsonld",
    "WithDigitalLinkID/Example_9.6.3-AggregationEventWithDigitalLink.jsonld",
    "Example-TransactionEvents-2020_07_03y.jsonld",
    *[f"AssociationEvent/AssociationEvent-{c}.jsonld" for c in "abcdefh"],
    *[
        f"WithSensorData/SensorDataExample{n}.jsonld"
        for n in ("1", "1b", "2", "3", "4", "5", "6", "7", "9", "10", "11", "13", "14", "15", "16", "17")
    ],
]


@pytest.mark.parametrize("name", OBSERVATIONS)
def test_observations_are_anchored_by_hash(consortium: Consortium, name: str) -> None:
    """Aggregation observations, business transactions, associations and sensor readings change no
    custody: they are stored, queryable and anchored on chain by their Event Hash IDs."""
    document = example(name)
    client = consortium.as_("3pl")
    response = capture(client, document)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["success"] and job["eventsAccepted"] == len(document["epcisBody"]["eventList"])
    for e in document["epcisBody"]["eventList"]:
        hash_id = event_hash_id(e, document["@context"])
        stored = client.get(f"/epcis/events/{hash_id.replace('?', '%3F')}")
        assert stored["eventID"] == hash_id
        # answered in rxledger's context, the event carries the document's namespaces with it
        bare = {k: v for k, v in stored.items() if k not in ("eventID", "recordTime", "certificationInfo")}
        assert event_hash_id(bare, CONTEXT) == hash_id


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Example_9.6.4-TransformationEvent.jsonld", "unmappable-event"),
        ("WithSensorData/SensorDataExample12.jsonld", "error-declaration-unsupported"),
        ("WithSensorData/SensorDataExample8.jsonld", "class-level-custody"),
        (
            "WithFullCombinationOfFields/object_event_all_possible_fields.jsonld",
            "error-declaration-unsupported",
        ),
        # the same Event Hash ID as AssociationEvent-d, which it declares erroneous
        ("AssociationEvent/AssociationEvent-g.jsonld", "error-declaration-unsupported"),
    ],
)
def test_what_the_ledger_cannot_apply_is_refused_with_the_reason(
    consortium: Consortium, name: str, rule: str
) -> None:
    response = capture(consortium.as_("3pl"), example(name))
    assert response.status_code == 422, response.text
    assert [e["type"] for e in response.json()["errors"]] == [P + rule]
