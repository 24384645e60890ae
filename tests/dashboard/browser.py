"""Headless Chromium for the dashboard's browser tests: one browser per test session (the `browser` fixture), a
fresh context per test (the `ui` fixture, a page plus the live server's address), both registered once through
tests/dashboard/conftest.py so that every browser test module shares the one Playwright instance (a second
`sync_playwright()` in the same session would fail).

Chromium comes from Debian (`apt-get install chromium`; .ci/run installs it): Playwright's own browser download is
not used. A missing browser or Playwright fails these tests; POSTWERK_SKIP_BROWSER_TESTS=1 skips them explicitly
(never set in CI). Every page visited can be saved as a screenshot under tests/artifacts/screenshots/
(POSTWERK_SCREENSHOT_DIR), and every test fails on a console error, which includes any Content-Security-Policy
violation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("POSTWERK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("POSTWERK_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "artifacts" / "screenshots")
)


def _unavailable(reason: str) -> None:
    if os.environ.get("POSTWERK_SKIP_BROWSER_TESTS") == "1":
        pytest.skip(f"{reason} (POSTWERK_SKIP_BROWSER_TESTS=1)")
    pytest.fail(
        f"{reason}. Install it (apt-get install chromium; pip install playwright) or set "
        "POSTWERK_SKIP_BROWSER_TESTS=1 to skip the browser tests on purpose.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("The playwright package is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"Chromium not found at {CHROMIUM}")
    # Playwright's sync API keeps an asyncio loop running in this thread; the test's own ORM calls are
    # synchronous all the same, so Django's guard against ORM use inside a loop does not apply here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Ui:
    """A page plus the live server's address, with the few steps every test takes."""

    def __init__(self, page, base_url: str) -> None:  # type: ignore[no-untyped-def]
        self.page, self.base = page, base_url
        self.errors: list[str] = []
        self.other_sites_ok = False
        page.on("console", lambda msg: msg.type == "error" and self._console_error(msg))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())  # data-confirm questions are answered yes

    def _console_error(self, msg) -> None:  # type: ignore[no-untyped-def]
        url = (msg.location or {}).get("url", "")
        if self.other_sites_ok and url and not url.startswith(self.base):
            return  # another site's page (an identity provider's login): not ours to judge
        self.errors.append(msg.text)

    def go(self, path: str, status: int = 200) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response and response.status)
        if status >= 400:  # the browser logs the status it was told to expect
            self.page.wait_for_load_state()
            self.errors[:] = [e for e in self.errors if f"status of {status}" not in e]

    def login(self, username: str) -> None:
        self.go("/")
        self.page.get_by_label("Username").fill(username)
        from tests.dashboard.conftest import PASSWORD

        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_load_state()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def nav(self, name: str) -> None:
        """Follow a main navigation link, opening the phone's Menu, or the Settings or operators' menu that holds
        it, first when it is folded."""
        nav = self.page.get_by_role("navigation", name="Main")
        toggle = nav.get_by_role("button", name="Menu")
        if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
            toggle.click()
        link = nav.get_by_role("link", name=name, exact=True)
        if not link.is_visible():
            # By text: a link inside a closed menu is hidden, so not found by its role.
            nav.locator("details", has_text=name).locator("summary").click()
        link.click()
        self.page.wait_for_load_state()


@pytest.fixture
def ui(browser, live_server) -> Iterator[Ui]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    helper = Ui(page, live_server.url)
    yield helper
    context.close()
    assert not helper.errors, helper.errors
