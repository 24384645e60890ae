"""Held mail: paused senders' mail is held (or refused), released mail is delivered, cancelled mail is not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import smtp_credential_create
from sending.models import Event, EventType, Message, Recipient, RecipientState, ReputationScope
from sending.reputation.holds import HeldFilter, held_count, held_maintenance, held_release
from sending.reputation.rates import reputation_for_scope, reputation_pause, reputation_resume
from sending.smtp.server import Listener, SmtpServer
from tests.conftest import add_mx_domain, deliver_queued
from tests.servers import make_self_signed
from tests.test_reputation import fresh_caches  # noqa: F401 - autouse fixture
from tests.test_smtp_submission import logged_in

pytestmark = pytest.mark.django_db(transaction=True)


def send(api, to, tags=()):
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hi", "tags": list(tags)}
    return api.post("/api/v1/messages", body, format="json")


def pause_organization(organization):
    rep = reputation_for_scope(organization.pk, ReputationScope.ORGANIZATION, organization.pk)
    return reputation_pause(rep, actor="operator:ops", reason="bounces")


def states() -> dict[str, str]:
    return dict(Recipient.objects.values_list("address", "state"))


def test_held_mail_released_by_filter_is_delivered_and_cancelled_mail_is_not(api, organization, zone, mx):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    rep = pause_organization(organization)
    for address, tag in (("a1@dest.example", "news"), ("a2@dest.example", "news"), ("b1@dest.example", "order")):
        response = send(api, [address], tags=[tag])
        assert response.status_code == 202 and response.json()["status"] == "held"
    assert set(states().values()) == {"held"}
    assert Event.objects.filter(type=EventType.HELD).count() == 3
    assert not Event.objects.filter(type=EventType.QUEUED).exists()
    assert deliver_queued() == 0 and sink.messages == []

    listing = api.get("/api/v1/held", {"tag": "news"}).json()
    assert sorted(r["address"] for r in listing["results"]) == ["a1@dest.example", "a2@dest.example"]
    assert listing["results"][0]["held_reason"] == "reputation_paused"
    # Still paused: releasing would bypass the pause, so nothing goes (the dry run says so too).
    assert api.post("/api/v1/held/release", {"tag": "news", "dry_run": True}, format="json").json()["count"] == 0
    assert api.post("/api/v1/held/release", {"tag": "news"}, format="json").json()["count"] == 0

    reputation_resume(rep, actor="operator:ops", reason="cleaned", staff=True)
    dry = api.post("/api/v1/held/release", {"tag": "news", "dry_run": True}, format="json")
    assert dry.status_code == 200 and dry.json() == {"dry_run": True, "count": 2}
    assert set(states().values()) == {"held"}  # a dry run changes nothing
    cancel_dry = api.post("/api/v1/held/cancel", {"tag": "order", "dry_run": True}, format="json").json()
    assert cancel_dry["count"] == 1

    released = api.post("/api/v1/held/release", {"tag": "news"}, format="json")
    assert released.json() == {"dry_run": False, "count": 2}
    cancelled = api.post("/api/v1/held/cancel", {"tag": "order"}, format="json")
    assert cancelled.json() == {"dry_run": False, "count": 1}
    assert states() == {"a1@dest.example": "queued", "a2@dest.example": "queued", "b1@dest.example": "cancelled"}

    deliver_queued()
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["a1@dest.example", "a2@dest.example"]
    assert states()["b1@dest.example"] == "cancelled"
    a1 = Recipient.objects.get(address="a1@dest.example")
    assert list(Event.objects.filter(recipient=a1).order_by("sequence").values_list("type", "sequence")) == [
        ("held", 1),
        ("released", 2),
        ("sent", 3),
        ("delivered", 4),
    ]
    cancel_event = Event.objects.get(type=EventType.CANCELLED)
    assert cancel_event.details["actor"] == "api-key:test" and cancel_event.details["reason"] == "cancelled"


def test_held_scheduled_mail_released_early_keeps_its_send_at(api, organization, zone, mx):
    from sending.delivery.sweep import sweep

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    rep = pause_organization(organization)
    send_at = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    body = {"from": "hello@acme.example", "subject": "Later", "text": "Hi", "send_at": send_at.isoformat()}
    for address in ("later@dest.example", "past@dest.example"):
        response = api.post("/api/v1/messages", {**body, "to": [address]}, format="json")
        assert response.status_code == 202 and response.json()["status"] == "held"
    # The second one's time passes while it is held: released, it goes at once.
    Message.objects.filter(recipients__address="past@dest.example").update(send_at=timezone.now())
    reputation_resume(rep, actor="operator:ops", reason="cleaned", staff=True)
    assert api.post("/api/v1/held/release", {}, format="json").json()["count"] == 2

    later = Recipient.objects.get(address="later@dest.example")
    assert (later.state, later.next_attempt_at) == (RecipientState.SCHEDULED, send_at)
    released = Event.objects.get(recipient=later, type=EventType.RELEASED)
    assert released.details["scheduled_for"] == send_at.isoformat()
    assert states()["past@dest.example"] == "queued"
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in sink.messages] == [["past@dest.example"]]

    sweep(timezone.now())  # not yet due
    assert Recipient.objects.get(address="later@dest.example").state == RecipientState.SCHEDULED
    sweep(send_at + timedelta(seconds=1))
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in sink.messages] == [["past@dest.example"], ["later@dest.example"]]
    events = Event.objects.filter(recipient=later).order_by("sequence").values_list("type", flat=True)
    assert list(events) == ["held", "released", "queued", "sent", "delivered"]


def test_filters_and_dry_run_counts_match(api, organization):
    pause_organization(organization)
    send(api, ["x1@dest.example", "x2@other.example"], tags=["t"])
    send(api, ["y1@dest.example"])
    org = organization.pk
    assert held_count(org, HeldFilter()) == 3
    assert held_count(org, HeldFilter(address="other.example")) == 1
    assert held_count(org, HeldFilter(domain="ACME.example")) == 3
    assert held_count(org, HeldFilter(domain="nope.example")) == 0
    assert held_count(org, HeldFilter(held_reason="send_limit")) == 0
    assert held_count(org, HeldFilter(held_after=timezone.now() + timedelta(minutes=1))) == 0
    assert held_count(org, HeldFilter(held_before=timezone.now() + timedelta(minutes=1))) == 3
    assert len(api.get("/api/v1/held", {"address": "@dest."}).json()["results"]) == 2
    bad = api.post("/api/v1/held/cancel", {"reasn": "send_limit"}, format="json")  # a typo never widens a cancel
    assert bad.status_code == 400 and "reasn" in bad.json()["fields"]
    assert api.get("/api/v1/held", {"held_reason": "whatever"}).status_code == 400
    assert api.get("/api/v1/held", {"held_after": "yesterday"}).status_code == 400
    assert held_release(org, HeldFilter(), actor="t", dry_run=True) == 0  # still paused


def test_old_held_mail_expires_as_cancelled(api, organization, settings):
    pause_organization(organization)
    send(api, ["old@dest.example"])
    send(api, ["new@dest.example"])
    Recipient.objects.filter(address="old@dest.example").update(held_at=timezone.now() - timedelta(days=8))
    assert held_maintenance()["expired"] == 1
    assert states() == {"old@dest.example": "cancelled", "new@dest.example": "held"}
    assert Event.objects.get(type=EventType.CANCELLED).details["reason"] == "expired"


def test_reject_action_answers_429_with_retry_after_and_stores_nothing(api, organization):
    organization.limit_action = "reject"
    organization.save()
    pause_organization(organization)
    response = send(api, ["jane@dest.example"])
    assert response.status_code == 429
    assert response.json()["error"] == "sending_paused" and response["Retry-After"].isdigit()
    assert not Recipient.objects.exists()


def test_suppressed_recipients_stay_suppressed_while_held(api, organization):
    from sending.feedback.suppressions import suppression_add

    suppression_add(organization_id=organization.pk, address="gone@dest.example", reason="manual")
    pause_organization(organization)
    response = send(api, ["gone@dest.example", "jane@dest.example"])
    assert [r["status"] for r in response.json()["recipients"]] == ["suppressed", "held"]


@pytest.fixture
def smtp_server(settings, tmp_path, domain):
    cert, key = make_self_signed(tmp_path, "smtp.postwerk.example")
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = cert, key
    server = SmtpServer([Listener("submission", "127.0.0.1", 0, False)]).start()
    yield server
    server.stop()


MESSAGE = b"From: App <app@acme.example>\r\nTo: jane@dest.example\r\nSubject: Hi\r\n\r\nHello\r\n"


def test_smtp_mail_of_a_paused_credential_is_accepted_and_held(smtp_server, organization):
    credential, password = smtp_credential_create(organization=organization, name="app")
    rep = reputation_for_scope(organization.pk, ReputationScope.SMTP_CREDENTIAL, credential.pk)
    reputation_pause(rep, actor="operator:ops", reason="spam run")
    client = logged_in(smtp_server, (credential.username, password))
    assert client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE) == {}  # 250 for every part
    client.quit()
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.held_reason) == (RecipientState.HELD, "reputation_paused")
    assert Event.objects.get(recipient=recipient).details["scope"] == "smtp_credential"


def test_smtp_rejecting_organization_hears_451_at_mail_from(smtp_server, organization):
    import smtplib

    organization.limit_action = "reject"
    organization.save()
    credential, password = smtp_credential_create(organization=organization, name="app")
    pause_organization(organization)
    client = logged_in(smtp_server, (credential.username, password))
    code, text = client.mail("app@acme.example")
    assert code == 451 and text.startswith(b"4.7.1")
    client.rset()
    with pytest.raises(smtplib.SMTPSenderRefused):
        client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE)
    client.quit()
    assert not Recipient.objects.exists()
