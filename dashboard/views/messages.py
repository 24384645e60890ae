"""Messages: search, one message with each recipient's timeline, its headers, source and rendered HTML."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse

from dashboard.access import org_view
from dashboard.event_words import describe
from dashboard.forms import MessageSearchForm
from dashboard.mime import message_parts
from dashboard.security import MESSAGE_HTML_CSP
from dashboard.selectors import MessageFilters, message_raw, message_search, page_after
from dashboard.views.common import page
from sending.models import Message
from sending.operations.retention import body_purged
from sending.selectors import events_by_recipient, message_get

PAGE_SIZE = 50


@org_view()
def messages_list(request: HttpRequest) -> HttpResponse:
    form = MessageSearchForm(request.GET or None)
    rows, next_cursor = [], None
    valid = form.is_valid() if request.GET else True
    if valid:
        data = form.cleaned_data if request.GET else {}
        filters = MessageFilters(**{k: v for k, v in data.items() if v not in (None, "")})
        qs = message_search(organization=request.organization, filters=filters)
        rows, next_cursor = page_after(qs, request.GET.get("after", ""), PAGE_SIZE)
    query = request.GET.copy()
    query.pop("after", None)
    return page(
        request,
        "dashboard/messages.html",
        {
            "section": "messages",
            "form": form,
            "rows": rows,
            "next_cursor": next_cursor,
            "query": query.urlencode(),
            "paged": bool(request.GET.get("after")),
            "filtered": bool(query),
        },
        status=200 if valid else 400,
    )


def _message(request: HttpRequest, message_id: object):  # type: ignore[no-untyped-def]
    message = message_get(organization=request.organization, message_id=str(message_id))
    if message is None:
        raise Http404("No such message.")
    return message


def _with_raw(message: Message) -> bool:
    """Load the stored source onto the message (the detail read defers it); True when retention purged it."""
    message.raw = message_raw(message)
    return body_purged(message)


def _purged_answer() -> HttpResponse:
    return HttpResponse(
        f"The body of this message was purged after {settings.POSTWERK_RETENTION_RAW_DAYS} days "
        "(POSTWERK_RETENTION_RAW_DAYS); its recipients and events are kept.\n",
        status=410,
        content_type="text/plain; charset=utf-8",
    )


@org_view()
def message_detail(request: HttpRequest, message_id: object) -> HttpResponse:
    message = _message(request, message_id)
    events = events_by_recipient(message)
    purged = _with_raw(message)
    parts = None if purged else message_parts(bytes(message.raw))
    recipients = [
        {"recipient": r, "events": [describe(e) for e in events.get(r.pk, [])]} for r in message.recipients.all()
    ]
    return page(
        request,
        "dashboard/message_detail.html",
        {
            "section": "messages",
            "message": message,
            "recipients": recipients,
            "message_events": [describe(e) for e in events.get(None, [])],
            "parts": parts,
            "purged": purged,
            "retention_days": settings.POSTWERK_RETENTION_RAW_DAYS,
        },
    )


@org_view()
def message_source(request: HttpRequest, message_id: object) -> HttpResponse:
    message = _message(request, message_id)
    if _with_raw(message):
        return _purged_answer()
    response = HttpResponse(bytes(message.raw), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="{message.pk}.eml"'
    return response


@org_view()
def message_html(request: HttpRequest, message_id: object) -> HttpResponse:
    """The HTML body, for the sandboxed iframe of the message page only (see MESSAGE_HTML_CSP)."""
    message = _message(request, message_id)
    if _with_raw(message):
        return _purged_answer()
    html = message_parts(bytes(message.raw)).html
    if html is None:
        raise Http404("This message has no HTML body.")
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = MESSAGE_HTML_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    return response
