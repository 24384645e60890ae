"""Message templates: stored per organization with every change a version (`service`), rendered in a Jinja2
sandbox with layouts, partials, CSS inlining and a generated text part (`render`, pure), and applied to a message
at the accept pipeline's compose step (`compose`).

The interface other code uses (the send API, a Postmark-compatible API mapping TemplateId / TemplateAlias /
TemplateModel onto Postwerk):

    compose.TemplateRef(template="welcome" or 42, model={...})   what a message asks for
    compose.draft_render(draft, ref, lookup=TemplateLookup(org))  -> Draft with subject, html and text filled in;
                                                                 raises sending.errors.Refused (400 naming
                                                                 `template` or `model`)
    render.render(source, model, layout=..., partials=..., strict=..., limits=...) -> Rendered (pure)
    render.validate(source, model, ...) -> Report                syntax errors with lines, missing variables
    service.template_create / template_update / template_restore / template_delete / template_get
"""
