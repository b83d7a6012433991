"""Browser-test harness: the partner API on a real devnet (the same harness as tests/api), the demo
consortium onboarded through it, and Debian's Chromium driven by Playwright's Python package.

Playwright never downloads a browser here: it launches `/usr/bin/chromium` (or `RXLEDGER_CHROMIUM`),
headless, without the sandbox (CI runs as root) and with background networking off, so the browser
talks to nothing but the API on loopback. Screenshots of every page go to `test-artifacts/screenshots/`
(or `$RXLEDGER_ARTIFACTS/screenshots/`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect, sync_playwright

from tests.api.conftest import ApiNet, Consortium, onboard_consortium, running_network

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("RXLEDGER_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("RXLEDGER_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
]
TABLET = ViewportSize(width=1024, height=768)  # landscape


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNet]:
    with running_network(tmp_path_factory.mktemp("webnet")) as network:
        yield network


@pytest.fixture(scope="package")
def consortium(net: ApiNet) -> Consortium:
    return onboard_consortium(net)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt install chromium` (or set RXLEDGER_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Screen:
    """A signed-in browser tab, with what it logged: page errors and console errors fail the test."""

    page: Page
    errors: list[str]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def screens(browser: Browser, net: ApiNet) -> Iterator[list[Screen]]:
    opened: list[Screen] = []
    yield opened
    for screen in opened:
        screen.page.context.close()
    failures = [e for s in opened for e in s.errors]
    assert failures == [], failures


def open_screen(
    browser: Browser, screens: list[Screen], net: ApiNet, *, viewport: ViewportSize | None = None
) -> Screen:
    context = browser.new_context(
        base_url=net.base_url,
        viewport=viewport or TABLET,
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # a refused API call is logged by the browser as a failed resource load: that is the page
        # showing the problem, not a fault of the page
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    screen = Screen(page, errors)
    screens.append(screen)
    return screen


def sign_in(screen: Screen, token: str, *, expect_path: str | None = None) -> Page:
    page = screen.page
    page.goto("/ui/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    if expect_path:
        page.wait_for_url(f"**{expect_path}")
    # (no wait_for_function: its polling evaluates strings, which the pages' CSP forbids)
    expect(page.locator("#who-user")).not_to_have_text("…")
    return page
