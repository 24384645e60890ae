"""Operators' follow-ups: unlocking a locked-out log-in; blocklist listings on the organizations pages; backed
off and throttled destinations on the queue page. Staff only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from sending.delivery import throttling
from sending.delivery.slots import slot_take
from sending.models import DestinationState, Recipient, RecipientState, ThrottleRule
from sending.reputation.blocklists import blocklists_check
from tests.conftest import add_mx_domain, deliver_queued
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user, as_user) -> Client:  # type: ignore[no-untyped-def]
    return as_user(make_user("operator", staff=True))


def attempt(username: str, password: str, ip: str = "127.0.0.50"):  # type: ignore[no-untyped-def]
    return Client(REMOTE_ADDR=ip).post(reverse("dashboard:login"), {"username": username, "password": password})


# --- log-ins ----------------------------------------------------------------------------------------------


def test_only_staff_see_or_unlock_log_ins(owner_client):
    assert owner_client.get(reverse("dashboard:ops_logins")).status_code == 403
    assert owner_client.post(reverse("dashboard:ops_login_unlock"), {"username": "owner"}).status_code == 403
    assert Client().get(reverse("dashboard:ops_logins")).status_code == 302  # to the log-in page


def test_staff_find_a_locked_user_and_unlock_it(staff, owner, settings):
    settings.POSTWERK_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        assert attempt("owner", "wrong").status_code == 200
    assert attempt("owner", PASSWORD).status_code == 429

    found = staff.get(reverse("dashboard:ops_logins"), {"username": "owner"})
    assert found.status_code == 200
    body = found.content.decode()
    assert "2 of 2 allowed in this window" in body and "locked</span> for" in body

    unlocked = staff.post(reverse("dashboard:ops_login_unlock"), {"username": "owner"})
    assert unlocked.status_code == 302 and unlocked["Location"].endswith("?username=owner")
    after = staff.get(unlocked["Location"]).content.decode()
    assert "Unlocked user owner" in after and "not locked" in after
    assert attempt("owner", PASSWORD).status_code == 302  # logs in again


def test_staff_unlock_an_address(staff, owner, make_user, settings):
    settings.POSTWERK_LOGIN_MAX_FAILURES_PER_IP = 3
    for n in range(3):
        attempt(f"guess{n}", "wrong", ip="127.0.0.60")
    assert attempt("owner", PASSWORD, ip="127.0.0.60").status_code == 429
    page = staff.get(reverse("dashboard:ops_logins"), {"ip": "127.0.0.60"}).content.decode()
    assert "Failures by this address" in page and "3 of 3" in page
    staff.post(reverse("dashboard:ops_login_unlock"), {"ip": "127.0.0.60"})
    assert attempt("owner", PASSWORD, ip="127.0.0.60").status_code == 302


def test_unlock_needs_a_username_or_a_valid_address(staff):
    empty = staff.post(reverse("dashboard:ops_login_unlock"), {"username": " ", "ip": ""})
    assert empty.status_code == 400 and b"Give a username, an IP address, or both." in empty.content
    bad = staff.get(reverse("dashboard:ops_logins"), {"ip": "not-an-ip"})
    assert bad.status_code == 400 and b"Enter a valid IPv4 or IPv6 address." in bad.content


# --- blocklists -------------------------------------------------------------------------------------------


@pytest.fixture
def listed(settings, zone, domain, other):  # type: ignore[no-untyped-def]
    """One of two sending IPs listed on bl.test, acme.example listed on dbl.test, checked through the test DNS."""
    from tests.conftest import verified_domain

    settings.POSTWERK_SENDING_IPS = ["127.0.0.10", "127.0.0.11"]
    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = ["dbl.test"]
    verified_domain(zone, other["org"], "clean.example")
    zone.add("10.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("10.0.0.127.bl.test", "TXT", "Listed: see https://bl.test/lookup")
    zone.add("acme.example.dbl.test", "A", "127.0.1.2")
    blocklists_check()


def test_the_organizations_page_lists_ip_and_domain_listings(staff, organization, listed):
    page = staff.get(reverse("dashboard:ops_organizations"))
    assert page.status_code == 200
    overview = page.context["blocklists"]
    assert [(row.target, row.listed) for row in overview.ips] == [("127.0.0.10", True), ("127.0.0.11", False)]
    assert [row.target for row in overview.domains_listed] == ["acme.example"]
    assert overview.domains_checked == 2 and overview.errors == 0
    body = page.content.decode()
    assert "Listed: see https://bl.test/lookup" in body and "127.0.1.2" in body
    assert f'href="/ops/organizations/{organization.pk}/">Acme</a></td>' in body
    detail = staff.get(reverse("dashboard:ops_organization", args=[organization.pk])).content.decode()
    assert "Domain <code>acme.example</code> on dbl.test" in detail


def test_overview_tells_members_about_listings(owner_client, organization, listed):
    page = owner_client.get(reverse("dashboard:overview", args=[organization.pk])).content.decode()
    assert "acme.example is listed on the blocklist dbl.test since" in page
    assert "The platform&#x27;s sending IP 127.0.0.10 is listed on bl.test" in page
    assert "127.0.0.11 is listed" not in page


# --- queue ------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_rules(settings):  # type: ignore[no-untyped-def]
    settings.POSTWERK_THROTTLE_RULES = []
    settings.POSTWERK_THROTTLE_CACHE_SECONDS = 0
    throttling.rules_forget()
    yield
    throttling.rules_forget()


def test_queue_shows_backed_off_and_throttled_destinations(staff, api, zone, mx, fresh_rules):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    messages = [{"from": "hello@acme.example", "to": [f"u{i}@dest.example"], "text": "Hi"} for i in range(3)]
    assert api.post("/api/v1/messages/batch", {"messages": messages}, format="json").status_code == 200
    sink.data_reply = "421 4.7.0 Too many messages, slow down"
    deliver_queued()  # the first meets the 421; the destination backs off and the other two wait, unattempted
    ThrottleRule.objects.create(pattern="busy.example", max_connections=2, max_messages_per_minute=100)
    assert slot_take("busy.example", 2) is not None  # a worker in session with busy.example right now

    page = staff.get(reverse("dashboard:queue"))
    assert page.status_code == 200
    rows = {d.key: d for d in page.context["destinations"]}
    dest = rows["dest.example"]
    state = DestinationState.objects.get(key="dest.example")
    assert dest.backoff_until == state.backoff_until and "421 4.7.0" in dest.backoff_reason
    waiting = Recipient.objects.filter(domain="dest.example", state=RecipientState.QUEUED)
    assert dest.waiting == waiting.count() == 2
    busy = rows["busy.example"]
    assert (busy.connections, busy.rule.max_connections, busy.throttled) == (1, 2, False)
    body = page.content.decode()
    assert "backed off</span> until" in body and "Too many messages, slow down" in body
    assert '<code>busy.example</code> <small class="muted">rule busy.example</small>' in body


def test_queue_says_when_nothing_is_throttled(staff, fresh_rules):
    page = staff.get(reverse("dashboard:queue"))
    assert page.context["destinations"] == [] and b"No destination is backed off or throttled." in page.content


def test_queue_counts_unmatched_inbound_reports(staff):
    from sending.models import InboundMessage

    InboundMessage.objects.create(raw=b"x", size=1, state=InboundMessage.State.UNMATCHED, type="bounce")
    page = staff.get(reverse("dashboard:queue"))
    assert ("unmatched", 1) in page.context["stats"].inbound_by_state
    assert '<tr><th scope="row">unmatched</th><td class="num">1</td></tr>' in page.content.decode()
