"""Publishing delivery tasks: one task per destination batch, sent together, read back from the broker; and
handing committed recipients to a background publisher instead."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from sending.delivery import deliver as delivery
from sending.delivery import queueing
from sending.delivery.queueing import (
    BackgroundPublisher,
    enqueue,
    enqueue_after_commit,
    enqueues_collected,
    pending_claim,
    pending_clear,
    shared_publisher,
)
from sending.delivery.sweep import sweep
from sending.models import Recipient, RecipientState
from sending.tasks import deliver
from tests.conftest import add_mx_domain


@pytest.fixture
def delivery_queue(settings) -> Iterator:  # type: ignore[type-arg]
    settings.POSTWERK_DELIVERY_BATCH = 2
    with deliver.app.connection_for_read() as connection:
        queue = connection.SimpleQueue("delivery")
        shared_publisher().wait()  # an earlier test's API requests may still be publishing
        queue.clear()  # whatever an earlier test left behind
        yield queue
        shared_publisher().wait()
        queue.clear()
        queue.close()


def _published(queue) -> list[tuple[list[str], str | None]]:  # type: ignore[no-untyped-def]
    tasks = []
    while True:
        try:
            message = queue.get(block=True, timeout=1)
        except queue.Empty:
            return tasks
        args, kwargs, _ = message.decode()
        assert message.headers["task"] == "sending.tasks.deliver"
        tasks.append((args[0], kwargs.get("domain")))
        message.ack()


def test_tasks_are_grouped_by_destination_and_all_reach_the_broker(delivery_queue):
    refs = [("r1", "a.example"), ("r2", "b.example"), ("r3", "a.example"), ("r4", "a.example"), ("r5", "c.example")]
    assert enqueue(refs) == 4
    assert sorted(_published(delivery_queue)) == [
        (["r1", "r3"], "a.example"),
        (["r2"], "b.example"),
        (["r4"], "a.example"),
        (["r5"], "c.example"),
    ]


@pytest.mark.django_db(transaction=True)
def test_collected_enqueues_appear_only_once_committed():
    with enqueues_collected() as committed:
        try:
            with transaction.atomic():
                enqueue_after_commit([("r1", "a.example")])
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert committed == []
        with transaction.atomic():
            enqueue_after_commit([("r2", "a.example")])
            assert committed == []  # not before the commit
        assert committed == [("r2", "a.example")]


def test_background_publisher_merges_what_arrives_during_a_round(delivery_queue, settings):
    settings.POSTWERK_DELIVERY_BATCH = 100
    publisher = BackgroundPublisher()
    with publisher._lock:  # a round is "running": hand-overs queue up behind it
        publisher._busy = True
    publisher.submit([("r1", "a.example")])
    publisher.submit([("r2", "a.example"), ("r3", "b.example")])
    with publisher._lock:
        publisher._busy = False
    publisher.submit([("r4", "a.example")])  # starts the round that takes all four
    publisher.shutdown()
    assert sorted(_published(delivery_queue)) == [(["r1", "r2", "r4"], "a.example"), (["r3"], "b.example")]


# --- at most one pending task per destination -----------------------------------------------------------------


def test_a_pending_task_per_destination_takes_single_submissions_along(delivery_queue):
    assert enqueue([("r1", "a.example")]) == 1
    assert enqueue([("r2", "a.example")]) == 0  # the pending task drains it
    assert enqueue([("r3", "a.example"), ("r4", "a.example")]) == 1  # a full batch always goes: parallelism
    assert enqueue([("r5", "b.example")]) == 1  # another destination, its own marker
    pending_clear("a.example")  # a worker started the pending task: what commits now needs a task again
    assert enqueue([("r6", "a.example")]) == 1
    assert sorted(_published(delivery_queue)) == [
        (["r1"], "a.example"),
        (["r3", "r4"], "a.example"),
        (["r5"], "b.example"),
        (["r6"], "a.example"),
    ]


def test_a_failed_publish_leaves_no_marker(delivery_queue, monkeypatch):
    monkeypatch.setattr(queueing, "_publish", lambda tasks: False)
    assert enqueue([("r1", "a.example")]) == 0
    monkeypatch.undo()
    assert enqueue([("r2", "a.example")]) == 1


def test_dedupe_off_publishes_every_task(delivery_queue, settings):
    settings.POSTWERK_DELIVERY_PENDING_TTL = 0
    assert enqueue([("r1", "a.example")]) == enqueue([("r2", "a.example")]) == 1


def _send_one(api, address: str) -> None:  # type: ignore[no-untyped-def]
    body = {"from": "hello@acme.example", "to": [address], "subject": "Hi", "text": "Hello"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    shared_publisher().wait()  # the API publishes from a thread; these tests look at what each request published


def _run(tasks: list[tuple[list[str], str | None]]) -> int:
    return sum(delivery.deliver(ids, domain=domain) for ids, domain in tasks)


@pytest.mark.django_db(transaction=True)
def test_one_by_one_submissions_publish_few_tasks_and_deliver_exactly_once(api, zone, mx, delivery_queue, settings):
    settings.POSTWERK_DELIVERY_BATCH = 100
    # Longer than twenty requests take on a slow machine: the marker's expiry is not what this test is about.
    settings.POSTWERK_DELIVERY_PENDING_TTL = 60
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    addresses = [f"u{i}@dest.example" for i in range(30)]
    for address in addresses[:20]:
        _send_one(api, address)
    first = _published(delivery_queue)
    assert first == [([str(Recipient.objects.get(address=addresses[0]).pk)], "dest.example")]
    # A worker takes the task: it clears the marker, then drains the 19 that skipped publishing.
    assert _run(first) == 20
    for address in addresses[20:]:  # after the clear: one new task again, for all ten
        _send_one(api, address)
    second = _published(delivery_queue)
    assert len(second) == 1
    assert _run(second) == 10
    assert sorted(a for m in sink.messages for a in m.rcpt_tos) == sorted(addresses)  # each exactly once
    assert not Recipient.objects.exclude(state=RecipientState.DELIVERED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_task_whose_ids_were_taken_still_drains_its_destination(api, zone, mx, delivery_queue, settings):
    # The marker must outlive two API requests, which on a loaded machine took longer than the 5 s default
    # (the second was published too); expiry has its own test.
    settings.POSTWERK_DELIVERY_PENDING_TTL = 60
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    _send_one(api, "a@dest.example")
    _send_one(api, "b@dest.example")  # skipped publishing: the task of a@ is pending
    (task,) = _published(delivery_queue)
    taken = delivery.claim(task[0])  # another worker won a@ (and is still busy with it)
    assert len(taken) == 1
    assert _run([task]) == 1
    assert Recipient.objects.get(address="b@dest.example").state == RecipientState.DELIVERED
    assert [m.rcpt_tos for m in sink.messages] == [["b@dest.example"]]


@pytest.mark.django_db(transaction=True)
def test_a_stale_marker_holds_mail_back_no_longer_than_its_ttl_plus_the_lease(api, zone, mx, delivery_queue, settings):
    settings.POSTWERK_DELIVERY_PENDING_TTL = 1
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    assert pending_claim(["dest.example"]) == {"dest.example"}  # a publisher that died before sending its task
    _send_one(api, "a@dest.example")
    assert _published(delivery_queue) == []  # held back by the dead publisher's marker
    time.sleep(1.1)  # the marker ran out
    report = sweep(now=timezone.now() + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE + 1))
    assert report.enqueued == 1
    tasks = _published(delivery_queue)
    assert len(tasks) == 1
    assert _run(tasks) == 1
    assert [m.rcpt_tos for m in sink.messages] == [["a@dest.example"]]


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_stops_early_hands_the_rest_to_a_new_task(api, zone, mx, delivery_queue, settings):
    settings.POSTWERK_DELIVERY_BATCH = 100
    settings.POSTWERK_DELIVERY_DRAIN = 3
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    for i in range(5):
        _send_one(api, f"u{i}@dest.example")
    first = _published(delivery_queue)
    assert len(first) == 1
    assert _run(first) == 3  # its drain limit: the two left skipped publishing, so it publishes their task
    rest = _published(delivery_queue)
    assert rest == [([], "dest.example")]
    assert _run(rest) == 2
    assert len(sink.messages) == 5
