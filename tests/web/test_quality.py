"""Quality, in a real browser: the sponsor's QP anchors a certificate, releases a batch through the
e-signature dialog (a wrong credential first), recalls it, and follows the recall dashboard."""

from __future__ import annotations

from playwright.sync_api import Browser, FilePayload, Page, expect

from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from tests.api.conftest import CREDENTIAL, ApiNet, Consortium
from tests.web.conftest import Screen, open_screen, sign_in


def sign(page: Page, credential: str) -> None:
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Signing credential").fill(credential)
    dialog.get_by_label("I confirm").check()
    dialog.get_by_role("button", name="Sign").click()


def test_qp_releases_and_recalls_a_batch(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    cmo = consortium.as_("cmo")
    body = {"gtin": JOURNEY_GTIN, "lot": "WQ-1", "expiry": "2029-09-30", "site_gln": SITE_GLN}
    bid = cmo.post("/v1/batches", body)["result"]["batch_id"]
    cmo.post(
        "/v1/commission",
        {"batch_id": bid, "serials": ["WQ1A", "WQ1B"], "containers": [sscc("4098765", 920_000)]},
    )
    consortium.as_("cmo", "qp").post(  # the maker's certificate of analysis, which release requires
        f"/v1/batches/{bid}/certificates", files={"file": ("coa.txt", b"CoA WQ-1", "text/plain")}
    )
    sponsor_qp = consortium.as_("sponsor", "qp")

    # an operator of the sponsor sees the batch but may not sign decisions
    viewer = open_screen(browser, screens, net)
    page = sign_in(viewer, consortium.tokens[("sponsor", "operator")], expect_path="/ui/warehouse")
    page.goto("/ui/quality")
    page.get_by_role("button", name="open batch WQ-1").click()
    expect(page.get_by_role("button", name="Release…")).to_be_disabled()

    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("sponsor", "qp")], expect_path="/ui/quality")
    row = page.locator("#batches tbody tr", has_text="WQ-1")
    expect(row).to_contain_text("quarantine")
    row.get_by_role("button", name="open batch WQ-1").click()
    expect(page.locator("#batch-status")).to_have_text("quarantine")

    expect(page.locator("#certificates tbody tr", has_text="analysis")).to_have_count(1)
    # the sponsor's certificate of conformance, uploaded and anchored from the page
    page.get_by_label("File (PDF, XML…)").set_input_files(
        files=FilePayload(name="coc-WQ-1.txt", mimeType="text/plain", buffer=b"CoC WQ-1: conforms")
    )
    page.get_by_label("Kind").select_option("conformance")
    page.get_by_role("button", name="Upload and anchor").click()
    expect(page.locator("#certificates tbody tr", has_text="conformance")).to_have_count(1)

    # release: the dialog asks for the meaning, the credential and the confirmation
    page.get_by_role("button", name="Release…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Meaning of this signature")).to_have_value("released for sale")
    expect(dialog.get_by_label("Username")).to_have_value("sponsor.qp")
    dialog.get_by_label("Reason / comment").fill("all release criteria met")
    dialog.get_by_label("QP certificate").set_input_files(
        files=FilePayload(name="qp-WQ-1.txt", mimeType="text/plain", buffer=b"QP certification WQ-1")
    )
    screen.shot("quality-signature-dialog")
    sign(page, "not my credential")
    expect(dialog.locator("#sign-error")).to_contain_text("signature:")
    assert sponsor_qp.get(f"/v1/batches/{bid}")["status"] == "quarantine"  # nothing changed

    sign(page, CREDENTIAL)
    expect(dialog).to_be_hidden()
    expect(page.locator("#batch-status")).to_have_text("released")
    expect(page.locator("#history tbody")).to_contain_text("Sponsor qp: “released for sale”")
    batch = sponsor_qp.get(f"/v1/batches/{bid}")
    assert batch["status"] == "released"
    assert sorted(c["kind"] for c in batch["certificates"]) == ["analysis", "conformance", "qp_certification"]
    (release,) = [h for h in batch["history"] if h["to_status"] == "released"]
    assert release["signature"]["reason"] == "all release criteria met"
    screen.shot("quality-released")

    # recall: the dashboard lists the batch and where its packs are
    page.get_by_role("button", name="Recall…").click()
    expect(dialog.get_by_label("Meaning of this signature")).to_have_value("recalled")
    sign(page, CREDENTIAL)
    expect(page.locator("#batch-status")).to_have_text("recalled")
    recall = page.locator(f"#recalls article[data-batch='{bid}']")
    expect(recall).to_contain_text("Lot WQ-1")
    expect(recall).to_contain_text("Contract Manufacturing GmbH")
    expect(recall.locator("tbody tr")).to_have_count(1)
    assert sponsor_qp.get(f"/v1/recalls/{bid}")["outstanding"] == 0  # still at the maker: returned
    screen.shot("quality-recall-dashboard")
