"""The tracking endpoints mail links to: the open pixel, the click redirect and one-click unsubscribe.

No authentication: each URL carries a signed token naming one recipient delivery. These run on the web
process, under the domain's tracking host (`track.DOMAIN`) or POSTWERK_TRACKING_HOST.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from sending.feedback.tracking import (
    PIXEL,
    InvalidToken,
    Visitor,
    click_record,
    open_record,
    unsubscribe_recipient,
    unsubscribe_record,
)


def _visitor(request: HttpRequest) -> Visitor:
    ip = request.META.get("REMOTE_ADDR", "")
    if settings.POSTWERK_TRACKING_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            ip = forwarded.split(",")[0].strip()
    return Visitor(user_agent=request.META.get("HTTP_USER_AGENT", ""), ip=ip)


@never_cache
@require_GET
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    try:
        open_record(token=token, visitor=_visitor(request))
    except InvalidToken:
        return HttpResponseNotFound("Unknown tracking image.", content_type="text/plain")
    return HttpResponse(PIXEL, content_type="image/gif")


@never_cache
@require_GET
def click(request: HttpRequest, token: str) -> HttpResponse:
    try:
        url = click_record(token=token, visitor=_visitor(request))
    except InvalidToken:
        # Never a redirect to something Postwerk did not sign: no open redirect.
        return HttpResponseNotFound("This link is not valid.", content_type="text/plain")
    return HttpResponseRedirect(url)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """POST unsubscribes: the RFC 8058 one-click request from the mailbox provider (`List-Unsubscribe=One-Click`)
    or the form below. GET only shows the form, because link scanners fetch every URL in a message."""
    if request.method == "POST":
        method = "one-click" if request.POST.get("List-Unsubscribe") == "One-Click" else "form"
        try:
            recipient = unsubscribe_record(token=token, visitor=_visitor(request), method=method)
        except InvalidToken:
            return HttpResponseNotFound("This unsubscribe link is not valid.", content_type="text/plain")
        return render(request, "sending/unsubscribed.html", {"address": recipient.address, "done": True})
    try:
        recipient = unsubscribe_recipient(token)
    except InvalidToken:
        return HttpResponseNotFound("This unsubscribe link is not valid.", content_type="text/plain")
    return render(request, "sending/unsubscribed.html", {"address": recipient.address, "done": False})
