"""Scheduled sending, cancelling, delivery deadlines and priority (#23), through the one accept pipeline and a real
loopback MX."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sending.delivery.claiming import claim_queued
from sending.delivery.sweep import sweep
from sending.models import Event, EventType, Message, Recipient, RecipientState, WebhookDelivery, WebhookEndpoint
from sending.webhooks.fanout import webhook_fanout
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim

pytestmark = pytest.mark.django_db(transaction=True)


def body(**extra):
    return {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello", **extra}


@pytest.fixture
def dest(zone, mx, domain):
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    return mx("127.0.0.2")


def test_send_at_in_the_past_or_beyond_seven_days_is_400_naming_the_field(api):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    late = (timezone.now() + timedelta(days=7, minutes=5)).isoformat()
    for when in (past, late):
        response = api.post("/api/v1/messages", body(send_at=when), format="json")
        assert response.status_code == 400
        assert list(response.json()["fields"]) == ["send_at"]
    batch = api.post("/api/v1/messages/batch", {"messages": [body(send_at=past), body()]}, format="json").json()
    assert [r["status"] for r in batch["results"]] == [400, 202]
    assert list(batch["results"][0]["fields"]) == ["send_at"]


def test_scheduled_mail_waits_in_the_database_and_the_sweep_sends_it_when_due(api, dest):
    send_at = timezone.now() + timedelta(hours=2)
    answer = api.post("/api/v1/messages", body(send_at=send_at.isoformat()), format="json").json()
    assert answer["status"] == "scheduled"
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.next_attempt_at) == (RecipientState.SCHEDULED, send_at)
    assert list(Event.objects.filter(recipient=recipient).values_list("type", flat=True)) == [EventType.SCHEDULED]
    assert deliver_queued() == 0  # nothing queued: a worker never takes it early
    sweep(timezone.now())  # a sweep before its time leaves it alone
    assert Recipient.objects.get().state == RecipientState.SCHEDULED
    sweep(send_at + timedelta(seconds=1))  # after a restart, the database still says when it is due
    assert Recipient.objects.get().state == RecipientState.QUEUED
    assert deliver_queued() == 1
    assert len(dest.messages) == 1
    events = list(Event.objects.filter(recipient=recipient).order_by("sequence").values_list("type", flat=True))
    assert events == ["scheduled", "queued", "sent", "delivered"]


def test_cancel_until_it_goes_out_then_409(api, dest):
    send_at = (timezone.now() + timedelta(hours=1)).isoformat()
    scheduled = api.post("/api/v1/messages", body(send_at=send_at), format="json").json()
    response = api.post(f"/api/v1/messages/{scheduled['id']}/cancel")
    assert response.status_code == 200, response.json()
    assert response.json()["recipients"] == {"jane@dest.example": "cancelled"}
    sweep(timezone.now() + timedelta(hours=2))
    assert deliver_queued() == 0 and dest.messages == []
    assert api.post(f"/api/v1/messages/{scheduled['id']}/cancel").status_code == 409

    sent = api.post("/api/v1/messages", body(), format="json").json()
    assert deliver_queued() == 1
    assert api.post(f"/api/v1/messages/{sent['id']}/cancel").status_code == 409
    assert Recipient.objects.get(message_id=sent["id"]).state == RecipientState.DELIVERED


def test_cancel_of_another_organizations_message_is_404(api):
    from accounts.services import api_key_create, organization_get_or_create

    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="k")
    send_at = (timezone.now() + timedelta(hours=1)).isoformat()
    mine = api.post("/api/v1/messages", body(send_at=send_at), format="json").json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.post(f"/api/v1/messages/{mine['id']}/cancel").status_code == 404
    assert Recipient.objects.get().state == RecipientState.SCHEDULED


def test_deadline_stops_retries_and_the_recipient_expires_with_a_webhook_event(api, dest, organization):
    endpoint = WebhookEndpoint.objects.create(
        organization=organization, url="https://hooks.example/x", event_types=["expired"], secret_encrypted="x"
    )
    dest.rcpt_replies["jane@dest.example"] = "451 4.2.0 Try again later"
    answer = api.post("/api/v1/messages", body(deliver_within=30), format="json").json()
    assert "deliver_by" in answer
    assert deliver_queued() == 1
    recipient = Recipient.objects.get()
    # The first retry (60 s) would come after the deadline (30 s): no retry, `expired` now.
    assert recipient.state == RecipientState.EXPIRED
    expired = Event.objects.get(recipient=recipient, type=EventType.EXPIRED)
    assert expired.details["reason"] == "deadline"
    assert expired.details["smtp"]["code"] == 451
    webhook_fanout()
    assert list(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event__type", flat=True)) == ["expired"]


def test_waiting_mail_past_its_deadline_is_expired_by_the_sweep(api, dest):
    answer = api.post("/api/v1/messages", body(deliver_within=60), format="json").json()
    message = Message.objects.get(pk=answer["id"])
    sweep(message.deliver_by + timedelta(seconds=1))
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.EXPIRED
    assert deliver_queued() == 0 and dest.messages == []
    assert Event.objects.filter(recipient=recipient, type=EventType.EXPIRED).count() == 1


def test_priority_high_is_claimed_before_older_normal_mail_of_its_lane(api, domain):
    normal = [api.post("/api/v1/messages", body(), format="json").json()["id"] for _ in range(3)]
    high = api.post("/api/v1/messages", body(priority="high"), format="json").json()["id"]
    assert Recipient.objects.get(message_id=high).lane == "high"
    # A normal task of the destination drains high-priority mail first, then the oldest normal mail.
    claimed = claim_queued("dest.example", 2, "")
    assert {str(r.message_id) for r in claimed} == {high, normal[0]}
    # A high-priority task drains nothing but high-priority mail.
    assert claim_queued("dest.example", 10, "high") == []


def test_broadcast_mail_is_never_drained_by_a_transactional_task(api, organization, domain):
    from sending.models import Stream

    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    bulk = [api.post("/api/v1/messages", body(stream="news"), format="json").json()["id"] for _ in range(3)]
    transactional = api.post("/api/v1/messages", body(), format="json").json()["id"]
    assert [str(r.message_id) for r in claim_queued("dest.example", 10, "")] == [transactional]
    assert sorted(str(r.message_id) for r in claim_queued("dest.example", 10, "broadcast")) == sorted(bulk)
