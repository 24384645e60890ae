"""Send limits per organization (hold or reject beyond, release when the window reopens) and API rate limits."""

from __future__ import annotations

import secrets
import smtplib
import types
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create, smtp_credential_create
from sending.delivery.deliver import deliver
from sending.feedback.suppressions import suppression_add
from sending.models import Event, EventType, Recipient, RecipientState, SendCounter, Suppression
from sending.reputation import holds
from sending.reputation.holds import send_limit_release
from tests.conftest import add_mx_domain
from tests.test_holds import MESSAGE, smtp_server  # noqa: F401 - fixture
from tests.test_reputation import fresh_caches  # noqa: F401 - autouse fixture
from tests.test_smtp_submission import logged_in

pytestmark = pytest.mark.django_db(transaction=True)

# Mid-hour, so a test never straddles a window boundary.
NOW = datetime(2030, 5, 6, 12, 30, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """Submission's clock pinned to NOW (the hold decision reads it through sending.reputation.holds)."""
    monkeypatch.setattr(holds, "timezone", types.SimpleNamespace(now=lambda: NOW))
    return NOW


def one(n: int) -> dict:
    return {"from": "hello@acme.example", "to": [f"r{n}@dest.example"], "subject": f"#{n}", "text": "Hi"}


def test_the_101st_message_of_a_100_per_hour_limit_is_held_and_released_in_the_next_window(
    api, organization, clock, zone, mx
):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    organization.hourly_limit = 100
    organization.save()
    batch = api.post("/api/v1/messages/batch", {"messages": [one(n) for n in range(100)]}, format="json")
    assert batch.status_code == 200 and batch.json()["accepted"] == 100
    assert {r["recipients"][0]["status"] for r in batch.json()["results"]} == {"queued"}
    warning = Event.objects.get(type=EventType.SEND_LIMIT_WARNING)
    reached = Event.objects.get(type=EventType.SEND_LIMIT_REACHED)
    assert warning.details["limit"] == 100 and reached.details["period"] == "hour"

    response = api.post("/api/v1/messages", one(100), format="json")
    assert response.status_code == 202 and response.json()["status"] == "held"
    held = Recipient.objects.get(address="r100@dest.example")
    assert (held.state, held.held_reason) == (RecipientState.HELD, "send_limit")
    event = Event.objects.get(recipient=held)
    assert event.type == EventType.HELD and event.details["window_end"] == "2030-05-06T13:00:00+00:00"
    assert Event.objects.filter(type=EventType.SEND_LIMIT_REACHED).count() == 1  # once per window
    assert SendCounter.objects.get(period="hour").count == 100  # only admitted messages count

    assert send_limit_release(NOW + timedelta(minutes=10)) == 0  # the same window: still full
    assert send_limit_release(NOW + timedelta(hours=1)) == 1
    held.refresh_from_db()
    assert held.state == RecipientState.QUEUED
    assert SendCounter.objects.get(period="hour", window_start=datetime(2030, 5, 6, 13, tzinfo=UTC)).count == 1
    deliver([str(held.pk)])  # (the worker also drains the other queued mail to dest.example)
    assert ["r100@dest.example"] in [m.rcpt_tos for m in sink.messages]
    held.refresh_from_db()
    assert held.state == RecipientState.DELIVERED


def test_release_in_the_next_window_is_capped_by_its_limit(api, organization, clock):
    organization.hourly_limit = 2
    organization.save()
    statuses = [api.post("/api/v1/messages", one(n), format="json").json()["status"] for n in range(5)]
    assert statuses == ["queued", "queued", "held", "held", "held"]
    assert send_limit_release(NOW + timedelta(hours=1)) == 2
    assert send_limit_release(NOW + timedelta(hours=1)) == 0
    assert send_limit_release(NOW + timedelta(hours=2)) == 1
    assert not Recipient.objects.filter(state=RecipientState.HELD).exists()
    # Oldest first: the messages held first went first.
    released = Event.objects.filter(type=EventType.RELEASED).order_by("id")
    assert [e.details["address"] for e in released] == ["r2@dest.example", "r3@dest.example", "r4@dest.example"]


def test_held_mail_of_priority_high_is_released_first(api, organization, clock):
    organization.hourly_limit = 1
    organization.save()
    statuses = [
        api.post("/api/v1/messages", {**one(n), "priority": priority}, format="json").json()["status"]
        for n, priority in enumerate(["normal", "normal", "normal", "high"])
    ]
    assert statuses == ["queued", "held", "held", "held"]
    assert send_limit_release(NOW + timedelta(hours=1)) == 1
    released = Event.objects.get(type=EventType.RELEASED)
    assert released.details["address"] == "r3@dest.example"  # the newest, but high


def test_daily_limit_holds_too_and_batches_hold_only_what_is_over(api, organization, clock, settings):
    settings.POSTWERK_SEND_LIMIT_DAILY = 3  # the platform default, the organization sets none
    batch = api.post("/api/v1/messages/batch", {"messages": [one(n) for n in range(5)]}, format="json")
    assert [r["recipients"][0]["status"] for r in batch.json()["results"]] == ["queued"] * 3 + ["held"] * 2
    assert Recipient.objects.filter(held_reason="send_limit").count() == 2
    assert Event.objects.get(type=EventType.HELD, recipient__address="r3@dest.example").details["period"] == "day"


def test_reject_action_answers_429_and_gives_the_count_back(api, organization, clock):
    organization.hourly_limit, organization.limit_action = 2, "reject"
    organization.save()
    assert api.post("/api/v1/messages", one(0), format="json").status_code == 202
    over = api.post("/api/v1/messages/batch", {"messages": [one(1), one(2)]}, format="json")
    assert over.status_code == 429 and over.json()["error"] == "send_limit_exceeded"
    assert over["Retry-After"] == str(30 * 60 + 1)  # until 13:00
    assert SendCounter.objects.get(period="hour").count == 1  # the refused batch took nothing
    assert api.post("/api/v1/messages", one(3), format="json").status_code == 202  # the last slot is still there
    assert api.post("/api/v1/messages", one(4), format="json").status_code == 429
    assert Recipient.objects.count() == 2


def test_unlimited_costs_no_counter(api, organization):
    assert api.post("/api/v1/messages", one(0), format="json").json()["status"] == "queued"
    assert not SendCounter.objects.exists()


def test_smtp_over_the_limit_is_held_with_250(smtp_server, organization):  # noqa: F811
    organization.hourly_limit = 1
    organization.save()
    credential, password = smtp_credential_create(organization=organization, name="app")
    client = logged_in(smtp_server, (credential.username, password))
    for _ in range(2):
        assert client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE) == {}
    client.quit()
    assert sorted(Recipient.objects.values_list("state", flat=True)) == ["held", "queued"]


def test_a_wholly_suppressed_message_counts_against_the_limit_neither_over_smtp_nor_over_the_api(
    smtp_server,  # noqa: F811
    api,
    organization,
):
    """One accept pipeline: suppressions are screened before the send limit, however the message arrived."""
    suppression_add(organization_id=organization.pk, address="gone@dest.example", reason=Suppression.Reason.MANUAL)
    organization.hourly_limit = 2
    organization.save()
    credential, password = smtp_credential_create(organization=organization, name="app")
    client = logged_in(smtp_server, (credential.username, password))
    assert client.sendmail("app@acme.example", ["gone@dest.example"], MESSAGE) == {}
    gone = {"from": "hello@acme.example", "to": ["gone@dest.example"], "subject": "x", "text": "Hi"}
    assert api.post("/api/v1/messages", gone, format="json").json()["status"] == "suppressed"
    for _ in range(2):
        assert client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE) == {}
    client.quit()
    states = Recipient.objects.order_by("created_at").values_list("address", "state")
    assert list(states) == [
        ("gone@dest.example", "suppressed"),
        ("gone@dest.example", "suppressed"),
        ("jane@dest.example", "queued"),
        ("jane@dest.example", "queued"),
    ]
    assert SendCounter.objects.get(period="hour").count == 2


def test_smtp_rejecting_organization_gets_451_at_data_then_at_mail_from(smtp_server, organization):  # noqa: F811
    organization.hourly_limit, organization.limit_action = 1, "reject"
    organization.save()
    credential, password = smtp_credential_create(organization=organization, name="app")
    client = logged_in(smtp_server, (credential.username, password))
    assert client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE) == {}
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE)
    assert refused.value.smtp_code == 451 and refused.value.smtp_error.startswith(b"4.7.1")
    code, text = client.mail("app@acme.example")  # now this process knows: refused before the data is sent
    assert code == 451 and text.startswith(b"4.7.1")
    client.quit()
    assert Recipient.objects.count() == 1


def test_api_rate_limit_per_key_is_429_with_retry_after(api, organization, monkeypatch):
    from sending.api import throttling

    # Every request in one second, a second of this run's own: the counters live in the cache, which in the
    # embedded mode outlives a run (a fixed second made a second run start over its limit).
    second = 1_900_000_000 + secrets.randbelow(10**8)
    monkeypatch.setattr(throttling.time, "time", lambda: second + 0.25)
    key = ApiKey.objects.get(organization=organization, name="test")
    key.rate_limit = 2
    key.save()
    assert api.get("/api/v1/held").status_code == 200
    assert api.get("/api/v1/held").status_code == 200
    third = api.get("/api/v1/held")
    assert third.status_code == 429 and third["Retry-After"] == "1"
    assert third.json()["error"] == "throttled"
    sent = api.post("/api/v1/messages", one(0), format="json")
    assert sent.status_code == 429 and not Recipient.objects.exists()
    _, other_secret = api_key_create(organization=organization, name="sibling")  # its own budget
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_secret}")
    assert other.get("/api/v1/held").status_code == 200


def test_api_rate_limit_without_the_cache_accepts_and_warns_once(api, organization, settings, caplog):
    from mail import cache_guard
    from tests.faults.services import free_port

    # Redis where nothing listens: every cache call raises redis.exceptions.ConnectionError, as when it is stopped.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    cache_guard._last_warned.clear()
    key = ApiKey.objects.get(organization=organization, name="test")
    key.rate_limit = 2
    key.save()
    with caplog.at_level("WARNING", logger="mail.cache_guard"):
        for n in range(3):
            response = api.post("/api/v1/messages", one(n), format="json")
            assert response.status_code == 202, response.content
    assert Recipient.objects.count() == 3
    warnings = [r for r in caplog.records if r.name == "mail.cache_guard"]
    assert len(warnings) == 1 and "API rate limit" in warnings[0].getMessage()
