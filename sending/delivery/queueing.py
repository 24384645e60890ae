"""Handing recipient ids to Celery, grouped by destination so one worker reuses one SMTP connection."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from config.celery import app as celery_app

# The delivery task (sending.tasks.deliver), published by name: see config/celery.py.
DELIVER_TASK = "sending.tasks.deliver"

# Delivery lanes (Recipient.lane, set from the message's stream and priority by sending.streams.options): each has
# its own Celery queue, so a backlog of broadcast mail never stands in front of transactional mail, and mail with
# priority high in front of its lane's normal mail. A worker pool per lane group (`-Q delivery-high,delivery` and
# `-Q delivery-broadcast-high,delivery-broadcast`) keeps transactional delivery from ever waiting for a broadcast
# worker; one worker on all four queues works too (kombu serves its queues in turn, not one after the other).
LANES = ("high", "", "broadcast-high", "broadcast")
# What a task of a lane may drain at its destination (claiming.claim_queued), higher priority first: a normal
# task takes its lane's high-priority mail along, a high one only high-priority mail, and never another stream kind.
LANE_DRAINS = {
    "": ("high", ""),
    "high": ("high",),
    "broadcast": ("broadcast-high", "broadcast"),
    "broadcast-high": ("broadcast-high",),
}


def lane_queue(lane: str) -> str:
    """The Celery queue of a lane: `delivery` (transactional), `delivery-high`, `delivery-broadcast`,
    `delivery-broadcast-high`."""
    return f"delivery-{lane}" if lane else "delivery"


def delivery_queues() -> list[str]:
    return [lane_queue(lane) for lane in LANES]


Ref = tuple[str, str] | tuple[str, str, str]  # (recipient id, destination domain[, lane])


def _lane(ref: Ref) -> str:
    return ref[2] if len(ref) > 2 else ""  # type: ignore[misc]


log = logging.getLogger(__name__)


def enqueue(refs: Iterable[Ref]) -> int:
    """Publish delivery tasks for (recipient id, destination domain[, lane]) refs; returns tasks published. Each
    destination and lane is its own task (a lane's queue, sending.streams).

    A destination with less than a full batch here gets a task only if none is pending for it already (see
    pending_claim): the pending one drains every queued recipient of its destination, these included. Full
    batches are always published, so a large request still spreads over several workers.

    A failure to publish is logged, not raised: the rows are committed, and the sweep enqueues them again
    once their lease runs out.
    """
    by_domain: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ref in refs:
        by_domain[(ref[1], _lane(ref))].append(ref[0])
    size = settings.POSTWERK_DELIVERY_BATCH
    claimed, busy = pending_claim_busy(list(by_domain))
    tasks = [
        (key, chunk, _coalesce(key, chunk, busy))
        for key, ids in by_domain.items()
        if key in claimed or len(ids) >= size
        for chunk in (ids[start : start + size] for start in range(0, len(ids), size))
    ]
    if not tasks:
        return 0
    if not _publish(tasks):
        pending_release(claimed)  # no task is on its way after all: the next submission must publish one
        return 0
    return len(tasks)


def enqueue_destination(domain: str, lane: str = "") -> bool:
    """A task for "whatever is queued at this destination" (in this lane), unless one is pending already; True if
    published.

    For a worker that stops draining a destination before its queue is empty: recipients that skipped
    publishing because its task was pending must not wait for their enqueue lease."""
    key = (domain, lane)
    if key not in pending_claim([key]):
        return False
    if not _publish([(key, [], 0.0)]):
        pending_release([key])
        return False
    return True


Destination = tuple[str, str]  # (domain, lane)


def _coalesce(domain: Destination, ids: list[str], busy: set[Destination]) -> float:
    """Seconds a task waits before it runs: a partial batch for a busy destination gathers what follows it."""
    if domain in busy and len(ids) < settings.POSTWERK_DELIVERY_BATCH:
        return settings.POSTWERK_DELIVERY_COALESCE
    return 0.0


def task_kwargs(domain: str, lane: str) -> dict[str, str]:
    """The delivery task's keyword arguments (the lane only when it is not the default one)."""
    return {"domain": domain, "lane": lane} if lane else {"domain": domain}


def _publish(tasks: list[tuple[Destination, list[str], float]]) -> bool:
    try:
        # producer.batch(): kombu sends the tasks in one Redis pipeline as the block ends, one round trip instead
        # of one per task (a transport that cannot batch publishes one by one, as before).
        with celery_app.producer_or_acquire() as producer, producer.batch():
            for (domain, lane), ids, delay in tasks:
                # The destination rides along so its throttle is asked before anything is claimed.
                celery_app.send_task(
                    DELIVER_TASK,
                    args=[ids],
                    kwargs=task_kwargs(domain, lane),
                    producer=producer,
                    countdown=delay or None,
                    queue=lane_queue(lane),
                )
    except Exception:  # any broker error: the database keeps the truth and the sweep will retry
        log.exception("could not publish delivery tasks; the sweep will enqueue them later")
        return False
    return True


# --- at most one pending task per destination ---------------------------------------------------------------
#
# Why this is safe: a publisher looks at the marker only after its rows are committed, and a worker clears the
# marker (pending_clear) before it reads its destination's queue. So a publisher that sees the marker set sees
# it before the clear of some task still to drain, and that drain finds its rows. A task lost with its marker
# set (dead publisher, lost broker message) holds publishing back for the marker's TTL at most; rows skipped
# meanwhile are published by the sweep once their enqueue lease runs out, as after any lost task.


def _name(destination: Destination | str) -> str:
    domain, lane = (destination, "") if isinstance(destination, str) else destination
    return f"{domain}:{lane}" if lane else domain


def _marker(domain: Destination | str) -> str:
    return f"delivery-pending:{settings.POSTWERK_DELIVERY_PENDING_NAMESPACE}:{_name(domain)}"


def _active(domain: Destination | str) -> str:
    return f"delivery-active:{settings.POSTWERK_DELIVERY_PENDING_NAMESPACE}:{_name(domain)}"


def pending_claim(domains: list) -> set:
    """The destinations for which the caller is to publish a task: the ones whose marker it just set."""
    return pending_claim_busy(domains)[0]


def pending_claim_busy(domains: list) -> tuple[set, set]:
    """(destinations whose marker the caller just set, so it publishes their task; destinations busy, whose
    task started within the last second or so), in one cache round trip for the lookups.

    On any cache error, all of them and none busy (an extra task costs little; a skipped one would wait for
    the sweep)."""
    ttl = settings.POSTWERK_DELIVERY_PENDING_TTL
    if ttl <= 0 or not domains:
        return set(domains), set()
    keys = {_marker(domain): domain for domain in domains}
    actives = {_active(domain): domain for domain in domains} if settings.POSTWERK_DELIVERY_COALESCE > 0 else {}
    try:
        # Under load most markers are set, and add() is only asked for the others.
        found = cache.get_many([*keys, *actives])
        claimed = {domain for key, domain in keys.items() if key not in found and cache.add(key, 1, ttl)}
    except Exception:
        log.warning("delivery markers unavailable; publishing without dedupe", exc_info=True)
        return set(domains), set()
    return claimed, {domain for key, domain in actives.items() if key in found}


def pending_release(domains: Iterable) -> None:
    """Clear destinations' markers: their task is being run (before its queue is read), or was never sent."""
    if settings.POSTWERK_DELIVERY_PENDING_TTL <= 0:
        return
    keys = [_marker(domain) for domain in domains]
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except Exception:  # the marker then runs out by itself
        log.warning("could not clear delivery markers", exc_info=True)


def pending_clear(domain: Destination | str) -> None:
    """A worker starts the destination's task: clear its marker, and note the destination busy for a second
    (see POSTWERK_DELIVERY_COALESCE)."""
    pending_release([domain])
    if settings.POSTWERK_DELIVERY_PENDING_TTL > 0 and settings.POSTWERK_DELIVERY_COALESCE > 0:
        try:
            cache.set(_active(domain), 1, 1)
        except Exception:  # only batching is lost
            log.warning("could not mark a destination busy", exc_info=True)


def enqueue_after_commit(refs: list[Ref]) -> None:
    def publish() -> None:
        collected: list[Ref] | None = getattr(_collecting, "refs", None)
        if collected is not None:
            collected.extend(refs)
        else:
            enqueue(refs)

    transaction.on_commit(publish)


_collecting = threading.local()


@contextmanager
def enqueues_collected() -> Iterator[list[Ref]]:
    """Inside this block (this thread), what enqueue_after_commit would publish at commit is added to the
    yielded list instead, still only once committed: for a caller that publishes it another way."""
    refs: list[Ref] = []
    _collecting.refs = refs
    try:
        yield refs
    finally:
        _collecting.refs = None


class BackgroundPublisher:
    """Publishes committed recipients from one background thread, so a committer (the SMTP server's group
    commit) answers and commits its next group without waiting for the broker. What is handed over while a
    round is being published goes out together in the next one, one task per destination batch.

    Nothing is lost if the process dies first: the rows are committed with their enqueue lease, and the sweep
    publishes them once it runs out, exactly as after a broker failure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: list[Ref] = []
        self._busy = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")

    def submit(self, refs: list[Ref]) -> None:
        if not refs:
            return
        with self._lock:
            self._refs.extend(refs)
            if self._busy:
                return  # the running round takes them
            self._busy = True
        self._thread.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                refs, self._refs = self._refs, []
                if not refs:
                    self._busy = False
                    return
            enqueue(refs)

    def shutdown(self) -> None:
        """Publish what was handed over, then stop."""
        self._thread.shutdown(wait=True)

    def wait(self) -> None:
        """Until everything handed over so far is published (tests; a process about to stop)."""
        self._thread.submit(lambda: None).result()


_shared: tuple[int, BackgroundPublisher] | None = None
_shared_lock = threading.Lock()


def shared_publisher() -> BackgroundPublisher:
    """This process's publisher for the send API: every request thread hands its committed recipients to it, so
    the 202 does not wait for the broker and concurrent requests' tasks go out in one round (as the SMTP server's
    group commit does). Made after a fork (gunicorn's workers), never inherited; at exit it publishes what it
    still holds."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            _shared = (os.getpid(), BackgroundPublisher())
            atexit.register(_shared[1].shutdown)
        return _shared[1]
