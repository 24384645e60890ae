"""The dashboard in a real browser: headless Chromium driven by Playwright against a live server.

One browser for the whole session, a fresh context (cookies, clipboard permissions) per test. Every page
visited is saved as a screenshot under tests/artifacts/screenshots/ (POSTWERK_SCREENSHOT_DIR), and every test
fails on a console error, which includes any Content-Security-Policy violation.

Chromium comes from Debian (`apt-get install chromium`; .ci/run installs it): Playwright's own browser
download is not used. A missing browser or Playwright fails these tests; POSTWERK_SKIP_BROWSER_TESTS=1 skips
them explicitly (never set in CI).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # reported by the browser fixture, which fails every test here
    expect = None

from accounts.models import Membership
from sending.models import Domain
from tests.conftest import add_mx_domain, deliver_queued
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

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
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())  # data-confirm questions are answered yes

    def go(self, path: str, status: int = 200) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response and response.status)
        if status >= 400:  # the browser logs the status it was told to expect
            self.page.wait_for_load_state()
            self.errors[:] = [e for e in self.errors if f"status of {status}" not in e]

    def login(self, username: str) -> None:
        self.go("/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_load_state()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def nav(self, name: str) -> None:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()
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


def api_post(base: str, key: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - the live test server, http only
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_log_in_and_add_a_domain_then_copy_its_records(ui, owner, domain):
    ui.login("owner")
    ui.page.get_by_role("heading", name="Overview").wait_for()
    ui.shot("01-overview")

    ui.nav("Domains")
    ui.page.get_by_label("Domain name").fill("shop.example")
    ui.page.get_by_role("button", name="Add domain").click()
    ui.page.get_by_role("heading", name="DNS records to publish").wait_for()
    added = Domain.objects.get(name="shop.example")
    key = added.dkim_keys.get()
    records = ui.page.locator("table.records")
    assert key.record_name in records.inner_text()
    assert f"postwerk-verification={added.verification_token}" in records.inner_text()
    ui.shot("02-domain-added")

    copy = ui.page.get_by_role("button", name="Copy the value of the ownership record")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert ui.page.evaluate("navigator.clipboard.readText()") == f"postwerk-verification={added.verification_token}"

    ui.page.get_by_role("button", name="Check DNS now").click()
    ui.page.get_by_text("Checked shop.example").wait_for()
    assert "cannot send yet" in ui.page.locator(".flash").inner_text()
    ui.shot("03-domain-checked")


def test_create_key_send_through_the_api_find_the_message_and_revoke_the_key(ui, owner, domain, zone, mx, live_server):
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ui.login("owner")
    ui.nav("API keys & SMTP")
    ui.page.get_by_label("Key name").fill("browser-test")
    ui.page.get_by_role("button", name="Create API key").click()
    secret = ui.page.locator("#new-api-key").inner_text().strip()
    assert secret
    ui.shot("04-api-key-created")

    status, body = api_post(
        live_server.url,
        secret,
        "/api/v1/messages",
        {
            "from": "Acme <hello@acme.example>",
            "to": ["jane@dest.example"],
            "subject": "Your order 1234",
            "text": "Thanks!",
            "html": "<h1 style='color:#1f5fbf'>Thanks!</h1><p>Your order is on its way.</p>",
            "tags": ["order"],
        },
    )
    assert status == 202, body
    assert deliver_queued() == 1

    ui.nav("Messages")
    ui.page.get_by_label("Recipient").fill("jane@dest.example")
    ui.page.get_by_role("button", name="Search").click()
    ui.page.get_by_role("link", name="Your order 1234").wait_for()
    ui.shot("05-messages-search")

    ui.page.get_by_role("link", name="Your order 1234").click()
    timeline = ui.page.locator("ol.timeline")
    timeline.wait_for()
    assert re.search(r"queued.*sent.*delivered", timeline.inner_text(), re.S)
    assert "250" in timeline.inner_text()
    frame = ui.page.frame_locator("iframe.html-preview")
    frame.get_by_role("heading", name="Thanks!").wait_for()
    ui.page.locator("iframe.html-preview").scroll_into_view_if_needed()  # an off-screen frame is not painted
    assert ui.page.locator("iframe.html-preview").get_attribute("sandbox") == ""
    ui.shot("06-message-timeline")

    ui.nav("API keys & SMTP")
    ui.page.get_by_role("button", name="Revoke API key browser-test").click()
    ui.page.get_by_text("API key browser-test revoked").wait_for()
    ui.shot("07-api-key-revoked")
    status, body = api_post(live_server.url, secret, "/api/v1/messages", {"from": "hello@acme.example"})
    assert status == 401


def test_every_page_renders_cleanly_on_desktop_and_phone(ui, owner, make_user, organization, delivered):
    Membership.objects.create(organization=organization, user=make_user("viewer"), role="viewer")
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    ui.login("owner")
    pages = [
        ("Overview", "10-overview-with-traffic"),
        ("Messages", "11-messages"),
        ("Domains", "12-domains"),
        ("Suppressions", "13-suppressions"),
        ("API keys & SMTP", "14-keys"),
        ("Members", "15-members"),
        ("Queue", "16-queue"),
    ]
    for link, name in pages:
        ui.nav(link)
        assert ui.page.locator("h1").count() == 1
        ui.shot(name)
    ui.nav("Domains")
    ui.page.get_by_role("link", name="acme.example").click()
    ui.page.get_by_role("heading", name="Checks").wait_for()
    ui.shot("17-domain-detail")

    # Keyboard: the first Tab lands on the skip link, which moves focus to the content.
    ui.page.keyboard.press("Tab")
    assert ui.page.evaluate("document.activeElement.textContent") == "Skip to content"

    ui.page.set_viewport_size({"width": 390, "height": 844})
    ui.nav("Overview")
    ui.shot("18-overview-phone")
    width = ui.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the overview scrolls sideways on a phone ({width}px)"

    ui.go("/o/999999/", status=404)  # not a member: the friendly 404, not a stack trace
    assert ui.page.get_by_role("heading", name="Not found").is_visible()
    ui.shot("19-not-found")


def test_a_viewer_sees_data_but_no_buttons(ui, member, delivered):
    member("viewer")
    ui.login("viewer")
    ui.nav("Suppressions")
    ui.page.get_by_role("heading", name="Suppression list").wait_for()
    assert ui.page.get_by_role("button", name="Suppress").count() == 0
    ui.nav("Domains")
    assert ui.page.get_by_role("button", name="Add domain").count() == 0
    assert ui.page.get_by_role("link", name="API keys & SMTP").count() == 0
    ui.shot("20-viewer-domains")
