"""The standard journey through the partner API alone: product, CMO authorisation, batch, CoA,
commissioning into cases, packing on a pallet, QP release (e-signed), CMO -> 3PL -> distributor ->
pharmacy, unpacking, dispensing. Then the chain, the read model and the audit log must all agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.client import RxClient
from node.deploy import Deployment
from node.indexer.pgtemp import TempPostgres
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key, with_check_digit
from node.ledger.journey import SITE_GLN, sscc
from tests.api.conftest import Consortium, onboard_consortium, running_network

GTIN = with_check_digit("0950600013440")


@pytest.fixture(scope="module")
def pg_consortium(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: TempPostgres
) -> Iterator[Consortium]:
    """The same network with PostgreSQL behind the API and the indexer (production's database)."""
    with running_network(
        tmp_path_factory.mktemp("pgnet"), postgres_server.database_url("rx_api_journey")
    ) as net:
        yield onboard_consortium(net)


# on PostgreSQL, as in production, it is also the slow-chain check: `make test-slow-chain` runs it
# again on Anvil mining every 2 s (RXLEDGER_TEST_BLOCK_TIME), as a QBFT network does
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow_chain)])
def test_standard_journey_through_the_api(database: str, request: pytest.FixtureRequest) -> None:
    fixture = "consortium" if database == "sqlite" else "pg_consortium"
    consortium: Consortium = request.getfixturevalue(fixture)
    net = consortium.net
    assert net.engine.dialect.name == ("sqlite" if database == "sqlite" else "postgresql")
    sponsor, sponsor_qp = consortium.as_("sponsor"), consortium.as_("sponsor", "qp")
    cmo, cmo_qp = consortium.as_("cmo"), consortium.as_("cmo", "qp")
    tpl, dist, pharmacy = consortium.as_("3pl"), consortium.as_("distributor"), consortium.as_("pharmacy")

    assert sponsor.post("/v1/products", {"gtin": GTIN})["status"] == "succeeded"
    sponsor.post(f"/v1/products/{GTIN}/manufacturers", {"org_id": consortium.org_ids["cmo"]})
    product = next(p for p in sponsor.get("/v1/products") if p["gtin"] == GTIN)
    assert product["manufacturers"] == [consortium.org_ids["cmo"]]

    batch = cmo.post(
        "/v1/batches", {"gtin": GTIN, "lot": "J-API-1", "expiry": "2029-06-30", "site_gln": SITE_GLN}
    )
    bid = batch["result"]["batch_id"]
    coa = b"%PDF-1.7 certificate of analysis J-API-1"
    anchored = cmo_qp.post(
        f"/v1/batches/{bid}/certificates",
        files={"file": ("coa.pdf", coa, "application/pdf")},
        data={"kind": "analysis", "meaning": "approved"},
    )
    assert anchored["status"] == "succeeded"

    serials = [f"JA{i:06d}" for i in range(120)]
    cases = [sscc("4098765", 810_000 + i) for i in range(6)]
    commissioned = cmo.post("/v1/commission", {"batch_id": bid, "serials": serials, "containers": cases})
    assert commissioned["status"] == "succeeded"
    assert commissioned["items_done"] == commissioned["items_total"] == 120
    pallet = sscc("4098765", 819_000)
    cmo.post("/v1/pack", {"container": pallet, "containers": cases})

    qp_doc = sponsor_qp.post(
        "/v1/documents", wait=False, files={"file": ("qp.pdf", b"QP cert", "application/pdf")}
    )
    decision = {
        "meaning": "released for sale",
        "reason": "record reviewed",
        "signature": consortium.signature("sponsor"),
        "qp_certificate_sha256": qp_doc["document_sha256"],
    }
    released = sponsor_qp.post(f"/v1/batches/{bid}/release", decision)
    assert released["status"] == "succeeded"

    def hop(sender: RxClient, receiver: RxClient, to: str, sid: str, containers: list[str]) -> None:
        shipped = sender.post(
            "/v1/shipments", {"shipment_id": sid, "to_gln": consortium.glns[to], "containers": containers}
        )
        assert shipped["status"] == "succeeded", shipped
        inbound = receiver.get("/v1/shipments")
        assert sid in [s["label"] for s in inbound]
        assert receiver.post(f"/v1/shipments/{sid}/receive")["status"] == "succeeded"

    hop(cmo, tpl, "3pl", "J-API-S1", [pallet])
    hop(tpl, dist, "distributor", "J-API-S2", [pallet])
    dist.post("/v1/unpack", {"container": pallet})
    hop(dist, pharmacy, "pharmacy", "J-API-S3", cases)
    held = pharmacy.get("/v1/inventory")
    assert {c["sscc"] for c in held["containers"]} >= set(cases)
    for case in cases:
        pharmacy.post("/v1/unpack", {"container": case})
    dispensed = pharmacy.post(
        "/v1/decommission", {"units": [{"gtin": GTIN, "serial": s} for s in serials], "reason": "dispensed"}
    )
    assert dispensed["status"] == "succeeded" and dispensed["items_done"] == 120

    # The chain says so...
    suite = Deployment.load(net.w3, net.manifest)
    for serial in (serials[0], serials[-1]):
        assert suite["CustodyLedger"].functions.unit(unit_key(GTIN, serial)).call()[1] == UnitState.DISPENSED
    # ...the read model says so...
    got = sponsor.get(f"/v1/batches/{bid}")
    assert got["status"] == "released"
    release = got["history"][-1]
    assert release["to_status"] == "released"
    assert release["signature"]["printed_name"] == "Sponsor qp"
    assert release["signature"]["meaning"] == "released for sale"
    assert {c["kind"] for c in got["certificates"]} == {"analysis", "qp_certification"}
    assert not [u for u in pharmacy.get("/v1/inventory")["units"] if u["gtin"] == GTIN]
    # ...and every write is in the audit log with its transactions.
    entries = net.admin.get("/v1/audit", limit=1000)
    submitted = [e for e in entries if e["method"] == "SUBMIT" and e["operation_id"] == dispensed["id"]]
    assert submitted and submitted[0]["outcome"] == "succeeded" and submitted[0]["tx_hashes"]
    assert net.admin.get("/v1/audit/verify")["intact"] is True
