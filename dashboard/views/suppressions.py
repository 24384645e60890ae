"""The suppression list: search, add, lift, CSV export and import."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from dashboard.access import org_view
from dashboard.forms import SuppressionAddForm, SuppressionImportForm, SuppressionRemoveForm, SuppressionSearchForm
from dashboard.views.common import actor_name, page
from sending.feedback.suppression_csv import suppressions_csv, suppressions_import
from sending.feedback.suppressions import suppression_add, suppression_remove
from sending.models import Suppression

PAGE_SIZE = 50


def _filtered(request: HttpRequest, form: SuppressionSearchForm):  # type: ignore[no-untyped-def]
    qs = Suppression.objects.filter(organization=request.organization)
    data = form.cleaned_data if form.is_valid() else {}
    if not data.get("include_removed"):
        qs = qs.filter(removed_at__isnull=True).exclude(expires_at__lte=timezone.now())
    if data.get("reason"):
        qs = qs.filter(reason=data["reason"])
    if data.get("address"):
        qs = qs.filter(address__icontains=data["address"].strip().lower())
    return qs


def _list(
    request: HttpRequest,
    add_form: SuppressionAddForm | None = None,
    import_form: SuppressionImportForm | None = None,
    status: int = 200,
) -> HttpResponse:
    search = SuppressionSearchForm(request.GET)
    rows = Paginator(_filtered(request, search).order_by("-created_at", "-id"), PAGE_SIZE)
    page_obj = rows.get_page(request.GET.get("page"))
    for row in page_obj.object_list:
        details = row.details or {}
        row.summary = details.get("note") or details.get("diagnostic") or details.get("reason") or ""
    query = request.GET.copy()
    query.pop("page", None)
    return page(
        request,
        "dashboard/suppressions.html",
        {
            "section": "suppressions",
            "search": search,
            "page_obj": page_obj,
            "query": query.urlencode(),
            "add_form": add_form or SuppressionAddForm(),
            "import_form": import_form or SuppressionImportForm(),
            "now": timezone.now(),
        },
        status=status,
    )


@org_view()
def suppressions(request: HttpRequest) -> HttpResponse:
    return _list(request)


@org_view("sending", methods=("POST",))
def suppression_create(request: HttpRequest) -> HttpResponse:
    form = SuppressionAddForm(request.POST)
    if not form.is_valid():
        return _list(request, add_form=form, status=400)
    note = form.cleaned_data["note"]
    _, created = suppression_add(
        organization_id=request.organization.pk,
        address=form.cleaned_data["address"],
        reason=Suppression.Reason.MANUAL,
        details={"note": note} if note else {},
        created_by=actor_name(request),
    )
    address = form.cleaned_data["address"]
    messages.success(request, f"{address} suppressed." if created else f"{address} was already suppressed.")
    return redirect("dashboard:suppressions", org_id=request.organization.pk)


@org_view("sending", methods=("POST",))
def suppression_lift(request: HttpRequest) -> HttpResponse:
    form = SuppressionRemoveForm(request.POST)
    address = form.cleaned_data["address"] if form.is_valid() else ""
    if address and suppression_remove(
        organization_id=request.organization.pk, address=address, removed_by=actor_name(request)
    ):
        messages.success(request, f"{address} may be mailed again.")
    else:
        messages.error(request, f"{address or 'That address'} is not suppressed.")
    return redirect("dashboard:suppressions", org_id=request.organization.pk)


@org_view()
def suppressions_export(request: HttpRequest) -> HttpResponse:
    rows = _filtered(request, SuppressionSearchForm(request.GET)).order_by("created_at")
    response = HttpResponse(suppressions_csv(rows.iterator(chunk_size=2000)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="suppressions.csv"'
    return response


@org_view("sending", methods=("POST",))
def suppressions_upload(request: HttpRequest) -> HttpResponse:
    form = SuppressionImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _list(request, import_form=form, status=400)
    try:
        result = suppressions_import(
            organization_id=request.organization.pk, text=form.cleaned_data["csv"], created_by=actor_name(request)
        )
    except ValueError as exc:
        form.add_error(None, str(exc))
        return _list(request, import_form=form, status=400)
    messages.success(request, f"Imported: {result.added} added, {result.existing} already suppressed.")
    for line, error in result.errors[:20]:
        messages.error(request, f"Line {line}: {error}")
    if len(result.errors) > 20:
        messages.error(request, f"… and {len(result.errors) - 20} more lines with errors.")
    return redirect("dashboard:suppressions", org_id=request.organization.pk)
