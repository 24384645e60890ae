"""Refusing new mail, politely, while the workers are behind.

"Sustainable" is measured where it shows: recipients waiting for a worker (queued or sending). When intake
outruns delivery that number grows without bound, and so does the latency of everything accepted. Above
POSTWERK_OVERLOAD_QUEUE_DEPTH new mail gets a temporary answer (API 503 with Retry-After, SMTP 421/451 4.3.2,
RFC 3463 "system not accepting network messages"), so clients back off and what was accepted is delivered
within about depth / delivery rate. Deferred recipients do not count: a slow receiver is no reason to stop
taking mail for the others.

The check is one bounded count on the (state, next_attempt_at) index, cached for a second per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from sending.models import Recipient, RecipientState

CHECK_INTERVAL = 1.0
SMTP_CONNECT_REPLY = "421 4.3.2 System busy, not accepting messages now; try again later"
SMTP_MAIL_REPLY = "451 4.3.2 System busy, not accepting messages now; try again later"
# POST to these paths submits mail; everything else (reads, domains, webhooks) keeps working under overload.
SEND_PATHS = ("/api/v1/messages", "/api/v1/messages/batch")

_lock = threading.Lock()
_checked_at = 0.0
_over = False


def queue_over(limit: int) -> bool:
    """More than `limit` recipients waiting for a worker. Counts at most limit + 1 rows."""
    waiting = Recipient.objects.filter(state__in=(RecipientState.QUEUED, RecipientState.SENDING))
    return waiting.order_by()[: limit + 1].count() > limit


def overloaded_cached() -> bool:
    """The last answer if it is fresh, else False: for callers that cannot query (the SMTP event loop)."""
    return _over and time.monotonic() - _checked_at < CHECK_INTERVAL * 2


def fresh_answer() -> bool | None:
    """The last answer while it is fresh, else None (the caller asks `overloaded()`, which queries)."""
    return _over if time.monotonic() - _checked_at < CHECK_INTERVAL else None


def overloaded() -> bool:
    global _checked_at, _over
    limit = settings.POSTWERK_OVERLOAD_QUEUE_DEPTH
    if limit <= 0:
        return False
    now = time.monotonic()
    if now - _checked_at < CHECK_INTERVAL:
        return _over
    with _lock:
        if time.monotonic() - _checked_at >= CHECK_INTERVAL:
            try:
                _over = queue_over(limit)
            except DatabaseError:
                _over = False  # cannot tell: let the submission itself succeed or fail on its own
            _checked_at = time.monotonic()
    return _over


def reset() -> None:
    """Forget the cached answer (tests, and a process that just changed the threshold)."""
    global _checked_at, _over
    with _lock:
        _checked_at, _over = 0.0, False


def overload_response() -> JsonResponse:
    retry_after = settings.POSTWERK_OVERLOAD_RETRY_AFTER
    response = JsonResponse(
        {
            "error": "overloaded",
            "message": "Postwerk is not accepting new mail right now because its queue is full; "
            f"try again in {retry_after} seconds.",
            "retry_after": retry_after,
        },
        status=503,
    )
    response["Retry-After"] = str(retry_after)
    return response


class OverloadMiddleware:
    """Answers send requests with 503 before authentication or parsing: shedding load must itself be cheap."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path_info.rstrip("/") in SEND_PATHS and overloaded():
            return overload_response()
        return self.get_response(request)
