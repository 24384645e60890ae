"""A delivery worker proves it is alive, so a dead one's recipients go out again within about a minute.

Each thread that delivers holds a WorkerLease row (mail.leases, one slot per worker) for
POSTWERK_WORKER_LEASE seconds. Its claims carry the lease's key in Recipient.claim_token, and a background
thread of the process renews the lease while a delivery is under way, however long the receiver takes to
answer. The sweep re-queues `sending` recipients only once their lease ran out or was released: a worker killed
with SIGKILL stops renewing, a live but slow one never does.

A delivery that ends in an exception (the database went away while it recorded an outcome) releases its lease:
the claims it could not record must not wait for this process to go idle. The next delivery takes a new one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime

from django.conf import settings
from django.db import connection

from mail.leases import Slot, SlotTable
from sending.models import WorkerLease

log = logging.getLogger(__name__)

_table = SlotTable(WorkerLease, "worker")
_lock = threading.Lock()
_local = threading.local()  # .slot: this thread's lease, kept between deliveries
_active: dict[int, Slot] = {}  # thread ident -> the lease of a delivery under way in that thread
_heartbeat: threading.Thread | None = None


def lease_seconds() -> float:
    return settings.POSTWERK_WORKER_LEASE


@contextmanager
def holding() -> Iterator[uuid.UUID]:
    """Claims made inside carry this thread's lease (see claim_token), renewed in the background until the block
    ends. Yields the lease's key."""
    slot = _this_threads_lease()
    ident = threading.get_ident()
    with _lock:
        _active[ident] = slot
        _start_heartbeat()
    try:
        yield uuid.UUID(slot.key)
    except BaseException:
        _local.slot = None
        with suppress(Exception):  # the database may be what failed; then the lease simply runs out
            _table.release(slot)
        raise
    finally:
        with _lock:
            _active.pop(ident, None)


def claim_token() -> uuid.UUID:
    """The token a claim writes: the lease of the delivery under way in this thread, else one of its own (a claim
    outside any worker lease, re-queued after POSTWERK_SENDING_TIMEOUT)."""
    slot = _active.get(threading.get_ident())
    return uuid.UUID(slot.key) if slot is not None else uuid.uuid4()


def leases_idle_delete(before: datetime) -> int:
    """Forget leases neither held nor renewed since `before` (the sweep re-queued their claims long ago)."""
    return _table.idle_delete(before)


def _this_threads_lease() -> Slot:
    slot: Slot | None = getattr(_local, "slot", None)
    # Renewed before any claim, whenever it was last: after an idle spell it may have run out, or its row have
    # been forgotten (leases_idle_delete). Nobody else uses its key, so an expired one is simply extended.
    if slot is not None and _table.renew(slot, lease_seconds(), force=True):
        return slot
    slot = _table.take(uuid.uuid4().hex, 1, lease_seconds())
    assert slot is not None  # a fresh key's only slot is free
    _local.slot = slot
    return slot


def _start_heartbeat() -> None:
    global _heartbeat
    if _heartbeat is None or not _heartbeat.is_alive():
        _heartbeat = threading.Thread(target=_beat, name="postwerk-worker-lease", daemon=True)
        _heartbeat.start()


def _beat() -> None:
    """Renew the leases of deliveries under way, once a third of the lease has passed (SlotTable.renew)."""
    while True:
        time.sleep(lease_seconds() / 10)
        with _lock:
            held = list(_active.values())
        for slot in held:
            try:
                if not _table.renew(slot, lease_seconds()):
                    log.warning("worker lease %s was lost; its claims may be sent again", slot.key)
            except Exception:
                log.exception("could not renew worker lease %s", slot.key)
        # This thread's own connection, closed after each round: one connect every few seconds costs nothing,
        # and no connection is left open between rounds (a test database could not be dropped while one was).
        connection.close()


def _forget_after_fork() -> None:
    # A forked pool process starts with no lease and no heartbeat thread of its own.
    global _heartbeat, _local, _lock
    _heartbeat, _local, _lock = None, threading.local(), threading.Lock()
    _active.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
