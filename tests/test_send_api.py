"""The send API's contract: what it accepts, and the clear 4xx it gives for everything else."""

from __future__ import annotations

import base64
import email
from email import policy

import pytest

from accounts.services import api_key_create, api_key_revoke, organization_get_or_create
from sending.models import Event, EventType, IdempotencyKey, Message, Recipient, RecipientState
from tests.conftest import verified_domain

pytestmark = pytest.mark.django_db


def payload(**overrides):
    body = {
        "from": "Acme <hello@acme.example>",
        "to": ["Jane <jane@dest.example>"],
        "subject": "Hello",
        "text": "Hello Jane",
    }
    body.update(overrides)
    return body


def send(api, body, **headers):
    return api.post("/api/v1/messages", body, format="json", **headers)


def test_accepts_message_and_commits_recipients(api):
    response = send(api, payload(cc=["bob@dest.example"], bcc=["carol@other.example"], tags=["welcome"]))
    assert response.status_code == 202, response.json()
    body = response.json()
    message = Message.objects.get(pk=body["id"])
    assert [r["address"] for r in body["recipients"]] == [
        "jane@dest.example",
        "bob@dest.example",
        "carol@other.example",
    ]
    assert Recipient.objects.filter(message=message, state=RecipientState.QUEUED).count() == 3
    assert Event.objects.filter(message=message, type=EventType.QUEUED).count() == 3
    parsed = email.message_from_bytes(bytes(message.raw), policy=policy.default)
    assert parsed["Bcc"] is None and b"carol@other.example" not in bytes(message.raw)
    assert parsed["Message-ID"] == body["message_id"]
    assert parsed["Date"]


@pytest.mark.django_db(transaction=True)
def test_one_message_is_one_transaction_from_key_lookup_to_stored_rows(api, monkeypatch, settings):
    """Every statement of a send request runs inside its one transaction, committed once (#21): no read commits
    on its own, and the rows, events and idempotency record go in together. (PostgreSQL: SQLite keeps its reads
    out of the transaction, whose BEGIN IMMEDIATE takes its one write lock.)"""
    from django.db import connection

    # The overload check counts the queue at most once a second, before the request's transaction: on a slow
    # machine the second request could be the one that asks. It is not what this test is about.
    settings.POSTWERK_OVERLOAD_QUEUE_DEPTH = 0

    if connection.vendor == "sqlite":
        pytest.skip("PostgreSQL: on SQLite the reads stay outside the write transaction (sending/api/views.py)")

    outside, commits = [], []
    real_commit = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: (commits.append(1), real_commit())[1])

    def watch(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if not connection.in_atomic_block and not sql.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE opens it
            outside.append(sql)
        return execute(sql, params, many, context)

    send(api, payload(to=["warm@dest.example"]))  # the key's last-used time is written once a minute: not here
    commits.clear()
    with connection.execute_wrapper(watch):
        response = send(api, payload(), HTTP_IDEMPOTENCY_KEY="order-1")
    assert response.status_code == 202, response.json()
    assert outside == []
    assert commits == [1]
    message = Message.objects.get(pk=response.json()["id"])
    assert Recipient.objects.filter(message=message).count() == 1
    assert Event.objects.filter(message=message, type=EventType.QUEUED).count() == 1
    assert IdempotencyKey.objects.filter(key="order-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_request_rolls_back_what_it_wrote(api, organization, monkeypatch):
    """A refusal answers 4xx and commits nothing of the request, not even the key's last-used time (PostgreSQL,
    where the whole request is one transaction)."""
    from django.db import connection

    from accounts.models import ApiKey

    if connection.vendor == "sqlite":
        pytest.skip("PostgreSQL: on SQLite the reads and the key's last-used time stay outside the transaction")

    ApiKey.objects.update(last_used_at=None)
    response = send(api, payload(**{"from": "someone@not-ours.example"}))
    assert response.status_code == 403, response.json()
    assert not Message.objects.exists()
    assert ApiKey.objects.get(organization=organization).last_used_at is None


def test_non_ascii_names_subject_and_body_are_encoded(api):
    response = send(
        api,
        payload(
            **{"from": "Jörg Müller <joerg@acme.example>"},
            subject="Grüße 👋",
            text="Schöne Grüße",
            html="<p>Schöne Grüße</p>",
        ),
    )
    assert response.status_code == 202
    raw = bytes(Message.objects.get().raw)
    assert raw.isascii()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Grüße 👋"
    assert parsed["From"].addresses[0].display_name == "Jörg Müller"
    assert parsed.get_body(("plain",)).get_content().strip() == "Schöne Grüße"


def test_internationalised_address_needs_smtputf8(api):
    response = send(api, payload(to=["jösé@dest.example"]))
    assert response.status_code == 202
    assert Message.objects.get().smtputf8 is True


def test_attachments_and_inline_images(api):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    response = send(
        api,
        payload(
            html='<img src="cid:logo">',
            attachments=[
                {
                    "filename": "report.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(b"%PDF").decode(),
                },
                {"filename": "logo.png", "content_type": "image/png", "content": png, "content_id": "logo"},
            ],
        ),
    )
    assert response.status_code == 202, response.json()
    parsed = email.message_from_bytes(bytes(Message.objects.get().raw), policy=policy.default)
    parts = {p.get_filename(): p for p in parsed.walk() if p.get_filename()}
    assert parts["report.pdf"].get_content() == b"%PDF"
    assert parts["logo.png"]["Content-ID"] == "<logo>"


def test_custom_headers_and_metadata_are_kept(api):
    response = send(api, payload(headers={"X-Campaign": "spring"}, metadata={"user_id": "42"}))
    assert response.status_code == 202
    message = Message.objects.get()
    assert b"X-Campaign: spring" in bytes(message.raw)
    assert message.metadata == {"user_id": "42"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"to": ["not-an-address"]}, "to"),
        ({"to": [], "cc": [], "bcc": []}, "to"),
        ({"text": "", "html": ""}, "text"),
        ({"from": "nobody"}, "from"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"headers": {"X-Evil": "a\r\nBcc: victim@example.com"}}, "headers"),
        ({"headers": {"Bcc": "victim@example.com"}}, "headers"),
        ({"headers": {"DKIM-Signature": "v=1"}}, "headers"),
        ({"headers": {"Received": "from x"}}, "headers"),
        ({"to": [f"u{i}@dest.example" for i in range(51)]}, "to"),
        ({"attachments": [{"filename": "a", "content": "!!!notbase64"}]}, "attachments"),
        ({"to": ["Jane\r\n <jane@dest.example>"]}, "to"),
        ({"tags": "notalist"}, "tags"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata"),
    ],
)
def test_bad_input_is_400_naming_the_field(api, overrides, field):
    response = send(api, payload(**overrides))
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["fields"], body
    assert not Message.objects.exists()


def test_missing_from_is_400(api):
    body = payload()
    del body["from"]
    response = send(api, body)
    assert response.status_code == 400
    assert "from" in response.json()["fields"]


NO_RECIPIENT = ["At least one recipient (to, cc or bcc) is required."]
NO_BODY = ["A text or html body is required."]


def test_an_empty_message_is_400_naming_every_missing_field_at_once(api):
    response = send(api, {})
    assert response.status_code == 400
    assert response.json()["fields"] == {"from": ["This field is required."], "to": NO_RECIPIENT, "text": NO_BODY}
    assert not Message.objects.exists()


def test_a_bad_field_does_not_hide_what_is_missing(api):
    response = send(api, {"from": "not an address", "subject": "Hi"})
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert (sorted(fields), fields["to"], fields["text"]) == (["from", "text", "to"], NO_RECIPIENT, NO_BODY)
    # A recipient given but wrong is that field's own error, not "missing".
    wrong_to = send(api, {"from": "hello@acme.example", "to": ["bob@@x"], "text": "Hi"}).json()["fields"]
    assert list(wrong_to) == ["to"] and wrong_to["to"] != NO_RECIPIENT


def test_malformed_json_is_400(api):
    response = api.post("/api/v1/messages", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_non_object_body_is_400(api):
    response = api.post("/api/v1/messages", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400


def test_bad_or_missing_or_revoked_key_is_401(api, organization, domain, client):
    assert client.post("/api/v1/messages", payload(), content_type="application/json").status_code == 401
    response = client.post(
        "/api/v1/messages",
        payload(),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer pwk_deadbeef_nope",
    )
    assert response.status_code == 401
    assert response.json()["error"]
    key, secret = api_key_create(organization=organization, name="temp")
    api_key_revoke(api_key=key)
    response = client.post(
        "/api/v1/messages", payload(), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 401


def test_from_domain_not_owned_is_403(api):
    response = send(api, payload(**{"from": "ceo@bank.example"}))
    assert response.status_code == 403
    assert "from" in response.json()["fields"]


def test_other_organizations_domain_is_403(api, db, zone):
    other, _ = organization_get_or_create(name="Other")
    verified_domain(zone, other, "other.example")
    assert send(api, payload(**{"from": "x@other.example"})).status_code == 403


def test_subdomain_only_when_allowed(api, domain):
    assert send(api, payload(**{"from": "x@mail.acme.example"})).status_code == 403
    domain.allow_subdomains = True
    domain.save()
    assert send(api, payload(**{"from": "x@mail.acme.example"})).status_code == 202


def test_oversize_message_is_413(api, settings):
    settings.POSTWERK_MAX_MESSAGE_SIZE = 10_000
    response = send(api, payload(text="x" * 20_000))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not Message.objects.exists()


def test_idempotent_retry_returns_original_and_sends_once(api):
    first = send(api, payload(), HTTP_IDEMPOTENCY_KEY="order-42")
    second = send(api, payload(), HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert Message.objects.count() == 1
    reused = send(api, payload(subject="Different"), HTTP_IDEMPOTENCY_KEY="order-42")
    assert reused.status_code == 422
    assert "Idempotency-Key" in reused.json()["fields"]


def test_idempotency_keys_are_per_organization(api, db, client, zone):
    send(api, payload(), HTTP_IDEMPOTENCY_KEY="k1")
    other, _ = organization_get_or_create(name="Other")
    verified_domain(zone, other, "other.example")
    _, secret = api_key_create(organization=other, name="k")
    response = client.post(
        "/api/v1/messages",
        payload(**{"from": "a@other.example"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert response.status_code == 202
    assert Message.objects.count() == 2


def test_message_detail_and_list_are_scoped(api, db, client):
    message_id = send(api, payload(tags=["welcome"])).json()["id"]
    detail = api.get(f"/api/v1/messages/{message_id}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["recipients"][0]["state"] == "queued"
    assert [e["type"] for e in body["recipients"][0]["events"]] == ["queued"]

    listing = api.get("/api/v1/messages", {"tag": "welcome", "status": "queued"})
    assert [m["id"] for m in listing.json()["results"]] == [message_id]
    assert api.get("/api/v1/messages", {"tag": "other"}).json()["results"] == []
    assert api.get("/api/v1/messages", {"recipient": "jane@dest.example"}).json()["results"]
    assert api.get("/api/v1/messages", {"status": "bogus"}).status_code == 400
    assert api.get("/api/v1/messages", {"since": "yesterday"}).status_code == 400

    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="k")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    assert client.get(f"/api/v1/messages/{message_id}").status_code == 404
    assert client.get("/api/v1/messages").json()["results"] == []
    assert client.get("/api/v1/messages/not-a-uuid").status_code == 404


def test_batch_accepts_valid_and_reports_invalid(api):
    response = api.post(
        "/api/v1/messages/batch",
        {
            "messages": [
                payload(to=["a@dest.example"]),
                payload(to=["bad"]),
                payload(**{"from": "x@bank.example"}),
            ]
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == 2
    assert [r["status"] for r in body["results"]] == [202, 400, 403]
    assert "to" in body["results"][1]["fields"]
    assert Message.objects.count() == 1


def test_batch_limits(api, settings):
    settings.POSTWERK_BATCH_MAX_MESSAGES = 2
    response = api.post("/api/v1/messages/batch", {"messages": [payload()] * 3}, format="json")
    assert response.status_code == 400
    assert api.post("/api/v1/messages/batch", {"messages": []}, format="json").status_code == 400


def test_schema_and_docs(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_schema_documents_per_message_tracking(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    fields = schema["components"]["schemas"]["SendMessage"]["properties"]
    for name in ("track_opens", "track_clicks"):
        assert (fields[name]["type"], fields[name]["nullable"]) == ("boolean", True)
        assert "tracking host" in fields[name]["description"]


def test_healthz_reports_database_and_broker(client, db, settings):
    from django.db import connection

    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "database": {"ok": True, "detail": connection.vendor},
        "broker": {"ok": True, "detail": settings.CELERY_BROKER_URL.split(":")[0]},  # filesystem or redis
    }


def test_healthz_is_503_naming_the_broker_when_it_cannot_be_reached(client, db, monkeypatch):
    import socket

    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        # Celery reads CELERY_BROKER_URL from the environment before its configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]["ok"], body["broker"]["ok"]) == ("unavailable", True, False)
    assert body["broker"]["detail"] == f"Error 111 connecting to 127.0.0.1:{port}. Connection refused."
