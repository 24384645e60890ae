"""Handing recipient ids to Celery, grouped by destination so one worker reuses one SMTP connection."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(refs: Iterable[tuple[str, str]]) -> int:
    """Publish delivery tasks for (recipient id, destination domain) pairs; returns tasks published.

    A failure to publish is logged, not raised: the rows are committed, and the sweep enqueues them again
    once their lease runs out.
    """
    from .tasks import deliver

    by_domain: dict[str, list[str]] = defaultdict(list)
    for recipient_id, domain in refs:
        by_domain[domain].append(recipient_id)
    size = settings.POSTWERK_DELIVERY_BATCH
    published = buffered = 0
    try:
        # producer.batch(): kombu sends the tasks in one Redis pipeline as the block ends, one round trip instead
        # of one per task (a transport that cannot batch publishes one by one, as before).
        with deliver.app.producer_or_acquire() as producer, producer.batch():
            for domain, ids in by_domain.items():
                for start in range(0, len(ids), size):
                    # The destination rides along so its throttle is asked before anything is claimed.
                    deliver.apply_async(args=[ids[start : start + size]], kwargs={"domain": domain}, producer=producer)
                    buffered += 1
        published = buffered  # sent only once the batch is flushed
    except Exception:  # any broker error: the database keeps the truth and the sweep will retry
        log.exception("could not publish delivery tasks; the sweep will enqueue them later")
    return published


def enqueue_after_commit(refs: list[tuple[str, str]]) -> None:
    def publish() -> None:
        collected: list[tuple[str, str]] | None = getattr(_collecting, "refs", None)
        if collected is not None:
            collected.extend(refs)
        else:
            enqueue(refs)

    transaction.on_commit(publish)


_collecting = threading.local()


@contextmanager
def enqueues_collected() -> Iterator[list[tuple[str, str]]]:
    """Inside this block (this thread), what enqueue_after_commit would publish at commit is added to the
    yielded list instead, still only once committed: for a caller that publishes it another way."""
    refs: list[tuple[str, str]] = []
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
        self._refs: list[tuple[str, str]] = []
        self._busy = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")

    def submit(self, refs: list[tuple[str, str]]) -> None:
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
