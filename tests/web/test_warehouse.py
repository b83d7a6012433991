"""The 3PL's warehouse, in a real browser: an inbound shipment refused in part and received, the
inventory, shipping a selection on, unpacking and packing, and the operations updating live."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from node.ledger.journey import sscc
from tests.api.conftest import ApiNet, Consortium
from tests.api.test_custody import released_batch
from tests.web.conftest import Screen, open_screen, sign_in


def test_3pl_receives_ships_unpacks_and_packs(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    cases = [sscc("4098765", 910_000 + i) for i in range(3)]
    released_batch(consortium, "WW-1", [f"WW1{i:02d}" for i in range(6)], cases)
    consortium.as_("cmo").post(
        "/v1/shipments",
        {"shipment_id": "WW-S1", "to_gln": consortium.glns["3pl"], "containers": cases},
    )
    tpl = consortium.as_("3pl")

    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("3pl", "operator")], expect_path="/ui/warehouse")
    expect(page.locator("#who-org")).to_contain_text("Alpine Logistics 3PL")
    inbound = page.locator("#inbound tbody tr", has_text="WW-S1")
    expect(inbound).to_contain_text("Contract Manufacturing GmbH")
    inbound.get_by_role("button", name="open shipment WW-S1").click()
    items = page.locator("#shipment-items tbody tr")
    expect(items).to_have_count(3)
    screen.shot("warehouse-inbound-shipment")

    # one case arrived damaged: refuse it, receive the rest
    page.get_by_label(f"select case/pallet {cases[2]}").check()
    page.get_by_label("Reason (for rejected or missing items)").fill("crushed in transit")
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator("#shipment-items tbody tr", has_text=cases[2])).to_contain_text("rejected")
    page.get_by_role("button", name="Receive all").click()
    expect(page.locator("#shipment-title")).to_contain_text("0 of 3 pending")
    shipment = tpl.get("/v1/shipments/WW-S1")
    assert (shipment["received"], shipment["rejected"], shipment["pending"]) == (2, 1, 0)
    expect(page.locator("#containers tbody tr", has_text=cases[0])).to_be_visible()
    expect(page.locator("#containers tbody tr", has_text=cases[1])).to_be_visible()
    expect(page.locator("#inbound tbody tr", has_text="WW-S1")).to_have_count(0)  # nothing pending

    # ship one case on to the distributor
    page.get_by_label(f"select container {cases[0]}").check()
    expect(page.locator("#selection-summary")).to_have_text("Selected: 1 container(s), 0 loose pack(s).")
    page.get_by_label("To organisation").select_option(value=str(consortium.org_ids["distributor"]))
    page.get_by_label("Shipment id").fill("WW-S2")
    page.get_by_role("button", name="Ship", exact=True).click()
    expect(page.locator("#containers tbody tr", has_text=cases[0])).to_have_count(0)
    (onward,) = [s for s in consortium.as_("distributor").get("/v1/shipments") if s["label"] == "WW-S2"]
    assert (onward["items"], onward["pending"], onward["from_org"]) == (1, 1, consortium.org_ids["3pl"])

    # unpack the other case, then pack its loose packs into a new case
    page.get_by_role("button", name=f"unpack {cases[1]}").click()
    loose = page.locator("#units tbody tr", has_text="WW-1")
    expect(loose).to_contain_text("2")
    new_case = sscc("4098765", 910_100)
    loose.get_by_role("checkbox").check()
    page.get_by_label("Container SSCC").fill(new_case)
    page.get_by_role("button", name="Pack", exact=True).click()
    expect(page.locator("#containers tbody tr", has_text=new_case)).to_be_visible()
    expect(page.locator("#units tbody tr", has_text="WW-1")).to_have_count(0)
    inventory = tpl.get("/v1/inventory")
    assert sorted(c["sscc"] for c in inventory["containers"]) == [new_case]
    assert inventory["units"] == []

    # the operations list follows by itself: every operation of this page has succeeded
    ops = page.locator("#operations tbody tr")
    expect(ops.first).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#operations tbody tr", has_text="custody.pack")).to_have_count(1)
    screen.shot("warehouse")

    # a refused write shows the API's problem, naming the field
    page.get_by_label("Container SSCC").fill("123")
    page.get_by_role("button", name="Pack", exact=True).click()
    expect(page.locator("#warehouse-error")).to_contain_text("container")
