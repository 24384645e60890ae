"""Held mail: recipients accepted while their sender was paused or over its send limit. Everyone sees them and
filters; owners and admins release or cancel what a filter matches, after a dry run says how many.

Releasing and cancelling are the organization's decisions about its own limits and reputation (releasing
spends them, cancelling throws mail away), so they need the `admin` permission, like members and deleting
domains; developers see everything held and can ask.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from dashboard.access import org_view
from dashboard.forms import HeldActionForm, HeldFilterForm
from dashboard.selectors import day_start
from dashboard.views.common import actor_name, page
from sending.reputation.holds import HeldFilter, held_cancel, held_count, held_queryset, held_release

PAGE_SIZE = 50
ACTIONS = {"release": (held_release, "released", "Release"), "cancel": (held_cancel, "cancelled", "Cancel")}


def _filter(form: HeldFilterForm) -> HeldFilter:
    data = form.cleaned_data
    return HeldFilter(
        domain=data["domain"].name if data.get("domain") else None,
        held_reason=data.get("held_reason") or None,
        api_key_id=data["api_key"].pk if data.get("api_key") else None,
        smtp_credential_id=data["smtp_credential"].pk if data.get("smtp_credential") else None,
        address=(data.get("address") or "").strip() or None,
        tag=(data.get("tag") or "").strip() or None,
        held_after=day_start(data["held_after"]) if data.get("held_after") else None,
        # "Held until" is inclusive: the whole day.
        held_before=day_start(data["held_before"]) + timedelta(days=1) if data.get("held_before") else None,
    )


def _render(request: HttpRequest, form: HeldFilterForm, *, pending: dict | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    f = _filter(form) if form.is_valid() else HeldFilter()
    org_id = request.organization.pk
    rows = Paginator(
        held_queryset(org_id, f).select_related("message", "message__domain").order_by("-held_at", "-id"),
        PAGE_SIZE,
    )
    page_obj = rows.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return page(
        request,
        "dashboard/held.html",
        {
            "section": "held",
            "form": form,
            "filtered": form.is_valid() and any(v not in (None, "") for v in form.cleaned_data.values()),
            "page_obj": page_obj,
            "total": rows.count,
            "query": query.urlencode(),
            "pending": pending,
        },
        status=status,
    )


@org_view()
def held_list(request: HttpRequest) -> HttpResponse:
    form = HeldFilterForm(request.GET, organization=request.organization)
    return _render(request, form, status=200 if form.is_valid() else 400)


def _act(request: HttpRequest, action: str) -> HttpResponse:
    function, done, verb = ACTIONS[action]
    # The filter travels in the query string (the same one the list shows); the POST body says confirm or not.
    form = HeldFilterForm(request.GET, organization=request.organization)
    if not form.is_valid():
        return _render(request, form, status=400)
    f = _filter(form)
    org_id = request.organization.pk
    action_form = HeldActionForm(request.POST)
    confirmed = action_form.is_valid() and action_form.cleaned_data["confirm"]
    if not confirmed:
        count = function(org_id, f, actor=actor_name(request), dry_run=True)
        matching = held_count(org_id, f)
        pending = {"action": action, "verb": verb, "count": count, "matching": matching, "kept": matching - count}
        return _render(request, form, pending=pending)
    count = function(org_id, f, actor=actor_name(request))
    if count:
        messages.success(request, f"{count} held recipient{'s' if count != 1 else ''} {done}.")
    else:
        messages.error(request, f"Nothing {done}: no held recipient matched (or its scope is still paused).")
    url = reverse("dashboard:held", args=[org_id])
    query = request.GET.urlencode()
    return redirect(f"{url}?{query}" if query else url)


@org_view("admin", methods=("POST",))
def held_release_view(request: HttpRequest) -> HttpResponse:
    return _act(request, "release")


@org_view("admin", methods=("POST",))
def held_cancel_view(request: HttpRequest) -> HttpResponse:
    return _act(request, "cancel")
