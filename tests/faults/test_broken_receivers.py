"""Recipient MX hosts that break the protocol: every recipient leaves `sending` deferred, with a reply that says
what happened and a retry time from the schedule; nothing is left for the sweep to rescue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sending.delivery.sweep import sweep
from sending.models import Event, EventType, Recipient, RecipientState
from tests.conftest import add_mx_domain, deliver_queued
from tests.faults.receivers import BrokenReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults]

RECIPIENTS = ["a@broken.example", "b@broken.example", "c@broken.example"]


@pytest.fixture(autouse=True)
def short_timeouts(settings):
    settings.POSTWERK_SMTP_CONNECT_TIMEOUT = 1.0
    settings.POSTWERK_SMTP_COMMAND_TIMEOUT = 1.0
    settings.POSTWERK_RETRY_SCHEDULE = [60, 300]


@pytest.fixture
def broken(mx_port):
    started: list[BrokenReceiver] = []

    def start(host: str, behaviour: str) -> BrokenReceiver:
        receiver = BrokenReceiver(host, mx_port, behaviour).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def send(api, to: list[str]) -> None:
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    ("behaviour", "code", "text"),
    [
        ("silent", 421, "timed out"),
        ("drop_after_data", 421, "connection to mx1.broken.example lost"),
        ("data_refused", 451, "Insufficient system storage"),
        ("garbage", 421, "not an SMTP reply"),
    ],
)
def test_broken_receiver_defers_every_recipient_with_a_reply_and_a_retry_time(
    api, zone, broken, settings, behaviour, code, text
):
    receiver = broken("127.0.0.3", behaviour)
    add_mx_domain(zone, "broken.example", "127.0.0.3")
    send(api, RECIPIENTS[:2])
    send(api, RECIPIENTS[2:])

    assert deliver_queued() == 3
    assert receiver.connections >= 1
    assert not Recipient.objects.filter(state=RecipientState.SENDING).exists()
    for r in Recipient.objects.all():
        assert r.state == RecipientState.DEFERRED, (r.address, r.state, r.last_code, r.last_text)
        assert r.last_code == code, (r.address, r.last_code, r.last_enhanced, r.last_text)
        assert r.last_enhanced.startswith("4."), r.last_enhanced
        assert text in r.last_text, r.last_text
        assert r.attempts == 1
        assert r.next_attempt_at - r.updated_at == timedelta(seconds=60)  # the schedule's first step
        deferred = Event.objects.get(recipient=r, type=EventType.DEFERRED)
        assert deferred.details["smtp"]["code"] == code
        assert deferred.details["next_attempt_at"] == r.next_attempt_at.isoformat()

    # The sweep, even one that thinks every claim is stale, finds nothing stuck and nothing due yet.
    settings.POSTWERK_SENDING_TIMEOUT = 0
    report = sweep()
    assert (report.rescued, report.enqueued) == (0, 0)
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.DEFERRED}


def test_the_retry_after_a_broken_receiver_is_delivered_once_it_recovers(api, zone, broken, mx, settings):
    """The same recipients, due again, go out once the destination has a working MX."""
    receiver = broken("127.0.0.3", "drop_after_data")
    add_mx_domain(zone, "broken.example", "127.0.0.3")
    send(api, RECIPIENTS)
    deliver_queued()
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.DEFERRED}

    receiver.stop()
    sink = mx("127.0.0.3")
    Recipient.objects.update(next_attempt_at=Recipient.objects.first().created_at)  # their retry time has come
    assert sweep().enqueued == 3
    deliver_queued()
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.DELIVERED}
    assert sorted(a for m in sink.messages for a in m.rcpt_tos) == sorted(RECIPIENTS)
    assert set(Recipient.objects.values_list("attempts", flat=True)) == {2}


def test_a_silent_primary_mx_falls_through_to_the_next_one(api, zone, broken, mx):
    broken("127.0.0.3", "silent")
    sink = mx("127.0.0.4")
    add_mx_domain(zone, "broken.example", "127.0.0.3", "127.0.0.4")
    send(api, RECIPIENTS)
    deliver_queued()
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.DELIVERED}
    assert set(Recipient.objects.values_list("mx_host", flat=True)) == {"mx2.broken.example"}
    assert len(sink.messages) == 3
