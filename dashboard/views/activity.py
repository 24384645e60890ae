"""The activity feed: the organization's events as they happen, filterable by type, sender domain, tag and
recipient, each linked to its message.

Live by polling, not server-sent events: the page asks `activity/feed` every few seconds for the rows newer than
the newest it shows. An open SSE stream would hold a web worker (or thread) per watching person for as long as the
tab is open, and needs the proxy in front to pass unbuffered streams; a poll is one short indexed query that any
deployment serves. Rows are rendered by the same template for the page and for each poll, so the two never differ.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_datetime

from dashboard.access import org_view
from dashboard.event_words import describe
from dashboard.forms import ActivityFilterForm
from dashboard.security import apply_headers
from dashboard.views.common import page
from sending.events import PAYLOAD_FIELDS, event_list
from sending.models import Event

FIRST_PAGE = 50
PER_POLL = 100
POLL_SECONDS = 5
# Event ids and times are taken before their transaction commits, so a row can become visible a little after a
# newer one. Each poll looks back this far behind the newest row shown; the script skips the rows it already has.
LOOK_BACK = timedelta(seconds=30)


def _events(request: HttpRequest, data: dict, since: datetime | None, limit: int) -> list[dict]:
    """The newest events matching the filters' cleaned `data`, in words."""
    domain = data.get("domain")
    qs = event_list(
        organization=request.organization,
        types=[data["type"]] if data.get("type") else None,
        recipient=data.get("recipient") or None,
        tag=data.get("tag") or None,
        domain_id=domain.pk if domain else None,
        since=since,
    )
    events: list[Event] = list(qs.only(*PAYLOAD_FIELDS, "message__subject")[:limit])
    return [describe(e) for e in events]


@org_view()
def activity(request: HttpRequest) -> HttpResponse:
    form = ActivityFilterForm(request.GET or None, organization=request.organization)
    valid = form.is_valid() if request.GET else True
    rows = _events(request, form.cleaned_data if request.GET else {}, None, FIRST_PAGE) if valid else []
    return page(
        request,
        "dashboard/activity.html",
        {
            "section": "activity",
            "form": form,
            "rows": rows,
            "filtered": bool(request.GET),
            "query": request.GET.urlencode(),
            "poll_seconds": POLL_SECONDS,
        },
        status=200 if valid else 400,
    )


@org_view()
def activity_feed(request: HttpRequest) -> HttpResponse:
    """The rows newer than `since` (an ISO time; the script sends its newest row's), newest first, as HTML."""
    params = request.GET.copy()
    try:
        newest = parse_datetime(params.pop("since", [""])[-1] or "")
    except ValueError:  # well-formed but impossible, such as a 31st of February
        newest = None
    form = ActivityFilterForm(params, organization=request.organization)
    if not form.is_valid():
        return apply_headers(HttpResponse("Bad filters.", status=400, content_type="text/plain; charset=utf-8"))
    since = newest - LOOK_BACK if newest else None
    rows = _events(request, form.cleaned_data, since, PER_POLL)
    return apply_headers(
        render(request, "dashboard/_activity_rows.html", {"rows": rows, "organization": request.organization})
    )
