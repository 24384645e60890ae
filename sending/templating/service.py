"""Templates of an organization: create, change (each change a new version), restore, delete, find.

Every write checks what it stores: an alias unique within the organization, a layout of the same organization,
sources whose syntax parses (a template with a syntax error is refused on save, naming the field and line), and a
layout that says where the content goes. The API and the dashboard call these functions and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from jinja2 import meta
from jinja2.exceptions import TemplateSyntaxError

from accounts.audit import audit_record
from accounts.models import Organization
from mail.errors import PostwerkError
from sending.models import Template, TemplateKind, TemplateVersion
from sending.templating import render

ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# What a version holds; the rest (alias, kind) belongs to the template.
VERSIONED = ("name", "subject", "html", "text", "layout", "strict")


class TemplateInputError(PostwerkError):
    """A template change that cannot be stored: `field` is the one to fix; `status` 400, 404 or 409."""

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class Loaded:
    """A template as sending renders it: its active version's sources, layout and the organization's partials."""

    template: Template
    version: TemplateVersion
    source: render.Source
    layout: render.Source | None
    partials: dict[str, render.Source] = field(default_factory=dict)


def render_limits() -> render.Limits:
    """The render limits of the settings (POSTWERK_TEMPLATE_RENDER_TIMEOUT, POSTWERK_TEMPLATE_MAX_OUTPUT)."""
    return render.Limits(
        timeout=settings.POSTWERK_TEMPLATE_RENDER_TIMEOUT, max_output=settings.POSTWERK_TEMPLATE_MAX_OUTPUT
    )


def source_of(version: TemplateVersion) -> render.Source:
    return render.Source(subject=version.subject, html=version.html, text=version.text)


# --- reads --------------------------------------------------------------------------------------------------------


def template_find(organization: Organization, ref: str | int) -> Template | None:
    """The organization's template by id (an int, or a string of digits) or alias."""
    rows = Template.objects.filter(organization=organization).select_related("active_version")
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        found = rows.filter(pk=int(ref)).first()
        if found is not None or isinstance(ref, int):
            return found
    return rows.filter(alias=ref).first()


def partials_of(organization: Organization) -> dict[str, render.Source]:
    """Every partial of the organization by alias (one query): what {% include %} may name."""
    rows = TemplateVersion.objects.filter(
        template__organization=organization,
        template__kind=TemplateKind.PARTIAL,
        template__active_version=F("pk"),
        template__alias__isnull=False,
    ).select_related("template")
    return {v.template.alias: source_of(v) for v in rows}


def template_load(template: Template, *, partials: dict[str, render.Source] | None = None) -> Loaded:
    version = template.active_version
    assert version is not None  # every template is created with its first version
    layout = None
    if version.layout_id is not None:
        layout_version = TemplateVersion.objects.filter(template__active_version=F("pk"), template=version.layout_id)
        found = layout_version.first()
        layout = source_of(found) if found is not None else None
    if partials is None:
        partials = partials_of(template.organization)
    return Loaded(template, version, source_of(version), layout, partials)


def template_preview(
    *, organization: Organization, source: render.Source, layout: Any, strict: bool, model: dict
) -> dict:
    """Render sources that are not stored (yet) with a test model, as the API's validate endpoint and the
    dashboard's live preview answer: {valid, errors, missing_variables, rendered}. Raises TemplateInputError for
    an unknown layout."""
    layout_source = None
    if layout not in (None, ""):
        found = template_find(organization, layout)
        if found is None or found.kind != TemplateKind.LAYOUT or found.active_version is None:
            raise TemplateInputError("layout", f"No layout {layout!r}.")
        layout_source = source_of(found.active_version)
    report = render.validate(
        source, model, layout=layout_source, partials=partials_of(organization), strict=strict, limits=render_limits()
    )
    rendered = report.rendered
    return {
        "valid": report.valid,
        "errors": [e.as_dict() for e in report.errors],
        "missing_variables": report.missing,
        "rendered": None
        if rendered is None
        else {"subject": rendered.subject, "html": rendered.html, "text": rendered.text},
    }


def versions_of(template: Template) -> list[TemplateVersion]:
    return list(template.versions.order_by("-number"))


# --- writes -------------------------------------------------------------------------------------------------------


def template_create(*, organization: Organization, kind: str = TemplateKind.STANDARD, **values: Any) -> Template:
    """A new template and its version 1. `values`: alias and the VERSIONED fields (layout a Template, id or alias).
    Raises TemplateInputError."""
    if kind not in TemplateKind.values:
        raise TemplateInputError("kind", f"One of {', '.join(TemplateKind.values)}.")
    alias = _clean_alias(values.pop("alias", None))
    content = _content(organization, kind, {**_DEFAULTS, **values})
    try:
        with transaction.atomic():
            template = Template.objects.create(organization=organization, alias=alias, kind=kind)
            _version_add(template, content)
            audit_record(
                organization=organization,
                action="template.created",
                target=template,
                changes={"alias": alias, "kind": kind, "name": content.get("name", "")},
            )
    except IntegrityError as exc:
        raise TemplateInputError("alias", f"The alias {alias!r} is already used.", status=409) from exc
    return template


def template_update(*, template: Template, **changes: Any) -> Template:
    """A new version with `changes` over the active one (fields left out keep their value); a changed alias is the
    template's own. Raises TemplateInputError."""
    alias_given = "alias" in changes
    alias = _clean_alias(changes.pop("alias", None)) if alias_given else template.alias
    current = template.active_version
    assert current is not None
    content = {name: getattr(current, name) for name in VERSIONED}
    content.update(changes)
    content = _content(template.organization, template.kind, content, template=template)
    try:
        with transaction.atomic():
            locked = Template.objects.select_for_update().get(pk=template.pk)
            locked.alias = alias
            _version_add(locked, content)
            audit_record(
                organization=locked.organization_id,
                action="template.updated",
                target=locked,
                changes={"fields": sorted(changes), "alias": [template.alias, alias]},
            )
    except IntegrityError as exc:
        raise TemplateInputError("alias", f"The alias {alias!r} is already used.", status=409) from exc
    return locked


def template_restore(*, template: Template, number: int) -> Template:
    """Make an older version active again, as a new version (the history only grows)."""
    old = template.versions.filter(number=number).first()
    if old is None:
        raise TemplateInputError("version", f"No version {number}.", status=404)
    content = {name: getattr(old, name) for name in VERSIONED}
    if content["layout"] is not None and content["layout"].kind != TemplateKind.LAYOUT:
        content["layout"] = None
    with transaction.atomic():
        locked = Template.objects.select_for_update().get(pk=template.pk)
        _version_add(locked, content)
        audit_record(
            organization=locked.organization_id, action="template.restored", target=locked, changes={"version": number}
        )
    return locked


def template_delete(*, template: Template) -> None:
    """Delete a template and its versions. A layout still used by a template's active version is kept (409)."""
    if template.kind == TemplateKind.LAYOUT:
        users = Template.objects.filter(active_version__layout=template).exclude(pk=template.pk)
        names = [str(t) for t in users[:5]]
        if names:
            raise TemplateInputError("layout", f"The layout is used by {', '.join(names)}.", status=409)
    with transaction.atomic():
        audit_record(
            organization=template.organization_id,
            action="template.deleted",
            target=template,
            target_label=str(template),
        )
        Template.objects.filter(pk=template.pk).update(active_version=None)
        template.delete()


# --- checks -------------------------------------------------------------------------------------------------------

_DEFAULTS = {"name": "", "subject": "", "html": "", "text": "", "layout": None, "strict": False}


def _clean_alias(alias: Any) -> str | None:
    if alias in (None, ""):
        return None
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias) or alias.isdigit() or alias == "validate":
        raise TemplateInputError(
            "alias",
            "Letters, digits, '_', '.' and '-', at most 100, starting with a letter or digit; not all digits, "
            "not 'validate'.",
        )
    return alias


def _content(organization: Organization, kind: str, content: dict, *, template: Template | None = None) -> dict:
    content["layout"] = _layout(organization, content.get("layout"), kind)
    if not content["name"]:
        raise TemplateInputError("name", "A name is required.")
    if kind == TemplateKind.STANDARD and not (content["html"] or content["text"]):
        raise TemplateInputError("html", "A template needs html or text.")
    for error in render.syntax_errors(render.Source(content["subject"], content["html"], content["text"])):
        raise TemplateInputError(error.part, f"Line {error.line}: {error.message}")
    if kind == TemplateKind.LAYOUT:
        for part in ("html", "text"):
            if content[part] and "content" not in _variables(content[part]):
                raise TemplateInputError(part, "A layout says where the content goes: {{ content }}.")
    if template is not None and content["layout"] is not None and content["layout"].pk == template.pk:
        raise TemplateInputError("layout", "A layout cannot wrap itself.")
    return content


def _layout(organization: Organization, layout: Any, kind: str) -> Template | None:
    if layout in (None, ""):
        return None
    if kind != TemplateKind.STANDARD:
        raise TemplateInputError("layout", "Only a standard template has a layout.")
    found = layout if isinstance(layout, Template) else template_find(organization, layout)
    if found is None or found.organization_id != organization.pk:
        raise TemplateInputError("layout", f"No layout {layout!r}.")
    if found.kind != TemplateKind.LAYOUT:
        raise TemplateInputError("layout", f"{found} is a {found.kind} template, not a layout.")
    return found


def _variables(source: str) -> set[str]:
    try:
        return meta.find_undeclared_variables(render.parse(source))
    except TemplateSyntaxError:
        return set()


def _version_add(template: Template, content: dict) -> TemplateVersion:
    last = template.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = TemplateVersion.objects.create(template=template, number=last + 1, **content)
    template.active_version = version
    template.updated_at = timezone.now()
    template.save(update_fields=["alias", "active_version", "updated_at"])
    return version
