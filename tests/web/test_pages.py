"""What every page owes its users, checked in a real browser: a session that starts and ends with the
token, labels and accessible names, keyboard use, WCAG AA contrast, a tablet's width, and a content
security policy that lets no inline script run."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from node.ledger.journey import JOURNEY_GTIN, SITE_GLN
from tests.api.conftest import ApiNet, Consortium
from tests.web.conftest import Screen, open_screen, sign_in

PAGES = ("counter", "warehouse", "quality", "inspector")
PORTRAIT_TABLET = ViewportSize(width=768, height=1024)

# labels, WCAG contrast, language, headings and overflow of the page, measured in the page
AUDIT = (Path(__file__).parent / "audit.js").read_text()


def audit(page: Page) -> dict[str, object]:
    result: dict[str, object] = page.evaluate(AUDIT)
    return result


def test_a_session_starts_with_a_valid_token_and_ends_at_sign_out(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    screen = open_screen(browser, screens, net)
    page = screen.page
    page.goto("/ui/counter")  # no session: to the sign-in page, remembering where to go
    page.wait_for_url("**/ui/?next=%2Fui%2Fcounter")
    page.get_by_label("API token").fill("rxl_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    expect(page.get_by_label("API token")).to_have_value("")
    screen.shot("sign-in-refused")

    page.get_by_label("API token").fill(consortium.tokens[("distributor", "viewer")])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/counter")  # where the user was going, not the distributor's home page
    expect(page.locator("#who-org")).to_contain_text("Euro Wholesale Distribution")
    token_kept = page.evaluate("Object.keys(sessionStorage)")
    assert "rxledger.token" in token_kept
    assert page.context.cookies() == []  # the token never becomes a cookie

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/")
    assert page.evaluate("sessionStorage.length") == 0
    page.goto("/ui/warehouse")
    page.wait_for_url("**/ui/?next=%2Fui%2Fwarehouse")

    # a redirect target outside the pages is ignored: no open redirect through ?next=
    page.goto("/ui/?next=https%3A%2F%2Fevil.example%2F")
    page.get_by_label("API token").fill(consortium.tokens[("distributor", "viewer")])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/warehouse")


def test_a_revoked_token_ends_the_session(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    admin = net.admin
    created = admin.post(
        f"/v1/organizations/{consortium.org_ids['pharmacy']}/users",
        {"username": "pharmacy.web-temp", "printed_name": "Temp", "role": "operator"},
        wait=False,
    )
    screen = open_screen(browser, screens, net)
    page = sign_in(screen, created["token"]["token"], expect_path="/ui/counter")
    admin.post(f"/v1/tokens/{created['token']['id']}/revoke", wait=False)
    page.get_by_label("Pack code").fill("(01)09506000134352(21)ANY")
    page.get_by_label("Pack code").press("Enter")
    page.wait_for_url("**/ui/?next=%2Fui%2Fcounter")


@pytest.mark.parametrize("slug", PAGES)
def test_every_page_is_labelled_legible_keyboard_usable_and_fits_a_tablet(
    slug: str, browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    screen = open_screen(browser, screens, net, viewport=PORTRAIT_TABLET)
    page = sign_in(screen, consortium.tokens[("sponsor", "qp")])
    page.goto(f"/ui/{slug}")
    expect(page.locator("#who-user")).not_to_have_text("…")
    page.wait_for_load_state("networkidle")
    found = audit(page)
    assert found["unlabelled"] == [] and found["contrast"] == [], found
    assert (found["lang"], found["h1"]) == ("en", 1)
    assert found["overflow"] == 0, f"{found['overflow']} px wider than a portrait tablet"
    expect(page.locator("nav a[aria-current=page]")).to_have_attribute("href", f"/ui/{slug}")

    # keyboard: "Skip to content" comes first in the tab order and moves focus into the page
    page.locator("a.brand").focus()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    screen.shot(f"{slug}-tablet-portrait")


def test_the_counter_is_ready_for_the_scanner_and_the_dialog_for_the_keyboard(
    browser: Browser, screens: list[Screen], net: ApiNet, consortium: Consortium
) -> None:
    screen = open_screen(browser, screens, net)
    page = sign_in(screen, consortium.tokens[("pharmacy", "operator")], expect_path="/ui/counter")
    assert page.evaluate("document.activeElement.id") == "scan"  # scan at once, no click needed
    page.get_by_label("Tote mode").press("Space")
    expect(page.get_by_role("button", name="Add to tote")).to_be_visible()

    body = {"gtin": JOURNEY_GTIN, "lot": "WP-1", "expiry": "2029-09-30", "site_gln": SITE_GLN}
    consortium.as_("cmo").post("/v1/batches", body)
    page = sign_in(open_screen(browser, screens, net), consortium.tokens[("sponsor", "qp")])
    page.goto("/ui/quality")
    page.get_by_role("button", name="open batch WP-1").click()
    page.get_by_role("button", name="Reject…").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "sign-meaning"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_pages_are_served_with_a_strict_content_security_policy(net: ApiNet) -> None:
    with httpx.Client(base_url=net.base_url) as http:
        assert http.get("/").headers["location"] == "/ui/"
        for slug in ("", *PAGES):
            answer = http.get(f"/ui/{slug}")
            assert answer.status_code == 200, slug
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
            assert answer.headers["x-content-type-options"] == "nosniff"
            # no inline script or handler that the policy would have to allow
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text)
            assert not re.search(r"\son[a-z]+=", answer.text)
            for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', answer.text):
                assert http.get(asset).status_code == 200, asset
        missing = http.get("/ui/nowhere")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["field"] == "page"
