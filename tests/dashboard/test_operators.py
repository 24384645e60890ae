"""The operators' organizations page: staff only; reputation and send limits per organization; limits edited;
a scope paused and resumed with a reason."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.services import api_key_create
from sending.models import Event, EventType, Reputation, ReputationScope, ReputationSnapshot, WebhookEndpoint
from sending.reputation.rates import reputations_for
from tests.dashboard.conftest import pause, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user, as_user):  # type: ignore[no-untyped-def]
    return as_user(make_user("operator", staff=True))


def test_only_staff_see_and_change_organizations(owner_client, organization):
    detail = reverse("dashboard:ops_organization", args=[organization.pk])
    assert owner_client.get(reverse("dashboard:ops_organizations")).status_code == 403
    assert owner_client.get(detail).status_code == 403
    limits = reverse("dashboard:ops_limits", args=[organization.pk])
    assert owner_client.post(limits, {"hourly_limit": "1"}).status_code == 403
    organization.refresh_from_db()
    assert organization.hourly_limit is None


def test_the_list_shows_reputation_limits_and_held(staff, organization, other, settings, api):
    settings.POSTWERK_SEND_LIMIT_DAILY = 1000
    pause(organization)
    send(api)  # held: the organization is paused
    page = staff.get(reverse("dashboard:ops_organizations"))
    assert page.status_code == 200
    rows = {row.organization.name: row for row in page.context["rows"]}
    assert rows["Acme"].state == "paused" and rows["Acme"].held == 1
    assert rows["Acme"].limits == {"hour": 0, "day": 1000}
    assert rows["Globex"].state == "ok" and rows["Globex"].held == 0
    assert b"1 / 1000" not in page.content  # held mail is not counted against the limit
    assert b"0 / 1000" in page.content


def test_staff_edit_the_limits(staff, organization):
    url = reverse("dashboard:ops_limits", args=[organization.pk])
    bad = staff.post(url, {"hourly_limit": "-5", "daily_limit": "", "limit_action": "reject"})
    assert bad.status_code == 400 and b"greater than or equal to 0" in bad.content
    ok = staff.post(url, {"hourly_limit": "100", "daily_limit": "", "limit_action": "reject"})
    assert ok.status_code == 302
    organization.refresh_from_db()
    assert (organization.hourly_limit, organization.daily_limit, organization.limit_action) == (100, None, "reject")


def test_staff_pause_and_resume_a_key_with_a_reason(staff, organization, domain):
    key, _ = api_key_create(organization=organization, name="newsletter-app")
    detail = reverse("dashboard:ops_organization", args=[organization.pk])
    page = staff.get(detail)
    assert page.status_code == 200 and b"newsletter-app" in page.content
    rep = Reputation.objects.get(scope=ReputationScope.API_KEY, scope_id=key.pk)
    pause_url = reverse("dashboard:ops_reputation", args=[organization.pk, rep.pk, "pause"])
    assert staff.post(pause_url, {"reason": ""}).status_code == 302
    rep.refresh_from_db()
    assert rep.state == "ok"  # no reason, no pause
    staff.post(pause_url, {"reason": "spam complaints from a bought list"})
    rep.refresh_from_db()
    assert rep.state == "paused" and "bought list" in rep.reason
    snapshot = ReputationSnapshot.objects.get(reputation=rep)
    assert snapshot.actor == "user:operator" and snapshot.reason == "spam complaints from a bought list"
    assert Event.objects.filter(type=EventType.REPUTATION_PAUSED, organization=organization).exists()

    resume_url = reverse("dashboard:ops_reputation", args=[organization.pk, rep.pk, "resume"])
    staff.post(resume_url, {"reason": "list cleaned"})
    rep.refresh_from_db()
    assert rep.state == "ok" and rep.resumed_by == "user:operator" and rep.resume_reason == "list cleaned"
    history = staff.get(detail)
    assert b"list cleaned" in history.content and b"paused \xe2\x86\x92 <strong>ok</strong>" in history.content


def test_a_reputation_of_another_organization_is_not_found(staff, organization, other):
    foreign = reputations_for(other["org"].pk)[0]
    url = reverse("dashboard:ops_reputation", args=[organization.pk, foreign.pk, "pause"])
    assert staff.post(url, {"reason": "x"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.state == "ok"
    assert (
        staff.post(reverse("dashboard:ops_reputation", args=[organization.pk, foreign.pk, "explode"]), {}).status_code
        == 404
    )


def test_recompute_now(staff, organization):
    response = staff.post(reverse("dashboard:ops_recompute", args=[organization.pk]))
    assert response.status_code == 302
    assert Reputation.objects.get(scope="organization", organization=organization).computed_at is not None


def test_members_see_their_reputation_numbers_on_the_overview(owner_client, organization):
    rep = reputations_for(organization.pk)[0]
    Reputation.objects.filter(pk=rep.pk).update(
        state="warning",
        deliveries=1000,
        hard_bounces=62,
        bounce_rate=0.062,
        reason="bounce rate 6.20% reached 5.00%",
        computed_at=timezone.now(),  # a warning is only ever the result of a recompute
    )
    page = owner_client.get(reverse("dashboard:overview", args=[organization.pk])).content.decode()
    assert "6.20 %" in page and "62 hard bounces of 1000 outcomes" in page
    assert "Reputation warning for the organization: bounce rate 6.20% reached 5.00%" in page


def test_overview_flags_a_failing_webhook_and_a_paused_key(owner_client, organization, domain):
    key, _ = api_key_create(organization=organization, name="billing")
    pause(organization, ReputationScope.API_KEY, key.pk)
    WebhookEndpoint.objects.create(
        organization=organization,
        url="https://hooks.example/x",
        secret_encrypted="x",
        enabled=False,
        disabled_at=timezone.now(),
        disabled_reason="410 Gone",
    )
    page = owner_client.get(reverse("dashboard:overview", args=[organization.pk])).content.decode()
    assert "Sending is paused for API key billing" in page
    assert "Webhook https://hooks.example/x was disabled" in page and "410 Gone" in page


def test_the_list_says_not_computed_and_not_judged_instead_of_a_green_ok(staff, organization, other, domain):
    """The operators' list uses the same badge as the organization's own pages: 45 outcomes with 11 % bounces are
    not judged yet, and an organization never recomputed is not computed yet (neither is a green "ok")."""
    from sending.reputation.rates import reputation_recompute
    from tests.dashboard.test_reputation_page import badges
    from tests.test_reputation import seed

    seed(organization, domain, delivered=40, hard=5)
    reputation_recompute(organization.pk)
    page = staff.get(reverse("dashboard:ops_organizations")).content.decode()
    shown = [b for b in badges(page) if b.startswith("not ") or b in ("ok", "warning", "paused")]
    assert shown == ["not judged yet (45 of 500 outcomes)", "not computed yet"]  # Acme, then Globex
