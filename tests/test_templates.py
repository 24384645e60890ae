"""Templates: sending with `template` and `model` (one message, a personalised batch), checked as the raw bytes
the recipient's MX receives; and the refusals, each a 400 naming its field."""

from __future__ import annotations

import email
import re
from email import policy

import pytest

from sending.models import Message, Template
from sending.templating.service import template_create
from tests.conftest import add_mx_domain, deliver_queued

pytestmark = pytest.mark.django_db

LAYOUT_HTML = (
    "<html><head><style>p.note { color: #336699; } .brand { font-weight: bold; }</style></head>"
    '<body><div class="brand">Acme</div>{{ content }}<p class="note">Sent to {{ email }}</p></body></html>'
)
WELCOME_HTML = (
    "<h1>Welcome, {{ name }}!</h1>\n"
    "{% if items %}<ul>{% for item in items %}<li>{{ item.title }}: {{ item.qty }}</li>{% endfor %}</ul>{% endif %}\n"
    '<p>Start at <a href="{{ url }}">your dashboard</a>.</p>{% include "signature" %}'
)


@pytest.fixture
def templates(organization):
    layout = template_create(organization=organization, kind="layout", alias="brand", name="Brand", html=LAYOUT_HTML)
    template_create(
        organization=organization, kind="partial", alias="signature", name="Signature", html="<p>-- The {{ team }}</p>"
    )
    welcome = template_create(
        organization=organization,
        alias="welcome",
        name="Welcome",
        subject="Welcome, {{ name }}",
        html=WELCOME_HTML,
        layout=layout,
    )
    strict = template_create(
        organization=organization, alias="code", name="Login code", subject="Code", text="{{ code }}", strict=True
    )
    return {"welcome": welcome, "layout": layout, "strict": strict}


def send(api, **fields):
    body = {"from": "Acme <hello@acme.example>", "to": ["Jane <jane@dest.example>"], **fields}
    return api.post("/api/v1/messages", body, format="json")


MODEL = {
    "name": "Jane <3",
    "email": "jane@dest.example",
    "url": "https://acme.example/d?a=1&b=2",
    "team": "Acme team",
    "items": [{"title": "Widget", "qty": 2}, {"title": "Gadget", "qty": 1}],
}


def test_template_is_rendered_into_the_message_the_mx_receives(api, zone, mx, domain, templates):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    response = send(api, template="welcome", model=MODEL)
    assert response.status_code == 202, response.json()
    assert deliver_queued() == 1
    raw = sink.messages[0].data

    # The headers Postwerk writes: the rendered subject on one line, as is (ASCII needs no encoding).
    assert b"\r\nSubject: Welcome, Jane <3\r\n" in raw
    assert b"\r\nFrom: Acme <hello@acme.example>\r\n" in raw
    assert b"\r\nTo: Jane <jane@dest.example>\r\n" in raw
    assert b'\r\nContent-Type: multipart/alternative;\r\n boundary="' in raw
    boundary = re.search(rb'boundary="([^"]+)"', raw).group(1)
    parts = raw.split(b"--" + boundary)
    assert len(parts) == 4 and parts[3] == b"--\r\n"

    # The text part, made from the HTML (layout and all) since the template has none: links written out.
    assert parts[1] == (
        b'\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        b"Acme\r\n"
        b"Welcome, Jane <3!\r\n\r\n"
        b"  * Widget: 2\r\n"
        b"  * Gadget: 1\r\n\r\n"
        b"Start at [your dashboard](https://acme.example/d?a=1&b=2).\r\n\r\n"
        b"-- The Acme team\r\n\r\n"
        b"Sent to jane@dest.example\r\n\r\n"
    )
    # The HTML part: the layout around the content, model values escaped, the loop and the partial rendered, and
    # the CSS moved from <style> into style attributes. The inliner writes lines over 78 characters, so it goes
    # quoted-printable (soft line breaks, "=" as =3D), as the email package writes it.
    assert parts[2] == (
        b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
        b"MIME-Version: 1.0\r\n\r\n"
        b'<html><head></head><body><div class=3D"brand" style=3D"font-weight: bold;">Ac=\r\n'
        b"me</div><h1>Welcome, Jane &lt;3!</h1>\r\n"
        b"<ul><li>Widget: 2</li><li>Gadget: 1</li></ul>\r\n"
        b'<p>Start at <a href=3D"https://acme.example/d?a=3D1&amp;b=3D2">your dashboard=\r\n'
        b'</a>.</p><p>-- The Acme team</p><p class=3D"note" style=3D"color: #336699;">S=\r\n'
        b"ent to jane@dest.example</p></body></html>\r\n\r\n"
    )
    html = email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()
    assert '<p class="note" style="color: #336699;">Sent to jane@dest.example</p>' in html


def test_batch_sends_each_recipient_its_own_message(api, zone, mx, domain, templates):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    messages = [
        {
            "from": "hello@acme.example",
            "to": [f"user{i}@dest.example"],
            "template": templates["welcome"].pk,
            "model": {**MODEL, "name": f"User {i}", "email": f"user{i}@dest.example"},
        }
        for i in range(500)
    ]
    response = api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert response.status_code == 200
    assert response.json()["accepted"] == 500, [r for r in response.json()["results"] if r["status"] != 202]
    subjects = {bytes(m.raw).split(b"\r\nSubject: ")[1].split(b"\r\n")[0] for m in Message.objects.all()}
    assert subjects == {f"Welcome, User {i}".encode() for i in range(500)}
    assert deliver_queued() == 500
    received = {m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=policy.default) for m in sink.messages}
    html = received["user7@dest.example"].get_body(("html",)).get_content()
    assert "<h1>Welcome, User 7!</h1>" in html
    assert 'style="color: #336699;">Sent to user7@dest.example</p>' in html


def test_unknown_template_or_alias_is_a_400_naming_template(api, templates):
    for ref in ("nope", 999999):
        response = send(api, template=ref, model={})
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "unknown_template"
        assert body["fields"] == {"template": [f"No template with the id or alias {ref!r}."]}
    assert not Message.objects.exists()


def test_strict_template_refuses_a_model_without_its_variable(api, templates):
    response = send(api, template="code", model={"other": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "template_model"
    assert body["fields"] == {"model": {"code": ["Required by the template."]}}
    assert send(api, template="code", model={"code": "123456"}).status_code == 202


def test_render_over_the_limits_is_a_400_naming_template(api, organization, settings):
    settings.POSTWERK_TEMPLATE_MAX_OUTPUT = 1000
    template_create(organization=organization, alias="big", name="Big", text="{% for i in n %}{{ filler }}{% endfor %}")
    response = send(api, template="big", model={"n": list(range(100)), "filler": "x" * 50})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "template_limit"
    assert body["fields"] == {
        "template": ["The template could not be rendered (text): The text part is longer than 1000 characters."]
    }


def test_a_render_over_its_cpu_time_is_a_400_naming_template(api, organization, settings):
    settings.POSTWERK_TEMPLATE_RENDER_TIMEOUT = 0.2
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    template_create(organization=organization, alias="slow", name="Slow", text=loops)
    response = send(api, template="slow", model={})
    assert response.status_code == 400
    assert response.json()["error"] == "template_limit"
    assert response.json()["fields"] == {
        "template": ["The template could not be rendered (text, line 1): The render took longer than 0.2 s."]
    }
    assert Message.objects.count() == 0


def test_template_excludes_body_fields_and_model_needs_a_template(api, templates):
    response = send(api, template="welcome", model=MODEL, html="<p>x</p>", subject="s")
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "html": ["Not with a template: the template gives it."],
        "subject": ["Not with a template: the template gives it."],
    }
    response = send(api, text="hello", model={"a": 1})
    assert response.json()["fields"] == {"model": ["A model is only used with a template."]}


def test_layout_or_partial_cannot_be_sent(api, templates):
    response = send(api, template="brand", model={})
    assert response.status_code == 400
    assert response.json()["fields"] == {"template": ["brand is a layout template; send a standard one."]}
    assert Template.objects.count() == 4


# --- the templates API ----------------------------------------------------------------------------------------


def test_create_update_versions_restore_and_send_uses_the_active_version(api, organization):
    created = api.post(
        "/api/v1/templates",
        {"alias": "reset", "name": "Reset", "subject": "Reset, {{ name }}", "text": "Code {{ code }}"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert {
        k: body[k] for k in ("alias", "kind", "version", "name", "subject", "html", "text", "layout", "strict")
    } == {
        "alias": "reset",
        "kind": "standard",
        "version": 1,
        "name": "Reset",
        "subject": "Reset, {{ name }}",
        "html": "",
        "text": "Code {{ code }}",
        "layout": None,
        "strict": False,
    }
    changed = api.patch(f"/api/v1/templates/{body['id']}", {"text": "Your code: {{ code }}"}, format="json")
    assert changed.json()["version"] == 2 and changed.json()["subject"] == "Reset, {{ name }}"
    versions = api.get("/api/v1/templates/reset/versions").json()
    assert [(v["number"], v["text"]) for v in versions] == [(2, "Your code: {{ code }}"), (1, "Code {{ code }}")]

    assert send(api, template="reset", model={"name": "Jo", "code": "1"}).status_code == 202
    assert bytes(Message.objects.get().raw).endswith(b"\r\n\r\nYour code: 1\r\n")

    restored = api.post("/api/v1/templates/reset/versions/1/restore")
    assert restored.status_code == 200 and restored.json()["version"] == 3
    assert restored.json()["text"] == "Code {{ code }}"
    again = send(api, template=body["id"], model={"name": "Jo", "code": "2"})
    assert again.status_code == 202
    assert bytes(Message.objects.order_by("-created_at").first().raw).endswith(b"\r\n\r\nCode 2\r\n")
    assert api.post("/api/v1/templates/reset/versions/9/restore").status_code == 404


def test_templates_are_scoped_to_the_callers_organization(api, organization):
    from accounts.services import organization_get_or_create

    other, _ = organization_get_or_create(name="Other")
    theirs = template_create(organization=other, alias="theirs", name="Theirs", text="secret")
    template_create(organization=organization, alias="mine", name="Mine", text="hi")
    assert [t["alias"] for t in api.get("/api/v1/templates").json()] == ["mine"]
    for url in (f"/api/v1/templates/{theirs.pk}", "/api/v1/templates/theirs", "/api/v1/templates/theirs/versions"):
        assert api.get(url).status_code == 404
    assert api.delete(f"/api/v1/templates/{theirs.pk}").status_code == 404
    response = send(api, template=theirs.pk, model={})
    assert response.status_code == 400 and response.json()["error"] == "unknown_template"
    # Same alias in two organizations is fine.
    assert (
        api.post("/api/v1/templates", {"alias": "theirs", "name": "x", "text": "y"}, format="json").status_code == 201
    )


def test_bad_template_input_names_the_field(api, organization):
    cases = [
        ({"alias": "a", "name": "A", "html": "<p>{% if x %}</p>"}, "html", "Line 1: Unexpected end of template."),
        ({"alias": "a b", "name": "A", "text": "x"}, "alias", None),
        ({"alias": "a", "name": "A", "text": "x", "layout": "nope"}, "layout", "No layout 'nope'."),
        ({"alias": "a", "name": "A"}, "html", "A template needs html or text."),
        ({"alias": "l", "kind": "layout", "name": "L", "html": "<div></div>"}, "html", None),
    ]
    for body, field, message in cases:
        response = api.post("/api/v1/templates", body, format="json")
        assert response.status_code == 400, body
        assert list(response.json()["fields"]) == [field], response.json()
        if message:
            assert response.json()["fields"][field][0].startswith(message), response.json()
    api.post("/api/v1/templates", {"alias": "a", "name": "A", "text": "x"}, format="json")
    duplicate = api.post("/api/v1/templates", {"alias": "a", "name": "B", "text": "y"}, format="json")
    assert duplicate.status_code == 409 and list(duplicate.json()["fields"]) == ["alias"]


def test_a_layout_in_use_cannot_be_deleted(api, templates):
    response = api.delete("/api/v1/templates/brand")
    assert response.status_code == 409
    assert response.json()["fields"] == {"layout": ["The layout is used by welcome."]}
    assert api.delete("/api/v1/templates/welcome").status_code == 204
    assert api.delete("/api/v1/templates/brand").status_code == 204
    assert api.get("/api/v1/templates/welcome").status_code == 404


def test_validate_reports_syntax_errors_with_lines_and_missing_variables(api, templates):
    broken = api.post(
        "/api/v1/templates/validate",
        {"subject": "Hi {{ name", "html": "<p>ok</p>\n<p>{% for x in %}</p>", "test_model": {}},
        format="json",
    )
    assert broken.status_code == 200
    assert broken.json() == {
        "valid": False,
        "errors": [
            {"part": "subject", "kind": "syntax", "line": 1,
             "message": "unexpected end of template, expected 'end of print statement'."},
            {"part": "html", "kind": "syntax", "line": 2,
             "message": "Expected an expression, got 'end of statement block'"},
        ],
        "missing_variables": [],
        "rendered": None,
    }  # fmt: skip
    report = api.post(
        "/api/v1/templates/validate",
        {
            "subject": "Hi {{ name }}",
            "html": "<p>{{ user.first }} {{ user.last }}</p>{% include 'signature' %}",
            "layout": "brand",
            "test_model": {"user": {"first": "Jo"}},
        },
        format="json",
    ).json()
    assert report["valid"] is True
    assert report["missing_variables"] == ["name", "user.last", "team", "email"]
    assert report["rendered"]["subject"] == "Hi"
    assert '<p>Jo </p><p>-- The </p><p class="note" style="color: #336699;">Sent to </p>' in report["rendered"][
        "html"
    ].replace("\n", " ")
    strict = api.post(
        "/api/v1/templates/validate", {"text": "{{ code }}", "strict": True, "test_model": {}}, format="json"
    ).json()
    assert strict["valid"] is False
    assert strict["errors"] == [
        {"part": "model", "kind": "missing", "line": None, "message": "The model has no 'code'."}
    ]


def test_the_schema_documents_the_templates_api(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {
        "/api/v1/templates",
        "/api/v1/templates/validate",
        "/api/v1/templates/{ref}",
        "/api/v1/templates/{ref}/versions",
        "/api/v1/templates/{ref}/versions/{number}/restore",
    } <= set(schema["paths"])
    send_fields = schema["components"]["schemas"]["SendMessage"]["properties"]
    assert {"template", "model"} <= set(send_fields)


def test_the_message_records_the_template_and_version_that_made_it(api, templates):
    first = send(api, template="welcome", model=MODEL).json()
    api.patch(f"/api/v1/templates/{templates['welcome'].pk}", {"subject": "Hi {{ name }}"}, format="json")
    second = send(api, template=templates["welcome"].pk, model=MODEL).json()
    plain = send(api, subject="Plain", text="No template").json()

    def template_of(sent: dict) -> dict | None:
        return api.get(f"/api/v1/messages/{sent['id']}").json()["template"]

    welcome = {"id": templates["welcome"].pk, "alias": "welcome"}
    assert template_of(first) == {**welcome, "version": 1}
    assert template_of(second) == {**welcome, "version": 2}
    assert template_of(plain) is None
    # Deleting the template keeps the message; it no longer names a template.
    assert api.delete("/api/v1/templates/welcome").status_code == 204
    assert template_of(second) is None
