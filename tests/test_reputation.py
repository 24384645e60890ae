"""Reputation: exact rates from a seeded history, every threshold, sticky pauses, resume, per-key breakers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create
from sending.models import (
    BlocklistListing,
    Event,
    EventType,
    Message,
    Recipient,
    RecipientState,
    Reputation,
    ReputationScope,
    ReputationSnapshot,
    ReputationState,
)
from sending.reputation import holds
from sending.reputation.rates import (
    paused_scopes_clear,
    reputation_for_scope,
    reputation_pause,
    reputation_recompute,
    reputation_resume,
    reputations_for,
    scope_numbers,
)
from tests.test_bounces import delivered as bounce_delivered  # noqa: F401 - fixture, named by this alias
from tests.test_bounces import inbound  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_caches():
    """The per-process caches must not carry a pause from one test's (rolled back) database into the next."""
    paused_scopes_clear()
    holds._full_until.clear()
    yield
    paused_scopes_clear()
    holds._full_until.clear()


def seed(
    organization,
    domain,
    *,
    delivered: int = 0,
    hard: int = 0,
    soft: int = 0,
    complaints: int = 0,
    api_key=None,
    credential=None,
    finished_at=None,
) -> Message:
    """One message with that many finished deliveries; `complaints` of the delivered ones complained."""
    finished_at = finished_at or timezone.now() - timedelta(minutes=5)
    message = Message.objects.create(
        organization=organization,
        domain=domain,
        api_key=api_key,
        smtp_credential=credential,
        message_id="<seed@acme.example>",
        mail_from="hello@acme.example",
        raw=b"",
        size=0,
    )
    rows = []
    for n in range(delivered):
        rows.append(
            Recipient(
                message=message,
                organization=organization,
                address=f"d{n}@dest.example",
                domain="dest.example",
                state=RecipientState.DELIVERED,
                finished_at=finished_at,
                complained_at=finished_at if n < complaints else None,
            )
        )
    for kind, count in (("hard", hard), ("soft", soft)):
        for n in range(count):
            rows.append(
                Recipient(
                    message=message,
                    organization=organization,
                    address=f"{kind}{n}@dest.example",
                    domain="dest.example",
                    state=RecipientState.BOUNCED,
                    finished_at=finished_at,
                    bounce_kind=kind,
                )
            )
    Recipient.objects.bulk_create(rows)
    return message


def org_reputation(organization) -> Reputation:
    return reputation_for_scope(organization.pk, ReputationScope.ORGANIZATION, organization.pk)


def test_rates_are_computed_exactly_from_a_seeded_history(organization, domain):
    seed(organization, domain, delivered=600, hard=30, soft=10, complaints=3)
    numbers = scope_numbers(
        organization.pk, ReputationScope.ORGANIZATION, organization.pk, since=timezone.now() - timedelta(days=30)
    )
    assert numbers.deliveries == 640
    assert numbers.hard_bounces == 30 and numbers.complaints == 3
    assert numbers.bounce_rate == 30 / 640  # hard bounces / (delivered + bounced): soft ones do not count
    assert numbers.complaint_rate == 3 / 600  # complaints / delivered
    reputation_recompute(organization.pk)
    domain_rep = reputation_for_scope(organization.pk, ReputationScope.DOMAIN, domain.pk)
    assert (domain_rep.deliveries, domain_rep.bounce_rate) == (640, 30 / 640)


def test_window_is_the_newest_outcomes_or_the_days_whichever_is_smaller(organization, domain, settings):
    now = timezone.now()
    seed(organization, domain, hard=50, finished_at=now - timedelta(days=31))  # older than the window
    seed(organization, domain, hard=20, finished_at=now - timedelta(days=2))
    seed(organization, domain, delivered=80, finished_at=now - timedelta(days=1))
    since = now - timedelta(days=settings.POSTWERK_REPUTATION_WINDOW_DAYS)
    numbers = scope_numbers(organization.pk, ReputationScope.ORGANIZATION, organization.pk, since=since)
    assert (numbers.deliveries, numbers.hard_bounces) == (100, 20)
    settings.POSTWERK_REPUTATION_WINDOW = 90  # only the newest 90: 80 delivered and 10 of the bounces
    numbers = scope_numbers(organization.pk, ReputationScope.ORGANIZATION, organization.pk, since=since)
    assert (numbers.deliveries, numbers.hard_bounces) == (90, 10)


def test_too_few_deliveries_are_not_judged(organization, domain):
    seed(organization, domain, delivered=400, hard=99)  # 20% bounces, but only 499 outcomes
    reputation_recompute(organization.pk)
    rep = org_reputation(organization)
    assert rep.state == ReputationState.OK and rep.deliveries == 499
    assert not Event.objects.filter(type__startswith="reputation.").exists()


@pytest.mark.parametrize(
    ("history", "state", "event_type"),
    [
        ({"delivered": 950, "hard": 50}, ReputationState.WARNING, EventType.REPUTATION_WARNING),  # 5.0% bounces
        ({"delivered": 901, "hard": 99}, ReputationState.WARNING, EventType.REPUTATION_WARNING),  # 9.9%
        ({"delivered": 900, "hard": 100}, ReputationState.PAUSED, EventType.REPUTATION_PAUSED),  # 10.0%
        ({"delivered": 1000, "complaints": 1}, ReputationState.WARNING, EventType.REPUTATION_WARNING),  # 0.1%
        ({"delivered": 1000, "complaints": 5}, ReputationState.PAUSED, EventType.REPUTATION_PAUSED),  # 0.5%
    ],
)
def test_crossing_each_threshold_flips_state_and_emits_an_event(organization, domain, history, state, event_type):
    seed(organization, domain, **history)
    changed = reputation_recompute(organization.pk)
    rep = org_reputation(organization)
    assert rep.state == state and rep in changed
    event = Event.objects.get(type=event_type, details__scope=ReputationScope.ORGANIZATION)
    assert event.details["deliveries"] == rep.deliveries and event.details["previous_state"] == "ok"
    assert event.details["thresholds"] == {
        "bounce_warning": 0.05,
        "bounce_pause": 0.1,
        "complaint_warning": 0.001,
        "complaint_pause": 0.005,
    }
    assert ReputationSnapshot.objects.filter(reputation=rep, state=state, previous_state="ok").count() == 1
    # The domain scope saw the same history and says so on its own.
    assert Event.objects.filter(type=event_type, domain=domain, details__scope=ReputationScope.DOMAIN).count() == 1


def test_just_below_the_thresholds_stays_ok(organization, domain):
    seed(organization, domain, delivered=1951, hard=49)  # 4.9% bounces; 0 complaints
    assert reputation_recompute(organization.pk) == []
    assert org_reputation(organization).state == ReputationState.OK


def test_warning_clears_to_ok_with_an_event(organization, domain, settings):
    seed(organization, domain, delivered=950, hard=50)
    reputation_recompute(organization.pk)
    assert org_reputation(organization).state == ReputationState.WARNING
    seed(organization, domain, delivered=1000)  # 50 of 2000: 2.5%
    reputation_recompute(organization.pk)
    assert org_reputation(organization).state == ReputationState.OK
    assert Event.objects.filter(type=EventType.REPUTATION_OK, details__scope="organization").count() == 1


def test_a_paused_scope_stays_paused_until_resumed_and_resume_restarts_the_window(organization, domain):
    seed(organization, domain, delivered=900, hard=100)
    reputation_recompute(organization.pk)
    rep = org_reputation(organization)
    assert rep.state == ReputationState.PAUSED
    seed(organization, domain, delivered=100_000 // 10)  # good mail since: 100 of 11,000 would be fine...
    reputation_recompute(organization.pk)
    assert org_reputation(organization).state == ReputationState.PAUSED  # ...but a pause never clears itself

    reputation_resume(rep, actor="operator:ops@example.com", reason="list cleaned", staff=True)
    rep.refresh_from_db()
    assert rep.state == ReputationState.OK and rep.window_start is not None
    assert (rep.resumed_by, rep.resume_reason) == ("operator:ops@example.com", "list cleaned")
    resumed = Event.objects.get(type=EventType.REPUTATION_RESUMED)
    assert resumed.details["actor"] == "operator:ops@example.com" and resumed.details["reason"] == "list cleaned"
    reputation_recompute(organization.pk)  # the old bounces are before window_start: they cannot pause it again
    rep.refresh_from_db()
    assert rep.state == ReputationState.OK and rep.deliveries == 0
    history = list(rep.history.order_by("created_at", "pk").values_list("previous_state", "state", "actor"))
    assert history == [("ok", "paused", ""), ("paused", "ok", "operator:ops@example.com")]


def test_reputation_api_lists_every_scope_with_thresholds_and_history(api, organization, domain):
    seed(organization, domain, delivered=950, hard=50)
    reputation_recompute(organization.pk)
    response = api.get("/api/v1/reputation")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["blocklists"] == []  # no blocklist check has run yet
    scopes = {(r["scope"], r["scope_name"]): r for r in body["reputations"]}
    org = scopes[("organization", "Acme")]
    assert org["state"] == "warning" and org["deliveries"] == 1000 and org["bounce_rate"] == 0.05
    assert org["thresholds"]["bounce_pause"] == 0.1 and org["overrides"]["bounce_pause"] is None
    assert [h["state"] for h in org["history"]] == ["warning"]
    assert ("domain", "acme.example") in scopes and ("api_key", "test") in scopes


def test_reputation_api_shows_stored_blocklist_listings(api, organization, domain, zone, settings):
    """Once the hourly check has stored a listing (every verified domain is checked), the endpoint shows it."""
    from sending.reputation.blocklists import blocklists_check

    settings.POSTWERK_SENDING_IPS = ["127.0.0.10"]
    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = ["dbl.test"]
    zone.add("acme.example.dbl.test", "A", "127.0.1.2")
    zone.add("acme.example.dbl.test", "TXT", "Listed: see https://dbl.test/lookup")
    blocklists_check()
    listing, ip = BlocklistListing.objects.get(target="acme.example"), BlocklistListing.objects.get(target="127.0.0.10")

    response = api.get("/api/v1/reputation")
    assert response.status_code == 200
    assert response.json()["blocklists"] == [
        {
            "kind": "domain",
            "target": "acme.example",
            "zone": "dbl.test",
            "domain": "acme.example",
            "listed": True,
            "answer": ["127.0.1.2"],
            "reason": "Listed: see https://dbl.test/lookup",
            "listed_since": listing.listed_since.isoformat().replace("+00:00", "Z"),
            "checked_at": listing.checked_at.isoformat().replace("+00:00", "Z"),
            "error": "",
        },
        {
            "kind": "ip",
            "target": "127.0.0.10",
            "zone": "bl.test",
            "domain": None,
            "listed": False,
            "answer": [],
            "reason": "",
            "listed_since": None,
            "checked_at": ip.checked_at.isoformat().replace("+00:00", "Z"),
            "error": "",
        },
    ]


def test_the_organization_cannot_resume_a_platform_pause(api, organization, domain):
    seed(organization, domain, delivered=900, hard=100)
    reputation_recompute(organization.pk)
    rep = org_reputation(organization)
    response = api.post(f"/api/v1/reputation/{rep.pk}/resume", {"reason": "please"}, format="json")
    assert response.status_code == 403 and response.json()["error"] == "staff_required"
    assert "operator" in response.json()["message"]
    missing = api.post(f"/api/v1/reputation/{rep.pk}/resume", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["fields"]
    rep.refresh_from_db()
    assert rep.state == ReputationState.PAUSED


def test_reputation_of_another_organization_is_not_found(api, organization, domain):
    from accounts.services import organization_get_or_create

    other, _ = organization_get_or_create(name="Other")
    rep = reputation_for_scope(other.pk, ReputationScope.ORGANIZATION, other.pk)
    reputation_pause(rep, actor="operator:x", reason="test")
    assert api.post(f"/api/v1/reputation/{rep.pk}/resume", {"reason": "x"}, format="json").status_code == 404
    assert api.patch(f"/api/v1/reputation/{rep.pk}/thresholds", {}, format="json").status_code == 404


def test_a_per_key_breaker_pauses_one_key_and_not_its_siblings(organization, domain, api):
    key_a, secret_a = api_key_create(organization=organization, name="app-a")
    key_b, secret_b = api_key_create(organization=organization, name="app-b")
    rep_a = reputation_for_scope(organization.pk, ReputationScope.API_KEY, key_a.pk)
    # The organization sets a stricter bounce pause on app-a only (2%; the platform's is 10%).
    response = api.put(
        f"/api/v1/reputation/{rep_a.pk}/thresholds", {"bounce_pause": 0.02, "bounce_warning": 0.01}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["thresholds"]["bounce_pause"] == 0.02
    assert response.json()["thresholds"]["complaint_pause"] == 0.005
    # Both keys bounce 3%: under the platform's thresholds, over app-a's own.
    seed(organization, domain, delivered=970, hard=30, api_key=key_a)
    seed(organization, domain, delivered=970, hard=30, api_key=key_b)
    reputation_recompute(organization.pk)
    states = {(r.scope, r.scope_id): r.state for r in reputations_for(organization.pk)}
    assert states[("api_key", key_a.pk)] == "paused"
    assert states[("api_key", key_b.pk)] == "ok"
    assert states[("organization", organization.pk)] == "ok"

    client_a, client_b = APIClient(), APIClient()
    client_a.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_a}")
    client_b.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_b}")
    body = {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hi"}
    held = client_a.post("/api/v1/messages", body, format="json")
    assert held.status_code == 202 and held.json()["status"] == "held"
    assert held.json()["recipients"][0]["status"] == "held"
    queued = client_b.post("/api/v1/messages", body, format="json")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    recipient = Recipient.objects.get(pk=held.json()["recipients"][0]["id"])
    assert (recipient.state, recipient.held_reason) == ("held", "reputation_paused")
    event = Event.objects.get(recipient=recipient)
    assert event.type == EventType.HELD and event.details["scope"] == "api_key"
    assert event.details["scope_id"] == key_a.pk

    listing = {r["id"]: r for r in api.get("/api/v1/reputation").json()["reputations"]}
    assert listing[rep_a.pk]["resumable"] is True
    resumed = client_a.post(f"/api/v1/reputation/{rep_a.pk}/resume", {"reason": "fixed the import"}, format="json")
    assert resumed.status_code == 200, resumed.json()
    assert resumed.json()["state"] == "ok" and resumed.json()["resumed_by"] == "api-key:app-a"
    again = client_a.post("/api/v1/messages", body, format="json")
    assert again.json()["status"] == "queued"


def test_thresholds_may_only_be_stricter_and_only_on_keys_and_credentials(api, organization, domain):
    key = ApiKey.objects.get(organization=organization, name="test")
    rep = reputation_for_scope(organization.pk, ReputationScope.API_KEY, key.pk)
    lax = api.patch(f"/api/v1/reputation/{rep.pk}/thresholds", {"complaint_pause": 0.02}, format="json")
    assert lax.status_code == 400 and list(lax.json()["fields"]) == ["complaint_pause"]
    inverted = api.patch(
        f"/api/v1/reputation/{rep.pk}/thresholds", {"bounce_warning": 0.04, "bounce_pause": 0.03}, format="json"
    )
    assert inverted.status_code == 400 and "bounce_warning" in inverted.json()["fields"]
    bad = api.patch(f"/api/v1/reputation/{rep.pk}/thresholds", {"bounce_pause": "lots"}, format="json")
    assert bad.status_code == 400 and "bounce_pause" in bad.json()["fields"]
    unknown = api.patch(f"/api/v1/reputation/{rep.pk}/thresholds", {"bounce": 0.01}, format="json")
    assert unknown.status_code == 400 and "bounce" in unknown.json()["fields"]
    org = org_reputation(organization)
    refused = api.patch(f"/api/v1/reputation/{org.pk}/thresholds", {"bounce_pause": 0.01}, format="json")
    assert refused.status_code == 403
    rep.refresh_from_db()
    org.refresh_from_db()
    assert rep.complaint_pause is None and rep.bounce_pause is None and org.bounce_pause is None
    cleared = api.put(f"/api/v1/reputation/{rep.pk}/thresholds", {"bounce_pause": 0.05}, format="json")
    assert cleared.status_code == 200 and cleared.json()["overrides"]["bounce_pause"] == 0.05


def test_recording_outcomes_sets_what_reputation_reads(api, zone, mx, domain):
    from tests.conftest import add_mx_domain, deliver_queued

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sink.rcpt_replies["gone@dest.example"] = "550 5.1.1 No such user"
    sink.rcpt_replies["full@dest.example"] = "552 5.2.2 Mailbox full"
    body = {"from": "hello@acme.example", "to": ["jane@dest.example", "gone@dest.example", "full@dest.example"]}
    assert api.post("/api/v1/messages", {**body, "subject": "Hi", "text": "Hi"}, format="json").status_code == 202
    deliver_queued()
    rows = {r.address: r for r in Recipient.objects.all()}
    assert rows["jane@dest.example"].state == "delivered" and rows["jane@dest.example"].bounce_kind == ""
    assert (rows["gone@dest.example"].state, rows["gone@dest.example"].bounce_kind) == ("bounced", "hard")
    assert (rows["full@dest.example"].state, rows["full@dest.example"].bounce_kind) == ("bounced", "soft")
    assert all(r.finished_at is not None for r in rows.values())


def test_beat_recomputes_only_organizations_with_recent_outcomes(organization, domain):
    from accounts.services import organization_get_or_create
    from sending.reputation.rates import organizations_with_recent_outcomes

    quiet, _ = organization_get_or_create(name="Quiet")
    seed(organization, domain, delivered=1)
    assert organizations_with_recent_outcomes(timezone.now() - timedelta(hours=1)) == [organization.pk]
    assert quiet.pk not in organizations_with_recent_outcomes(timezone.now() - timedelta(days=365))


@pytest.mark.django_db(transaction=True)
def test_async_dsn_and_arf_reports_record_what_reputation_reads(api, bounce_delivered, inbound):  # noqa: F811
    from tests.test_bounces import arf, deliver_report, dsn, process

    recipient, verp = bounce_delivered
    process(deliver_report(inbound, "fbl@bounces.postwerk.example", arf("jane@dest.example", verp)))
    recipient.refresh_from_db()
    assert recipient.complained_at is not None and recipient.bounce_kind == ""
    delivered_at = recipient.finished_at
    process(deliver_report(inbound, verp, dsn("jane@dest.example", "5.1.1", "550 5.1.1 User unknown")))
    recipient.refresh_from_db()
    assert (recipient.state, recipient.bounce_kind) == ("bounced", "hard")
    assert recipient.finished_at >= delivered_at
