"""Structured logs (one JSON line per SMTP transaction and per delivery attempt, with message and recipient ids)
and overload answers (API 503 + Retry-After, SMTP 421/451 4.3.2) when the queue is over its threshold."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import smtplib

import pytest
from django.conf import settings as django_settings

from sending.models import Recipient, RecipientState
from sending.reputation import overload
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim
from tests.test_smtp_submission import connect, credential, smtp_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = b"From: hello@acme.example\r\nTo: jane@dest.example\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.fixture
def json_lines():
    """The `postwerk` loggers' output through the production JSON formatter (settings.LOGGING)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    config = dict(django_settings.LOGGING["formatters"]["json"])
    factory = config.pop("()")
    module, _, name = factory.rpartition(".")
    handler.setFormatter(getattr(__import__(module, fromlist=[name]), name)(**config))
    logger = logging.getLogger("postwerk")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def fresh_overload_state():
    overload.reset()
    yield
    overload.reset()


def authed(server, credential):  # noqa: F811
    client = connect(server)
    client.login(*credential)
    return client


def test_one_json_line_per_submission_and_delivery_attempt(smtp_server, credential, zone, mx, domain, json_lines):  # noqa: F811
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    with authed(smtp_server, credential) as client:
        client.sendmail("hello@acme.example", ["jane@dest.example", "bob@dest.example"], MESSAGE)
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("hello@elsewhere.example", ["jane@dest.example"], MESSAGE)
    assert deliver_queued() == 2

    lines = json_lines()
    accepted = [line for line in lines if line.get("event") == "smtp.accepted"]
    assert len(accepted) == 1
    recipients = {str(r.pk): r for r in Recipient.objects.all()}
    assert set(accepted[0]["recipient_ids"]) == set(recipients)
    assert accepted[0]["message_id"] == str(next(iter(recipients.values())).message_id)
    assert accepted[0]["peer_ip"] == "127.0.0.1"
    assert accepted[0]["level"] == "INFO" and accepted[0]["logger"] == "postwerk.smtp" and accepted[0]["time"]
    attempts = [line for line in lines if line.get("event") == "delivery.attempt"]
    # Follow the message across processes by its ids: each recipient has its attempt, with the MX's answer.
    assert {a["recipient_id"] for a in attempts} == set(recipients)
    for attempt in attempts:
        assert attempt["message_id"] == accepted[0]["message_id"]
        assert attempt["state"] == "delivered" and attempt["code"] == 250 and attempt["mx_host"]


def test_refused_submission_is_logged_once(smtp_server, credential, json_lines):  # noqa: F811
    with authed(smtp_server, credential) as client:
        client.mail("hello@acme.example")
        client.rcpt("jane@dest.example")
        code, _ = client.data(b"Subject: no from header\r\n\r\nHi\r\n")
    assert code == 550
    refused = [line for line in json_lines() if line.get("event") == "smtp.refused"]
    assert len(refused) == 1 and refused[0]["reply"].startswith("550 5.6.0") and refused[0]["recipients"] == 1


def post(api):
    return api.post(
        "/api/v1/messages",
        {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hi"},
        format="json",
    )


def test_api_answers_503_with_retry_after_over_the_threshold(api, settings):
    settings.POSTWERK_OVERLOAD_QUEUE_DEPTH = 2
    settings.POSTWERK_OVERLOAD_RETRY_AFTER = 17
    for _ in range(2):
        overload.reset()
        assert post(api).status_code == 202  # at or below the threshold: normal
    overload.reset()
    assert post(api).status_code == 202  # 2 waiting is not over 2
    overload.reset()
    refused = post(api)
    assert refused.status_code == 503
    assert refused["Retry-After"] == "17"
    assert refused.json()["error"] == "overloaded" and refused.json()["retry_after"] == 17
    batch = api.post("/api/v1/messages/batch", {"messages": []}, format="json")
    assert batch.status_code == 503
    assert Recipient.objects.count() == 3  # nothing of the refused requests was stored
    assert api.get("/api/v1/messages").status_code == 200  # reads go on

    Recipient.objects.update(state=RecipientState.DELIVERED)  # the workers caught up
    overload.reset()
    assert post(api).status_code == 202


def test_deferred_recipients_do_not_count(api, settings):
    settings.POSTWERK_OVERLOAD_QUEUE_DEPTH = 1
    post(api)
    post(api)
    Recipient.objects.update(state=RecipientState.DEFERRED)
    overload.reset()
    assert post(api).status_code == 202


def test_smtp_answers_451_at_mail_and_421_at_connect_when_over(api, settings, smtp_server, credential):  # noqa: F811
    settings.POSTWERK_OVERLOAD_QUEUE_DEPTH = 1
    post(api)
    post(api)
    overload.reset()
    with authed(smtp_server, credential) as client:
        code, text = client.mail("hello@acme.example")
        assert (code, text[:5]) == (451, b"4.3.2")
    # The answer is now known to the server process: new sessions are turned away at once.
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        connect(smtp_server)
    assert refused.value.smtp_code == 421 and refused.value.smtp_error.startswith(b"4.3.2")

    Recipient.objects.update(state=RecipientState.DELIVERED)
    overload.reset()
    with authed(smtp_server, credential) as client:
        assert client.mail("hello@acme.example")[0] == 250
