"""The organization's reputation page: every scope with numbers, thresholds in force and history; owners and admins
resume a key their own thresholds paused (never a platform or operator pause) and set stricter thresholds through
the same service the API uses; other roles only look; another organization's scopes are 404."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.models import ApiKey
from sending.models import Event, EventType, Reputation, ReputationScope, ReputationSnapshot, ReputationState
from sending.reputation.blocklists import blocklists_check
from sending.reputation.rates import reputation_for_scope, reputation_recompute, reputation_thresholds_set
from tests.dashboard.conftest import pause

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "developer", "viewer"]
PLATFORM = {"bounce_warning": 0.55, "bounce_pause": 0.6, "complaint_warning": 0.001, "complaint_pause": 0.005}


@pytest.fixture
def judged(settings):  # type: ignore[no-untyped-def]
    """Two outcomes are enough to judge; the platform pauses at 60% bounces, above the fixture's 50%."""
    settings.POSTWERK_REPUTATION_MIN_DELIVERIES = 2
    settings.POSTWERK_REPUTATION_THRESHOLDS = PLATFORM


def key_scope(organization) -> Reputation:  # type: ignore[no-untyped-def]
    key = ApiKey.objects.get(organization=organization, name="test")  # the `api` fixture's key
    return reputation_for_scope(organization.pk, ReputationScope.API_KEY, key.pk)


@pytest.fixture
def tripped(organization, delivered, judged) -> Reputation:  # type: ignore[no-untyped-def]
    """The API key paused by its own 30% bounce threshold: one hard bounce of two outcomes, delivered for real."""
    rep = key_scope(organization)
    reputation_thresholds_set(rep, values={"bounce_warning": 0.2, "bounce_pause": 0.3}, staff=False)
    reputation_recompute(organization.pk)
    rep.refresh_from_db()
    assert rep.state == ReputationState.PAUSED and rep.bounce_rate == 0.5, rep.reason
    return rep


def url(name: str, organization, *args: object) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[organization.pk, *args])


@pytest.mark.parametrize("role", ROLES)
def test_every_member_sees_every_scope_with_numbers_thresholds_and_history(
    role, member, as_user, organization, tripped
):
    page = as_user(member(role)).get(url("reputation", organization))
    assert page.status_code == 200
    body = page.content.decode()
    for name in ("Acme", "acme.example", "API key"):
        assert name in body
    assert "50.00 %" in body and "paused at 30 % (own)" in body and "paused at 60 %" in body
    assert "ok → <strong>paused</strong>" in body  # the history: a new scope starts ok
    assert "bounce rate 50.00% reached 30.00%" in body
    can_act = role in ("owner", "admin")
    assert ("Save thresholds of test" in body) == can_act
    assert ('name="reason"' in body) == can_act


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_resume_a_key_their_own_thresholds_paused(role, member, as_user, organization, tripped):
    client = as_user(member(role))
    response = client.post(url("reputation_resume", organization, tripped.pk), {"reason": "fixed the bad import"})
    assert response.status_code == 302
    tripped.refresh_from_db()
    assert tripped.state == ReputationState.OK and tripped.resumed_by == f"user:{role}"
    snapshot = ReputationSnapshot.objects.filter(reputation=tripped).latest("created_at", "pk")
    assert (snapshot.previous_state, snapshot.state, snapshot.actor) == ("paused", "ok", f"user:{role}")
    assert tripped.window_start is not None  # old outcomes no longer count
    assert Event.objects.filter(organization=organization, type=EventType.REPUTATION_RESUMED).exists()
    page = client.get(response["Location"]).content.decode()
    assert "Resumed API key test" in page and "fixed the bad import" in page


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developers_and_viewers_can_neither_resume_nor_set_thresholds(role, member, as_user, organization, tripped):
    client = as_user(member(role))
    assert client.post(url("reputation_resume", organization, tripped.pk), {"reason": "x"}).status_code == 403
    response = client.post(url("reputation_thresholds", organization, tripped.pk), {f"t{tripped.pk}-bounce_pause": ""})
    assert response.status_code == 403
    tripped.refresh_from_db()
    assert tripped.state == ReputationState.PAUSED and tripped.bounce_pause == 0.3


def test_a_pause_by_the_platforms_thresholds_is_only_an_operators_to_lift(
    owner_client, organization, delivered, judged, settings
):
    settings.POSTWERK_REPUTATION_THRESHOLDS = {**PLATFORM, "bounce_warning": 0.05, "bounce_pause": 0.1}
    reputation_recompute(organization.pk)
    rep = key_scope(organization)
    assert rep.state == ReputationState.PAUSED  # 50% bounces, over the platform's 10%
    page = owner_client.get(url("reputation", organization)).content.decode()
    assert "Paused by the platform's thresholds: only an operator can resume it." in page
    response = owner_client.post(url("reputation_resume", organization, rep.pk), {"reason": "please"})
    assert response.status_code == 403
    assert "paused by the platform&#x27;s thresholds or by an operator; only an operator can resume it" in (
        response.content.decode()
    )
    rep.refresh_from_db()
    assert rep.state == ReputationState.PAUSED


def test_an_operators_pause_is_only_an_operators_to_lift(owner_client, organization, api):
    rep = pause(organization, ReputationScope.API_KEY, ApiKey.objects.get(name="test").pk)
    response = owner_client.post(url("reputation_resume", organization, rep.pk), {"reason": "please"})
    assert response.status_code == 403 and b"only an operator can resume it" in response.content
    assert b"Paused by an operator" in owner_client.get(url("reputation", organization)).content
    rep.refresh_from_db()
    assert rep.state == ReputationState.PAUSED


def test_resume_needs_a_reason_and_a_paused_scope(owner_client, organization, tripped):
    response = owner_client.post(url("reputation_resume", organization, tripped.pk), {"reason": ""})
    assert response.status_code == 400 and b"Give a reason" in response.content
    owner_client.post(url("reputation_resume", organization, tripped.pk), {"reason": "fixed"})
    again = owner_client.post(url("reputation_resume", organization, tripped.pk), {"reason": "fixed"})
    assert again.status_code == 409 and b"API key test is ok, not paused." in again.content


def thresholds(rep: Reputation, **percent: str) -> dict[str, str]:
    fields = ("bounce_warning", "bounce_pause", "complaint_warning", "complaint_pause")
    return {f"t{rep.pk}-{name}": percent.get(name, "") for name in fields}


def test_stricter_thresholds_apply_at_once_and_clearing_them_restores_the_platforms(
    owner_client, organization, delivered, judged
):
    reputation_recompute(organization.pk)
    rep = key_scope(organization)
    assert rep.state == ReputationState.OK  # 50% is under the platform's 55% warning
    response = owner_client.post(
        url("reputation_thresholds", organization, rep.pk),
        thresholds(rep, bounce_warning="2.5", bounce_pause="40", complaint_warning="0.05", complaint_pause="0.1"),
    )
    assert response.status_code == 302
    rep.refresh_from_db()
    assert (rep.bounce_warning, rep.bounce_pause, rep.complaint_warning, rep.complaint_pause) == (
        0.025,
        0.4,
        0.0005,
        0.001,
    )
    assert rep.state == ReputationState.PAUSED  # recomputed now: 50% reached the new 40%
    page = owner_client.get(response["Location"]).content.decode()
    assert "Thresholds of API key test saved; its state is now paused." in page
    assert "paused at 40 % (own)" in page and 'value="2.5"' in page
    assert owner_client.post(url("reputation_resume", organization, rep.pk), {"reason": "ok"}).status_code == 302

    owner_client.post(url("reputation_thresholds", organization, rep.pk), thresholds(rep))
    rep.refresh_from_db()
    assert (rep.bounce_warning, rep.bounce_pause, rep.complaint_warning, rep.complaint_pause) == (None,) * 4


def test_looser_thresholds_are_refused_with_the_services_words(owner_client, organization, api):
    rep = key_scope(organization)
    response = owner_client.post(url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_pause="15"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "May only be stricter than the platform&#x27;s 0.1." in body and "Platform: 10 % (0.1)." in body
    bad = owner_client.post(
        url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_warning="3", bounce_pause="2")
    )
    assert bad.status_code == 400 and b"Must not be above bounce_pause (0.02)." in bad.content
    words = owner_client.post(url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_pause="x"))
    assert words.status_code == 400 and b"Enter a number." in words.content
    zero = owner_client.post(url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_pause="0"))
    assert zero.status_code == 400 and b"A rate between 0 (exclusive) and 1" in zero.content
    rep.refresh_from_db()
    assert (rep.bounce_warning, rep.bounce_pause) == (None, None)


def test_the_organization_and_domain_scopes_take_no_organization_thresholds(owner_client, organization, domain):
    for scope, scope_id in ((ReputationScope.ORGANIZATION, organization.pk), (ReputationScope.DOMAIN, domain.pk)):
        rep = reputation_for_scope(organization.pk, scope, scope_id)
        response = owner_client.post(
            url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_pause="1")
        )
        assert response.status_code == 403
        assert b"Only API key and SMTP credential scopes take an organization&#x27;s thresholds." in response.content
        typo = owner_client.post(url("reputation_thresholds", organization, rep.pk), thresholds(rep, bounce_pause="x"))
        assert typo.status_code == 403 and b"Only API key and SMTP credential scopes" in typo.content
        rep.refresh_from_db()
        assert rep.bounce_pause is None


def test_another_organizations_scopes_are_not_found(owner_client, organization, other, make_user, as_user):
    from sending.reputation.rates import reputations_for

    foreign = next(r for r in reputations_for(other["org"].pk) if r.scope == ReputationScope.API_KEY)
    foreign.state = ReputationState.PAUSED
    foreign.save()
    assert owner_client.post(url("reputation_resume", organization, foreign.pk), {"reason": "x"}).status_code == 404
    response = owner_client.post(url("reputation_thresholds", organization, foreign.pk), thresholds(foreign))
    assert response.status_code == 404
    assert owner_client.get(url("reputation", other["org"])).status_code == 404
    assert b"globex" not in owner_client.get(url("reputation", organization)).content
    foreign.refresh_from_db()
    assert foreign.state == ReputationState.PAUSED and foreign.bounce_pause is None
    staff = as_user(make_user("operator", staff=True))  # staff use the operators' pages, not a member's
    assert staff.get(url("reputation", organization)).status_code == 404


def test_blocklist_listings_of_the_platform_and_the_organizations_domains(
    owner_client, organization, domain, zone, settings
):
    settings.POSTWERK_SENDING_IPS = ["127.0.0.10"]
    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = ["dbl.test"]
    zone.add("10.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("acme.example.dbl.test", "A", "127.0.1.2")
    zone.add("acme.example.dbl.test", "TXT", "spam domain, see dbl.test")
    blocklists_check()
    page = owner_client.get(url("reputation", organization)).content.decode()
    assert "Sending IP <code>127.0.0.10</code>" in page and "Domain <code>acme.example</code>" in page
    assert "spam domain, see dbl.test" in page


def badges(html: str) -> list[str]:
    return re.findall(r'<span class="badge[^"]*">([^<]*)</span>', html)


def test_rates_below_the_minimum_say_not_judged_yet_instead_of_a_green_ok(owner_client, organization, domain):
    """11.11 % bounces is above the 10 % pause threshold, but 45 outcomes are too few to judge: the page must not
    put a green "ok" beside that rate."""
    from tests.test_reputation import seed

    seed(organization, domain, delivered=40, hard=5)
    reputation_recompute(organization.pk)
    org = reputation_for_scope(organization.pk, ReputationScope.ORGANIZATION, organization.pk)
    assert (org.state, org.deliveries) == (ReputationState.OK, 45)

    page = owner_client.get(url("reputation", organization)).content.decode()
    assert "11.11 %" in page
    # The organization and its domain; the transactional stream's own scope counts mail sent on it, and the seeded
    # rows name no stream.
    assert badges(page) == ["not judged yet (45 of 500 outcomes)"] * 2 + ["not judged yet (0 of 500 outcomes)"]
    overview = owner_client.get(url("overview", organization)).content.decode()
    assert '<span class="badge">not judged yet (45 of 500 outcomes)</span>' in overview
    assert "5 hard bounces of 45 outcomes" in overview
    assert '<span class="badge badge-ok">ok</span>' not in page + overview


def test_enough_outcomes_are_judged_and_shown_as_the_state(owner_client, organization, domain, settings):
    from tests.test_reputation import seed

    settings.POSTWERK_REPUTATION_MIN_DELIVERIES = 40
    seed(organization, domain, delivered=40, hard=1)
    reputation_recompute(organization.pk)
    page = owner_client.get(url("reputation", organization)).content.decode()
    assert badges(page) == ["ok", "ok", "not judged yet (0 of 40 outcomes)"]  # the stream: no mail named it


def test_before_the_first_recompute_the_overview_says_not_computed_yet(owner_client, organization, domain):
    overview = owner_client.get(url("overview", organization)).content.decode()
    assert '<span class="badge">not computed yet</span>' in overview
    assert "hard bounces of 0 outcomes" not in overview
    assert "Not computed yet: it is, every few minutes, once mail has gone out." in overview
    page = owner_client.get(url("reputation", organization)).content.decode()
    assert badges(page) == ["not computed yet"] * 3  # the organization, its domain, its transactional stream
