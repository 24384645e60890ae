"""Message streams and scheduled mail: every stream with its kind and settings, mail waiting for its `send_at`
(cancel it until it goes out), and adding a broadcast stream (owners and admins)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from dashboard.access import org_view
from dashboard.forms import StreamAddForm
from dashboard.views.common import actor_name, page
from sending.delivery.scheduled import message_cancel
from sending.errors import Refused
from sending.models import Message, Recipient, RecipientState, Stream
from sending.streams.service import stream_create

PAGE_SIZE = 50


def _render(request: HttpRequest, form: StreamAddForm, status: int = 200) -> HttpResponse:
    organization = request.organization
    streams = Stream.objects.filter(organization=organization).order_by("created_at", "id")
    scheduled = (
        Recipient.objects.filter(organization=organization, state=RecipientState.SCHEDULED)
        .select_related("message", "message__stream")
        .order_by("next_attempt_at", "id")
    )
    page_obj = Paginator(scheduled, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "dashboard/streams.html",
        {"section": "streams", "streams": streams, "page_obj": page_obj, "form": form},
        status=status,
    )


@org_view()
def streams(request: HttpRequest) -> HttpResponse:
    return _render(request, StreamAddForm())


@org_view("admin", methods=("POST",))
def stream_add(request: HttpRequest) -> HttpResponse:
    form = StreamAddForm(request.POST)
    if form.is_valid():
        try:
            stream = stream_create(organization=request.organization, **form.cleaned_data)
        except Refused as refused:
            for field, problems in (refused.fields or {}).items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            messages.success(request, f"Broadcast stream {stream.name} added.")
            return redirect("dashboard:streams", org_id=request.organization.pk)
    return _render(request, form, status=400)


@org_view("sending", methods=("POST",))
def scheduled_cancel(request: HttpRequest, message_id: str) -> HttpResponse:
    message = Message.objects.filter(organization=request.organization, pk=message_id).first()
    if message is None:
        raise Http404("No such message.")
    cancelled = message_cancel(message, actor=actor_name(request))
    if cancelled:
        messages.success(request, f"Cancelled {cancelled} recipient(s) of {message.subject or message.message_id}.")
    else:
        messages.error(request, "Nothing of this message is waiting any more: it has gone out.")
    return redirect("dashboard:streams", org_id=request.organization.pk)
