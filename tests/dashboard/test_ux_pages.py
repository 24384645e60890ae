"""Issue #27's pages in headless Chromium, at a desktop (1400 px) and a phone (390 px) width: the activity feed
(live rows without a reload, filters, links), the domain set-up checklist (records looked up live and ticked off),
a test message sent from a domain's page, webhook deliveries (event, message, recipient, response; filters; the
grouped event-type picker; the full-width URL field), and the navigation (one row on a desktop, folded on a
phone). Uses the shared browser fixtures (tests/dashboard/browser.py)."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from sending.models import Recipient, WebhookDelivery
from tests.conftest import add_mx_domain, deliver_queued, publish_records
from tests.dashboard.browser import Ui
from tests.dashboard.conftest import send

pytestmark = pytest.mark.django_db(transaction=True)

DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


def fits_the_phone(ui: Ui, name: str) -> None:
    """At 390 px: no sideways scrolling, the navigation folded behind Menu, the page's heading on the first screen."""
    ui.page.set_viewport_size(PHONE)
    ui.page.reload()
    ui.page.wait_for_load_state()
    width = ui.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width}px)"
    nav = ui.page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("button", name="Menu").is_visible()
    assert not nav.get_by_role("link", name="Messages", exact=True).is_visible()
    top = ui.page.locator("h1").bounding_box()
    assert top is not None and top["y"] + top["height"] < PHONE["height"] / 2, f"{name}: the heading is pushed down"
    ui.shot(f"{name}-phone")
    ui.page.set_viewport_size(DESKTOP)


@pytest.fixture
def fast_feed(monkeypatch):  # type: ignore[no-untyped-def]
    from dashboard.views import activity

    monkeypatch.setattr(activity, "POLL_SECONDS", 1)


def test_activity_feed_shows_new_events_as_they_happen_filters_them_and_links_to_the_message(
    ui, owner, api, delivered, fast_feed
):
    ui.page.set_viewport_size(DESKTOP)
    ui.login("owner")
    ui.nav("Activity")
    rows = ui.page.locator("#activity-rows tr")
    rows.first.wait_for()
    assert "delivered" in ui.page.locator("#activity-rows").inner_text()
    ui.shot("60-activity")

    # A message sent while the page is open shows up without a reload.
    send(api, to=["late@dest.example"], subject="Arrives live", tags=["live"])
    ui.page.locator("#activity-rows tr", has_text="late@dest.example").wait_for(timeout=15_000)
    assert ui.page.locator("#activity-rows tr", has_text="late@dest.example").count() == 1  # queued, once
    assert "Live" in ui.page.get_by_test_id("activity-status").inner_text()
    ui.shot("61-activity-live")

    # Filters: type, tag, domain, recipient.
    ui.page.get_by_label("Event type").select_option("bounced")
    ui.page.get_by_role("button", name="Filter").click()
    ui.page.wait_for_load_state()
    shown = ui.page.locator("#activity-rows tr")
    assert shown.count() == 1 and "gone@dest.example" in shown.inner_text()
    ui.page.get_by_label("Event type").select_option("")
    ui.page.get_by_label("Tag").fill("live")
    ui.page.get_by_label("Sender domain").select_option(label="acme.example")
    ui.page.get_by_label("Recipient address").fill("late@dest.example")
    ui.page.get_by_role("button", name="Filter").click()
    ui.page.wait_for_load_state()
    assert ui.page.locator("#activity-rows tr").count() == 1
    ui.shot("62-activity-filtered")

    ui.page.get_by_role("link", name="Arrives live").click()
    ui.page.get_by_role("heading", name="Arrives live").wait_for()
    fits_the_phone(ui, "63-message-from-activity")
    ui.nav("Activity")
    fits_the_phone(ui, "64-activity")


def test_domain_set_up_page_checks_the_records_live_and_ticks_them_off(ui, owner, organization, zone):
    from sending.domains.service import domain_get_or_create

    shop, _ = domain_get_or_create(organization=organization, name="shop.example")
    ui.page.set_viewport_size(DESKTOP)
    ui.login("owner")
    ui.go(f"/o/{organization.pk}/domains/{shop.pk}/")
    ui.page.get_by_role("link", name="Set-up checklist").click()
    ui.page.get_by_role("heading", name="Set up shop.example").wait_for()
    assert "not checked yet" in ui.page.locator(".setup-steps").inner_text()
    ui.shot("65-setup-unchecked")

    ui.page.get_by_role("button", name="Check the records now").click()
    ui.page.get_by_text("Checked shop.example").wait_for()
    ownership = ui.page.locator(".setup-step", has=ui.page.get_by_role("heading", name="Ownership"))
    assert "not in place" in ownership.inner_text()
    assert "You publish" in ownership.inner_text()
    done_before = ui.page.locator(".setup-step.step-done").count()

    publish_records(zone, shop, ("ownership", "dkim", "return_path"))
    ui.page.get_by_role("button", name="Check the records now").click()
    ui.page.get_by_text("Checked shop.example").wait_for()
    ownership = ui.page.locator(".setup-step", has=ui.page.get_by_role("heading", name="Ownership"))
    assert "in place" in ownership.inner_text() and "not in place" not in ownership.inner_text()
    assert ui.page.locator(".setup-step.step-done").count() > done_before
    assert "Can send" in ui.page.locator("h1").inner_text()
    # The CNAME is the owner's part and in place; the SPF record behind it is the platform's, and says so.
    return_path = ui.page.locator(".setup-step", has=ui.page.get_by_role("heading", name="Return path"))
    assert "in place" in return_path.inner_text() and "not in place" not in return_path.inner_text()
    assert "The platform operator must act" in return_path.inner_text()
    ui.shot("66-setup-ticked")
    fits_the_phone(ui, "67-setup")


def test_send_a_test_message_from_the_domain_page_through_the_accept_pipeline(
    ui, owner, organization, healthy, zone, mx
):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ui.page.set_viewport_size(DESKTOP)
    ui.login("owner")
    ui.go(f"/o/{organization.pk}/domains/{healthy.pk}/")
    ui.page.get_by_label("Send to").fill("not an address")
    ui.page.get_by_role("button", name="Send test message").click()
    ui.page.locator("#test-message .error").wait_for()
    ui.errors[:] = [e for e in ui.errors if "status of 400" not in e]  # the refused form's answer, expected
    assert not Recipient.objects.exists()

    ui.page.get_by_label("Send to").fill("me@dest.example")
    ui.page.get_by_role("button", name="Send test message").click()
    ui.page.get_by_text("Test message to me@dest.example accepted (queued)").wait_for()
    ui.page.get_by_role("heading", name="Postwerk test message from acme.example").wait_for()
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in sink.messages] == [["me@dest.example"]]
    assert b"DKIM-Signature:" in sink.messages[0].data
    entry = AuditEntry.objects.get(action="domain.test_message_sent")
    assert entry.changes["to"] == "me@dest.example" and entry.user_id == owner.pk
    ui.page.reload()
    assert "delivered" in ui.page.locator("ol.timeline").inner_text()
    ui.shot("68-test-message-delivered")
    ui.go(f"/o/{organization.pk}/domains/{healthy.pk}/")
    fits_the_phone(ui, "68-domain-with-test-message")


def test_webhook_deliveries_show_event_message_recipient_and_response_with_filters(
    ui, owner, organization, api, zone, mx, settings
):
    from sending.webhooks.dispatch import deliveries_due, deliveries_send
    from sending.webhooks.fanout import webhook_fanout
    from tests.servers.http_receiver import HttpReceiver

    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    mx("127.0.0.2").rcpt_replies = {"gone@dest.example": "550 5.1.1 no such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ui.page.set_viewport_size(DESKTOP)
    ui.login("owner")
    ui.nav("Webhooks")
    fits_the_phone(ui, "69-webhooks")
    with HttpReceiver() as receiver:
        url_field = ui.page.get_by_label("Endpoint URL")
        box = url_field.bounding_box()
        assert box is not None and box["width"] >= 400, box  # room for a real URL, not 180 px
        delivery_group = ui.page.get_by_role("group", name="Delivery")
        assert delivery_group.get_by_label("delivered", exact=True).is_visible()
        assert ui.page.get_by_role("group", name="Domains and DNS").get_by_label("domain.verified").is_visible()
        url_field.fill(receiver.url())
        delivery_group.get_by_label("delivered", exact=True).check()
        delivery_group.get_by_label("bounced", exact=True).check()
        ui.shot("69-webhook-form")
        ui.page.get_by_role("button", name="Add endpoint").click()
        ui.page.get_by_role("link", name="Open the endpoint").click()

        send(api, to=["jane@dest.example"], subject="Order shipped")
        send(api, to=["gone@dest.example"], subject="Order lost", html=None)
        deliver_queued()
        webhook_fanout()
        deliveries_send([str(d) for d, _ in deliveries_due()])
        assert WebhookDelivery.objects.filter(state="succeeded").count() == 2

    ui.page.reload()
    table = ui.page.locator("table.deliveries")
    delivered = table.locator("tr", has_text="jane@dest.example")
    assert "delivered" in delivered.inner_text() and "200" in delivered.inner_text()
    assert delivered.get_by_role("link", name="Order shipped").is_visible()
    ui.shot("70-webhook-deliveries")

    filters = ui.page.get_by_role("search", name="Filter deliveries")
    filters.get_by_label("Event type").select_option("bounced")
    filters.get_by_role("button", name="Filter").click()
    ui.page.wait_for_load_state()
    assert table.locator("tbody tr").count() == 1 and "gone@dest.example" in table.inner_text()
    ui.page.get_by_role("link", name="Clear").click()
    filters.get_by_label("Recipient address").fill("jane@dest.example")
    ui.page.get_by_role("button", name="Filter").click()
    ui.page.wait_for_load_state()
    assert table.locator("tbody tr").count() == 1 and "Order shipped" in table.inner_text()
    fits_the_phone(ui, "71-webhook-deliveries")
    ui.page.get_by_role("link", name="Order shipped").click()
    ui.page.get_by_role("heading", name="Order shipped").wait_for()


def test_navigation_is_one_row_on_a_desktop_and_folded_on_a_phone(ui, owner, organization, delivered):
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    ui.page.set_viewport_size(DESKTOP)
    ui.login("owner")
    tops = ui.page.locator("#main-nav-list > li").evaluate_all("items => items.map(i => i.getBoundingClientRect().top)")
    assert len(set(tops)) == 1, f"the navigation wraps at 1400 px: rows at {sorted(set(tops))}"
    ui.nav("Queue")  # inside the operators' menu
    ui.page.get_by_role("heading", name="Queue").first.wait_for()
    assert ui.page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    assert ui.page.request.get(ui.page.evaluate("document.querySelector('link[rel=icon]').href")).ok

    ui.nav("Messages")
    fits_the_phone(ui, "72-messages")
    ui.page.set_viewport_size(PHONE)
    ui.page.reload()
    filters = ui.page.locator("details.filters")
    assert filters.get_attribute("open") is None  # folded: the messages come first
    filters.locator("summary").click()
    assert ui.page.get_by_label("Recipient").is_visible()
    ui.nav("Domains")  # opens the Menu first
    ui.page.get_by_role("heading", name="Sender domains").wait_for()
    ui.shot("73-domains-phone")
