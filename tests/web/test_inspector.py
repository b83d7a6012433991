"""The inspector, in a real browser: search a pack, its trail as a timeline and its custody path as a
diagram, the evidence bundle downloaded and verified against the chain, the PDF, CSV and EPCIS
downloads, a certificate checked by dropping the file, a batch and an organisation, the alerts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from node.ledger.journey import JOURNEY_GTIN, sscc
from tests.api.conftest import ApiNet, Consortium
from tests.api.test_custody import released_batch
from tests.api.test_provenance import _cli
from tests.web.conftest import Screen, open_screen, sign_in


def drop_file(page: Page, selector: str, name: str, content: str) -> None:
    """What a file dropped from the desktop does: a drop event carrying the file."""
    transfer = page.evaluate_handle(
        """([name, content]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([content], name, { type: "text/plain" }));
            return dt;
        }""",
        [name, content],
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def download(page: Page, button: str, target: Path) -> Path:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    info.value.save_as(target)
    return target


def test_inspector_trail_diagram_evidence_and_certificate(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium, tmp_path: Path
) -> None:
    case = sscc("4098765", 930_000)
    bid = released_batch(consortium, "WI-1", ["WI1A", "WI1B"], [case])
    cmo, tpl, pharmacy = consortium.as_("cmo"), consortium.as_("3pl"), consortium.as_("pharmacy")
    cmo.post(
        "/v1/shipments", {"shipment_id": "WI-S1", "to_gln": consortium.glns["3pl"], "containers": [case]}
    )
    tpl.post("/v1/shipments/WI-S1/receive")
    tpl.post(
        "/v1/shipments", {"shipment_id": "WI-S2", "to_gln": consortium.glns["pharmacy"], "containers": [case]}
    )
    pharmacy.post("/v1/shipments/WI-S2/receive")
    pharmacy.post("/v1/unpack", {"container": case})
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "WI1A"}]})
    pharmacy.post("/v1/verify", {"gtin": JOURNEY_GTIN, "serial": "WI1-FAKE"})  # an alert for the list

    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("regulator", "viewer")], expect_path="/ui/inspector")
    expect(page.locator("#alerts tbody tr", has_text="WI1-FAKE")).to_contain_text("UNKNOWN_SERIAL")

    page.get_by_label("Pack, case or pallet").fill(f"https://id.gs1.org/01/{JOURNEY_GTIN}/21/WI1A")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#trail-title")).to_have_text(f"Pack {JOURNEY_GTIN} / WI1A")
    trail = consortium.as_("regulator", "viewer").get(f"/v1/provenance/(01){JOURNEY_GTIN}(21)WI1A")
    steps = page.locator("#timeline li")
    expect(steps).to_have_count(len(trail["steps"]))
    expect(steps.last).to_contain_text("decommissioned (dispensed) by City Pharmacy")
    expect(page.locator("#timeline")).to_contain_text("shipped by Alpine Logistics 3PL")

    # the custody path: three parties, two hand-overs with their dates
    diagram = page.locator("#diagram svg")
    expect(diagram.locator("g.party")).to_have_count(3)
    expect(diagram.locator("g.handover")).to_have_count(2)
    expect(diagram).to_contain_text("Alpine Logistics 3PL")
    screen.shot("inspector-trail")

    # the evidence bundle, downloaded from the page, verifies against the chain
    bundle = download(page, "Evidence bundle (JSON)", tmp_path / "bundle.json")
    assert json.loads(bundle.read_text())["subject"]["serial"] == "WI1A"
    checked = _cli("verify-bundle", str(bundle), "--rpc", net.devnet.rpc_url)
    assert checked.exit_code == 0, checked.output
    assert "proven" in checked.output
    pdf = download(page, "PDF report", tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    table = download(page, "CSV", tmp_path / "report.csv")
    assert len(list(csv.DictReader(io.StringIO(table.read_text())))) == len(trail["steps"])
    epcis = json.loads(download(page, "EPCIS export", tmp_path / "epcis.json").read_text())
    assert epcis["type"] == "EPCISDocument" and epcis["epcisBody"]["eventList"]

    # a certificate dropped on the page: the maker's CoA matches, a forged one does not
    drop_file(page, "#dropzone", "coa.txt", "CoA WI-1")
    expect(page.locator("#cert-result")).to_contain_text("✓ coa.txt matches certificate #0 (analysis")
    drop_file(page, "#dropzone", "forged.txt", "CoA WI-1 (altered)")
    expect(page.locator("#cert-result")).to_contain_text("✕ forged.txt matches no certificate")
    screen.shot("inspector-certificate-check")

    # the batch by its lot, the organisation by its name
    page.get_by_label("Pack, case or pallet").fill("WI-1")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#batch-title")).to_have_text(f"Batch WI-1 of {JOURNEY_GTIN}")
    expect(page.locator("#batch-facts")).to_contain_text(bid)
    expect(page.locator("#batch-units tbody tr", has_text="City Pharmacy")).to_have_count(
        2
    )  # active, dispensed
    screen.shot("inspector-batch")
    page.get_by_label("Pack, case or pallet").fill("Contract Manufacturing")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#org-title")).to_have_text("Contract Manufacturing GmbH")
    expect(page.locator("#org-batches")).to_contain_text("WI-1")

    # not found: said plainly, nothing else shown
    page.get_by_label("Pack, case or pallet").fill(f"(01){JOURNEY_GTIN}(21)NO-SUCH-PACK")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#search-error")).to_contain_text("no such pack")
    expect(page.locator("#trail")).to_be_hidden()


def test_a_partner_sees_its_own_part_of_a_trail(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    """The pharmacy inspecting a pack it received: parties it may not see are shown by their kind."""
    case = sscc("4098765", 930_001)
    released_batch(consortium, "WI-2", ["WI2A"], [case])
    consortium.as_("cmo").post(
        "/v1/shipments", {"shipment_id": "WI-S3", "to_gln": consortium.glns["3pl"], "containers": [case]}
    )
    tpl = consortium.as_("3pl")
    tpl.post("/v1/shipments/WI-S3/receive")
    tpl.post(
        "/v1/shipments", {"shipment_id": "WI-S4", "to_gln": consortium.glns["pharmacy"], "containers": [case]}
    )
    consortium.as_("pharmacy").post("/v1/shipments/WI-S4/receive")

    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("pharmacy", "viewer")])
    page.goto(f"/ui/inspector?q=(00){case}")
    expect(page.locator("#trail-title")).to_have_text(f"Container (SSCC) {case}")
    expect(page.locator("#timeline")).to_contain_text("another organisation (cmo)")
    expect(page.locator("#timeline")).to_contain_text("received by City Pharmacy")
    expect(page.locator("#diagram svg g.party", has_text="another organisation (cmo)")).to_contain_text(
        "GLN withheld"
    )
    screen.shot("inspector-partner-view")
