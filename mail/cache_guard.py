"""The shared cache (Redis in production) holds counters and markers that only shape the accept path: API rate
limits, SMTP AUTH failure counts, delivery-pending markers. The database is what a 202 or a 250 promises, so when
the cache is unreachable Postwerk accepts without them ("fail open") and says so in one warning per interval per
use, not one per request."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

WARN_INTERVAL = 60.0  # seconds between two warnings about the same use of the cache
_last_warned: dict[str, float] = {}
_lock = threading.Lock()


def cache_unavailable(use: str, exc: BaseException) -> None:
    """Note that the cache failed for `use` ("API rate limit"...), logging at most once per WARN_INTERVAL."""
    now = time.monotonic()
    with _lock:
        last = _last_warned.get(use)
        if last is not None and now - last < WARN_INTERVAL:
            return
        _last_warned[use] = now
    log.warning("cache unavailable, going on without the %s: %s: %s", use, type(exc).__name__, exc)
