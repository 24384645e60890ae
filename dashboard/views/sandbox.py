"""The sandbox's captured mail: the list, and one capture as it would have gone out (rendered HTML in a
sandboxed iframe, text, headers, raw source)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse

from dashboard.access import org_view
from dashboard.mime import message_parts
from dashboard.security import MESSAGE_HTML_CSP
from dashboard.views.common import page
from sending.delivery.sandbox import SANDBOX_DOMAIN, Scenario
from sending.models import CapturedMessage

PAGE_SIZE = 100


def _capture(request: HttpRequest, capture_id: object) -> CapturedMessage:
    # Scoped to the caller's organization: another organization's capture id is a 404, never a 403.
    capture = (
        CapturedMessage.objects.select_related("message", "recipient")
        .filter(organization=request.organization, pk=capture_id)
        .first()
    )
    if capture is None:
        raise Http404("No such captured message.")
    return capture


@org_view()
def captures(request: HttpRequest) -> HttpResponse:
    rows = (
        CapturedMessage.objects.filter(organization=request.organization)
        .select_related("message", "recipient")
        .defer("data", "message__raw")
        .order_by("-created_at")[:PAGE_SIZE]
    )
    addresses = [f"{s}@{SANDBOX_DOMAIN}" for s in Scenario]
    return page(
        request, "dashboard/sandbox.html", {"section": "sandbox", "captures": rows, "test_addresses": addresses}
    )


@org_view()
def capture_detail(request: HttpRequest, capture_id: object) -> HttpResponse:
    capture = _capture(request, capture_id)
    raw = bytes(capture.data)
    return page(
        request,
        "dashboard/capture_detail.html",
        {
            "section": "sandbox",
            "capture": capture,
            "parts": message_parts(raw) if raw else None,
            "raw": raw.decode("utf-8", "replace"),
        },
    )


@org_view()
def capture_html(request: HttpRequest, capture_id: object) -> HttpResponse:
    """The HTML body, for the sandboxed iframe of the capture page only (see MESSAGE_HTML_CSP)."""
    capture = _capture(request, capture_id)
    html = message_parts(bytes(capture.data)).html if capture.data else None
    if html is None:
        raise Http404("This message has no HTML body.")
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = MESSAGE_HTML_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    return response


@org_view()
def capture_raw(request: HttpRequest, capture_id: object) -> HttpResponse:
    capture = _capture(request, capture_id)
    response = HttpResponse(bytes(capture.data), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="capture-{capture.pk}.eml"'
    return response
