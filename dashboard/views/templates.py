"""Message templates: the list, and an editor whose preview renders the HTML and text as the fields change (the
dashboard script posts the form to `template_preview` for the subject, text, errors and missing variables, and
to `template_preview_html` in a sandboxed frame for the HTML). Saving writes a new version; older versions can be
restored. Members who may send (owners, admins, developers) edit; viewers only look."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect

from dashboard.access import can, org_view
from dashboard.forms import TemplateForm
from dashboard.security import MESSAGE_HTML_CSP
from dashboard.views.common import page
from sending.models import Template, TemplateKind
from sending.templating import render
from sending.templating.service import (
    TemplateInputError,
    template_create,
    template_delete,
    template_restore,
    template_update,
    versions_of,
)
from sending.templating.service import (
    template_preview as preview_report,
)


def _template(request: HttpRequest, template_id: int) -> Template:
    rows = Template.objects.select_related("active_version")
    return get_object_or_404(rows, organization=request.organization, pk=template_id)


def _layouts(request: HttpRequest, exclude: Template | None = None) -> list[Template]:
    rows = Template.objects.filter(organization=request.organization, kind=TemplateKind.LAYOUT).order_by("pk")
    return [t for t in rows if exclude is None or t.pk != exclude.pk]


def _editor(
    request: HttpRequest, form: TemplateForm, template: Template | None = None, status: int = 200
) -> HttpResponse:
    return page(
        request,
        "dashboard/template_edit.html",
        {
            "section": "templates",
            "form": form,
            "template": template,
            "versions": versions_of(template) if template else [],
        },
        status=status,
    )


def _initial(template: Template) -> dict:
    version = template.active_version
    assert version is not None
    return {
        "alias": template.alias or "",
        "name": version.name,
        "kind": template.kind,
        "subject": version.subject,
        "html": version.html,
        "text": version.text,
        "layout": str(version.layout_id or ""),
        "strict": version.strict,
        "test_model": "{}",
    }


@org_view("view")
def templates(request: HttpRequest) -> HttpResponse:
    rows = Template.objects.filter(organization=request.organization).select_related("active_version").order_by("pk")
    return page(request, "dashboard/templates.html", {"section": "templates", "templates": rows})


@org_view("sending", methods=("GET", "POST"))
def template_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _editor(request, TemplateForm(layouts=_layouts(request)))
    form = TemplateForm(request.POST, layouts=_layouts(request))
    if not form.is_valid():
        return _editor(request, form, status=400)
    try:
        template = template_create(
            organization=request.organization, kind=form.cleaned_data["kind"], **form.template_values()
        )
    except TemplateInputError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _editor(request, form, status=exc.status)
    messages.success(request, f"Template {template} created (version 1).")
    return redirect("dashboard:template", org_id=request.organization.pk, template_id=template.pk)


@org_view("view", methods=("GET", "POST"))
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    template = _template(request, template_id)
    layouts = _layouts(request, exclude=template)
    if request.method == "GET":
        return _editor(request, TemplateForm(initial=_initial(template), layouts=layouts, editing=True), template)
    if not can(request.membership.role, "sending"):
        raise PermissionDenied("Your role cannot change templates.")
    form = TemplateForm(request.POST, initial=_initial(template), layouts=layouts, editing=True)
    if not form.is_valid():
        return _editor(request, form, template, status=400)
    try:
        template = template_update(template=template, **form.template_values())
    except TemplateInputError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _editor(request, form, template, status=exc.status)
    template.refresh_from_db()
    messages.success(request, f"Saved as version {template.active_version.number}.")  # type: ignore[union-attr]
    return redirect("dashboard:template", org_id=request.organization.pk, template_id=template.pk)


@org_view("sending", methods=("POST",))
def template_restore_version(request: HttpRequest, template_id: int, number: int) -> HttpResponse:
    template = _template(request, template_id)
    try:
        template = template_restore(template=template, number=number)
    except TemplateInputError as exc:
        messages.error(request, exc.message)
    else:
        template.refresh_from_db()
        messages.success(
            request,
            f"Version {number} restored as version {template.active_version.number}.",  # type: ignore[union-attr]
        )
    return redirect("dashboard:template", org_id=request.organization.pk, template_id=template.pk)


@org_view("sending", methods=("POST",))
def template_remove(request: HttpRequest, template_id: int) -> HttpResponse:
    template = _template(request, template_id)
    try:
        template_delete(template=template)
    except TemplateInputError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:template", org_id=request.organization.pk, template_id=template.pk)
    messages.success(request, f"Template {template} deleted.")
    return redirect("dashboard:templates", org_id=request.organization.pk)


def _preview(request: HttpRequest) -> dict:
    form = TemplateForm(request.POST, layouts=_layouts(request))
    form.is_valid()  # the preview shows what it can: fields that do not validate are taken as empty
    data = form.cleaned_data
    if "test_model" not in data:
        return {"valid": False, "errors": [{"part": "model", "kind": "error", "line": None,
                                            "message": "; ".join(form.errors["test_model"])}],
                "missing_variables": [], "rendered": None}  # fmt: skip
    source = render.Source(subject=data.get("subject", ""), html=data.get("html", ""), text=data.get("text", ""))
    try:
        return preview_report(
            organization=request.organization,
            source=source,
            layout=int(data["layout"]) if data.get("layout") else None,
            strict=bool(data.get("strict")),
            model=data["test_model"],
        )
    except TemplateInputError as exc:
        return {"valid": False, "errors": [{"part": exc.field, "kind": "error", "line": None, "message": exc.message}],
                "missing_variables": [], "rendered": None}  # fmt: skip


@org_view("sending", methods=("POST",))
def template_preview(request: HttpRequest) -> JsonResponse:
    """The editor's live preview: the rendered subject and text, errors with lines, the variables the model lacks."""
    return JsonResponse(_preview(request))


@org_view("sending", methods=("POST",))
def template_preview_html(request: HttpRequest) -> HttpResponse:
    """The rendered HTML, for the editor's sandboxed frame only (the message HTML policy: no script, nothing
    fetched)."""
    report = _preview(request)
    rendered = report["rendered"]
    html = rendered["html"] if rendered and rendered["html"] else "<p><em>No HTML to show.</em></p>"
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = MESSAGE_HTML_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    return response
