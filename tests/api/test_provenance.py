"""Provenance through the API on a real devnet: a pack's trail through its case and pallet in chain
order, what a partner and an outsider may see, the batch view, and the evidence bundle checked by
`rxledger verify-bundle` against a node and offline, failing on any tampered byte."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.client import ApiProblem
from node.evidence.bundle import verify_bundle
from node.ledger.journey import JOURNEY_GTIN, sscc
from node.settings import get_settings
from tests.api.conftest import Consortium
from tests.api.test_custody import released_batch

SERIALS = ["PV1A", "PV1B", "PV1C", "PV1D"]
CASES = [sscc("4098765", 895_001), sscc("4098765", 895_002)]
PALLET = sscc("4098765", 895_003)
PACK = f"https://id.gs1.org/01/{JOURNEY_GTIN}/21/PV1A"
JOURNEY = [
    "commissioned",
    "packed",
    "shipped",
    "received",
    "emptied",
    "shipped",
    "received",
    "emptied",
    "decommissioned",
]


@pytest.fixture(scope="module")
def journey(consortium: Consortium) -> str:
    """A pack commissioned into a case, palletised, shipped CMO -> 3PL, depalletised, its case
    shipped to the pharmacy, unpacked, and the pack dispensed. Returns the batch id."""
    bid = released_batch(consortium, "PV-1", SERIALS, CASES)
    cmo, tpl, pharmacy = consortium.as_("cmo"), consortium.as_("3pl"), consortium.as_("pharmacy")
    cmo.post("/v1/pack", {"container": PALLET, "containers": CASES})
    cmo.post(
        "/v1/shipments", {"shipment_id": "PV-S1", "to_gln": consortium.glns["3pl"], "containers": [PALLET]}
    )
    tpl.post("/v1/shipments/PV-S1/receive")
    tpl.post("/v1/unpack", {"container": PALLET})
    tpl.post(
        "/v1/shipments",
        {"shipment_id": "PV-S2", "to_gln": consortium.glns["pharmacy"], "containers": CASES[:1]},
    )
    pharmacy.post("/v1/shipments/PV-S2/receive")
    pharmacy.post("/v1/unpack", {"container": CASES[0]})
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "PV1A"}]})
    return bid


def path(code: str) -> str:
    return "/v1/provenance/" + quote(code, safe="")


def test_the_trail_in_chain_order_through_case_and_pallet(consortium: Consortium, journey: str) -> None:
    regulator = consortium.as_("regulator", "viewer")
    trail = regulator.get(path(PACK))
    assert [s["action"] for s in trail["steps"]] == JOURNEY
    positions = [(s["block_number"], s["log_index"]) for s in trail["steps"]]
    assert positions == sorted(positions)
    names = [s["organization"]["name"] for s in trail["steps"]]
    assert names[0] == "Contract Manufacturing GmbH" and names[-1] == "City Pharmacy"
    shipped = trail["steps"][2]
    assert shipped["counterparty"]["name"] == "Alpine Logistics 3PL" and shipped["via"].startswith("0x")
    assert trail["steps"][-1]["reason"] == "dispensed"
    for step in trail["steps"]:
        assert step["signer"].startswith("0x") and step["tx_hash"].startswith("0x")
        event = regulator.get("/epcis/events/" + quote(step["epcis_event_id"], safe=""))
        assert event["eventID"] == step["epcis_event_id"]
    assert trail["batch"]["lot"] == "PV-1" and trail["status_history"][-1]["to"] == "released"
    assert trail["evidence"]["block_number"] >= positions[-1][0]
    # any identifier form names the same pack
    assert regulator.get(path(f"(01){JOURNEY_GTIN}(21)PV1A"))["steps"] == trail["steps"]


def test_partners_see_their_part_and_outsiders_nothing(consortium: Consortium, journey: str) -> None:
    trail = consortium.as_("pharmacy").get(path(PACK))
    assert [s["action"] for s in trail["steps"]] == JOURNEY
    first_shipment = trail["steps"][2]  # CMO -> 3PL: the pharmacy was no party to it
    assert first_shipment["organization"]["org_id"] is None and first_shipment["signer"] is None
    assert "another organisation" in first_shipment["organization"]["name"]
    own = trail["steps"][6]  # its own receipt
    assert (
        own["organization"]["name"] == "City Pharmacy"
        and own["counterparty"]["name"] == "Alpine Logistics 3PL"
    )
    with pytest.raises(ApiProblem) as hidden:
        consortium.as_("distributor").get(path(PACK))
    assert hidden.value.status == 404
    case_trail = consortium.as_("3pl").get(path(CASES[0]))
    assert [s["action"] for s in case_trail["steps"]] == [
        "packed",
        "shipped",
        "received",
        "emptied",
        "shipped",
        "received",
        "emptied",
    ]


def test_batch_view_counts_units_per_holder_and_status(consortium: Consortium, journey: str) -> None:
    view = consortium.as_("sponsor").get(f"/v1/provenance/batches/{journey}")
    units = {(u["name"], u["status"]): u["units"] for u in view["units"]}
    assert units[("Alpine Logistics 3PL", "active")] == 2
    assert units[("City Pharmacy", "dispensed")] == 1 and units[("City Pharmacy", "active")] == 1
    assert view["units_total"] == 4 and [c["kind"] for c in view["certificates"]][:1] == ["analysis"]
    mine = consortium.as_("pharmacy").get(f"/v1/provenance/batches/{journey}")
    assert {u["name"] for u in mine["units"]} == {"City Pharmacy"}


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    get_settings.cache_clear()  # the command reads RXLEDGER_* from `env`
    try:
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def _trusted(consortium: Consortium, bundle: dict[str, Any]) -> dict[str, str]:
    blocks = {s["evidence"]["block_number"] for s in bundle["steps"]} | {
        p["evidence"]["block_number"] for p in bundle["parties"]
    }
    return {str(b): "0x" + bytes(consortium.net.w3.eth.get_block(b)["hash"]).hex() for b in blocks}


def _mutations(value: Any, where: str) -> list[tuple[str, Any]]:
    """Single-character changes of every scalar in a claim (hex digits flipped, numbers moved)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [(where, value + 1)]
    if isinstance(value, str):
        i = len(value) - 1
        flipped = "0" if value[i] != "0" else "1"
        return [(where, value[:i] + flipped)]
    return []


def test_the_evidence_bundle_verifies_and_any_tampering_fails(
    consortium: Consortium, journey: str, tmp_path: Path
) -> None:
    bundle = consortium.as_("regulator", "viewer").get(path(PACK) + "/bundle")
    assert [s["claim"]["action"] for s in bundle["steps"]] == JOURNEY
    file = tmp_path / "bundle.json"
    file.write_text(json.dumps(bundle))
    online = _cli("verify-bundle", str(file), "--rpc", consortium.net.devnet.rpc_url)
    assert online.exit_code == 0, online.output
    assert "all" in online.output and "proven" in online.output
    hashes = tmp_path / "trusted.json"
    hashes.write_text(json.dumps(_trusted(consortium, bundle)))
    assert _cli("verify-bundle", str(file), "--trusted", str(hashes)).exit_code == 0

    trusted = {int(k): bytes.fromhex(v[2:]) for k, v in _trusted(consortium, bundle).items()}
    assert all(c.ok for c in verify_bundle(bundle, trusted.get))
    tampered = 0
    for i, step in enumerate(bundle["steps"]):
        for name, value in step["claim"].items():
            for _, changed in _mutations(value, name):
                forged = copy.deepcopy(bundle)
                forged["steps"][i]["claim"][name] = changed
                checks = verify_bundle(forged, trusted.get)
                assert not all(c.ok for c in checks), f"step {i} {name}={changed!r} passed"
                tampered += 1
        for part in ("receipt", "block_hash"):
            forged = copy.deepcopy(bundle)
            text = forged["steps"][i]["evidence"][part]
            forged["steps"][i]["evidence"][part] = text[:-1] + ("0" if text[-1] != "0" else "1")
            assert not all(c.ok for c in verify_bundle(forged, trusted.get)), f"step {i} {part}"
        forged = copy.deepcopy(bundle)
        raw = forged["steps"][i]["transaction"]["raw"]
        forged["steps"][i]["transaction"]["raw"] = raw[:10] + ("0" if raw[10] != "0" else "1") + raw[11:]
        assert not all(c.ok for c in verify_bundle(forged, trusted.get)), f"step {i} transaction"
    for i in range(len(bundle["parties"])):
        forged = copy.deepcopy(bundle)
        forged["parties"][i]["name"] += "x"
        assert not all(c.ok for c in verify_bundle(forged, trusted.get))
    forged = copy.deepcopy(bundle)
    forged["subject"]["serial"] = "PV1B"
    assert not all(c.ok for c in verify_bundle(forged, trusted.get))
    assert tampered > 9 * 8
    # and the command says so, with a non-zero exit
    forged = copy.deepcopy(bundle)
    forged["steps"][3]["claim"]["timestamp"] += 1
    file.write_text(json.dumps(forged))
    failed = _cli("verify-bundle", str(file), "--rpc", consortium.net.devnet.rpc_url)
    assert failed.exit_code == 1 and "NOT PROVEN" in failed.output


def test_verify_certificate_from_the_chain(consortium: Consortium, journey: str, tmp_path: Path) -> None:
    net = consortium.net
    env = {
        "RXLEDGER_RPC_URL": net.devnet.rpc_url,
        "RXLEDGER_MANIFEST_DIR": str(net.settings.manifest_dir),
        "RXLEDGER_CHAIN_ID": "31337",
    }
    coa = tmp_path / "coa.txt"
    coa.write_bytes(b"CoA PV-1")  # what released_batch anchored as the CMO's certificate
    good = _cli("verify-certificate", str(coa), "--batch", journey, env=env)
    assert good.exit_code == 0, good.output
    assert "anchored" in good.output and "analysis" in good.output
    coa.write_bytes(b"CoA PV-1 (edited)")
    assert _cli("verify-certificate", str(coa), "--batch", journey, env=env).exit_code == 1


def test_inspection_report_as_pdf_and_csv(consortium: Consortium, journey: str, tmp_path: Path) -> None:
    import csv
    import io

    import pypdfium2 as pdfium

    regulator = consortium.as_("regulator", "viewer")
    response = regulator.http.get(path(PACK) + "/report.pdf", headers=regulator._headers())
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    (tmp_path / "pack-report.pdf").write_bytes(response.content)
    pdf = pdfium.PdfDocument(response.content)
    image = pdf[0].render(scale=1.5).to_pil()
    image.save(tmp_path / "pack-report-page1.png")
    gray = image.convert("L")
    histogram = gray.histogram()  # 256 bins of grey levels
    assert sum(histogram[:200]) > 0.01 * sum(histogram)  # not blank: over 1 % of pixels are ink
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    for expected in (JOURNEY_GTIN, "PV1A", "PV-1", "City Pharmacy", "Alpine Logistics 3PL"):
        assert expected in text, expected
    rows = list(
        csv.reader(
            io.StringIO(regulator.http.get(path(PACK) + "/report.csv", headers=regulator._headers()).text)
        )
    )
    assert len(rows) == 1 + len(JOURNEY)
    assert rows[0][2] == "action"
    assert [r[2].split(" ")[0] for r in rows[1:]] == JOURNEY  # the action column, in chain order
    batch_pdf = regulator.http.get(
        f"/v1/provenance/batches/{journey}/report.pdf", headers=regulator._headers()
    )
    assert batch_pdf.status_code == 200 and batch_pdf.content.startswith(b"%PDF")
