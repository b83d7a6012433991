"""The pharmacist at the counter, in a real browser: sign in, scan with a keyboard-wedge scanner, see
the verdict, dispense, undo, scan the dispensed pack again, a falsified pack, and a tote."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from node.ledger.journey import JOURNEY_GTIN
from tests.api.conftest import ApiNet, Consortium
from tests.api.test_verification import at_pharmacy, scan
from tests.web.conftest import Screen, open_screen, sign_in


def wedge(screen: Screen, serial: str, lot: str) -> None:
    """Type a DataMatrix the way a keyboard-wedge scanner does: symbology id, AIs, and the group
    separator as Ctrl+] (ASCII 29), then Enter."""
    field = screen.page.get_by_label("Pack code")
    field.click()
    screen.page.keyboard.type(f"]d201{JOURNEY_GTIN}17290930" + f"10{lot}")
    screen.page.keyboard.press("Control+BracketRight")
    screen.page.keyboard.type(f"21{serial}")
    screen.page.keyboard.press("Enter")


def test_pharmacist_scans_dispenses_undoes_and_sees_the_alerts(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    at_pharmacy(consortium, "WB-1", ["WB1A", "WB1B"], 101)
    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("pharmacy", "operator")], expect_path="/ui/counter")
    expect(page.locator("#who-org")).to_contain_text("City Pharmacy")
    expect(page.locator("#who-user")).to_contain_text("pharmacy.operator")

    wedge(screen, "WB1A", "WB-1")
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", "ok_to_dispense")
    expect(page.locator("#verdict-word")).to_have_text("✓ OK TO DISPENSE")
    expect(page.locator("#verdict-facts")).to_contain_text("released")
    screen.shot("counter-ok-to-dispense")

    page.get_by_role("button", name="Dispense", exact=True).click()
    expect(page.locator("#verdict-word")).to_have_text("✓ DISPENSED")
    assert consortium.as_("pharmacy").post("/v1/verify", {"code": scan("WB1A", "WB-1")})["pack_status"] == (
        "dispensed"
    )
    page.get_by_role("button", name="Undo dispense").click()
    expect(verdict).to_have_attribute("data-verdict", "ok_to_dispense")
    assert consortium.as_("pharmacy").post("/v1/verify", {"code": scan("WB1A", "WB-1")})["pack_status"] == (
        "active"
    )
    page.get_by_role("button", name="Dispense", exact=True).click()
    expect(page.locator("#verdict-word")).to_have_text("✓ DISPENSED")

    # the same pack scanned again: do not dispense, and why
    wedge(screen, "WB1A", "WB-1")
    expect(verdict).to_have_attribute("data-verdict", "do_not_dispense")
    expect(page.locator("#verdict-word")).to_have_text("✕ DO NOT DISPENSE")
    expect(page.locator("#verdict-reasons")).to_contain_text("already decommissioned (dispensed)")
    expect(page.get_by_role("button", name="Dispense", exact=True)).to_be_disabled()
    screen.shot("counter-already-dispensed")

    # a serial the network never saw: a falsification signal, raised to the sponsor
    page.get_by_label("Pack code").fill(f"(01){JOURNEY_GTIN}(17)290930(10)WB-1(21)WB1-FAKE")
    page.get_by_label("Pack code").press("Enter")
    expect(verdict).to_have_attribute("data-verdict", "do_not_dispense")
    expect(page.locator("#verdict-reasons")).to_contain_text("UNKNOWN_SERIAL")
    expect(page.locator("#verdict-facts")).to_contain_text("NO: not found on the network")
    screen.shot("counter-unknown-serial")
    sponsor_alerts = consortium.as_("sponsor").get("/v1/alerts", code="UNKNOWN_SERIAL")
    assert [a["serial"] for a in sponsor_alerts if a["serial"] == "WB1-FAKE"] == ["WB1-FAKE"]

    # an invalid code: the problem names the part
    page.get_by_label("Pack code").fill("]d2019999999999999921X")
    page.get_by_label("Pack code").press("Enter")
    expect(page.locator("#scan-error")).to_contain_text("code:")

    rows = page.locator("#session-list tbody tr")
    expect(rows).to_have_count(4)  # first scan, the check after the undo, the second scan, the fake
    expect(rows.first).to_contain_text("WB1-FAKE")


def test_a_tote_is_verified_and_dispensed_together(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    at_pharmacy(consortium, "WB-2", ["WB2A", "WB2B"], 102)
    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("pharmacy", "operator")], expect_path="/ui/counter")
    page.get_by_label("Tote mode").check()
    field = page.get_by_label("Pack code")
    for code in (
        scan("WB2A", "WB-2").replace("\x1d", "<GS>"),
        f"https://id.gs1.org/01/{JOURNEY_GTIN}/10/WB-2/21/WB2B?17=290930",
        scan("WB2C-FAKE", "WB-2").replace("\x1d", "{GS}"),
    ):
        field.fill(code)
        field.press("Enter")
    expect(page.locator("#tote-count")).to_have_text("3")
    page.get_by_role("button", name="Verify tote").click()
    expect(page.locator("#tote-summary")).to_have_text("2 OK to dispense, 1 not.")
    screen.shot("counter-tote")
    page.get_by_role("button", name="Dispense all that are OK").click()
    expect(page.locator("#tote-summary")).to_have_text("Dispensed 2 pack(s).")
    pharmacy = consortium.as_("pharmacy")
    for serial in ("WB2A", "WB2B"):
        assert (
            pharmacy.post("/v1/verify", {"gtin": JOURNEY_GTIN, "serial": serial})["pack_status"]
            == "dispensed"
        )
