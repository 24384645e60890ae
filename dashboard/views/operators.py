"""The operators' queue page: platform-wide delivery state, for staff."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ..access import staff_view
from ..selectors import queue_stats
from .common import page


@staff_view
def queue(request: HttpRequest) -> HttpResponse:
    return page(request, "dashboard/queue.html", {"section": "queue", "stats": queue_stats(), "now": timezone.now()})
