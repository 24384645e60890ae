"""The dashboard in a real browser: headless Chromium driven by Playwright against a live server.

One browser for the whole session, a fresh context (cookies, clipboard permissions) per test: the fixtures live
in tests/dashboard/browser.py, shared by every browser test module. Every page visited is saved as a screenshot
under tests/artifacts/screenshots/ (POSTWERK_SCREENSHOT_DIR), and every test fails on a console error, which
includes any Content-Security-Policy violation.

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
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # reported by the browser fixture, which fails every test here
    expect = None

from accounts.models import Membership
from sending.models import Domain
from tests.conftest import add_mx_domain, deliver_queued
from tests.dashboard.browser import Ui, _unavailable
from tests.dashboard.conftest import PASSWORD
from tests.test_ses_compat import ses_client

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_release_a_held_message_and_see_it_delivered(ui, owner, organization, api, zone, mx, make_user):
    from sending.models import Recipient
    from tests.dashboard.conftest import pause, send

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    rep = pause(organization)
    send(api, to=["held@dest.example"], subject="Held order 77", tags=["order"])
    send(api, to=["other@dest.example"], subject="Newsletter", tags=["news"])
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    ui.login("owner")
    ui.page.get_by_text("Sending is paused for the organization").wait_for()
    ui.shot("30-overview-paused")

    # The operator resumes the organization with a reason on the organizations page.
    ui.nav("Organizations")
    ui.shot("31-ops-organizations")
    ui.page.get_by_role("link", name="Acme").click()
    ui.page.get_by_label("Reason to resume organization Acme").fill("list cleaned, checked with the customer")
    ui.page.get_by_role("button", name="Resume").click()
    ui.page.get_by_text("Resumed Organization Acme").wait_for()
    ui.shot("32-ops-organization-resumed")
    rep.refresh_from_db()
    assert rep.state == "ok"

    ui.nav("Held")
    ui.page.get_by_label("Tag").fill("order")
    ui.page.get_by_role("button", name="Filter").click()
    ui.page.get_by_role("heading", name="1 held recipient matching").wait_for()
    ui.shot("33-held-filtered")
    ui.page.get_by_role("button", name="Release matching…").click()
    ui.page.get_by_role("heading", name="Release 1 held recipient?").wait_for()
    ui.shot("34-held-release-dry-run")
    assert Recipient.objects.get(address="held@dest.example").state == "held"  # the dry run changed nothing
    ui.page.get_by_role("button", name="Confirm: release 1").click()
    ui.page.get_by_text("1 held recipient released").wait_for()
    ui.shot("35-held-released")

    assert deliver_queued() == 1
    assert [m.rcpt_tos[0] for m in sink.messages] == ["held@dest.example"]
    assert Recipient.objects.get(address="other@dest.example").state == "held"
    ui.nav("Messages")
    ui.page.get_by_role("link", name="Held order 77").click()
    timeline = ui.page.locator("ol.timeline")
    timeline.wait_for()
    assert re.search(r"held.*released.*sent.*delivered", timeline.inner_text(), re.S)
    ui.shot("36-released-message-timeline")


def test_invite_by_email_and_join_from_the_link(ui, owner, organization, browser, live_server):
    from django.core import mail

    ui.login("owner")
    ui.nav("Members")
    ui.page.get_by_label("Email address").fill("newcomer@people.example")
    ui.page.locator("#invite_role").select_option("viewer")
    ui.page.get_by_role("button", name="Send invitation").click()
    link = ui.page.locator("#invitation-link").inner_text().strip()
    assert link in mail.outbox[-1].body
    ui.shot("40-members-invited")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    guest = Ui(context.new_page(), live_server.url)
    guest.page.goto(link)
    guest.page.get_by_role("heading", name="Join Acme").wait_for()
    guest.shot("41-invitation-accept")
    guest.page.get_by_label("Username").fill("newcomer")
    guest.page.get_by_label("Password", exact=True).fill("a long enough passphrase 7")
    guest.page.get_by_label("Password confirmation").fill("a long enough passphrase 7")
    guest.page.get_by_role("button", name="Create account and join").click()
    guest.page.get_by_text("Welcome to Acme: you are viewer").wait_for()
    guest.shot("42-invitation-joined")
    context.close()
    assert not guest.errors, guest.errors
    assert Membership.objects.get(user__username="newcomer").role == "viewer"


def test_login_lockout_is_explained(ui, owner, settings):
    settings.POSTWERK_LOGIN_MAX_FAILURES = 2
    ui.go("/login/")
    for _ in range(2):
        ui.page.get_by_label("Username").fill("owner")
        ui.page.get_by_label("Password").fill("wrong")
        ui.page.get_by_role("button", name="Log in").click()
        ui.page.wait_for_load_state()
    ui.page.get_by_label("Username").fill("owner")
    ui.page.get_by_label("Password").fill(PASSWORD)
    ui.page.get_by_role("button", name="Log in").click()
    ui.page.get_by_text("Too many failed log-in attempts").wait_for()
    ui.errors[:] = [e for e in ui.errors if "status of 429" not in e]
    ui.shot("43-login-locked")


def test_an_owner_resumes_a_key_its_own_thresholds_paused(ui, owner, organization, delivered, settings):
    from accounts.models import ApiKey
    from sending.models import Reputation

    settings.POSTWERK_REPUTATION_MIN_DELIVERIES = 2  # the fixture's two outcomes: one delivered, one hard bounce
    settings.POSTWERK_REPUTATION_THRESHOLDS = {
        "bounce_warning": 0.55,
        "bounce_pause": 0.6,
        "complaint_warning": 0.001,
        "complaint_pause": 0.005,
    }
    key = ApiKey.objects.get(organization=organization, name="test")
    ui.login("owner")
    ui.nav("Reputation")
    card = ui.page.locator("article", has=ui.page.get_by_role("heading", name="API key test"))
    card.get_by_text("Own thresholds").click()
    card.get_by_label("Bounce pause (%)").fill("70")
    card.get_by_role("button", name="Save thresholds of test").click()
    ui.page.get_by_text("May only be stricter than the platform's 0.6.").wait_for()
    ui.errors[:] = [e for e in ui.errors if "status of 400" not in e]  # the refused form's answer, expected
    ui.shot("50-reputation-threshold-refused")

    card = ui.page.locator("article", has=ui.page.get_by_role("heading", name="API key test"))
    card.get_by_label("Bounce warning (%)").fill("20")
    card.get_by_label("Bounce pause (%)").fill("30")
    card.get_by_role("button", name="Save thresholds of test").click()
    ui.page.get_by_text("Thresholds of API key test saved; its state is now paused.").wait_for()
    ui.shot("51-reputation-breaker-tripped")
    rep = Reputation.objects.get(scope="api_key", scope_id=key.pk)
    assert rep.state == "paused" and rep.bounce_pause == 0.3

    card = ui.page.locator("article", has=ui.page.get_by_role("heading", name="API key test"))
    card.get_by_label("Reason to resume").fill("fixed the import that mailed stale addresses")
    card.get_by_role("button", name="Resume API key test").click()
    ui.page.get_by_text("Resumed API key test").wait_for()
    card = ui.page.locator("article", has=ui.page.get_by_role("heading", name="API key test"))
    card.get_by_text("History").click()
    ui.shot("52-reputation-resumed")
    rep.refresh_from_db()
    assert rep.state == "ok" and rep.resumed_by == "user:owner"


def test_operators_unlock_a_log_in_and_see_blocklists_and_throttling(ui, owner, organization, api, zone, mx, settings):
    from django.test import Client

    from sending.delivery import throttling
    from sending.reputation.blocklists import blocklists_check

    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    settings.POSTWERK_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        Client().post("/login/", {"username": "locked-out", "password": "wrong"})

    settings.POSTWERK_SENDING_IPS = ["127.0.0.10", "127.0.0.11"]
    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = ["dbl.test"]
    zone.add("10.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("10.0.0.127.bl.test", "TXT", "Listed: see https://bl.test/lookup")
    zone.add("acme.example.dbl.test", "A", "127.0.1.2")
    blocklists_check()

    settings.POSTWERK_THROTTLE_RULES = []
    settings.POSTWERK_THROTTLE_CACHE_SECONDS = 0
    throttling.rules_forget()
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    for n in range(3):
        api_post_ok = api.post(
            "/api/v1/messages",
            {"from": "hello@acme.example", "to": [f"u{n}@dest.example"], "text": "Hi"},
            format="json",
        )
        assert api_post_ok.status_code == 202
    sink.data_reply = "421 4.7.0 Too many messages, slow down"
    deliver_queued()

    ui.login("owner")
    ui.page.get_by_text("acme.example is listed on the blocklist dbl.test").wait_for()
    ui.shot("53-overview-blocklisted")
    ui.nav("Log-ins")
    ui.page.get_by_label("Username").fill("locked-out")
    ui.page.get_by_role("button", name="Look up").click()
    ui.page.get_by_text("2 of 2 allowed in this window").wait_for()
    ui.shot("54-ops-login-locked")
    ui.page.get_by_role("button", name="Unlock").click()
    ui.page.get_by_text("Unlocked user locked-out").wait_for()
    ui.shot("55-ops-login-unlocked")

    ui.nav("Organizations")
    ui.page.get_by_role("heading", name="Blocklists").wait_for()
    ui.shot("56-ops-organizations-blocklists")
    ui.nav("Queue")
    ui.page.get_by_role("heading", name="Backed off and throttled destinations").wait_for()
    assert "Too many messages, slow down" in ui.page.locator("main").inner_text()
    ui.shot("57-queue-backed-off")
    throttling.rules_forget()


def test_a_purged_message_says_so(ui, owner, organization, api, zone, mx, settings):
    from datetime import timedelta

    from django.utils import timezone

    from sending.operations.retention import retention_purge

    settings.POSTWERK_RETENTION_RAW_DAYS = 7
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    response = api.post(
        "/api/v1/messages",
        {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Old order", "html": "<p>Hi</p>"},
        format="json",
    )
    assert response.status_code == 202
    deliver_queued()
    assert retention_purge(now=timezone.now() + timedelta(days=8)).bodies_purged == 1
    ui.login("owner")
    ui.nav("Messages")
    ui.page.get_by_role("link", name="Old order").click()
    ui.page.get_by_text("Body purged after 7 days.").wait_for()
    assert ui.page.locator("iframe").count() == 0
    ui.shot("58-message-body-purged")


def totp_now(secret: str, *, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows for this base32 key, computed with django-otp's TOTP (RFC 6238)."""
    import base64
    import time

    from django_otp.oath import TOTP

    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def test_enrol_two_factor_with_the_qr_page_then_sign_in_with_a_code(ui, owner, organization):
    ui.login("owner")
    ui.page.get_by_role("link", name="Two-factor").click()
    ui.page.get_by_role("heading", name="Two-factor sign-in").wait_for()
    qr = ui.page.locator("#totp-qr")
    assert ui.page.evaluate(
        "(img) => img.complete && img.naturalWidth > 0", qr.element_handle()
    )  # drawn, CSP allows it
    secret = ui.page.locator("#totp-secret").inner_text().strip()
    ui.shot("60-two-factor-enrol")
    ui.page.get_by_label("Code").fill(totp_now(secret))
    ui.page.get_by_role("button", name="Turn on two-factor").click()
    ui.page.get_by_role("heading", name="Your recovery codes").wait_for()
    assert ui.page.locator("#recovery-codes li").count() == 10
    ui.shot("61-two-factor-recovery-codes")

    ui.page.get_by_role("button", name="Log out").click()
    ui.page.wait_for_load_state()
    ui.login("owner")
    ui.page.get_by_role("heading", name="Enter your two-factor code").wait_for()
    ui.shot("62-two-factor-code")
    ui.page.get_by_label("Code").fill("000000")
    ui.page.get_by_role("button", name="Verify").click()
    ui.page.get_by_text("That code is not right").wait_for()
    ui.errors[:] = [e for e in ui.errors if "status of 400" not in e]
    # The wrong code made the device wait (django-otp's throttle): let the test not wait for it.
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.filter(user=owner).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    ui.page.get_by_label("Code").fill(totp_now(secret, steps_ahead=1))
    ui.page.get_by_role("button", name="Verify").click()
    ui.page.get_by_role("heading", name="Overview").wait_for()


def test_an_organization_requiring_two_factor_sends_a_member_to_enrolment(
    ui, owner, member, organization, browser, live_server
):
    member("developer")
    ui.login("owner")
    ui.nav("Members")
    ui.page.get_by_label("Require two-factor of every member").check()
    ui.page.get_by_role("region", name="Two-factor sign-in").get_by_role("button", name="Save").click()
    ui.page.get_by_text("Every member must now sign in with two-factor").wait_for()
    # The owner has no two-factor yet: the next page is enrolment.
    ui.go(f"/o/{organization.pk}/messages/")
    ui.page.get_by_text("requires two-factor sign-in").wait_for()
    ui.shot("63-two-factor-required")


def test_sandbox_key_mail_is_captured_and_shown_in_the_viewer(ui, owner, domain, zone, mx, live_server):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ui.login("owner")
    ui.nav("API keys & SMTP")
    ui.page.get_by_label("Key name").fill("sandbox-test")
    ui.page.get_by_label("Sandbox", exact=True).check()
    ui.page.get_by_role("button", name="Create API key").click()
    ui.page.get_by_role("heading", name="Sandbox API key “sandbox-test” created").wait_for()
    secret = ui.page.locator("#new-api-key").inner_text().strip()

    status, body = api_post(
        live_server.url,
        secret,
        "/api/v1/messages",
        {
            "from": "Acme <hello@acme.example>",
            "to": ["jane@dest.example", "bounce-hard@sandbox.postwerk.test"],
            "subject": "Sandbox order 77",
            "text": "Plain words for order 77",
            "html": "<h1 id='hello'>Order 77</h1><script>document.title='ran'</script><img src='https://tracker.example/p.gif'>",
        },
    )
    assert status == 202, body
    assert deliver_queued() == 2
    assert sink.messages == []  # captured, not delivered

    ui.nav("Sandbox")
    ui.shot("64-sandbox-list")
    ui.page.locator("#captures tr", has_text="jane@dest.example").get_by_role("link").click()
    ui.page.get_by_role("heading", name="Sandbox order 77").wait_for()
    frame = ui.page.frame_locator("iframe.html-preview")
    expect(frame.locator("#hello")).to_have_text("Order 77")
    assert (
        frame.locator("body").evaluate("(body) => body.ownerDocument.title") != "ran"
    )  # scripts do not run in the preview
    assert "Plain words for order 77" in ui.page.locator("#capture-text").inner_text()
    assert "DKIM-Signature" in ui.page.locator("#capture-headers").inner_text()
    ui.page.get_by_text("Raw source", exact=True).click()
    assert ui.page.locator("#capture-raw").inner_text().startswith("DKIM-Signature:")
    assert "250 2.0.0" in ui.page.locator("#capture-reply").inner_text()
    ui.shot("65-sandbox-capture")

    ui.nav("Sandbox")
    ui.page.locator("#captures tr", has_text="bounce-hard@").get_by_role("link").click()
    assert "550 5.1.1" in ui.page.locator("#capture-reply").inner_text()
    # The remote image and the script were refused by the preview's CSP: those console errors are expected.
    ui.errors[:] = [e for e in ui.errors if "Content Security Policy" not in e and "Blocked script" not in e]


OIDC_PROVIDER_DIR = Path(__file__).resolve().parents[1] / "servers" / "oidc_provider"


@pytest.fixture
def oidc_provider(live_server, settings):  # type: ignore[no-untyped-def]
    """panva's oidc-provider (npm, OpenID-certified) on a free loopback port, with Postwerk registered as its client
    and single sign-on configured as the POSTWERK_OIDC_* variables would."""
    import shutil
    import socket
    import subprocess

    node = shutil.which("node")
    if node is None or not (OIDC_PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable(
            f"node or oidc-provider is missing (apt-get install nodejs npm; npm ci --prefix {OIDC_PROVIDER_DIR})"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OIDC_CLIENT_ID": "postwerk",
        "OIDC_CLIENT_SECRET": "a-client-secret-for-the-test",
        "OIDC_REDIRECT_URI": f"{live_server.url}/oidc/callback/",
        "OIDC_EMAIL": "owner@people.example",
    }
    process = subprocess.Popen(  # noqa: S603 - our own script
        [node, "provider.mjs", str(port)], cwd=OIDC_PROVIDER_DIR, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        settings.POSTWERK_OIDC_ENABLED = True
        settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = env["OIDC_CLIENT_ID"], env["OIDC_CLIENT_SECRET"]
        settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{issuer}/auth"
        settings.OIDC_OP_TOKEN_ENDPOINT = f"{issuer}/token"
        settings.OIDC_OP_USER_ENDPOINT = f"{issuer}/me"
        settings.OIDC_OP_JWKS_ENDPOINT = f"{issuer}/jwks"
        settings.CSRF_TRUSTED_ORIGINS = [issuer]
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sign_in_with_openid_connect_through_a_real_provider(ui, owner, organization, oidc_provider):
    ui.other_sites_ok = True
    ui.go("/login/")
    ui.page.get_by_role("link", name="Sign in with single sign-on").click()
    # The provider's own development login and consent pages.
    ui.page.locator("input[name=login]").fill("jane")
    ui.page.locator("input[name=password]").fill("anything")
    ui.page.locator("button[type=submit]").click()
    ui.page.wait_for_load_state()
    ui.page.locator("button[type=submit]", has_text="Continue").click()
    ui.page.get_by_role("heading", name="Overview").wait_for()
    assert ui.page.url.startswith(ui.base)
    ui.shot("66-signed-in-with-sso")


def test_single_sign_on_finds_no_account_for_an_unknown_email(ui, member, organization, oidc_provider):
    member("viewer")  # viewer@people.example: the provider's account is owner@people.example, who does not exist
    ui.other_sites_ok = True
    ui.go("/login/")
    ui.page.get_by_role("link", name="Sign in with single sign-on").click()
    ui.page.locator("input[name=login]").fill("jane")
    ui.page.locator("input[name=password]").fill("anything")
    ui.page.locator("button[type=submit]").click()
    ui.page.wait_for_load_state()
    ui.page.locator("button[type=submit]", has_text="Continue").click()
    ui.page.get_by_text("Single sign-on did not sign you in").wait_for()


def test_an_owner_follows_an_ips_warm_up_and_a_providers_suspension(ui, owner, organization, api, zone, mx):
    from datetime import UTC

    from django.utils import timezone

    from sending.delivery import egress, shaping
    from sending.delivery.pools import ip_add, pool_create, schedule_create

    sink = mx("127.0.0.4")
    sink.data_reply = (
        "550 5.7.1 Unfortunately, messages from [127.0.0.21] weren't sent. Please contact your Internet service "
        "provider since part of their network is on our block list (S3150)."
    )
    zone.add("contoso.example", "MX", "0 contoso-example.mail.protection.outlook.com.")
    zone.add("contoso-example.mail.protection.outlook.com", "A", "127.0.0.4")
    add_mx_domain(zone, "dest.example", "127.0.0.4")
    zone.add("21.0.0.127.in-addr.arpa", "PTR", "out1.postwerk-ips.example.")
    zone.add("out1.postwerk-ips.example", "A", "127.0.0.21")
    pool = pool_create(name="acme-dedicated", organization=organization)
    today = timezone.now().astimezone(UTC).date()
    ip_add(
        address="127.0.0.21",
        ehlo_name="out1.postwerk-ips.example",
        pool=pool,
        warmup_started=today,
        schedule=schedule_create(name="gentle", volumes=[20, 40]),
    )
    egress.pools_forget()
    shaping.states_forget()
    for to in ("jane@contoso.example", "john@dest.example"):
        response = api.post(
            "/api/v1/messages", {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "x"}, format="json"
        )
        assert response.status_code == 202
    deliver_queued()

    ui.login("owner")
    ui.nav("Sending IPs")
    table = ui.page.locator("table").inner_text()
    assert "127.0.0.21" in table and "out1.postwerk-ips.example" in table
    assert "day 1 of 2: 20 a provider today" in table
    assert "Microsoft (Outlook.com, Hotmail, Microsoft 365): suspended" in table
    assert "other 1/20" in table
    ui.shot("40-sending-ips")


def test_first_run_sign_in_link_lands_in_the_dashboard(ui, settings, live_server):
    """`provision --owner` prints a one-time link; opening it and pressing Sign in lands on the organization's
    overview, signed in as its owner; the link is then used up."""
    from io import StringIO

    from django.core.management import call_command

    settings.POSTWERK_DASHBOARD_URL = live_server.url
    out = StringIO()
    call_command("provision", "--org", "Firstrun", "--owner", "first@people.example", "--no-api-key", stdout=out)
    link = re.search(r"Sign-in link \(works once, for a limited time\): (\S+)", out.getvalue()).group(1)
    assert link.startswith(live_server.url + "/signin/")

    ui.page.goto(link)
    ui.page.get_by_role("heading", name="Sign in to Postwerk").wait_for()
    ui.shot("50-first-run-sign-in-link")
    ui.page.get_by_role("button", name="Sign in as first@people.example").click()
    ui.page.get_by_role("heading", name="Overview").wait_for()
    assert "Set a password" in ui.page.locator(".flash").inner_text()
    ui.shot("51-first-run-overview")

    ui.nav("Audit log")
    ui.page.get_by_role("cell", name="manage.py provision").first.wait_for()
    assert "member.added" in ui.page.locator("table.audit").inner_text()
    ui.shot("52-audit-log")

    ui.go(link.removeprefix(live_server.url), status=404)
    ui.page.get_by_role("heading", name="This sign-in link is not valid any more").wait_for()


def test_template_editor_previews_html_and_text_as_you_type_then_saves_versions(ui, owner, organization):
    from sending.models import Template
    from sending.templating.service import template_create

    template_create(
        organization=organization,
        kind="layout",
        alias="brand",
        name="Brand",
        html="<html><head><style>.brand { color: #112233; }</style></head>"
        '<body><p class="brand">Acme</p>{{ content }}</body></html>',
    )
    ui.login("owner")
    ui.nav("Templates")
    ui.page.get_by_role("link", name="New template").click()
    ui.page.get_by_label("Alias").fill("welcome")
    ui.page.get_by_label("Name").fill("Welcome")
    ui.page.get_by_label("Subject").fill("Hello {{ name }}")
    ui.page.get_by_label("Layout").select_option(label="brand")
    ui.page.get_by_label("Test model (JSON)").fill('{"name": "Jane", "items": ["a", "b"]}')
    ui.page.get_by_label("HTML").fill("<h1>Hi {{ name }}</h1><ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>")

    # The preview follows the typing: subject, the generated text, and the HTML (layout, CSS inlined) in its frame.
    expect(ui.page.locator("#preview-subject")).to_have_text("Hello Jane")
    expect(ui.page.locator("#preview-text")).to_have_text("Acme\n\nHi Jane\n\n  * a\n  * b\n")
    frame = ui.page.frame_locator("#preview-html")
    expect(frame.locator("h1")).to_have_text("Hi Jane")
    expect(frame.locator("p.brand")).to_have_attribute("style", "color: #112233;")
    ui.shot("30-template-editor-preview")

    # A syntax error is reported with its line; a variable the test model lacks is named.
    ui.page.get_by_label("HTML").fill("<h1>Hi {{ name }}</h1>\n{% for i in %}")
    expect(ui.page.locator("#preview-errors")).to_have_text(
        "html, line 2: Expected an expression, got 'end of statement block'"
    )
    ui.page.get_by_label("HTML").fill("<h1>Hi {{ name }} {{ surname }}</h1>")
    expect(ui.page.locator("#preview-missing")).to_have_text("The test model lacks: surname")
    expect(frame.locator("h1")).to_have_text("Hi Jane ")

    ui.page.get_by_role("button", name="Create template").click()
    ui.page.get_by_role("heading", name="Template welcome version 1").wait_for()
    ui.page.get_by_label("Subject").fill("Welcome {{ name }}")
    ui.page.get_by_role("button", name="Save as a new version").click()
    ui.page.get_by_text("Saved as version 2.").wait_for()
    ui.page.get_by_role("button", name="Restore version 1").click()
    ui.page.get_by_text("Version 1 restored as version 3.").wait_for()
    template = Template.objects.get(alias="welcome")
    assert template.active_version.number == 3
    assert template.active_version.subject == "Hello {{ name }}"
    ui.shot("31-template-versions")
    ui.nav("Templates")
    assert "welcome" in ui.page.locator("table").inner_text()


def test_create_a_key_with_an_ses_access_key_and_send_with_boto3(ui, owner, domain, zone, mx, live_server):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ui.login("owner")
    ui.nav("API keys & SMTP")
    ui.page.get_by_label("Key name").fill("ses-app")
    ui.page.get_by_label("SES access key").check()
    ui.page.get_by_role("button", name="Create API key").click()
    access_key_id = ui.page.locator("#new-ses-access-key-id").inner_text().strip()
    secret = ui.page.locator("#new-ses-secret-access-key").inner_text().strip()
    ui.shot("08-ses-access-key-created")

    answer = ses_client(live_server.url, access_key_id, secret).send_email(
        FromEmailAddress="hello@acme.example",
        Destination={"ToAddresses": ["jane@dest.example"]},
        Content={"Simple": {"Subject": {"Data": "From the dashboard's key"}, "Body": {"Text": {"Data": "Hi"}}}},
    )
    assert answer["MessageId"]
    assert deliver_queued() == 1
    assert sink.wait_for(1)
    assert b"\r\nSubject: From the dashboard's key\r\n" in sink.messages[0].data


def test_streams_page_adds_a_broadcast_stream_lists_scheduled_mail_and_cancels_it(ui, owner, organization, api):
    from datetime import timedelta

    from django.utils import timezone

    from sending.models import Recipient, Stream
    from tests.dashboard.conftest import send

    send_at = (timezone.now() + timedelta(hours=5)).replace(microsecond=0)
    scheduled = send(api, subject="Weekly digest", send_at=send_at.isoformat(), priority="high")
    ui.login("owner")
    ui.nav("Streams")
    ui.page.get_by_role("heading", name="Message streams").wait_for()
    streams = ui.page.get_by_role("region", name="Message streams")
    expect(streams.get_by_role("row", name=re.compile("^transactional"))).to_contain_text("transactional")

    ui.page.get_by_label("Name").fill("newsletter")
    ui.page.get_by_label("Description").fill("Monthly news")
    ui.page.get_by_role("button", name="Add stream").click()
    row = ui.page.get_by_role("region", name="Message streams").get_by_role("row", name=re.compile("^newsletter"))
    expect(row).to_contain_text("broadcast")
    expect(row).to_contain_text("Monthly news")
    assert Stream.objects.get(organization=organization, name="newsletter").kind == "broadcast"

    waiting = ui.page.get_by_role("row", name=re.compile("Weekly digest"))
    expect(waiting).to_contain_text(f"{send_at:%Y-%m-%d %H:%M:%S} UTC")
    expect(waiting).to_contain_text("jane@dest.example")
    ui.shot("32-streams")
    # The message page says when it goes, on which stream and at which priority.
    waiting.get_by_role("link", name="Weekly digest").click()
    expect(ui.page.locator("#message-send-at")).to_have_text(f"{send_at:%Y-%m-%d %H:%M:%S} UTC")
    expect(ui.page.locator("#message-stream")).to_have_text("transactional · high priority")
    ui.page.go_back()

    ui.page.get_by_role("row", name=re.compile("Weekly digest")).get_by_role("button", name="Cancel message").click()
    ui.page.get_by_text("Cancelled 1 recipient(s) of Weekly digest.").wait_for()
    ui.page.get_by_text("No scheduled mail.").wait_for()
    assert Recipient.objects.get(message_id=scheduled["id"]).state == "cancelled"
