"""The Inbound page in a real browser: add a route with the form, receive mail for it over real SMTP, open it and
see its authentication results and its post attempts; and the page's scoping and permissions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sending.inbound.routes import inbound_domain_set, inbound_route_create
from sending.models import InboundMail, InboundRoute
from tests.servers.http_receiver import HttpReceiver
from tests.test_bounces import inbound  # noqa: F401 - the inbound listener fixture
from tests.test_inbound_routes import HOST, SENDER, message, run_posts, smtp_send

pytestmark = pytest.mark.django_db(transaction=True)
# ruff: noqa: F811 - tests take the imported fixtures by name


@pytest.fixture
def inbound_domain(domain, zone, settings):  # type: ignore[no-untyped-def]
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    inbound_domain_set(domain=domain, enabled=True, subdomain="inbound")
    zone.add(SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    return domain


def test_add_a_route_receive_mail_and_see_its_post_attempts(ui, owner, organization, inbound, inbound_domain):
    with HttpReceiver() as receiver:
        receiver.answers = [503]
        ui.login("owner")
        ui.nav("Inbound")
        ui.page.get_by_label("Match").fill(f"support@{HOST}")
        ui.page.get_by_label("Action").select_option("post")
        ui.page.get_by_label("URL (post routes)").fill(receiver.url())
        ui.page.get_by_role("button", name="Add route").click()
        ui.page.get_by_text("Its signing secret, shown once: whsec_").wait_for()
        assert InboundRoute.objects.get().match == f"support@{HOST}"

        _, (code, _) = smtp_send(inbound, [f"support@{HOST}"], message(f"support@{HOST}"))
        assert code == 250
        assert run_posts() == 1  # the receiver answers 503: a failed attempt, retried later
        ui.nav("Inbound")
        ui.page.get_by_role("link", name="Re: your order").click()
        ui.page.get_by_role("heading", name="Posts").wait_for()
        assert "SPF pass" in ui.page.locator("dl.facts").inner_text()
        assert "503" in ui.page.locator("table.attempts").inner_text()
        ui.shot("inbound-detail")

        ui.page.get_by_role("button", name="Post again").click()
        ui.page.get_by_text("Posting again now.").wait_for()
        assert run_posts() == 1
        ui.page.reload()
        assert "200" in ui.page.locator("table.attempts").last.inner_text()
        assert len(receiver.requests) == 2


def test_the_page_is_scoped_and_viewers_cannot_change_routes(
    owner_client, member, as_user, organization, other, inbound_domain
):
    inbound_route_create(organization=organization, match=f"support@{HOST}", action="store")
    page = owner_client.get(reverse("dashboard:inbound", args=[organization.pk]))
    assert page.status_code == 200 and f"support@{HOST}".encode() in page.content
    viewer = as_user(member("viewer"))
    assert b"Add route" not in viewer.get(reverse("dashboard:inbound", args=[organization.pk])).content
    refused = viewer.post(
        reverse("dashboard:inbound_route_add", args=[organization.pk]),
        {"match": f"x@{HOST}", "action": "store", "dmarc_reject": "accept"},
    )
    assert refused.status_code == 403 and InboundRoute.objects.count() == 1
    release = reverse("dashboard:inbound_release", args=[organization.pk, "00000000-0000-0000-0000-000000000001"])
    assert viewer.post(release).status_code == 403  # releasing held mail is for members who may send
    assert owner_client.post(release).status_code == 404
    bad = owner_client.post(
        reverse("dashboard:inbound_route_add", args=[organization.pk]),
        {"match": "x@elsewhere.example", "action": "store", "dmarc_reject": "accept"},
    )
    assert bad.status_code == 400 and b"is not one of your inbound domains" in bad.content
    stranger = as_user(other["membership"].user)
    assert stranger.get(reverse("dashboard:inbound", args=[organization.pk])).status_code in (403, 404)
    assert InboundMail.objects.count() == 0


def test_the_domain_page_enables_inbound_mail_and_shows_its_mx_record(owner_client, organization, domain):
    url = reverse("dashboard:domain_inbound", args=[organization.pk, domain.pk])
    done = owner_client.post(url, {"enabled": "on", "subdomain": "inbound"})
    assert done.status_code == 302
    domain.refresh_from_db()
    assert (domain.inbound_enabled, domain.inbound_host) == (True, HOST)
    page = owner_client.get(reverse("dashboard:domain", args=[organization.pk, domain.pk]))
    assert f"Receives mail at <strong>{HOST}</strong>".encode() in page.content
    assert b"10 bounces.postwerk.example." in page.content  # the MX record to publish
    bad = owner_client.post(url, {"enabled": "on", "subdomain": "-bad-"}, follow=True)
    assert b"is not a valid subdomain label" in bad.content


def test_held_mail_is_released_with_the_button(ui, owner, organization, inbound, inbound_domain):
    from accounts.models import AuditEntry

    inbound_route_create(organization=organization, match=f"review@{HOST}", action="hold")
    _, (code, _) = smtp_send(inbound, [f"review@{HOST}"], message(f"review@{HOST}"))
    assert code == 250 and InboundMail.objects.get().state == "held"
    ui.login("owner")
    ui.nav("Inbound")
    ui.page.get_by_role("link", name="Re: your order").click()
    facts = ui.page.locator("dl.facts")
    assert "held, route action hold" in facts.inner_text()
    assert "not checked (no spam checker configured)" in facts.inner_text()
    ui.page.get_by_role("button", name="Release").click()
    ui.page.get_by_text("Released: stored.").wait_for()
    assert "stored, route action hold: released by hand" in ui.page.locator("dl.facts").inner_text()
    assert ui.page.get_by_role("button", name="Release").count() == 0
    assert InboundMail.objects.get().state == "stored"
    assert AuditEntry.objects.filter(action="inbound.released").count() == 1
