"""kill -9 of a worker in the middle of an SMTP transaction (message sent, reply not yet read), then a fresh
worker with its own beat: the sweep finds the dead worker's claim and every recipient is delivered. Counted at
the sink, per recipient."""

from __future__ import annotations

from collections import Counter

import pytest

from sending.models import Recipient, RecipientState
from tests.conftest import add_mx_domain
from tests.faults.receivers import BrokenReceiver
from tests.servers import SmtpSink
from tests.worker_process import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.faults, pytest.mark.timeout(240)]

MESSAGES = [
    ["a@dest.example", "b@dest.example"],
    ["c@dest.example"],
    ["d@dest.example", "e@dest.example", "f@dest.example"],
]
ALL = sorted(a for to in MESSAGES for a in to)


@pytest.fixture(autouse=True)
def short_lease(settings):
    # A task the dead worker had taken from the broker is gone with it; the lease says when the sweep stops
    # waiting for it. Shrunk so the test does not wait the production five minutes.
    settings.POSTWERK_ENQUEUE_LEASE = 2


def send_all(api) -> None:
    for to in MESSAGES:
        body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello"}
        response = api.post("/api/v1/messages", body, format="json")
        assert response.status_code == 202, response.content


def restarted_worker(tmp_path) -> Worker:
    """A worker that also runs beat, with the sweep every second and a dead claim counted stale after 3 s."""
    return Worker(
        tmp_path,
        ("-B", "-s", str(tmp_path / "celerybeat-schedule")),
        POSTWERK_SWEEP_INTERVAL="1",
        POSTWERK_SENDING_TIMEOUT="3",
        POSTWERK_ENQUEUE_LEASE="2",
    ).start()


def states() -> set[str]:
    return set(Recipient.objects.values_list("state", flat=True))


def test_kill_9_after_data_before_the_reply_then_restart_delivers_each_recipient_exactly_once(api, zone, mx, tmp_path):
    sink = mx("127.0.0.2")
    sink.hang_on = "DATA"  # the first session gets the whole message, then never answers the final dot
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    first = Worker(tmp_path, POSTWERK_SMTP_COMMAND_TIMEOUT="60").start()
    try:
        send_all(api)
        assert wait_until(lambda: sink.hang_sessions == 0, timeout=60), first.log()
        assert Recipient.objects.filter(state=RecipientState.SENDING).exists()
        first.kill()
    finally:
        first.stop()
    assert sink.messages == []

    second = restarted_worker(tmp_path)
    try:
        assert wait_until(lambda: states() == {RecipientState.DELIVERED}, timeout=90), second.log()
    finally:
        second.stop()
    delivered = Counter(a for m in sink.messages for a in m.rcpt_tos)
    assert sorted(delivered) == ALL
    assert set(delivered.values()) == {1}, delivered  # nobody twice
    # The recipient whose transaction was cut short was tried twice; its delivery is one message at the sink.
    assert max(Recipient.objects.values_list("attempts", flat=True)) == 2


def test_the_duplicate_window_an_mx_that_kept_the_message_but_whose_reply_was_lost(api, zone, mx_port, tmp_path):
    """The one case at-least-once cannot close: the MX queued the message, the worker died before reading its
    250. The sweep sends it again, so that recipient gets two copies; everyone else gets one, and the database
    says `delivered` once for each."""
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    keeper = BrokenReceiver("127.0.0.2", mx_port, "hang_after_data").start()
    first = Worker(tmp_path, POSTWERK_SMTP_COMMAND_TIMEOUT="60").start()
    try:
        send_all(api)
        assert wait_until(lambda: len(keeper.received) == 1, timeout=60), first.log()
        first.kill()
    finally:
        first.stop()
        keeper.stop()

    sink = SmtpSink("127.0.0.2", mx_port).start()
    second = restarted_worker(tmp_path)
    try:
        assert wait_until(lambda: states() == {RecipientState.DELIVERED}, timeout=90), second.log()
    finally:
        second.stop()
        sink.stop()
    delivered = Counter(a for m in sink.messages for a in m.rcpt_tos)
    assert sorted(delivered) == ALL and set(delivered.values()) == {1}, delivered
    # The kept copy is the only duplicate: one message, to the recipient that was in flight. The dead worker's
    # other claimed recipients were sent again too, but nothing of theirs had reached the MX.
    assert len(keeper.received) == 1
    # Those the dead worker had claimed (its first claim takes the destination's whole queue, up to a batch)
    # count two attempts; any it had not reached, one.
    attempts = set(Recipient.objects.values_list("attempts", flat=True))
    assert 2 in attempts and attempts <= {1, 2}, attempts
