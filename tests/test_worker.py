"""End to end with real Celery worker processes: API in, broker, worker, SMTP out. No eager mode."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sending.delivery.sweep import sweep
from sending.models import Recipient, RecipientState, WorkerLease
from tests.conftest import add_mx_domain
from tests.worker_process import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def send(api, to):
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def state_of(address: str) -> str:
    return Recipient.objects.get(address=address).state


def test_api_to_mx_through_a_real_worker(api, zone, mx, tmp_path):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    worker = Worker(tmp_path).start()
    try:
        send(api, ["a@dest.example", "b@dest.example"])
        send(api, ["c@dest.example"])
        assert sink.wait_for(2, timeout=60), worker.log()
        assert wait_until(lambda: not Recipient.objects.exclude(state=RecipientState.DELIVERED).exists()), worker.log()
    finally:
        worker.stop()
    assert sorted(a for m in sink.messages for a in m.rcpt_tos) == [
        "a@dest.example",
        "b@dest.example",
        "c@dest.example",
    ]


def test_worker_killed_mid_delivery_then_the_sweep_delivers_exactly_once(api, zone, mx, tmp_path):
    sink = mx("127.0.0.2")
    sink.hang_on = "DATA"  # the first session stops answering after the message data, before the reply
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    first = Worker(tmp_path).start()
    try:
        send(api, ["jane@dest.example"])
        assert wait_until(lambda: sink.hang_sessions == 0, timeout=60), first.log()
        assert state_of("jane@dest.example") == RecipientState.SENDING
        first.kill()
    finally:
        first.stop()
    assert sink.messages == []

    second = Worker(tmp_path).start()
    try:
        # The dead worker's lease counts as run out at once (it would in POSTWERK_WORKER_LEASE, unrenewed).
        WorkerLease.objects.update(expires_at=timezone.now())
        report = sweep()
        assert report.rescued == 1 and report.enqueued == 1
        assert sink.wait_for(1, timeout=60), second.log()
        assert wait_until(lambda: state_of("jane@dest.example") == RecipientState.DELIVERED), second.log()
    finally:
        second.stop()
    assert len(sink.messages) == 1
    assert Recipient.objects.get().attempts == 2


def test_scheduled_mail_survives_a_worker_restart_and_goes_at_its_time(api, zone, mx, tmp_path):
    """Scheduled mail waits in the database, not in the broker or a worker's memory: the worker (with beat) that
    was running when it was accepted is killed before its time, and a new one sends it when it is due."""
    from datetime import timedelta

    from sending.models import Event

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")

    def beat_worker() -> Worker:
        schedule = ("-B", "-s", str(tmp_path / "celerybeat-schedule"))
        return Worker(tmp_path, schedule, POSTWERK_SWEEP_INTERVAL="1").start()

    first = beat_worker()
    try:
        send_at = timezone.now() + timedelta(seconds=8)
        body = {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Later", "text": "Hi"}
        sent = api.post("/api/v1/messages", {**body, "send_at": send_at.isoformat()}, format="json").json()
        assert sent["status"] == "scheduled"
        first.kill()  # before its time: nothing of it may be lost with the process
    finally:
        first.stop()
    assert state_of("jane@dest.example") == RecipientState.SCHEDULED and sink.messages == []

    second = beat_worker()
    try:
        assert sink.wait_for(1, timeout=90), second.log()
        assert wait_until(lambda: state_of("jane@dest.example") == RecipientState.DELIVERED), second.log()
    finally:
        second.stop()
    recipient = Recipient.objects.get()
    assert recipient.delivered_at >= send_at
    events = Event.objects.filter(recipient=recipient).order_by("sequence").values_list("type", flat=True)
    assert list(events) == ["scheduled", "queued", "sent", "delivered"]
    assert len(sink.messages) == 1
