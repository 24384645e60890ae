"""The Sending IPs pages: an organization sees its pools' IPs and the shared pool's (warm-up day, today's use
against the allowance, what a provider asked of an IP); operators see every IP; another organization's dedicated
IPs stay out of sight."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.services import organization_get_or_create
from sending.delivery import egress
from sending.delivery.pools import ip_add, pool_create, schedule_create
from sending.models import IpDailyUse, IpProviderState, SendingIp

pytestmark = pytest.mark.django_db


def test_organization_sees_warmup_use_and_provider_states_of_its_ips_only(
    owner_client, organization, make_user, as_user
):
    today = timezone.now().astimezone(UTC).date()
    mine = pool_create(name="acme-dedicated", organization=organization)
    schedule = schedule_create(name="steady", volumes=[100, 200, 400])
    ip_add(
        address="127.0.0.21",
        ehlo_name="out1.postwerk-ips.example",
        pool=mine,
        warmup_started=today - timedelta(days=1),
        schedule=schedule,
        check_dns=False,
    )
    globex, _ = organization_get_or_create(name="Globex")
    ip_add(
        address="127.0.0.29",
        ehlo_name="globex-out.postwerk-ips.example",
        pool=pool_create(name="globex-dedicated", organization=globex),
        check_dns=False,
    )
    IpDailyUse.objects.create(address="127.0.0.21", provider="gmail", day=today, count=37)
    IpProviderState.objects.create(
        address="127.0.0.21",
        provider="microsoft",
        action="suspend",
        until=timezone.now() + timedelta(hours=5),
        rule="microsoft-ip-blocklisted",
        reason="550 5.7.1 ... (S3150)",
    )
    egress.pools_forget()

    page = owner_client.get(reverse("dashboard:ips", args=[organization.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "127.0.0.21" in html and "acme-dedicated" in html
    assert "day 2 of 3: 200 a provider today" in html
    assert "gmail 37/200" in html
    assert "Microsoft (Outlook.com, Hotmail, Microsoft 365): suspended" in html
    assert "reverse DNS does not match" in html  # added unchecked, with no PTR published
    assert "127.0.0.29" not in html and "globex" not in html

    assert owner_client.get(reverse("dashboard:ops_ips")).status_code == 403
    staff = as_user(make_user("operator", staff=True))
    everything = staff.get(reverse("dashboard:ops_ips")).content.decode()
    assert "127.0.0.21" in everything and "127.0.0.29" in everything


def test_a_paused_ip_says_so_and_why(owner_client, organization):
    ip = ip_add(
        address="127.0.0.21",
        ehlo_name="out1.postwerk-ips.example",
        pool=pool_create(name="acme-dedicated", organization=organization),
        check_dns=False,
    )
    SendingIp.objects.filter(pk=ip.pk).update(
        reputation_state="paused", reputation_reason="bounce rate 12.00% reached 10.00%"
    )
    html = owner_client.get(reverse("dashboard:ips", args=[organization.pk])).content.decode()
    assert '<span class="badge badge-paused" title="bounce rate 12.00% reached 10.00%">paused</span>' in html
    assert "not used until an operator resumes it: bounce rate 12.00% reached 10.00%" in html
