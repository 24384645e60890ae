"""Publishing delivery tasks: one task per destination batch, sent together, read back from the broker; and
handing committed recipients to a background publisher instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import transaction

from sending.queueing import BackgroundPublisher, enqueue, enqueue_after_commit, enqueues_collected
from sending.tasks import deliver


@pytest.fixture
def delivery_queue(settings) -> Iterator:  # type: ignore[type-arg]
    settings.POSTWERK_DELIVERY_BATCH = 2
    with deliver.app.connection_for_read() as connection:
        queue = connection.SimpleQueue("delivery")
        queue.clear()  # whatever an earlier test left behind
        yield queue
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
