"""The accept pipeline's render step: a message that names a template gets its subject, HTML and text from the
template's active version rendered with the message's own model (step 3, compose, of sending.intake.accept).

Refusals are 400s naming the field: `template` for an unknown id or alias, a template that is not a standard one
or a render over the limits; `model` (and the variable's path under it) for a strict template's missing variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accounts.models import Organization
from sending.errors import Refused
from sending.models import TemplateKind
from sending.templating import render
from sending.templating.service import Loaded, partials_of, render_limits, template_find, template_load

if TYPE_CHECKING:  # the intake builds on this room, not the other way round
    from sending.intake.composer import Draft


@dataclass(frozen=True)
class TemplateRef:
    """What a message asks for: a template by id or alias, and the model to render it with."""

    template: str | int
    model: dict[str, Any]


class TemplateLookup:
    """The organization's templates as one request (a batch of 500) needs them: each looked up once, the
    partials once. `memo` is where it keeps them (the accept pipeline's Caller.templates)."""

    def __init__(self, organization: Organization, memo: MutableMapping[object, Any] | None = None) -> None:
        self.organization = organization
        self.memo = memo if memo is not None else {}

    def get(self, ref: str | int) -> Loaded:
        key = ("template", str(ref))
        if key not in self.memo:
            self.memo[key] = self._load(ref)
        found = self.memo[key]
        if isinstance(found, Refused):
            raise found
        return found

    def _load(self, ref: str | int) -> Loaded | Refused:
        template = template_find(self.organization, ref)
        if template is None or template.active_version is None:
            return _refused("unknown_template", f"No template with the id or alias {ref!r}.", "template")
        if template.kind != TemplateKind.STANDARD:
            return _refused("invalid", f"{template} is a {template.kind} template; send a standard one.", "template")
        if "partials" not in self.memo:
            self.memo["partials"] = partials_of(self.organization)
        return template_load(template, partials=self.memo["partials"])


def draft_render(draft: Draft, ref: TemplateRef, lookup: TemplateLookup) -> Draft:
    """`draft` with the template's subject, HTML and text rendered with `ref.model`. Raises Refused."""
    loaded = lookup.get(ref.template)
    try:
        rendered = render.render(
            loaded.source,
            ref.model,
            layout=loaded.layout,
            partials=loaded.partials,
            strict=loaded.version.strict,
            limits=render_limits(),
        )
    except render.RenderError as exc:
        if exc.kind == "missing":
            raise _refused(
                "template_model",
                f"The model lacks {exc.variable!r}, which the strict template {loaded.template} uses.",
                "model",
                {str(exc.variable): ["Required by the template."]},
            ) from exc
        where = f" ({exc.part}, line {exc.line})" if exc.line else f" ({exc.part})"
        code = "template_limit" if exc.kind == "limit" else "template_render"
        raise _refused(code, f"The template could not be rendered{where}: {exc.message}", "template") from exc
    if "\x00" in rendered.subject + (rendered.html or "") + (rendered.text or ""):
        # A NUL may be neither stored (PostgreSQL text) nor sent (RFC 5321 §4.1.1.4), and the model put it there.
        raise _refused(
            "template_render", "The rendered message contains a NUL character: remove it from the model.", "model"
        )
    return dataclasses.replace(draft, subject=rendered.subject, html=rendered.html or None, text=rendered.text or None)


def _refused(code: str, message: str, field: str, detail: dict | None = None) -> Refused:
    return Refused(message, code=code, http_status=400, fields={field: detail if detail else [message]})
