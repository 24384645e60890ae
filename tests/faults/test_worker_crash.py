"""kill -9 of a worker in the middle of an SMTP transaction (message sent, reply not yet read): once the dead
worker's lease has run out, the sweep of a live worker hands its recipients out again and every recipient is
delivered, while a live worker, however slow its receiver, keeps its own. Counted at the sink, per recipient; times
from the database's events and leases."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from sending.delivery.sweep import sweep
from sending.models import Event, EventType, Recipient, RecipientState, WorkerLease
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
# The workers' lease (POSTWERK_WORKER_LEASE), shrunk from the production minute; renewed every third of it, so a
# live worker has two thirds of it to spare on a busy machine.
LEASE = 10
# A dead worker's recipients are claimed again at most this long after its lease ran out: the sweep interval
# (1 s here) and a live worker finishing the task in hand, with room for a busy machine. Without leases it was
# POSTWERK_SENDING_TIMEOUT (600 s).
RECOVERY_MARGIN = 30


@pytest.fixture(autouse=True)
def short_lease(settings):
    # A task the dead worker had taken from the broker is gone with it; the lease says when the sweep stops
    # waiting for it. Shrunk so the test does not wait the production five minutes.
    settings.POSTWERK_ENQUEUE_LEASE = 2


def send(api, to: list[str]) -> None:
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content


def send_all(api) -> None:
    for to in MESSAGES:
        send(api, to)


def doomed_worker(tmp_path) -> Worker:
    """The worker about to be killed, with the short lease."""
    return Worker(tmp_path, POSTWERK_SMTP_COMMAND_TIMEOUT="60", POSTWERK_WORKER_LEASE=str(LEASE)).start()


def restarted_worker(tmp_path) -> Worker:
    """A worker that also runs beat, with the sweep every second. POSTWERK_SENDING_TIMEOUT keeps its default (600 s):
    the lease is what gives the dead worker's claim back."""
    return Worker(
        tmp_path,
        ("-B", "-s", str(tmp_path / "celerybeat-schedule")),
        POSTWERK_SWEEP_INTERVAL="1",
        POSTWERK_ENQUEUE_LEASE="2",
        POSTWERK_WORKER_LEASE=str(LEASE),
    ).start()


def states() -> set[str]:
    return set(Recipient.objects.values_list("state", flat=True))


def the_only_lease() -> WorkerLease:
    leases = list(WorkerLease.objects.all())
    assert len(leases) == 1, leases
    return leases[0]


def claimed_again_at(recipient_ids: list) -> list[datetime]:
    """When each of these recipients was claimed for its second attempt (its second `sent` event)."""
    sent = Event.objects.filter(recipient_id__in=recipient_ids, type=EventType.SENT, details__attempt=2)
    times = list(sent.values_list("created_at", flat=True))
    assert len(times) == len(recipient_ids), (len(times), len(recipient_ids))
    return times


def test_kill_9_after_data_before_the_reply_then_restart_delivers_each_recipient_exactly_once(api, zone, mx, tmp_path):
    sink = mx("127.0.0.2")
    sink.hang_on = "DATA"  # the first session gets the whole message, then never answers the final dot
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    first = doomed_worker(tmp_path)
    try:
        send_all(api)
        assert wait_until(lambda: sink.hang_sessions == 0, timeout=60), first.log()
        assert Recipient.objects.filter(state=RecipientState.SENDING).exists()
        first.kill()
    finally:
        first.stop()
    assert sink.messages == []
    dead = the_only_lease()
    stranded = list(Recipient.objects.filter(state=RecipientState.SENDING).values_list("id", flat=True))
    assert set(Recipient.objects.filter(id__in=stranded).values_list("claim_token", flat=True)) == {dead.worker}

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
    # Not one of them was handed out again before the dead worker's lease had run out.
    assert min(claimed_again_at(stranded)) >= dead.expires_at


def test_the_duplicate_window_an_mx_that_kept_the_message_but_whose_reply_was_lost(api, zone, mx_port, tmp_path):
    """The one case at-least-once cannot close: the MX queued the message, the worker died before reading its
    250. The sweep sends it again, so that recipient gets two copies; everyone else gets one, and the database
    says `delivered` once for each."""
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    keeper = BrokenReceiver("127.0.0.2", mx_port, "hang_after_data").start()
    first = doomed_worker(tmp_path)
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


@pytest.mark.timeout(480)
def test_kill_9_of_one_of_two_workers_mid_batch_its_recipients_go_out_within_the_lease_and_one_at_most_twice(
    api, zone, mx, tmp_path
):
    """The production failure: one of two workers is killed while it works through a claimed batch. The survivor's
    sweep claims the dead worker's recipients again soon after its lease ran out (not after the 600 s of
    POSTWERK_SENDING_TIMEOUT), and the only one sent twice is the transaction in flight at the kill: everything the
    dead worker had finished was recorded transaction by transaction."""
    total = 300
    sink = mx("127.0.0.2")
    sink.data_gate = gate = threading.Event()
    gate.set()
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    victim = doomed_worker(tmp_path)
    survivor = None
    try:
        to = [f"r{i}@dest.example" for i in range(total)]
        batch = [{"from": "hello@acme.example", "to": [a], "subject": "Hi", "text": "Hello"} for a in to]
        response = api.post("/api/v1/messages/batch", {"messages": batch}, format="json")
        assert response.status_code == 200, response.content
        # The victim is well into its work; then the MX keeps its next message without answering (the reply lost
        # when it dies, as in the duplicate window).
        assert sink.wait_for(20, timeout=120), victim.log()
        gate.clear()
        assert wait_until(lambda: sink.data_waiting == 1, timeout=60), victim.log()
        in_flight = sink.messages[-1].rcpt_tos[0]
        lease = the_only_lease()
        survivor = restarted_worker(tmp_path)
        assert wait_until(lambda: "ready." in survivor.log(), timeout=120), survivor.log()
        killed_at = timezone.now()
        victim.kill()
        gate.set()
        held = Recipient.objects.filter(state=RecipientState.SENDING, claim_token=lease.worker)
        stranded = list(held.values_list("id", flat=True))
        assert stranded
        lease.refresh_from_db()  # its last renewal
        delivered = lambda: Recipient.objects.filter(state=RecipientState.DELIVERED).count()  # noqa: E731
        assert wait_until(lambda: delivered() == total, timeout=LEASE + RECOVERY_MARGIN + 120), survivor.log()
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()

    at_sink = Counter(m.rcpt_tos[0] for m in sink.messages)
    assert sorted(at_sink) == sorted(to)
    # One transaction was in flight at the kill (a solo worker's concurrency): its recipient, and only it, twice.
    assert {a: n for a, n in at_sink.items() if n > 1} == {in_flight: 2}
    # The dead worker's lease ran out within a lease of the kill; no recipient of it was claimed again before that,
    # and all of them within the recovery margin after.
    assert lease.expires_at <= killed_at + timedelta(seconds=LEASE)
    again = claimed_again_at(stranded)
    assert min(again) >= lease.expires_at
    assert max(again) <= lease.expires_at + timedelta(seconds=RECOVERY_MARGIN), max(again) - lease.expires_at
    assert set(Recipient.objects.filter(id__in=stranded).values_list("attempts", flat=True)) == {2}
    print(f"{len(stranded)} recipients of the killed worker, all claimed again {max(again) - killed_at} after the kill")


def test_a_live_worker_slower_than_its_lease_keeps_its_recipients(api, zone, mx, tmp_path, settings):
    """The MX takes longer than the whole lease to answer; the worker renews its lease meanwhile, so a sweep that
    would count any claim without a lease stale at once (POSTWERK_SENDING_TIMEOUT = 0) re-queues nothing, and the
    recipient gets one copy."""
    sink = mx("127.0.0.2")
    sink.data_gate = gate = threading.Event()  # closed: the reply to the final dot waits
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    worker = doomed_worker(tmp_path)
    try:
        send(api, ["slow@dest.example"])
        assert wait_until(lambda: sink.data_waiting == 1, timeout=60), worker.log()
        first_expiry = the_only_lease().expires_at
        # Past the end of the lease as it was taken: only renewals keep it.
        assert wait_until(lambda: timezone.now() > first_expiry + timedelta(seconds=1), timeout=LEASE + 30)
        settings.POSTWERK_SENDING_TIMEOUT = 0
        assert sweep().rescued == 0
        assert Recipient.objects.get().state == RecipientState.SENDING
        assert the_only_lease().expires_at > timezone.now()
        gate.set()
        assert wait_until(lambda: states() == {RecipientState.DELIVERED}, timeout=60), worker.log()
    finally:
        gate.set()
        worker.stop()
    assert [m.rcpt_tos for m in sink.messages] == [["slow@dest.example"]]
    assert Recipient.objects.get().attempts == 1
