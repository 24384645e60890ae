"""Sandbox keys: the whole accept path, delivery through the built-in capture (never an MX), test addresses that
produce each outcome with the events, suppressions and webhooks of real mail, and no effect on reputation."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, SmtpCredential
from accounts.services import api_key_create
from sending.delivery.sandbox import CAPTURE_HOST, SANDBOX_DOMAIN, Scenario, reply_for, scenario
from sending.delivery.sweep import sweep
from sending.delivery.throttling import asks_backoff
from sending.feedback.bounce_processing import inbound_process
from sending.intake.smtp_intake import smtp_message_submit
from sending.models import CapturedMessage, Event, InboundMessage, Message, Recipient, RecipientState, Suppression
from sending.reputation.rates import scope_numbers
from tests.conftest import add_mx_domain, deliver_queued
from tests.servers.http_receiver import HttpReceiver
from tests.test_webhooks import add_endpoint, bodies, run_webhooks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(organization, domain) -> APIClient:
    _, secret = api_key_create(organization=organization, name="sandbox", sandbox=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def send(client: APIClient, to: list[str], **extra: object) -> dict:
    body = {"from": "Acme <hello@acme.example>", "to": to, "subject": "Sandbox", "text": "Hello\n", **extra}
    response = client.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def types(address: str) -> list[str]:
    return list(Event.objects.filter(recipient__address=address).order_by("sequence").values_list("type", flat=True))


def test_test_addresses_name_their_scenarios():
    assert scenario(f"delivered@{SANDBOX_DOMAIN}") is Scenario.DELIVERED
    assert scenario(f"Bounce-Hard+run42@{SANDBOX_DOMAIN.upper()}") is Scenario.BOUNCE_HARD
    assert scenario(f"bounce-soft@{SANDBOX_DOMAIN}") is Scenario.BOUNCE_SOFT
    assert scenario(f"complaint+x@{SANDBOX_DOMAIN}") is Scenario.COMPLAINT
    assert scenario(f"someone@{SANDBOX_DOMAIN}") is Scenario.DELIVERED
    assert scenario("bounce-hard@example.com") is Scenario.DELIVERED  # only at the sandbox domain
    # A soft bounce defers that delivery only: it never asks the destination's throttle to back off.
    assert not asks_backoff(reply_for(f"bounce-soft@{SANDBOX_DOMAIN}", 1))


def test_a_sandbox_key_to_a_real_domain_reaches_no_mx(sandbox, api, zone, mx):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(sandbox, ["jane@dest.example"], html="<p>Hello <b>Jane</b></p>")
    assert deliver_queued() == 1
    assert sink.messages == []  # the capture took it: not a byte reached the recipient's MX

    assert sandbox.get(f"/api/v1/messages/{sent['id']}").json()["sandbox"] is True
    recipient = Recipient.objects.get(pk=sent["recipients"][0]["id"])
    assert (recipient.state, recipient.mx_host, recipient.last_code) == (RecipientState.DELIVERED, CAPTURE_HOST, 250)
    assert types("jane@dest.example") == ["queued", "sent", "delivered"]
    capture = CapturedMessage.objects.get()
    assert (capture.rcpt_to, capture.attempt, capture.code, capture.outcome) == (
        "jane@dest.example",
        1,
        250,
        "delivered",
    )
    data = bytes(capture.data)
    assert data.startswith(b"DKIM-Signature: ")  # captured as it would have gone out: signed
    assert b"Feedback-ID: " in data and capture.mail_from.startswith("b-")

    # The same domain, a real key: the sink does receive it (the test above proves something).
    send(api, ["jane@dest.example"])
    assert deliver_queued() == 1
    assert len(sink.messages) == 1


def test_each_test_address_produces_its_outcome_with_the_events_of_real_mail(sandbox, zone, settings):
    settings.POSTWERK_RETRY_SCHEDULE = [60]
    to = [f"{s}@{SANDBOX_DOMAIN}" for s in ("delivered", "bounce-hard", "bounce-soft", "complaint")]
    send(sandbox, to)
    assert deliver_queued() == 4
    states = {r.address.split("@")[0]: r.state for r in Recipient.objects.all()}
    assert states == {
        "delivered": RecipientState.DELIVERED,
        "bounce-hard": RecipientState.BOUNCED,
        "bounce-soft": RecipientState.DEFERRED,
        "complaint": RecipientState.DELIVERED,
    }
    hard = Event.objects.get(type="bounced")
    assert (hard.details["kind"], hard.details["reason"], hard.details["status"]) == ("hard", "user_unknown", "5.1.1")
    assert Suppression.objects.get(address=f"bounce-hard@{SANDBOX_DOMAIN}").reason == "hard_bounce"

    # The complaint arrives as a feedback loop's report through the inbound pipeline, and is processed by it.
    report = InboundMessage.objects.get()
    assert inbound_process(report.pk) == "processed"
    report.refresh_from_db()
    assert report.type == "complaint"
    assert types(f"complaint@{SANDBOX_DOMAIN}") == ["queued", "sent", "delivered", "complained"]
    assert Suppression.objects.get(address=f"complaint@{SANDBOX_DOMAIN}").reason == "complaint"

    # The soft bounce: deferred with its reply, then the retry (as the sweep makes it) is delivered.
    soft = Recipient.objects.get(address=f"bounce-soft@{SANDBOX_DOMAIN}")
    assert (soft.last_code, soft.last_enhanced) == (452, "4.2.2")
    Recipient.objects.filter(pk=soft.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert sweep().enqueued == 1
    assert deliver_queued() == 1
    soft.refresh_from_db()
    assert (soft.state, soft.attempts) == (RecipientState.DELIVERED, 2)
    assert types(soft.address) == ["queued", "sent", "deferred", "sent", "delivered"]
    assert list(CapturedMessage.objects.filter(recipient=soft).order_by("attempt").values_list("code", flat=True)) == [
        452,
        250,
    ]

    # A `+tag` gives a fresh address: the suppressed one is suppressed, as it would be for real mail.
    send(sandbox, [f"bounce-hard@{SANDBOX_DOMAIN}", f"bounce-hard+again@{SANDBOX_DOMAIN}"])
    assert Recipient.objects.get(address=f"bounce-hard@{SANDBOX_DOMAIN}", state="suppressed")
    assert deliver_queued() == 1
    assert Recipient.objects.get(address=f"bounce-hard+again@{SANDBOX_DOMAIN}").state == RecipientState.BOUNCED


def test_sandbox_outcomes_reach_webhooks_like_real_ones(sandbox, api, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    with HttpReceiver() as receiver:
        add_endpoint(api, receiver.url(), event_types=["bounced", "delivered"])
        send(sandbox, [f"delivered@{SANDBOX_DOMAIN}", f"bounce-hard@{SANDBOX_DOMAIN}"])
        deliver_queued()
        assert run_webhooks() == 2
        got = {b["recipient"]: (b["type"], b["details"].get("kind")) for b in bodies(receiver)}
    assert got == {
        f"delivered@{SANDBOX_DOMAIN}": ("delivered", None),
        f"bounce-hard@{SANDBOX_DOMAIN}": ("bounced", "hard"),
    }


def test_sandbox_mail_never_counts_towards_reputation(sandbox, api, organization, zone, mx):
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(sandbox, [f"bounce-hard@{SANDBOX_DOMAIN}", f"complaint@{SANDBOX_DOMAIN}", f"delivered@{SANDBOX_DOMAIN}"])
    deliver_queued()
    inbound_process(InboundMessage.objects.get().pk)
    since = timezone.now() - timedelta(days=1)
    assert scope_numbers(organization.pk, "organization", organization.pk, since=since).deliveries == 0
    send(api, ["jane@dest.example"])  # a real delivery counts
    deliver_queued()
    numbers = scope_numbers(organization.pk, "organization", organization.pk, since=since)
    assert (numbers.deliveries, numbers.hard_bounces, numbers.complaints) == (1, 0, 0)


def test_provision_sandbox_makes_a_sandbox_key_and_credential(db, settings):
    out = StringIO()
    call_command("provision", "--org", "Trial", "--smtp-credential", "app", "--sandbox", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["sandbox"] is True
    assert ApiKey.objects.get(organization__name="Trial").sandbox
    assert SmtpCredential.objects.get(username=result["smtp_username"]).sandbox


def test_sandbox_smtp_credential_marks_its_mail(api, organization, domain):
    response = api.post("/api/v1/smtp-credentials", {"name": "app", "sandbox": True}, format="json")
    assert response.status_code == 201 and response.json()["sandbox"] is True
    credential = SmtpCredential.objects.get(username=response.json()["username"])
    raw = b"From: hello@acme.example\r\nTo: jane@dest.example\r\nSubject: s\r\n\r\nbody\r\n"
    message = smtp_message_submit(
        credential=credential, mail_from="hello@acme.example", rcpt_tos=["jane@dest.example"], raw=raw
    )
    assert Message.objects.get(pk=message.pk).sandbox is True
