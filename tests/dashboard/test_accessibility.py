"""An automated accessibility check of the dashboard's main pages: Deque's axe-core (from the npm registry, pinned
by tests/servers/axe/package-lock.json; `make test` runs its `npm ci`) is evaluated in each page by Playwright,
in headless Chromium, at a desktop (1400 px) and a phone (390 px) width, and no violation of impact serious or
critical may remain. axe-core exists only here: Postwerk never serves it, and its page CSP stays as it is (the
script is evaluated through the DevTools protocol, which the page's script-src does not govern).

The rules are axe's WCAG 2.0/2.1 A and AA ones plus its best practices. What a page breaks is listed by rule,
impact, help text and the first offending elements, so a failure says what to fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accounts.models import Membership
from sending.models import Message, WebhookEndpoint
from tests.dashboard.browser import Ui, _unavailable

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[1] / "servers" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = {"serious", "critical"}
WIDTHS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        _unavailable(f"axe-core is not installed at {AXE} (make test runs npm ci in tests/servers/axe)")
    return AXE.read_text()


def violations(ui: Ui, axe_source: str) -> list[dict]:
    """axe's serious and critical violations on the page as shown now."""
    if not ui.page.evaluate("typeof window.axe !== 'undefined'"):
        ui.page.evaluate(axe_source)
    result = ui.page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", TAGS
    )
    assert result["testEngine"] == {"name": "axe-core", "version": "4.14.1"}  # the pinned engine did run
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "where": [" ".join(node["target"]) + ": " + node["failureSummary"][:200] for node in v["nodes"][:3]],
        }
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.fixture
def a_bit_of_everything(organization, owner, delivered, healthy, make_user, settings):  # type: ignore[no-untyped-def]
    """Pages with rows in them: messages (delivered and bounced), a webhook endpoint, a template, a member."""
    from sending.feedback.suppressions import suppression_add
    from sending.templating.service import template_create
    from sending.webhooks.endpoints import webhook_endpoint_create

    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    suppression_add(organization_id=organization.pk, address="someone@dest.example", reason="manual")
    webhook_endpoint_create(organization=organization, url="http://127.0.0.1:9/postwerk", event_types=["delivered"])
    template_create(organization=organization, alias="welcome", name="Welcome", subject="Hi {{ name }}", text="Hi")
    Membership.objects.create(organization=organization, user=make_user("viewer"), role="viewer")
    return organization


def test_main_pages_have_no_serious_or_critical_accessibility_violations(ui, a_bit_of_everything, axe_source):
    org = a_bit_of_everything
    message = Message.objects.filter(organization=org, subject="Your order").get()
    domain = org.domains.get(name="acme.example")
    endpoint = WebhookEndpoint.objects.get(organization=org)
    base = f"/o/{org.pk}"
    pages = {
        "overview": f"{base}/",
        "messages": f"{base}/messages/",
        "message": f"{base}/messages/{message.pk}/",
        "domains": f"{base}/domains/",
        "domain": f"{base}/domains/{domain.pk}/",
        "domain-setup": f"{base}/domains/{domain.pk}/setup",
        "webhooks": f"{base}/webhooks/",
        "webhook": f"{base}/webhooks/{endpoint.pk}/",
        "suppressions": f"{base}/suppressions/",
        "reputation": f"{base}/reputation/",
        "templates": f"{base}/templates/",
        "streams": f"{base}/streams/",
        "activity": f"{base}/activity/",
        "keys": f"{base}/keys/",
        "members": f"{base}/members/",
    }
    ui.login("owner")
    found: dict[str, list[dict]] = {}
    for width_name, size in WIDTHS.items():
        ui.page.set_viewport_size(size)
        for name, path in pages.items():
            ui.go(path)
            if width_name == "phone":  # the folded navigation, opened: its links are checked too
                ui.page.get_by_role("button", name="Menu").click()
            problems = violations(ui, axe_source)
            if problems:
                found[f"{name} ({width_name})"] = problems
            if os.environ.get("POSTWERK_A11Y_SHOTS") == "1":
                ui.shot(f"a11y-{name}-{width_name}")
    assert not found, found
